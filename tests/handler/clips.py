"""Synthetic audio for tests: WAV bytes without ffmpeg, speech-like tone bursts."""

from __future__ import annotations

import io
import wave

import numpy as np


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def speechlike(seconds: float, rate: int = 16000, pause_every: float = 2.0) -> np.ndarray:
    """Tone bursts with a 0.3 s pause every `pause_every` seconds (pauses to clip at)."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.4 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    signal[(t % pause_every) > pause_every - 0.3] = 0.0
    return signal.astype(np.float32)


def decoded_pcm16(data: bytes, fmt: str, rate: int) -> np.ndarray:
    """What ffmpeg decodes `data` (a file of `fmt`) to: mono PCM16 samples at `rate`.
    Decoded from a file, not a pipe: an M4A's index may need a seek."""
    import subprocess
    import tempfile

    from handler import audio

    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2")
    with tempfile.NamedTemporaryFile(suffix=f".{fmt}") as file:
        file.write(data)
        file.flush()
        to_pcm = ["-f", "s16le", "-ac", "1", "-ar", str(rate), "-"]
        pcm = subprocess.run(
            [audio.ffmpeg(), "-v", "error", "-i", file.name, *to_pcm],
            capture_output=True,
            check=True,
        ).stdout
    return np.frombuffer(pcm, dtype="<i2")
