"""The worker as RunPod runs it: `python -m ... --rp_serve_api` (the SDK's local API)
and `--test_input`, every op over HTTP, storage on a real S3 API on loopback."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest
import requests

from tests.handler.local_api import MODULE, REPO, LocalApi, s3_env, worker_env


@pytest.fixture
def api(ffmpeg_bin_dir, tmp_path, s3_endpoint, bucket):
    env = worker_env(
        ffmpeg_bin_dir,
        tmp_path / "vol",
        **s3_env(s3_endpoint, bucket),
    )
    server = LocalApi(env, tmp_path / "worker.log")
    yield server
    server.stop()


def test_every_op_over_runsync(api, reference_wav):
    ref = base64.b64encode(reference_wav).decode()
    info = api.runsync({"op": "info"})
    assert info["status"] == "COMPLETED" and info["output"]["features"]["storage"] == "s3"

    created = api.runsync({"op": "voice.create", "voice_id": "anna", "ref_audio_base64": ref})
    assert created["output"]["voice"]["ref_text"] == "This is the reference speaker."

    tts = api.runsync(
        {
            "text": "Hello there. Goodbye.",
            "voice": "anna",
            "subtitles": ["srt"],
            "format": "flac",
            "seed": 5,
        }
    )
    assert tts["status"] == "COMPLETED", tts
    out = tts["output"]
    audio = requests.get(out["audio"]["url"], timeout=10)
    assert audio.content[:4] == b"fLaC" and out["seed"] == 5
    assert requests.get(out["subtitles"]["srt"]["url"], timeout=10).text.startswith("1\n")

    assert api.runsync({"op": "voice.list"})["output"]["count"] == 1
    assert (
        api.runsync({"op": "voice.get", "voice_id": "anna"})["output"]["voice"]["voice_id"]
        == "anna"
    )
    assert api.runsync({"op": "voice.delete", "voice_id": "anna"})["output"] == {"deleted": "anna"}

    failed = api.runsync({"op": "voice.get", "voice_id": "anna"})
    assert failed["status"] == "FAILED" and "No voice named 'anna'" in failed["error"]


def test_earlier_system_payload_over_runsync(api, reference_wav):
    ref = "data:audio/wav;base64," + base64.b64encode(reference_wav).decode()
    created = api.runsync({"endpoint": "upload", "voice_name": "old", "voice_file_url": ref})
    assert created["status"] == "COMPLETED", created
    tts = api.runsync(
        {
            "endpoint": "tts",
            "text": "Hi there.",
            "local_voice": "old",
            "return_word_timings": True,
            "timing_format": "vtt",
        }
    )
    assert tts["status"] == "COMPLETED", tts
    assert set(tts["output"]["subtitles"]) == {"vtt"} and tts["output"]["words"]


def test_startup_failure_answers_every_job_instead_of_crashing(ffmpeg_bin_dir, tmp_path):
    env = worker_env(ffmpeg_bin_dir, tmp_path / "vol", F5TTS_TEST_DOUBLE="broken")
    server = LocalApi(env, tmp_path / "worker.log")
    try:
        for _ in range(2):
            result = server.runsync({"op": "info"})
            assert result["status"] == "FAILED"
            assert "fetch-models" in result["error"] and isinstance(result["error"], str)
        assert server.proc.poll() is None
    finally:
        server.stop()


def run_test_input(ffmpeg_bin_dir, tmp_path, job) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", MODULE, "--test_input", json.dumps(job)],
        cwd=REPO,
        env=worker_env(ffmpeg_bin_dir, tmp_path / "vol"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_test_input_runs_one_job_exits_zero_and_logs_no_audio(
    ffmpeg_bin_dir, tmp_path, reference_wav
):
    ref = base64.b64encode(reference_wav).decode()
    done = run_test_input(
        ffmpeg_bin_dir,
        tmp_path,
        {"input": {"text": "Hi.", "ref_audio_base64": ref, "ref_text": "Ref.", "format": "mp3"}},
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-2000:]
    assert "completed successfully" in log
    # the SDK prints the job's result at INFO under --test_input: no audio in it
    assert not leaks(log, ref[100:200]), log[-2000:]
    assert re.search(r"[A-Za-z0-9+/]{120,}", log) is None, "no audio as base64 in the log"


def test_test_input_with_a_bad_job_exits_one_with_the_sentence(ffmpeg_bin_dir, tmp_path):
    done = run_test_input(ffmpeg_bin_dir, tmp_path, {"input": {"text": "Hi."}})
    assert done.returncode == 1
    assert "exactly one of voice, ref_audio or ref_audio_base64" in done.stdout + done.stderr


LOG_SECRET = "wJalrXUtnFEMI-k7MDENG-bPxRfiCYEXAMPLEKEY"


def leaks(log: str, *needles: str) -> list[str]:
    return [n[:40] for n in needles if n in log]


def test_worker_logs_hold_no_presigned_url_credential_or_audio(
    ffmpeg_bin_dir, tmp_path, s3_endpoint, bucket, reference_wav
):
    """The SDK logs a job's output at DEBUG, and its own default level is DEBUG."""
    env = worker_env(
        ffmpeg_bin_dir,
        tmp_path / "vol",
        **{**s3_env(s3_endpoint, bucket), "AWS_SECRET_ACCESS_KEY": LOG_SECRET},
    )
    ref = base64.b64encode(reference_wav).decode()
    server = LocalApi(env, tmp_path / "worker.log")
    try:
        stored = server.runsync({"text": "Hi there.", "ref_audio_base64": ref, "ref_text": "R."})
        inline = server.runsync(
            {"text": "Hi.", "ref_audio_base64": ref, "ref_text": "R.", "delivery": "base64"}
        )
        signed = "http://x.test/a.wav?X-Amz-Signature=abc123def456"
        refused = server.runsync({"text": "Hi.", "ref_audio": signed, "ref_text": "R."})
    finally:
        server.stop()
    assert stored["status"] == "COMPLETED" and inline["status"] == "COMPLETED", (stored, inline)
    assert refused["status"] == "FAILED"
    log = (tmp_path / "worker.log").read_text()
    url = stored["output"]["audio"]["url"]
    assert not leaks(
        log,
        url.split("?", 1)[1],
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        LOG_SECRET,
        ref[100:200],
        inline["output"]["audio"]["base64"][100:200],
    ), log[-3000:]


def test_a_streaming_worker_streams_over_run_then_stream_and_wraps_runsync(
    ffmpeg_bin_dir, tmp_path, reference_wav
):
    """RunPod's local API: /run, then /stream/{id} runs the generator and returns every
    piece (it answers once the job is done, unlike the platform's live stream)."""
    env = worker_env(ffmpeg_bin_dir, tmp_path / "vol", F5TTS_STREAMING="1")
    ref = base64.b64encode(reference_wav).decode()
    job = {"text": "One. Two. Three.", "ref_audio_base64": ref, "ref_text": "R.", "seed": 2}
    server = LocalApi(env, tmp_path / "worker.log")
    try:
        job_id = server.run({**job, "format": "mp3", "stream": True})
        streamed = server.stream(job_id)
        whole = server.runsync({**job, "format": "mp3"})
        refused = server.runsync({**job, "format": "flac", "stream": True})
    finally:
        server.stop()
    assert streamed["status"] == "COMPLETED", streamed
    pieces = [item["output"] for item in streamed["stream"]]
    assert [p["seq"] for p in pieces] == list(range(len(pieces))) and len(pieces) > 2
    assert pieces[-1]["final"] is True and pieces[-1]["result"]["seed"] == 2
    data = b"".join(base64.b64decode(p["audio"]) for p in pieces)
    assert data[:2] == b"\xff\xf3"  # MPEG-2 layer III frames from the first byte
    # /runsync on a streaming worker: a job that does not stream is a one-element list
    assert whole["status"] == "COMPLETED" and len(whole["output"]) == 1
    assert whole["output"][0]["audio"]["format"] == "mp3" and whole["output"][0]["seed"] == 2
    # The local API does not read an error out of a generator's yields (the platform's
    # job loop does, and fails the job: test_handler_streaming's SDK-loop tests).
    (error,) = refused["output"]
    assert set(error) == {"error"} and "flac cannot be streamed" in error["error"].lower()
