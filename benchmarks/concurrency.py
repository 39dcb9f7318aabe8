"""8 jobs submitted together vs one after another, on one worker (shared model passes).

The same 8 tts jobs (different texts and seeds, one saved voice) go through the
worker's real handler twice: one after another on a worker that takes one job at a
time (F5TTS_MAX_CONCURRENCY=1, today's behaviour), then all submitted together to a
worker with F5TTS_MAX_CONCURRENCY=8, handed to its handler at once as runpod-python's
job loop does (the tests drive that loop itself: tests/handler/sdk_loop.py; the
benchmark needs no runpod, so it runs on a GPU machine without it), where their chunks
share batched model passes and one job's encoding overlaps another's synthesis.
Last line: `{"jobs": 8, "serial_s", "concurrent_s", "speedup", ...}`, speedup =
serial_s / concurrent_s (wall time for all 8).

By default the engine is the tiny random F5-TTS of the tests on the CPU;
`scripts/gpu-check` runs the same measurement on F5TTS_v1_Base (random weights).
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

SENTENCES = [
    "The morning light came slowly over the hills, and the village woke.",
    "A train rolled past the fields, its windows bright with early sun.",
    "Somewhere a dog barked twice, then settled down beside the door.",
    "The baker opened the shutters and the smell of bread filled the street.",
    "Children ran along the river, laughing at the ducks and the wind.",
    "An old man read his paper on the bench, as he had for forty years.",
    "The church bell rang eight times, and the market began to fill.",
    "By noon the square was loud with voices, carts and passing bicycles.",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=3, help="sentences per job")
    parser.add_argument("--nfe", type=int, default=16)
    return parser.parse_args(argv)


def job_inputs(jobs: int, sentences: int, nfe: int, fmt: str) -> list[dict[str, Any]]:
    from benchmarks._engine import BENCH_VOICE

    return [
        {
            "text": " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(sentences)),
            "voice": BENCH_VOICE,
            "nfe_step": nfe,
            "seed": i,
            "format": fmt,
        }
        for i in range(jobs)
    ]


async def _all_at_once(handler, inputs: list[dict[str, Any]]) -> list[Any]:
    """Every job handed to the handler at once, as the SDK's job loop does with
    concurrency_modifier jobs (one task each; tests/handler/sdk_loop.py runs that loop)."""
    jobs = [{"id": f"job-{i}", "input": job_input} for i, job_input in enumerate(inputs)]
    return await asyncio.gather(*(handler(job) for job in jobs))


def measure(
    engine: Any, reference: Any, inputs: list[dict[str, Any]], scratch: Path
) -> dict[str, Any]:
    """Wall time of the jobs one after another, then all together (seconds)."""
    from benchmarks._engine import bench_worker

    serial = bench_worker(engine, scratch / "volume", reference)
    handler = serial.runpod_config()["handler"]
    asyncio.run(handler({"id": "warm", "input": {**inputs[0], "text": "Warm up."}}))
    started = time.perf_counter()
    outputs = [
        asyncio.run(handler({"id": f"serial-{i}", "input": j})) for i, j in enumerate(inputs)
    ]
    serial_s = time.perf_counter() - started

    together = bench_worker(engine, scratch / "volume", reference, max_concurrency=len(inputs))
    started = time.perf_counter()
    outputs += asyncio.run(_all_at_once(together.runpod_config()["handler"], inputs))
    concurrent_s = time.perf_counter() - started
    failed = [out["error"] for out in outputs if "error" in out]
    if failed:
        raise RuntimeError(f"jobs failed: {failed[0]}")
    sizes = together.runner.batcher.batch_sizes
    return {
        "jobs": len(inputs),
        "serial_s": round(serial_s, 3),
        "concurrent_s": round(concurrent_s, 3),
        "speedup": round(serial_s / concurrent_s, 3),
        "passes_serial": len(serial.runner.batcher.batch_sizes) - 1,
        "passes_concurrent": len(sizes),
        "largest_pass": max(sizes),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from handler.worker_logging import configure_logging

    configure_logging()  # the SDK's level and redaction, as in the worker
    from benchmarks._engine import TINY_CPU, ffmpeg_on_path, tiny_cpu_engine

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        fmt = "mp3" if ffmpeg_on_path(scratch) else "pcm"
        engine, reference = tiny_cpu_engine(scratch)
        inputs = job_inputs(args.jobs, args.sentences, args.nfe, fmt)
        print(f"tiny F5-TTS on cpu; {args.jobs} jobs of {args.sentences} sentences; NFE {args.nfe}")
        result = measure(engine, reference, inputs, scratch)
    result.update(
        TINY_CPU,
        nfe=args.nfe,
        baseline="the same jobs one after another on a worker taking one job at a time",
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
