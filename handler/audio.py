"""Audio in and out through the ffmpeg executable (the conda env ships it).

Decoding accepts the audio files and containers of `INPUT_DEMUXERS` (nothing that
makes ffmpeg open other files or URLs) and always yields mono float32 at the rate
asked for; encoding writes the output formats the API offers; `normalize_loudness`
brings speech to a target loudness. A subprocess keeps codec crashes out of the
worker and needs no Python audio stack.

Encoders write to a seekable file, never to a pipe: after the last frame the mp3
muxer seeks back to write the Xing/LAME header (encoder delay and padding, which
decoders need to play the exact length), the flac muxer its STREAMINFO sample count,
and MP4 (aac) its index. Raw ADTS AAC cannot signal the encoder delay at all, so
`aac` is AAC-LC in an MP4 (.m4a) container.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handler.errors import UserError


@dataclass(frozen=True)
class Encoding:
    muxer: str  # ffmpeg -f
    codec: tuple[str, ...]
    content_type: str
    extension: str
    # What every second costs whatever the audio (estimates): CBR mp3 spends as much on
    # silence as on speech; flac, Opus and AAC spend next to nothing on it, so 0.
    bytes_per_second: float


# format -> how it is written (docs/api.md lists the same)
ENCODINGS: dict[str, Encoding] = {
    "wav": Encoding("wav", ("-c:a", "pcm_s16le"), "audio/wav", "wav", 0),
    "flac": Encoding("flac", ("-c:a", "flac"), "audio/flac", "flac", 0),
    "mp3": Encoding("mp3", ("-c:a", "libmp3lame", "-b:a", "128k"), "audio/mpeg", "mp3", 16000),
    "ogg": Encoding("ogg", ("-c:a", "libopus", "-b:a", "64k"), "audio/ogg", "ogg", 0),
    "aac": Encoding(
        "ipod",
        ("-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"),
        "audio/mp4",
        "m4a",
        0,
    ),
    "pcm": Encoding("s16le", ("-c:a", "pcm_s16le"), "audio/pcm", "pcm", 0),
}
PCM_FORMATS = ("wav", "pcm")  # 16-bit mono, no compression
# Below 16 kHz mp3 is MPEG-2.5, whose bitrates stop at 64 kb/s: lame encodes 128k as that.
MP3_FULL_RATE_HZ = 16000
MP3_LOW_RATE_BYTES_PER_SECOND = 8000
# Demuxers a reference clip may be read with: audio files and the containers phones
# and browsers record in. Not the ones that read other files or URLs named inside the
# bytes (concat scripts, HLS and DASH playlists, SDP): ffmpeg would follow them past
# the fetcher's checks. Matched against ffmpeg's demuxer names ("mov" is mp4/m4a too).
INPUT_DEMUXERS = "wav,w64,flac,mp3,ogg,mov,matroska,aac,aiff,caf,asf,amr,au"
LOUDNESS_TRUE_PEAK_DB = -1.5
LOUDNESS_RANGE_LU = 11.0
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
            "The ffmpeg executable is not on PATH; it comes with the conda environment, so "
            "start the worker through bootstrap/entrypoint.sh (or activate the env)"
        )
    return found


def _ffmpeg_process(args: list[str], stdin: bytes | None, what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            [ffmpeg(), "-hide_banner", "-nostdin", *args],
            input=stdin,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"The ffmpeg run took over {_TIMEOUT_S} s to {what}; send a shorter clip"
        ) from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = detail[-1][:200] if detail else f"exit status {proc.returncode}"
        raise _FfmpegFailed(last)
    return proc


def _run(args: list[str], stdin: bytes | None, what: str) -> bytes:
    return _ffmpeg_process(["-loglevel", "error", *args], stdin, what).stdout


def _run_both(args: list[str], stdin: bytes) -> tuple[bytes, str]:
    """stdout and stderr of a run whose filter reports on stderr (loudnorm, at info)."""
    proc = _ffmpeg_process(["-loglevel", "info", *args], stdin, "normalise the loudness")
    return proc.stdout, proc.stderr.decode("utf-8", "replace")


def _run_stderr(args: list[str], stdin: bytes) -> str:
    return _run_both(args, stdin)[1]


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
                    *("-protocol_whitelist", "file", "-format_whitelist", INPUT_DEMUXERS),
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
    encoding = ENCODINGS[fmt]
    rate = sample_rate or source_rate
    pcm = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    duration = round(pcm.size / source_rate, 3)
    if fmt in ("wav", "pcm") and rate == source_rate:
        # PCM needs no codec: writing it here saves an ffmpeg start (~20 ms per job).
        data = _pcm16_wav(pcm, rate) if fmt == "wav" else pcm16(pcm)
        return Encoded(data, fmt, encoding.content_type, rate, duration)
    with tempfile.TemporaryDirectory(prefix="f5tts-out-") as tmp:
        target = Path(tmp) / f"audio.{encoding.extension}"
        try:
            _run(
                [
                    *("-f", "f32le", "-ar", str(source_rate), "-ac", "1", "-i", "pipe:0"),
                    *("-ar", str(rate), *encoding.codec, "-f", encoding.muxer, "-y", str(target)),
                ],
                pcm.astype("<f4").tobytes(),
                f"encode {fmt}",
            )
        except _FfmpegFailed as exc:
            raise UserError(
                f"This ffmpeg build cannot encode {fmt} at {rate} Hz (ffmpeg: {exc}); "
                "choose another format or sample_rate"
            ) from None
        data = target.read_bytes()
    return Encoded(data, fmt, encoding.content_type, rate, duration)


def estimated_bytes(fmt: str, seconds: float, rate: int) -> int:
    """A floor of the encoded size: refusing on it never refuses what would fit."""
    if fmt in PCM_FORMATS:
        return int(seconds * rate * 2)
    per_second = ENCODINGS[fmt].bytes_per_second
    if fmt == "mp3" and rate < MP3_FULL_RATE_HZ:
        per_second = min(per_second, MP3_LOW_RATE_BYTES_PER_SECOND)
    return int(seconds * per_second)


def _loudnorm(target_lufs: float, measured: dict[str, str] | None = None) -> str:
    args = f"loudnorm=I={target_lufs:g}:TP={LOUDNESS_TRUE_PEAK_DB:g}:LRA={LOUDNESS_RANGE_LU:g}"
    if measured is not None:
        args += (
            f":measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
            f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
            f":offset={measured['target_offset']}:linear=true"
        )
    return args + ":print_format=json"


def _loudnorm_report(stderr: str) -> dict[str, str]:
    """The JSON object loudnorm prints last on stderr."""
    start = stderr.rfind("{")
    try:
        report = json.loads(stderr[start : stderr.rindex("}") + 1])
    except ValueError:
        raise _FfmpegFailed("loudnorm printed no measurement") from None
    return {str(k): str(v) for k, v in report.items()}


def plan_second_pass(measured: dict[str, str]) -> bool:
    """Whether the second pass can run: silence measures -inf and has nothing to raise."""
    try:
        return all(math.isfinite(float(measured[k])) for k in ("input_i", "input_tp"))
    except (KeyError, ValueError):
        return False


def normalize_loudness(
    samples: np.ndarray, rate: int, target_lufs: float
) -> tuple[np.ndarray, float | None]:
    """EBU R128 normalisation with ffmpeg's loudnorm in two passes (measure, then apply
    linearly, true-peak limited to LOUDNESS_TRUE_PEAK_DB); same length and rate.
    Returns the samples and the loudness loudnorm reports for them (None: silence)."""
    pcm = np.asarray(samples, dtype="<f4").reshape(-1).tobytes()
    source = ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0"]
    try:
        first = _run_stderr([*source, "-af", _loudnorm(target_lufs), "-f", "null", "-"], pcm)
        measured = _loudnorm_report(first)
        if not plan_second_pass(measured):
            return np.asarray(samples, dtype=np.float32), None
        # loudnorm works at 192 kHz inside; aresample brings it back to our rate.
        chain = f"{_loudnorm(target_lufs, measured)},aresample={rate}"
        out, second = _run_both(
            [*source, "-af", chain, "-f", "f32le", "-ar", str(rate), "-ac", "1", "pipe:1"], pcm
        )
    except _FfmpegFailed as exc:
        raise UserError(
            f"Loudness normalisation failed (ffmpeg: {exc}); resubmit without normalize"
        ) from None
    normalized = np.frombuffer(out, dtype="<f4").astype(np.float32)
    # The filter keeps the length; pin it exactly so word times stay true.
    normalized = np.pad(normalized, (0, max(0, samples.size - normalized.size)))[: samples.size]
    reached = _loudnorm_report(second).get("output_i")
    return normalized, float(reached) if reached not in (None, "-inf", "inf") else None


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    path.write_bytes(encode(samples, sample_rate, "wav").data)


def _pcm16_wav(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm16(pcm))
    return buf.getvalue()


def pcm16(pcm: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as PCM16 little-endian (every PCM output, streamed or not)."""
    return np.round(pcm * 32767.0).astype("<i2").tobytes()
