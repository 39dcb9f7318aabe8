"""What the job layer tells and refuses about the engine: presets, NFE in the output,
transcript bounds at tts and voice.create, and saved voices from before the bounds."""

from __future__ import annotations

import base64
import json

import pytest

from handler.errors import UserError
from handler.jobs import JobRunner, Models
from tests.handler.clips import speechlike, wav_bytes
from tests.handler.doubles import FixedTranscriber, SineEngine

SAID = "Every word that is spoken in this short reference clip."


def data_uri(wav: bytes) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav).decode()


@pytest.fixture
def runner(make_settings):
    return JobRunner(make_settings(), Models(SineEngine(), None, FixedTranscriber()), None)


def tts(runner, reference_wav, **fields):
    job = {"text": "Hello there.", "ref_audio": data_uri(reference_wav), "ref_text": SAID}
    return runner.run("job", {**job, **fields})


@pytest.mark.parametrize(
    ("fields", "nfe", "quality"),
    [
        ({}, 32, "best"),
        ({"quality": "fast"}, 7, "fast"),
        ({"quality": "balanced"}, 16, "balanced"),
        ({"quality": "balanced", "nfe_step": 16}, 16, "balanced"),
        ({"nfe_step": 12}, 12, None),
    ],
)
def test_the_output_reports_the_nfe_used_and_its_preset(
    runner, reference_wav, fields, nfe, quality
):
    out = tts(runner, reference_wav, **fields)
    assert (out["nfe_step"], out["quality"]) == (nfe, quality)
    assert runner.models.engine.calls[-1][1].nfe_step == nfe


def test_a_preset_with_a_different_nfe_step_is_refused_before_anything_is_fetched(
    runner, reference_wav
):
    with pytest.raises(UserError, match="quality 'fast' means nfe_step 7") as refused:
        tts(runner, reference_wav, quality="fast", nfe_step=32)
    assert "send only one of them" in refused.value.sentence
    assert runner.models.engine.calls == []


def test_an_unknown_preset_names_the_choices(runner, reference_wav):
    with pytest.raises(UserError, match=r"fast.*balanced.*best"):
        tts(runner, reference_wav, quality="turbo")


def test_tts_refuses_a_transcript_far_too_long_for_its_clip(runner, reference_wav):
    with pytest.raises(UserError, match=r"too long for its 3\.0 s clip"):
        tts(runner, reference_wav, ref_text="word " * 100)
    assert runner.models.engine.calls == []


def test_voice_create_refuses_a_transcript_far_too_long_for_its_clip(runner, reference_wav):
    with pytest.raises(UserError, match=r"too long for its 3\.0 s clip"):
        runner.run(
            "j",
            {
                "op": "voice.create",
                "voice_id": "anna",
                "ref_audio": data_uri(reference_wav),
                "ref_text": "word " * 100,
            },
        )
    with pytest.raises(UserError, match="No voice named 'anna'"):
        runner.run("j", {"op": "voice.get", "voice_id": "anna"})


def test_a_voice_saved_before_the_bounds_is_refused_at_use_with_how_to_fix_it(
    runner, make_settings
):
    runner.run(
        "j",
        {"op": "voice.create", "voice_id": "old", "ref_audio": data_uri(wav_bytes(speechlike(3)))},
    )
    meta_file = make_settings().voices_dir / "old" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["ref_text"] = "A transcript far longer than anything said in three seconds. " * 10
    meta_file.write_text(json.dumps(meta))  # as an earlier worker could have saved it

    with pytest.raises(UserError) as refused:
        runner.run("j", {"text": "Hello.", "voice": "old"})
    sentence = refused.value.sentence
    assert sentence.startswith("Voice 'old' cannot be used because the transcript is too long")
    assert "voice.create and overwrite true" in sentence
    assert runner.models.engine.calls == []
