"""The model thread (handler/engine/batcher.py): shared batches, failures kept to their
job, cancellation, with engine doubles (no torch)."""

from __future__ import annotations

import time
from concurrent.futures import CancelledError

import pytest

from handler.contracts import SynthesisParams
from handler.engine.batcher import Batcher
from handler.engine.scheduler import BatchBudget
from tests.handler.doubles import CudaCrashEngine, FailingChunkEngine, SlowSineEngine


@pytest.fixture
def reference(tmp_path):
    from handler.contracts import PreparedReference

    path = tmp_path / "ref.wav"
    path.write_bytes(b"RIFF")
    return PreparedReference(path, "Ref.", 1.0)


def plan(engine, reference, text, job, seed=1):
    return engine.plan(reference, text, SynthesisParams(seed=seed), job=job)


def settle(batcher: Batcher) -> None:
    deadline = time.monotonic() + 5
    while batcher._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_chunks_of_jobs_submitted_together_share_one_pass(reference):
    engine = SlowSineEngine(0.05)
    batcher = Batcher(engine)
    first = batcher.submit(plan(engine, reference, "Warm. Up.", "w"))
    engine.running.wait(5)
    a = batcher.submit(plan(engine, reference, "One. Two.", "a"))  # while the pass runs
    b = batcher.submit(plan(engine, reference, "Three.", "b"))
    for future in first + a + b:
        future.result(5)
    jobs = [sorted({w.job for w in batch}) for batch in engine.batches]
    assert jobs[0] == ["w"] and ["a", "b", "w"] in jobs  # w's second chunk joined a and b
    settle(batcher)
    assert batcher._thread is None  # no thread while idle


def test_a_failing_chunk_fails_only_its_job_not_its_batch_mates(reference):
    engine = FailingChunkEngine("Boom", seconds=0.05)
    batcher = Batcher(engine)
    slow_start = batcher.submit(plan(engine, reference, "Hold.", "x"))
    engine.running.wait(5)
    fine = batcher.submit(plan(engine, reference, "All fine here.", "a"))
    doomed = batcher.submit(plan(engine, reference, "Boom today.", "b"))
    slow_start[0].result(5)
    assert fine[0].result(5).size > 0
    with pytest.raises(RuntimeError, match="Boom"):
        doomed[0].result(5)
    sizes = [len(batch) for batch in engine.batches]
    assert sizes == [1, 2, 1, 1]  # x; a and b together; then a and b one by one


def test_a_fatal_gpu_error_fails_the_whole_batch_without_running_it_again(reference):
    engine = CudaCrashEngine()
    batcher = Batcher(engine)
    futures = batcher.submit(plan(engine, reference, "One. Two. Three.", "a"))
    for future in futures:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            future.result(5)
    assert list(batcher.batch_sizes) == [1, 2]  # the first chunk, then the rest: no reruns


def test_cancelling_a_job_drops_its_pending_chunks_and_leaves_the_others(reference):
    engine = SlowSineEngine(0.2, budget=BatchBudget(max_chunks=2))
    batcher = Batcher(engine)
    a = batcher.submit(plan(engine, reference, "A1. A2. A3. A4.", "a"))
    b = batcher.submit(plan(engine, reference, "B1. B2. B3.", "b"))
    a[0].result(5)  # a's first chunk ran (with b's first)
    dropped = batcher.cancel("a")
    assert dropped >= 1 and "a" not in batcher.pending_jobs()
    assert all(f.result(5).size for f in b)
    with pytest.raises(CancelledError):
        a[-1].result(5)
    ran = {w.text for batch in engine.batches for w in batch}
    assert "A4." not in ran and {"B1.", "B2.", "B3."} <= ran
