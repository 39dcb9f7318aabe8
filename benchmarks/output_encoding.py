"""Output encoding: ms per format to encode 10 s to a seekable file vs to a pipe; loudnorm cost.

Encoding to a file (so mp3 gets its Xing/LAME header, flac its sample count and aac
its MP4 index: the declared duration is then exact) replaced encoding to a pipe; this
measures what that costs per job, within one run, with the same ffmpeg and arguments.
It also times `normalize: true` (two loudnorm passes) on the same audio. The ffmpeg is
the one on PATH, else imageio-ffmpeg's. Usage: scripts/bench output-encoding [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._engine import ffmpeg_on_path

REPO = Path(__file__).resolve().parent.parent
RATE = 24000
FORMATS = ("mp3", "ogg", "aac", "flac")


def _speechlike(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.1 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    wave[(t % 2.0) > 1.7] = 0.0
    return wave.astype(np.float32)


def _ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1)


def _pipe_encode(audio, samples: np.ndarray, fmt: str) -> bytes:
    """What the worker did before: the same encoder writing to stdout."""
    encoding = audio.ENCODINGS[fmt]
    codec = [a for a in encoding.codec if a not in ("-movflags", "+faststart")]
    muxer = "adts" if fmt == "aac" else encoding.muxer
    return subprocess.run(
        [
            audio.ffmpeg(),
            *("-hide_banner", "-loglevel", "error", "-nostdin"),
            *("-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0"),
            *(*codec, "-f", muxer, "pipe:1"),
        ],
        input=samples.astype("<f4").tobytes(),
        capture_output=True,
        check=True,
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from handler import audio

    samples = _speechlike(10.0)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-encoding-") as tmp:
        ffmpeg_on_path(Path(tmp))
        for fmt in FORMATS:
            file_ms = _ms(lambda fmt=fmt: audio.encode(samples, RATE, fmt), args.runs)
            pipe_ms = _ms(lambda fmt=fmt: _pipe_encode(audio, samples, fmt), args.runs)
            figures[fmt] = {
                "file_ms": file_ms,
                "pipe_ms": pipe_ms,
                "ratio": round(file_ms / pipe_ms, 2),
            }
            print(f"  {fmt}: file {file_ms} ms, pipe {pipe_ms} ms")
        loud_ms = _ms(lambda: audio.normalize_loudness(samples, RATE, -16.0), args.runs)
        mp3_ms = figures["mp3"]["file_ms"]
        print(f"  normalize: {loud_ms} ms")
    print(
        json.dumps(
            {
                "benchmark": "output-encoding",
                "audio_s": 10.0,
                "formats": figures,
                "normalize_ms": loud_ms,
                "normalize_vs_mp3_encode": round(loud_ms / mp3_ms, 2),
                "runs": args.runs,
                "baseline": "pipe_ms: the same encoder writing to a pipe, as before the fix",
            }
        )
    )


if __name__ == "__main__":
    main()
