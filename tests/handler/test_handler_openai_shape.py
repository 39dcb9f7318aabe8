"""OpenAI's speech request (`model`, `input`, `voice`, `response_format`, `speed`) is a
tts job, also inside RunPod's OpenAI-route wrapping; the request is the one the
official `openai` client really sends (captured on loopback), the worker the real one
behind runpod's local API."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from handler.errors import UserError
from handler.jobs import JobRunner, Models
from handler.schema import TtsJob, parse_request
from tests.handler.doubles import EvenAligner, FixedTranscriber, SineEngine
from tests.handler.local_api import LocalApi, worker_env


def capture_openai_client_request(**create_kwargs) -> tuple[str, dict]:
    """(path, JSON body) that `client.audio.speech.create` posts."""
    captured: dict = {}

    class Recorder(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers["Content-Length"])
            captured["path"] = self.path
            captured["body"] = json.loads(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from openai import OpenAI

        base = f"http://127.0.0.1:{server.server_address[1]}/v2/ENDPOINT_ID/openai/v1"
        client = OpenAI(api_key="RUNPOD_API_KEY", base_url=base, max_retries=0)
        with client.audio.speech.with_streaming_response.create(**create_kwargs) as response:
            response.read()
    finally:
        server.shutdown()
    return captured["path"], captured["body"]


def runpod_route_input(path: str, body: dict) -> dict:
    """The job input RunPod's OpenAI-compatible route makes of a request: the path
    after /openai as openai_route, the body as openai_input (worker-vllm reads these)."""
    return {"openai_route": path.split("/openai", 1)[1], "openai_input": body}


@pytest.fixture
def api(ffmpeg_bin_dir, tmp_path):
    server = LocalApi(worker_env(ffmpeg_bin_dir, tmp_path / "vol"), tmp_path / "worker.log")
    yield server
    server.stop()


def test_the_official_openai_client_request_runs_as_tts_through_runpods_route(api, reference_wav):
    created = api.runsync(
        {
            "op": "voice.create",
            "voice_id": "anna",
            "ref_audio_base64": base64.b64encode(reference_wav).decode(),
        }
    )
    assert created["status"] == "COMPLETED", created
    path, body = capture_openai_client_request(
        model="f5-tts", voice="anna", input="Hello there.", response_format="flac", speed=1.25
    )
    assert path.endswith("/openai/v1/audio/speech")
    result = api.runsync(runpod_route_input(path, body))
    assert result["status"] == "COMPLETED", result
    audio = result["output"]["audio"]
    assert audio["format"] == "flac" and base64.b64decode(audio["base64"])[:4] == b"fLaC"


def test_pcm_is_raw_16_bit_little_endian_mono_at_the_output_rate(api, reference_wav):
    api.runsync(
        {
            "op": "voice.create",
            "voice_id": "anna",
            "ref_audio_base64": base64.b64encode(reference_wav).decode(),
        }
    )
    result = api.runsync(
        {"model": "tts-1", "input": "Hi there.", "voice": "anna", "response_format": "pcm"}
    )
    assert result["status"] == "COMPLETED", result
    audio = result["output"]["audio"]
    pcm = np.frombuffer(base64.b64decode(audio["base64"]), "<i2")
    assert audio["content_type"] == "audio/pcm" and audio["sample_rate"] == 24000
    assert abs(pcm.size / 24000 - audio["duration_s"]) < 0.001 and np.abs(pcm).max() > 1000


@pytest.fixture
def runner(make_settings):
    return JobRunner(make_settings(), Models(SineEngine(), EvenAligner(), FixedTranscriber()), None)


def test_an_openai_request_defaults_to_mp3_like_openai(runner, reference_wav):
    runner.run(
        "j",
        {
            "op": "voice.create",
            "voice_id": "anna",
            "ref_audio_base64": base64.b64encode(reference_wav).decode(),
        },
    )
    out = runner.run("j", {"model": "tts-1", "input": "Hi.", "voice": "anna"})
    assert out["audio"]["format"] == "mp3" and out["audio"]["content_type"] == "audio/mpeg"


def test_a_custom_voice_object_from_the_official_client_names_the_saved_voice(
    runner, reference_wav
):
    """The client sends a custom voice as {"id": ...}; it was refused as not a string."""
    clip = base64.b64encode(reference_wav).decode()
    runner.run("j", {"op": "voice.create", "voice_id": "anna", "ref_audio_base64": clip})
    path, body = capture_openai_client_request(
        model="f5-tts", voice={"id": "anna"}, input="Hello.", response_format="wav"
    )
    out = runner.run("j", runpod_route_input(path, body))
    assert out["audio"]["format"] == "wav" and out["audio"]["duration_s"] > 0
    with pytest.raises(UserError, match="saved voice id"):
        parse_request({"input": "Hi", "voice": {"name": "anna"}})


@pytest.mark.parametrize(
    ("openai", "ours"),
    [
        ("mp3", "mp3"),
        ("opus", "ogg"),
        ("aac", "aac"),
        ("flac", "flac"),
        ("wav", "wav"),
        ("pcm", "pcm"),
    ],
)
def test_every_openai_response_format_maps_to_an_offered_format(openai, ours):
    request = parse_request({"input": "Hi", "voice": "anna", "response_format": openai})
    assert isinstance(request.job, TtsJob) and request.job.format == ours
    assert request.shape == "openai"


def test_the_job_apis_own_fields_may_come_along(runner):
    job = parse_request({"input": "Hi", "voice": "anna", "seed": 3, "subtitles": ["srt"]}).job
    assert (job.seed, job.subtitles, job.text) == (3, ["srt"], "Hi")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"input": "Hi", "voice": "a", "instructions": "cheerful"}, "instructions"),
        ({"input": "Hi", "voice": "a", "response_format": "ogg_vorbis"}, "response_format"),
        ({"input": "Hi", "voice": "a", "response_format": "mp3", "format": "wav"}, "once"),
        ({"input": "Hi", "text": "Hi", "voice": "a"}, "once"),
        ({"input": "Hi", "voice": "a", "stream_format": "sse"}, "stream_format"),
        ({"input": {"text": "Hi"}}, "input must be the text"),
        ({"openai_route": "/v1/chat/completions", "openai_input": {}}, "/v1/audio/speech"),
        ({"openai_route": "/v1/audio/speech", "openai_input": "Hi"}, "openai_input"),
        ({"input": "Hi", "voice": "a", "speed": 4.0}, "speed"),
    ],
)
def test_what_this_worker_cannot_do_for_an_openai_request_is_one_sentence(payload, expected):
    with pytest.raises(UserError) as caught:
        parse_request(payload)
    assert expected in caught.value.sentence and "\n" not in caught.value.sentence
