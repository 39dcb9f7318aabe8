"""Multi-speaker scripts: `segments` or F5-TTS's inline `[voice]` tags become one audio
with pauses; words and subtitles carry the speaker; seeds derive from the job's."""

from __future__ import annotations

import base64
import json

import ass
import numpy as np
import pytest
import requests

from handler import script
from handler.errors import UserError
from handler.jobs import JobRunner
from handler.schema import parse_job
from tests.handler.doubles import SECONDS_PER_CHAR, SineEngine
from tests.handler.local_api import LocalApi, s3_env, worker_env

RATE = SineEngine.sample_rate


def plan(payload, seed=7):
    return script.plan_script(parse_job(payload), seed)


# -- planning (pure) -------------------------------------------------------------
def test_inline_tags_switch_voices_the_way_f5_tts_cli_reads_them():
    planned = plan({"text": "Hello. [anna] Hi there! [bob] Hey. [main] Bye.", "voice": "narrator"})
    assert [(s.text, s.speaker) for s in planned] == [
        ("Hello.", "narrator"),
        ("Hi there!", "anna"),
        ("Hey.", "bob"),
        ("Bye.", "narrator"),
    ]
    assert planned[1].source == script.VoiceSource("voice", voice="anna")


def test_text_without_tags_is_one_segment_with_no_speaker_and_the_job_seed():
    (only,) = plan({"text": "Just [1] me, (and) [Brackets].", "voice": "anna"}, seed=42)
    assert only.text == "Just [1] me, (and) [Brackets]." and only.speaker is None
    assert only.seed == 42 and only.pause_after_s == 0.0


def test_a_script_of_tags_only_needs_no_reference_of_its_own():
    planned = plan({"text": "[anna] Hi. [bob] Hello."})
    assert [s.speaker for s in planned] == ["anna", "bob"]


def test_text_spoken_in_the_main_voice_needs_a_reference():
    with pytest.raises(UserError, match="exactly one of voice, ref_audio"):
        parse_job({"text": "Hello. [bob] Hi."})


def test_segments_take_their_own_voice_speed_pause_and_label():
    planned = plan(
        {
            "segments": [
                {"text": "One.", "voice": "anna", "speed": 1.5, "pause_s": 1.0},
                {"text": "Two.", "ref_audio": "https://x.org/b.wav", "speaker": "Guest"},
                {"text": "Three."},
            ],
            "voice": "host",
            "pause_s": 0.5,
            "speed": 0.8,
        }
    )
    assert [(s.speaker, s.speed, s.pause_after_s) for s in planned] == [
        ("anna", 1.5, 1.0),
        ("Guest", 0.8, 0.5),
        ("host", 0.8, 0.0),
    ]
    assert planned[1].source.kind == "clip"


def test_each_segment_seed_derives_from_the_job_seed_and_earlier_ones_stay_put():
    short = plan({"text": "[a] One. [b] Two.", "seed": 5}, seed=5)
    longer = plan({"text": "[a] One. [b] Two. [c] Three.", "seed": 5}, seed=5)
    assert [s.seed for s in short] == [s.seed for s in longer[:2]]
    assert short[0].seed == 5 and len({s.seed for s in longer}) == 3
    assert [s.seed for s in plan({"text": "[a] One. [b] Two."}, seed=6)] != [s.seed for s in short]


def test_segment_count_and_total_text_are_limited_by_the_settings():
    many = {"segments": [{"text": "Hi.", "voice": "a"}] * 4}
    with pytest.raises(UserError, match="F5TTS_MAX_SEGMENTS"):
        parse_job(many, max_segments=3)
    with pytest.raises(UserError, match="F5TTS_MAX_SEGMENTS"):
        parse_job({"text": "[a] x [b] y [a] z [b] w"}, max_segments=3)
    with pytest.raises(UserError, match="F5TTS_MAX_TEXT_CHARS"):
        parse_job({"segments": [{"text": "a" * 6, "voice": "a"}] * 2}, max_text_chars=10)


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "Hi", "segments": [{"text": "Hi", "voice": "a"}]},
        {"segments": [{"text": "Hi", "voice": "a", "ref_audio": "https://x.org/a.wav"}]},
        {"segments": [{"text": "Hi", "voice": "a", "ref_text": "R."}]},
        {"segments": []},
    ],
)
def test_a_script_that_contradicts_itself_is_one_sentence(payload):
    with pytest.raises(UserError) as caught:
        parse_job(payload)
    assert "\n" not in caught.value.sentence


@pytest.mark.parametrize("text", ["[anna]", "[main]", "[anna] [bob]", "  [anna]  [main] "])
def test_text_of_voice_tags_alone_is_refused_as_nothing_to_speak(runner, reference_wav, text):
    """It used to pass validation with zero segments and end in ZeroDivisionError."""
    ref = base64.b64encode(reference_wav).decode()
    for payload in ({"text": text}, {"text": text, "ref_audio_base64": ref, "ref_text": "R."}):
        with pytest.raises(UserError, match="only voice tags") as caught:
            runner.run("j", payload)
        assert "\n" not in caught.value.sentence


def test_join_lays_segments_end_to_end_with_their_pauses():
    track, starts = script.join([np.ones(10), np.ones(5)], [0.5, 0.0], 20)
    assert starts == [0, 20] and track.size == 25 and track[10:20].sum() == 0


# -- end to end ------------------------------------------------------------------
@pytest.fixture
def runner(make_settings, models, reference_wav):
    runner = JobRunner(make_settings(), models, None)
    for name in ("anna", "bob"):
        runner.run(
            "j",
            {
                "op": "voice.create",
                "voice_id": name,
                "ref_audio_base64": base64.b64encode(reference_wav).decode(),
                "ref_text": f"I am {name}.",
            },
        )
    return runner


def test_a_two_voice_script_is_one_audio_whose_words_and_subtitles_name_the_speaker(runner, models):
    out = runner.run(
        "j",
        {
            "text": "[anna] Good morning Bob. [bob] Morning Anna!",
            "pause_s": 0.5,
            "seed": 11,
            "words": True,
            "subtitles": ["srt", "vtt", "ass", "json", "csv"],
        },
    )
    first, second = out["segments"]
    assert (first["speaker"], second["speaker"]) == ("anna", "bob")
    assert second["start_s"] == pytest.approx(first["end_s"] + 0.5, abs=0.001)
    assert out["audio"]["duration_s"] == second["end_s"]
    assert first["seed"] == 11
    assert [c[1].seed for c in models.engine.calls[-2:]] == [first["seed"], second["seed"]]
    assert [c[2].text for c in models.engine.calls[-2:]] == ["I am anna.", "I am bob."]

    assert {w["speaker"] for w in out["words"][:3]} == {"anna"}
    assert all(w["start"] >= second["start_s"] for w in out["words"] if w["speaker"] == "bob")
    subs = {fmt: out["subtitles"][fmt]["text"] for fmt in out["subtitles"]}
    assert "[anna] Good morning Bob." in subs["srt"] and "[bob] Morning Anna!" in subs["srt"]
    assert "<v anna>Good morning Bob." in subs["vtt"]
    events = ass.parse_string(subs["ass"].lstrip("\ufeff")).events
    assert [e.name for e in events] == ["anna", "bob"]
    assert {c["speaker"] for c in json.loads(subs["json"])["cues"]} == {"anna", "bob"}
    assert subs["csv"].splitlines()[0] == "word,start,end,score,speaker"


def test_segments_with_their_own_clip_and_speed_render_in_order(runner, models, reference_wav):
    out = runner.run(
        "j",
        {
            "segments": [
                {"text": "First line here.", "voice": "anna", "speed": 2.0},
                {
                    "text": "Second line.",
                    "ref_audio": base64.b64encode(reference_wav).decode(),
                    "ref_text": "Guest clip.",
                    "speaker": "Guest",
                },
            ],
            "pause_s": 0.0,
        },
    )
    first, second = out["segments"]
    assert first["end_s"] == pytest.approx(len("First line here.") * SECONDS_PER_CHAR / 2, abs=0.01)
    assert second["speaker"] == "Guest" and models.engine.calls[-1][2].text == "Guest clip."


def test_a_script_naming_a_voice_nobody_saved_fails_before_synthesis(runner, models):
    calls = len(models.engine.calls)
    with pytest.raises(UserError, match="No voice named 'carol'"):
        runner.run("j", {"text": "[anna] Hi. [carol] Hello."})
    assert len(models.engine.calls) == calls


def test_a_script_through_the_local_api(
    ffmpeg_bin_dir, tmp_path, s3_endpoint, bucket, reference_wav
):
    env = worker_env(ffmpeg_bin_dir, tmp_path / "vol", **s3_env(s3_endpoint, bucket))
    server = LocalApi(env, tmp_path / "worker.log")
    try:
        ref = base64.b64encode(reference_wav).decode()
        for name in ("anna", "bob"):
            server.runsync({"op": "voice.create", "voice_id": name, "ref_audio_base64": ref})
        result = server.runsync(
            {
                "segments": [
                    {"text": "Hi Bob.", "voice": "anna"},
                    {"text": "Hi Anna.", "voice": "bob"},
                ],
                "subtitles": ["vtt"],
                "format": "mp3",
            }
        )
    finally:
        server.stop()
    assert result["status"] == "COMPLETED", result
    vtt = requests.get(result["output"]["subtitles"]["vtt"]["url"], timeout=10).text
    assert "<v anna>Hi Bob." in vtt and "<v bob>Hi Anna." in vtt
