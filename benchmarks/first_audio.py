"""Time to the first streamed piece vs time to the complete result, same job and seed.

A ~30 s text in a saved voice goes through the worker's real handler (handler.worker:
the job layer, the model thread, the streaming encoder) on a streaming worker
(F5TTS_STREAMING=1):
once streamed (`stream: true`), timing the first piece that holds audio, and once
not streamed, timing the complete result. Both runs are the same job with the same
seed, after a warm-up job (so the reference is prepared and cached, and the kernels
are warm, for both). Last line: `{"first_audio_ms", "total_ms", "ratio", ...}` where
ratio = first_audio_ms / total_ms (the issue's goal on CPU with the tiny model:
<= 0.25).

By default the engine is the tiny random F5-TTS of the tests (tests/support_models)
on the CPU; `scripts/gpu-check` runs the same measurement on F5TTS_v1_Base (random
weights) on its GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="speech in the text")
    parser.add_argument("--nfe", type=int, default=16)
    parser.add_argument("--format", default="mp3", help="pcm when no ffmpeg is found")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


async def _first_and_last(handler, job: dict[str, Any]) -> tuple[float, float, list[Any]]:
    started = time.perf_counter()
    first = None
    items = []
    async for item in handler(job):
        items.append(item)
        if first is None and item.get("duration_s"):
            first = time.perf_counter()
    done = time.perf_counter()
    if "error" in items[-1]:
        raise RuntimeError(items[-1]["error"])
    return (first or done) - started, done - started, items


def measure(
    engine: Any, reference: Any, text: str, *, nfe: int, fmt: str, seed: int, scratch: Path
) -> dict[str, Any]:
    """First streamed audio vs the complete result of the same job (a saved voice)."""
    from benchmarks._engine import BENCH_VOICE, bench_worker

    worker = bench_worker(engine, scratch / "volume", reference, streaming=True)
    handler = worker.runpod_config()["handler"]
    job = {"text": text, "voice": BENCH_VOICE, "nfe_step": nfe, "seed": seed, "format": fmt}
    warm = {**job, "text": text[:80]}
    asyncio.run(_first_and_last(handler, {"id": "warm", "input": {**warm, "stream": True}}))
    first_s, streamed_s, pieces = asyncio.run(
        _first_and_last(handler, {"id": "stream", "input": {**job, "stream": True}})
    )
    _, total_s, (whole,) = asyncio.run(_first_and_last(handler, {"id": "whole", "input": job}))
    return {
        "first_audio_ms": round(first_s * 1000, 1),
        "total_ms": round(total_s * 1000, 1),
        "ratio": round(first_s / total_s, 3),
        "streamed_total_ms": round(streamed_s * 1000, 1),
        "pieces": len(pieces),
        "audio_s": whole["audio"]["duration_s"],
        "first_piece_s": pieces[0]["duration_s"],
        "nfe": nfe,
        "format": fmt,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from handler.worker_logging import configure_logging

    configure_logging()  # the SDK's level and redaction, as in the worker
    from benchmarks._engine import TINY_CPU, ffmpeg_on_path, text_for, tiny_cpu_engine
    from tests.support_models.tiny import REFERENCE_SECONDS

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        fmt = args.format if ffmpeg_on_path(scratch) else "pcm"
        engine, reference = tiny_cpu_engine(scratch)
        text = text_for(args.seconds, REFERENCE_SECONDS)
        print(f"tiny F5-TTS on cpu; {len(text)} characters (~{args.seconds:g} s); NFE {args.nfe}")
        result = measure(
            engine, reference, text, nfe=args.nfe, fmt=fmt, seed=args.seed, scratch=scratch
        )
    result.update(TINY_CPU, baseline="the complete result of the same job, not streamed")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
