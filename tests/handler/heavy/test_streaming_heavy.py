"""Streaming and concurrent jobs on the real F5-TTS code (tiny random weights, CPU).

Tolerance of concurrent jobs: a chunk batched with other jobs' chunks is computed
with other matrix shapes than alone, so its float samples differ by float rounding
(~2e-6, tests/handler/heavy/test_engine_batching_heavy.py); as PCM16 a sample may then
round to the neighbouring value: CONCURRENT_LSB. A job alone on the worker is batched
the same way streamed or not, so those two are equal sample for sample.
"""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from handler.jobs import JobRunner, Models
from handler.settings import Settings
from handler.worker import Worker
from tests.handler.sdk_loop import run_jobs

CONCURRENT_LSB = 1
TEXT = (
    "The morning light came slowly over the hills, and the village woke. A train rolled "
    "past the fields, its windows bright with early sun. Somewhere a dog barked twice, "
    "then settled down beside the door. The baker opened the shutters, and the smell of "
    "bread filled the street while the children ran along the river."
)


@pytest.fixture
def make_worker(tmp_path, tiny_engine, ffmpeg_bin_dir):
    def make(**settings) -> Worker:
        values = {"volume": tmp_path / "volume", "warmup": False, "streaming": True, **settings}
        return Worker(JobRunner(Settings.model_validate(values), Models(tiny_engine), None))

    return make


def job(tiny_models, **fields):
    return {
        "text": TEXT,
        "ref_audio_base64": base64.b64encode(tiny_models.reference_wav.read_bytes()).decode(),
        "ref_text": tiny_models.reference_text,
        "nfe_step": 4,
        "seed": 5,
        "format": "pcm",
        **fields,
    }


def collect(worker: Worker, job_input: dict) -> list[dict]:
    handler = worker.runpod_config()["handler"]

    async def go():
        return [item async for item in handler({"id": "j", "input": job_input})]

    return asyncio.run(go())


def pcm_of(items: list[dict], streamed: bool) -> np.ndarray:
    if streamed:
        data = b"".join(base64.b64decode(p["audio"]) for p in items)
    else:
        (out,) = items
        data = base64.b64decode(out["audio"]["base64"])
    return np.frombuffer(data, dtype="<i2")


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_streamed_pcm_equals_the_whole_job_sample_for_sample(tiny_models, make_worker, fmt):
    worker = make_worker()
    pieces = collect(worker, job(tiny_models, format=fmt, stream=True))
    (whole,) = collect(worker, job(tiny_models, format=fmt))
    header = 44 if fmt == "wav" else 0
    stream = b"".join(base64.b64decode(p["audio"]) for p in pieces)
    assert stream[header:] == base64.b64decode(whole["audio"]["base64"])[header:]
    chunks = list(worker.runner.batcher.batch_sizes)
    assert chunks[:2] == [1, chunks[1]] and len(pieces) >= 3  # a short first chunk, alone
    first = pieces[0]["duration_s"]
    assert first < 0.35 * whole["audio"]["duration_s"]  # the first audio is a short chunk


def test_concurrent_jobs_each_sound_as_they_do_alone(tiny_models, make_worker):
    jobs = {
        f"job{i}": job(tiny_models, seed=i, stream=i % 2 == 0, text=TEXT[: 120 + 60 * i])
        for i in range(4)
    }
    alone = {k: pcm_of(collect(make_worker(), v), v["stream"]) for k, v in jobs.items()}
    worker = make_worker(max_concurrency=4)
    records = run_jobs(worker.runpod_config(), [{"id": k, "input": v} for k, v in jobs.items()])
    assert max(worker.runner.batcher.batch_sizes) > 1  # the jobs shared model passes
    for job_id, job_input in jobs.items():
        record = records[job_id]
        assert record.status == "COMPLETED", record.result
        together = pcm_of(record.result["output"], job_input["stream"])
        assert together.shape == alone[job_id].shape
        diff = np.abs(together.astype(np.int32) - alone[job_id].astype(np.int32))
        assert diff.max() <= CONCURRENT_LSB, job_id
        if job_input["stream"]:  # heard before the job ended
            assert record.first_piece_at < record.done_at
