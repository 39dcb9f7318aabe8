"""The RunPod wiring: start-up failures, error shapes as runpod's SDK reads them."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import pytest
from runpod.serverless.modules.rp_job import run_job

from handler.worker import Worker, build_worker
from tests.handler.doubles import CudaCrashEngine, double_models

REPO = Path(__file__).resolve().parents[2]
JOB = {"text": "Hello.", "ref_text": "Ref.", "ref_audio": "data:audio/wav;base64,"}


def sdk_result(worker: Worker, job_input) -> dict:
    """What runpod-python 1.12 makes of the handler's return value."""
    return asyncio.run(run_job(worker.handle, {"id": "job-1", "input": job_input}))


@pytest.fixture
def env(tmp_path, ffmpeg_bin_dir):
    return {"F5TTS_VOLUME": str(tmp_path / "vol")}


def test_models_are_built_once_and_warmed_up(env):
    built = []

    def factory(settings):
        built.append(settings)
        return double_models()

    worker = build_worker(factory, env)
    assert len(built) == 1
    assert worker.runner.models.engine.calls[0][0] == "Warm up."


def test_ok_job_is_completed_with_output(env, reference_wav):
    worker = build_worker(lambda s: double_models(), env)
    job = {**JOB, "ref_audio": JOB["ref_audio"] + base64.b64encode(reference_wav).decode()}
    result = sdk_result(worker, job)
    assert "error" not in result and result["output"]["audio"]["base64"]


def test_user_error_is_a_failed_job_with_one_sentence(env):
    result = sdk_result(build_worker(lambda s: double_models(), env), {"text": "Hi"})
    assert isinstance(result["error"], str) and "exactly one" in result["error"]
    assert "Traceback" not in result["error"] and "stopPod" not in result


def test_missing_weights_do_not_crash_loop_every_job_gets_the_sentence(env):
    def factory(settings):
        raise FileNotFoundError("the F5-TTS checkpoint at /v/x.safetensors is missing")

    worker = build_worker(factory, env)
    for _ in range(2):
        result = sdk_result(worker, {"op": "info"})
        assert result["error"].startswith("The worker could not start")
        assert "checkpoint" in result["error"]


def test_invalid_setting_is_reported_to_every_job(env):
    worker = build_worker(lambda s: double_models(), {**env, "F5TTS_MAX_TEXT_CHARS": "lots"})
    assert "F5TTS_MAX_TEXT_CHARS" in sdk_result(worker, {"op": "info"})["error"]


def test_a_transient_start_failure_still_raises_so_runpod_restarts(env):
    def factory(settings):
        raise RuntimeError("CUDA error: device not ready")

    with pytest.raises(RuntimeError):
        build_worker(factory, env)


def test_fatal_cuda_error_asks_runpod_to_replace_the_worker(env, reference_wav):
    def factory(settings):
        models = double_models()
        models.engine = CudaCrashEngine()
        return models

    worker = build_worker(factory, {**env, "F5TTS_WARMUP": "0"})
    job = {**JOB, "ref_audio": JOB["ref_audio"] + base64.b64encode(reference_wav).decode()}
    result = sdk_result(worker, job)
    assert result["stopPod"] is True and "GPU failed" in result["error"]


def test_unexpected_exception_is_a_sentence_not_a_traceback(env):
    worker = build_worker(lambda s: double_models(), env)
    worker.runner.run = lambda *a, **k: (_ for _ in ()).throw(KeyError("boom"))
    result = sdk_result(worker, {"op": "info"})
    assert result["error"].startswith("Internal error KeyError") and "\n" not in result["error"]


def test_light_tier_never_imports_torch(tmp_path, ffmpeg_bin_dir):
    import subprocess

    code = (
        "import sys, handler.worker, handler.jobs, handler.fetch, handler.voices;"
        "from tests.handler.doubles import double_models;"
        "w = handler.worker.build_worker(lambda s: double_models(), "
        f"{{'F5TTS_VOLUME': {str(tmp_path)!r}}});"
        "w.handle({'id': 'x', 'input': {'op': 'info'}});"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=str(pytest.importorskip("pathlib").Path(__file__).parents[2]),
    )


def test_progress_is_posted_per_chunk_only_on_runpod(env, reference_wav, monkeypatch):
    import runpod

    posted = []
    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, p: posted.append(p))
    worker = build_worker(lambda s: double_models(), {**env, "F5TTS_WARMUP": "0"})
    job = {
        **JOB,
        "text": "One. Two. Three.",
        "ref_audio": JOB["ref_audio"] + base64.b64encode(reference_wav).decode(),
    }
    sdk_result(worker, job)
    assert posted == []  # locally the SDK has nowhere to post
    monkeypatch.setenv("RUNPOD_WEBHOOK_POST_OUTPUT", "https://api.runpod.ai/v2/x/job-done")
    sdk_result(worker, job)
    assert posted == [{"chunks_done": i, "chunks_total": 3} for i in (1, 2, 3)]
