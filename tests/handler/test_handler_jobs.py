"""Each operation end to end through JobRunner, with test doubles for the models."""

from __future__ import annotations

import base64
import io
import json
import wave

import pytest
import requests

from handler.errors import UserError
from handler.jobs import JobRunner, Models
from handler.storage import ObjectStore
from tests.handler.doubles import SineEngine


def data_uri(wav: bytes) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav).decode()


@pytest.fixture
def s3_runner(s3_settings, models):
    return JobRunner(s3_settings, models, ObjectStore(s3_settings))


def test_tts_inline_returns_playable_audio_with_its_facts(inline_runner, reference_wav):
    progress = []
    out = inline_runner.run(
        "job-1",
        {
            "text": "Hello there. How are you?",
            "ref_audio": data_uri(reference_wav),
            "ref_text": "Reference words.",
        },
        lambda done, total: progress.append((done, total)),
    )
    wav = base64.b64decode(out["audio"]["base64"])
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getframerate() == 24000 == out["audio"]["sample_rate"]
        assert abs(w.getnframes() / 24000 - out["audio"]["duration_s"]) < 0.01
    assert out["audio"]["bytes"] == len(wav) and len(out["audio"]["sha256"]) == 64
    assert isinstance(out["seed"], int)
    assert progress == [(1, 2), (2, 2)]
    assert set(out["timings"]) == {
        "ref_ms",
        "synth_ms",
        "align_ms",
        "encode_ms",
        "upload_ms",
        "total_ms",
        "rtf",
    }


def test_seed_given_is_passed_to_the_engine_and_returned(inline_runner, models, reference_wav):
    out = inline_runner.run(
        "j", {"text": "Hi.", "ref_audio": data_uri(reference_wav), "ref_text": "R.", "seed": 42}
    )
    assert out["seed"] == 42 and models.engine.calls[-1][1].seed == 42


def test_tts_with_s3_uploads_audio_and_subtitles_and_returns_urls(s3_runner, reference_wav):
    out = s3_runner.run(
        "job-2",
        {
            "text": "One two three. Four five.",
            "ref_audio_base64": base64.b64encode(reference_wav).decode(),
            "ref_text": "Reference.",
            "format": "mp3",
            "subtitles": ["srt", "vtt", "ass", "json"],
            "words": True,
        },
    )
    audio = requests.get(out["audio"]["url"], timeout=10)
    assert (
        audio.headers["Content-Type"] == "audio/mpeg"
        and len(audio.content) == out["audio"]["bytes"]
    )
    assert "/job-2/audio.mp3" in out["audio"]["key"]
    srt = requests.get(out["subtitles"]["srt"]["url"], timeout=10).text
    assert srt.startswith("1\n00:00:00,000 --> ")
    assert requests.get(out["subtitles"]["vtt"]["url"], timeout=10).text.startswith("WEBVTT")
    words = out["words"]
    assert [w["word"] for w in words] == ["One", "two", "three.", "Four", "five."]
    assert words[-1]["end"] <= out["audio"]["duration_s"]
    assert json.loads(requests.get(out["subtitles"]["json"]["url"], timeout=10).text)["words"]


def test_inline_subtitles_come_back_as_text(inline_runner, reference_wav):
    out = inline_runner.run(
        "j",
        {
            "text": "Hi there.",
            "ref_audio": data_uri(reference_wav),
            "ref_text": "R.",
            "subtitles": "ass",
            "karaoke": True,
        },
    )
    assert (
        "[Events]" in out["subtitles"]["ass"]["text"] and "\\k" in out["subtitles"]["ass"]["text"]
    )


def test_word_timings_without_an_aligner_fail_before_synthesis(make_settings, reference_wav):
    engine = SineEngine()
    runner = JobRunner(make_settings(), Models(engine, None, None), None)
    with pytest.raises(UserError, match="aligner"):
        runner.run(
            "j",
            {
                "text": "Hi.",
                "ref_audio": data_uri(reference_wav),
                "ref_text": "R.",
                "subtitles": ["srt"],
            },
        )
    assert engine.calls == []


def test_voice_lifecycle_on_the_volume(inline_runner, models, reference_wav):
    created = inline_runner.run(
        "j", {"op": "voice.create", "voice_id": "anna", "ref_audio": data_uri(reference_wav)}
    )["voice"]
    assert created["ref_text"] == models.transcriber.text and created["sample_rate"] == 24000
    with pytest.raises(UserError, match="already exists"):
        inline_runner.run(
            "j", {"op": "voice.create", "voice_id": "anna", "ref_audio": data_uri(reference_wav)}
        )
    out = inline_runner.run("j", {"text": "Hello.", "voice": "anna"})
    assert models.engine.calls[-1][2].text == models.transcriber.text
    assert out["audio"]["duration_s"] > 0
    assert (
        inline_runner.run("j", {"op": "voice.get", "voice_id": "anna"})["voice"]["voice_id"]
        == "anna"
    )
    assert inline_runner.run("j", {"op": "voice.delete", "voice_id": "anna"}) == {"deleted": "anna"}
    with pytest.raises(UserError, match="No voice named 'anna'"):
        inline_runner.run("j", {"text": "Hello.", "voice": "anna"})


@pytest.mark.parametrize("runner_name", ["inline_runner", "s3_runner"])
def test_voice_list_pages_through_every_voice(request, runner_name, reference_wav):
    runner = request.getfixturevalue(runner_name)
    for name in ("a1", "b2", "c3", "d4", "e5"):
        runner.run(
            "j",
            {
                "op": "voice.create",
                "voice_id": name,
                "ref_audio": data_uri(reference_wav),
                "ref_text": f"Voice {name}.",
            },
        )
    seen, cursor = [], None
    while True:
        page = runner.run("j", {"op": "voice.list", "limit": 2, "cursor": cursor})
        assert page["count"] == len(page["voices"]) <= 2
        seen += [v["voice_id"] for v in page["voices"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["a1", "b2", "c3", "d4", "e5"]


def test_bucket_voice_is_usable_by_a_worker_with_an_empty_volume(
    s3_settings, models, reference_wav, tmp_path
):
    JobRunner(s3_settings, models, ObjectStore(s3_settings)).run(
        "j",
        {
            "op": "voice.create",
            "voice_id": "shared",
            "ref_audio": data_uri(reference_wav),
            "ref_text": "Shared voice.",
        },
    )
    other = s3_settings.model_copy(update={"volume": tmp_path / "other-volume"})
    out = JobRunner(other, models, ObjectStore(other)).run("j", {"text": "Hi.", "voice": "shared"})
    assert out["audio"]["url"] and models.engine.calls[-1][2].text == "Shared voice."


def test_legacy_list_voices_payload_works(inline_runner):
    assert inline_runner.run("j", {"endpoint": "list_voices"})["count"] == 0


def test_info_reports_env_marker_features_and_versions(make_settings, models, tmp_path):
    prefix = tmp_path / "envs" / "f5tts-abc123"
    (prefix / ".f5tts").mkdir(parents=True)
    (prefix / ".f5tts" / "ready.json").write_text(
        json.dumps({"env_id": "abc123", "features": ["whisperx"]})
    )
    out = JobRunner(make_settings(env_prefix=prefix), models, None).run("j", {"op": "info"})
    assert out["env_id"] == "abc123" and out["env"]["features"] == ["whisperx"]
    assert out["features"] == {
        "word_timings": True,
        "word_timing_languages": ["en"],
        "transcription": True,
        "storage": "inline",
    }
    assert out["limits"]["max_segments"] == 50
    assert out["versions"]["runpod"] == "1.12.0" and out["model"] == "sine-double"


def test_tts_with_storage_down_fails_and_reports_no_audio(s3_settings, models, reference_wav):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = s3_settings.model_copy(update={"aws_endpoint_url": dead, "s3_attempts": 2})
    runner = JobRunner(settings, models, ObjectStore(settings))
    with pytest.raises(UserError, match="did not answer") as caught:
        runner.run("j", {"text": "Hi.", "ref_audio": data_uri(reference_wav), "ref_text": "R."})
    assert "resubmit" in caught.value.sentence
