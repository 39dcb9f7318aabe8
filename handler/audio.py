"""Audio in and out through the ffmpeg executable (the conda env ships it).

Decoding accepts anything ffmpeg reads and always yields mono float32 at the rate
asked for; encoding writes the output formats the API offers. A subprocess keeps
codec crashes out of the worker and needs no Python audio stack.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handler.errors import UserError

# format -> (ffmpeg muxer, codec args, Content-Type)
ENCODINGS: dict[str, tuple[str, list[str], str]] = {
    "wav": ("wav", ["-c:a", "pcm_s16le"], "audio/wav"),
    "flac": ("flac", ["-c:a", "flac"], "audio/flac"),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"], "audio/mpeg"),
    "ogg": ("ogg", ["-c:a", "libopus", "-b:a", "64k"], "audio/ogg"),
}
_TIMEOUT_S = 120


class _FfmpegFailed(Exception):
    """ffmpeg exited non-zero; the argument is its last stderr line."""


@dataclass(frozen=True)
class Encoded:
    data: bytes
    format: str
    content_type: str
    sample_rate: int
    duration_s: float


def ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise UserError(
            "ffmpeg is not on PATH; it comes with the conda environment, so start the "
            "worker through bootstrap/entrypoint.sh (or activate the env)"
        )
    return found


def _run(args: list[str], stdin: bytes | None, what: str) -> bytes:
    try:
        proc = subprocess.run(
            [ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", *args],
            input=stdin,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"ffmpeg took over {_TIMEOUT_S} s to {what}; send a shorter clip") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = detail[-1][:200] if detail else f"exit status {proc.returncode}"
        raise _FfmpegFailed(last)
    return proc.stdout


def decode(data: bytes, sample_rate: int, max_seconds: float, *, what: str = "audio") -> np.ndarray:
    """Mono float32 samples at `sample_rate`; refuses input longer than `max_seconds`."""
    if not data:
        raise UserError(f"The {what} is empty; send a non-empty audio file")
    # A file, not a pipe: containers such as mp4/m4a need to seek.
    with tempfile.NamedTemporaryFile(prefix="f5tts-in-", suffix=".bin") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            raw = _run(
                [
                    "-i",
                    tmp.name,
                    "-map",
                    "0:a:0",
                    "-t",
                    f"{max_seconds + 0.5:.3f}",
                    "-ac",
                    "1",
                    "-ar",
                    str(sample_rate),
                    "-f",
                    "f32le",
                    "pipe:1",
                ],
                None,
                f"decode the {what}",
            )
        except _FfmpegFailed as exc:
            raise UserError(
                f"The {what} is not a readable audio file (ffmpeg: {exc}); "
                "send WAV, FLAC, MP3, OGG or M4A"
            ) from None
    samples = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise UserError(f"The {what} holds no audio samples; send a clip with sound in it")
    duration = samples.size / sample_rate
    if duration > max_seconds + 0.05:
        raise UserError(
            f"The {what} is longer than {max_seconds:g} s (F5TTS_MAX_REF_SECONDS); "
            "trim it to a few seconds of clear speech"
        )
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return samples


def encode(
    samples: np.ndarray, source_rate: int, fmt: str, sample_rate: int | None = None
) -> Encoded:
    """Encodes mono float samples; resamples when `sample_rate` differs from the source."""
    if fmt not in ENCODINGS:
        raise UserError(f"Unknown audio format {fmt!r}; use one of {', '.join(ENCODINGS)}")
    muxer, codec, content_type = ENCODINGS[fmt]
    rate = sample_rate or source_rate
    pcm = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    if fmt == "wav" and rate == source_rate:
        # PCM needs no codec: writing it here saves an ffmpeg start (~20 ms per job).
        data = _pcm16_wav(pcm, rate)
        return Encoded(data, fmt, content_type, rate, round(pcm.size / source_rate, 3))
    try:
        data = _run(
            [
                "-f",
                "f32le",
                "-ar",
                str(source_rate),
                "-ac",
                "1",
                "-i",
                "pipe:0",
                "-ar",
                str(rate),
                *codec,
                "-f",
                muxer,
                "pipe:1",
            ],
            pcm.astype("<f4").tobytes(),
            f"encode {fmt}",
        )
    except _FfmpegFailed as exc:
        raise UserError(
            f"This ffmpeg build cannot encode {fmt} at {rate} Hz (ffmpeg: {exc}); "
            "choose another format or sample_rate"
        ) from None
    if fmt == "wav":
        data = _fix_wav_sizes(data)
    return Encoded(data, fmt, content_type, rate, round(pcm.size / source_rate, 3))


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    path.write_bytes(encode(samples, sample_rate, "wav").data)


def _pcm16_wav(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.round(pcm * 32767.0).astype("<i2").tobytes())
    return buf.getvalue()


def _fix_wav_sizes(data: bytes) -> bytes:
    """ffmpeg cannot seek back into a pipe, so it leaves the RIFF/data sizes unset."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    out = bytearray(data)
    out[4:8] = (len(out) - 8).to_bytes(4, "little")
    pos = 12
    while pos + 8 <= len(out):
        chunk, size = bytes(out[pos : pos + 4]), int.from_bytes(out[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            out[pos + 4 : pos + 8] = (len(out) - pos - 8).to_bytes(4, "little")
            break
        pos += 8 + size + (size & 1)
    return bytes(out)
