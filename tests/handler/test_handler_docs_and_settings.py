"""docs/api.md and the settings come from the same source as the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handler.errors import UserError
from handler.schema import LEGACY_ALIASES, TtsJob, VoiceCreateJob, VoiceListJob
from handler.settings import ENV_VARS, Settings

API_MD = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


def doc_row(name: str) -> str:
    rows = [line for line in API_MD.splitlines() if line.startswith("|") and f"`{name}`" in line]
    assert rows, f"docs/api.md has no table row for `{name}`"
    return rows[0]


@pytest.mark.parametrize("model", [TtsJob, VoiceCreateJob, VoiceListJob])
def test_every_field_is_documented_with_its_default(model):
    for name, field in model.model_fields.items():
        if name == "op":
            continue
        row = doc_row(name)
        default = field.get_default(call_default_factory=True)
        if default is None or field.is_required():
            continue
        shown = (
            {True: "true", False: "false"}.get(default, default)
            if isinstance(default, bool)
            else default
        )
        if isinstance(default, list):
            shown = "[]"
        assert f"`{shown}`" in row, f"{name}: default {shown!r} not in {row!r}"


def test_every_setting_and_alias_is_documented():
    for var in ENV_VARS:
        assert f"`{var}`" in API_MD, var
    for alias in LEGACY_ALIASES:
        assert f"`{alias}" in API_MD, alias


def test_settings_default_to_the_volume_layout():
    s = Settings.from_env({})
    assert s.volume == Path("/runpod-volume") and s.s3_bucket is None
    assert s.max_text_chars == 5000 and s.allow_http is False and s.warmup is True


def test_settings_read_the_environment():
    s = Settings.from_env(
        {
            "F5TTS_VOLUME": "/v",
            "S3_BUCKET": "b",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "F5TTS_ALLOW_HTTP": "1",
            "F5TTS_S3_ADDRESSING_STYLE": "path",
            "CONDA_PREFIX": "/env",
        }
    )
    assert (s.volume, s.s3_bucket, s.aws_region, s.allow_http) == (
        Path("/v"),
        "b",
        "eu-west-1",
        True,
    )
    assert s.env_marker == Path("/env/.f5tts/ready.json")


def test_an_invalid_setting_is_one_sentence_naming_the_variable():
    with pytest.raises(UserError) as caught:
        Settings.from_env({"F5TTS_S3_ADDRESSING_STYLE": "sideways"})
    assert "F5TTS_S3_ADDRESSING_STYLE" in caught.value.sentence
    assert re.fullmatch(r"[^\n]+", caught.value.sentence)


def test_the_handler_loads_what_bootstrap_fetch_models_downloaded():
    s = Settings.from_env(
        {
            "F5TTS_VOLUME": "/v",
            "F5TTS_MODEL_FILE": "F5TTS_Base/model_1200000.safetensors",
            "F5TTS_VOCAB_FILE": "F5TTS_Base/vocab.txt",
        }
    )
    assert s.ckpt_file == Path("/v/models/f5tts/F5TTS_Base/model_1200000.safetensors")
    assert s.vocab_file == Path("/v/models/f5tts/F5TTS_Base/vocab.txt")
    assert s.model_name == "F5TTS_Base"
    explicit = Settings.from_env(
        {"F5TTS_MODEL_FILE": "a/b.safetensors", "F5TTS_MODEL_PATH": "/m.st"}
    )
    assert explicit.ckpt_file == Path("/m.st")


def test_the_documented_speech_recogniser_folder_is_the_one_loaded():
    from handler.asr import resolve_asr_dir

    loaded = resolve_asr_dir(Settings.from_env({"F5TTS_VOLUME": "/v"}))
    documented = ENV_VARS["F5TTS_ASR_MODEL_DIR"][1].replace("$F5TTS_VOLUME", "/v")
    assert loaded == Path(documented)
    assert f"`{ENV_VARS['F5TTS_ASR_MODEL_DIR'][1]}`" in doc_row("F5TTS_ASR_MODEL_DIR")
