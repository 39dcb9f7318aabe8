"""Settings come from the environment once, with defaults and one-sentence errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.settings import DEFAULT_CORE_IMPORTS, Settings


def test_defaults_describe_the_runpod_volume_and_the_image():
    settings = Settings.from_env({"F5TTS_APP_DIR": "/app"})
    assert settings.volume == Path("/runpod-volume")
    assert settings.lockfile == Path("/app/conda-lock.yml")
    assert settings.requirements_dir == Path("/app/requirements")
    assert settings.prefix_for("0123456789ab") == Path("/runpod-volume/envs/f5tts-0123456789ab")
    assert settings.active_link == Path("/runpod-volume/envs/f5tts")
    assert settings.previous_link == Path("/runpod-volume/envs/f5tts.previous")
    assert settings.in_use_dir == Path("/runpod-volume/envs/.in-use")
    assert settings.pkgs_dir == Path("/runpod-volume/pkgs")
    assert settings.torch_hub_dir == Path("/runpod-volume/cache/torch")
    assert settings.in_use_ttl_s == 900
    assert settings.require_gpu is False
    assert settings.core_imports == DEFAULT_CORE_IMPORTS


def test_every_knob_is_read_from_its_variable(tmp_path):
    settings = Settings.from_env(
        {
            "F5TTS_VOLUME": str(tmp_path),
            "F5TTS_APP_DIR": "/src",
            "F5TTS_LOCKFILE": "/elsewhere/conda-lock.yml",
            "F5TTS_MIN_FREE_GB": "12.5",
            "F5TTS_IN_USE_TTL_S": "60",
            "F5TTS_REQUIRE_GPU": "1",
            "F5TTS_PIP_ARGS": "--no-index --find-links '/tmp/my wheels'",
            "F5TTS_CORE_IMPORTS": "yaml, torch",
            "F5TTS_ALLOWED_CHANNEL": "file:///chan/",
            "TORCH_HOME": "/th",
        }
    )
    assert settings.volume == tmp_path
    assert settings.lockfile == Path("/elsewhere/conda-lock.yml")
    assert settings.min_free_gb == 12.5
    assert settings.in_use_ttl_s == 60
    assert settings.require_gpu is True
    assert settings.pip_args == ("--no-index", "--find-links", "/tmp/my wheels")
    assert settings.core_imports == ("yaml", "torch")
    assert settings.allowed_channel == "file:///chan"
    assert settings.torch_hub_dir == Path("/th")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("F5TTS_MIN_FREE_GB", "lots", "F5TTS_MIN_FREE_GB='lots' is not a number"),
        ("F5TTS_IN_USE_TTL_S", "0", "F5TTS_IN_USE_TTL_S='0' is not a number >= 1"),
        ("F5TTS_REQUIRE_GPU", "maybe", "F5TTS_REQUIRE_GPU='maybe' is not a yes/no value"),
        ("F5TTS_PIP_ARGS", "--find-links 'unclosed", "F5TTS_PIP_ARGS cannot be split"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_variable(name, value, words):
    with pytest.raises(BootstrapError) as caught:
        Settings.from_env({name: value})
    assert caught.value.code == ExitCode.SETTINGS
    assert words in caught.value.message
    assert caught.value.message.count(". ") == 0 and caught.value.message.endswith(".")


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.volume = Path("/x")  # type: ignore[misc]
