"""8 jobs submitted together vs one after another, on one worker (shared model passes).

The same 8 tts jobs (different texts and seeds, one reference) go through the
worker's real handler twice: one after another on a worker that takes one job at a
time (F5TTS_MAX_CONCURRENCY=1, today's behaviour), then all submitted together to a
worker with F5TTS_MAX_CONCURRENCY=8 through runpod-python's own job loop (the
`JobScaler` RunPod runs, in process: tests/handler/sdk_loop.py), where their chunks
share batched model passes and one job's reference preparation and encoding overlap
another's synthesis. Last line: `{"jobs": 8, "serial_s", "concurrent_s", "speedup",
...}`, speedup = serial_s / concurrent_s (wall time for all 8).

By default the engine is the tiny random F5-TTS of the tests on the CPU;
`scripts/gpu-check` runs the same measurement on F5TTS_v1_Base (random weights).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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


def worker_over(engine: Any, volume: Path, concurrency: int):
    from handler.jobs import JobRunner, Models
    from handler.settings import Settings
    from handler.worker import Worker

    settings = Settings.model_validate(
        {"volume": volume, "warmup": False, "max_concurrency": concurrency}
    )
    return Worker(JobRunner(settings, Models(engine), None))


def job_inputs(reference_wav: bytes, ref_text: str, jobs: int, sentences: int, nfe: int):
    ref = base64.b64encode(reference_wav).decode()
    return [
        {
            "text": " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(sentences)),
            "ref_audio_base64": ref,
            "ref_text": ref_text,
            "nfe_step": nfe,
            "seed": i,
            "format": "mp3",
        }
        for i in range(jobs)
    ]


def measure(engine: Any, inputs: list[dict[str, Any]], scratch: Path) -> dict[str, Any]:
    """Wall time of the jobs one after another, then all together (seconds)."""
    from tests.handler.sdk_loop import run_jobs

    serial = worker_over(engine, scratch / "volume", 1)
    handler = serial.runpod_config()["handler"]
    asyncio.run(handler({"id": "warm", "input": {**inputs[0], "text": "Warm up."}}))
    started = time.perf_counter()
    for i, job_input in enumerate(inputs):
        out = asyncio.run(handler({"id": f"serial-{i}", "input": job_input}))
        if "error" in out:
            raise RuntimeError(out["error"])
    serial_s = time.perf_counter() - started

    together = worker_over(engine, scratch / "volume", len(inputs))
    config = together.runpod_config()
    started = time.perf_counter()
    records = run_jobs(config, [{"id": f"job-{i}", "input": j} for i, j in enumerate(inputs)])
    concurrent_s = time.perf_counter() - started
    failed = [r.result for r in records.values() if r.status != "COMPLETED"]
    if failed:
        raise RuntimeError(f"concurrent jobs failed: {failed[:1]}")
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
    from handler.engine import load_engine
    from tests.support_models.tiny import build_tiny_volume

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        tiny = build_tiny_volume(scratch / "tiny", with_aligner=False)
        engine = load_engine(tiny.settings())
        inputs = job_inputs(
            tiny.reference_wav.read_bytes(),
            tiny.reference_text,
            args.jobs,
            args.sentences,
            args.nfe,
        )
        print(f"tiny F5-TTS on cpu; {args.jobs} jobs of {args.sentences} sentences; NFE {args.nfe}")
        result = measure(engine, inputs, scratch)
    result.update(
        nfe=args.nfe,
        device="cpu",
        model="tiny random F5-TTS (tests/support_models)",
        baseline="the same jobs one after another on a worker taking one job at a time",
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
