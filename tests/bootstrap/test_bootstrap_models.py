"""`fetch-models` with a stand-in downloader: nothing here reaches the model hub
(the real downloads are verified only on RunPod)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.marker import read_models_marker
from bootstrap.models import HubFile, fetch_models, models_ready, plan_hub_files
from bootstrap.settings import Settings


class FakeHub:
    def __init__(self, fail: BaseException | None = None, fail_asr: BaseException | None = None):
        self.fetched: list[str] = []
        self.fail = fail
        self.fail_asr = fail_asr
        self.nltk: list[Path] = []
        self.bundles: list[str] = []

    def hub_file(self, item: HubFile) -> Path:
        if self.fail:
            raise self.fail
        self.fetched.append(f"{item.repo}/{item.filename}")
        item.target.parent.mkdir(parents=True, exist_ok=True)
        item.target.write_bytes(b"w" * 10)
        return item.target

    def hub_snapshot(self, repo: str, local_dir: Path, patterns) -> list[Path]:
        if self.fail_asr:
            raise self.fail_asr
        self.fetched.append(f"{repo}/*")
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "model.safetensors").write_bytes(b"s" * 5)
        return [local_dir / "model.safetensors"]

    def torchaudio_bundle(self, name: str, torch_home: Path) -> list[Path]:
        self.bundles.append(name)
        path = torch_home / f"hub/checkpoints/{name.lower()}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"a" * 7)
        return [path]

    def nltk_data(self, package: str, directory: Path) -> bool:
        self.nltk.append(directory / package)
        return True


def settings_for(tmp_path, **env) -> Settings:
    return Settings.from_env({"F5TTS_VOLUME": str(tmp_path), **env})


def test_weights_land_where_the_handler_looks_and_the_marker_lists_them(tmp_path):
    settings = settings_for(tmp_path)
    hub = FakeHub()
    marker = fetch_models(settings, hub, with_alignment=False, log=lambda _: None)
    models = tmp_path / "models"
    assert (models / "f5tts/F5TTS_v1_Base/model_1250000.safetensors").is_file()
    assert (models / "f5tts/F5TTS_v1_Base/vocab.txt").is_file()
    assert (models / "vocos-mel-24khz/config.yaml").is_file()
    assert (models / "vocos-mel-24khz/pytorch_model.bin").is_file()
    assert (models / "whisper-large-v3-turbo/model.safetensors").is_file()
    assert marker.sources["models/f5tts/F5TTS_v1_Base/vocab.txt"] == (
        "hf://SWivid/F5-TTS/F5TTS_v1_Base/vocab.txt"
    )
    assert marker.features == {"asr": True}
    assert read_models_marker(models) == marker
    assert models_ready(settings)


def test_with_whisperx_the_alignment_model_and_punkt_go_to_the_volume(tmp_path):
    settings = settings_for(tmp_path)
    hub = FakeHub()
    marker = fetch_models(
        settings, hub, with_alignment=True, log=lambda _: None, align_catalogue=lambda: CATALOGUE
    )
    assert marker.features == {"asr": True, "alignment": True, "alignment.en": True}
    key = "cache/torch/hub/checkpoints/wav2vec2_asr_base_960h.pth"
    assert marker.files[key] == 7
    assert hub.nltk == [tmp_path / "cache/nltk/punkt_tab"]


def test_files_already_on_the_volume_are_not_downloaded_again(tmp_path):
    settings = settings_for(tmp_path)
    fetch_models(settings, FakeHub(), with_alignment=False, log=lambda _: None)
    again = FakeHub()
    fetch_models(settings, again, with_alignment=False, log=lambda _: None)
    assert again.fetched == ["openai/whisper-large-v3-turbo/*"]
    assert plan_hub_files(settings) == []


def test_repos_and_paths_can_be_overridden(tmp_path):
    settings = settings_for(
        tmp_path,
        F5TTS_MODEL_REPO="me/my-f5",
        F5TTS_MODEL_FILE="v2/model.safetensors",
        F5TTS_VOCAB_FILE="v2/vocab.txt",
        F5TTS_VOCODER_REPO="me/vocos",
        F5TTS_ASR_REPO="me/whisper",
        F5TTS_ASR_MODEL_DIR=str(tmp_path / "asr"),
    )
    hub = FakeHub()
    fetch_models(settings, hub, with_alignment=False, log=lambda _: None)
    assert hub.fetched == [
        "me/my-f5/v2/model.safetensors",
        "me/my-f5/v2/vocab.txt",
        "me/vocos/config.yaml",
        "me/vocos/pytorch_model.bin",
        "me/whisper/*",
    ]
    assert (tmp_path / "asr/model.safetensors").is_file()


def test_an_optional_model_that_fails_is_a_warning_and_recorded(tmp_path):
    lines = []
    hub = FakeHub(fail_asr=ConnectionError("reset"))
    marker = fetch_models(settings_for(tmp_path), hub, with_alignment=False, log=lines.append)
    assert marker.features == {"asr": False}
    assert any("WARNING the reference transcriber is unavailable" in line for line in lines)


def test_the_transcriber_can_be_left_out(tmp_path):
    hub = FakeHub()
    settings = settings_for(tmp_path, F5TTS_FETCH_ASR="0")
    marker = fetch_models(settings, hub, with_alignment=False, log=lambda _: None)
    assert marker.features == {}
    assert not any(f.endswith("/*") for f in hub.fetched)


def test_no_network_is_one_sentence_and_no_marker(tmp_path):
    settings = settings_for(tmp_path)
    offline = ConnectionError("Max retries exceeded")
    with pytest.raises(BootstrapError) as caught:
        fetch_models(settings, FakeHub(fail=offline), with_alignment=False, log=lambda _: None)
    assert caught.value.code == ExitCode.MODELS_OFFLINE
    assert caught.value.message.startswith("the model hub cannot be reached (ConnectionError)")
    assert read_models_marker(tmp_path / "models") is None
    assert not models_ready(settings)


def test_a_dns_failure_deep_in_the_chain_counts_as_offline(tmp_path):
    try:
        try:
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        except socket.gaierror as dns:
            raise RuntimeError("download failed") from dns
    except RuntimeError as wrapped:
        failure = wrapped
    with pytest.raises(BootstrapError) as caught:
        fetch_models(settings_for(tmp_path), FakeHub(fail=failure), False, log=lambda _: None)
    assert caught.value.code == ExitCode.MODELS_OFFLINE


def test_another_download_failure_names_the_error(tmp_path):
    with pytest.raises(BootstrapError) as caught:
        fetch_models(
            settings_for(tmp_path), FakeHub(fail=ValueError("bad repo id")), False, log=print
        )
    assert caught.value.code == ExitCode.MODELS_FAILED
    assert "(ValueError: bad repo id)" in caught.value.message


@pytest.mark.heavy  # huggingface_hub is installed with the heavy tier, as in the env
def test_the_real_downloader_asks_huggingface_hub_for_the_file_in_place(tmp_path, monkeypatch):
    import huggingface_hub

    from bootstrap.models import HubDownloader

    calls = []

    def fake_download(repo_id, filename, local_dir):
        calls.append((repo_id, filename, local_dir))
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    item = HubFile("SWivid/F5-TTS", "F5TTS_v1_Base/vocab.txt", tmp_path / "models/f5tts")
    assert HubDownloader().hub_file(item) == item.target
    assert calls == [("SWivid/F5-TTS", "F5TTS_v1_Base/vocab.txt", tmp_path / "models/f5tts")]

    snapshots = []

    def fake_snapshot(repo_id, local_dir, allow_patterns):
        snapshots.append((repo_id, allow_patterns))
        (Path(local_dir) / ".cache").mkdir(parents=True)
        (Path(local_dir) / ".cache/lock").write_text("")
        (Path(local_dir) / "config.json").write_text("{}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    files = HubDownloader().hub_snapshot(
        "openai/whisper-large-v3-turbo", tmp_path / "asr", ("*.json",)
    )
    assert files == [tmp_path / "asr/config.json"]
    assert snapshots == [("openai/whisper-large-v3-turbo", ["*.json"])]


CATALOGUE = (
    {"en": "WAV2VEC2_ASR_BASE_960H", "fr": "VOXPOPULI_ASR_BASE_10K_FR"},
    {"ja": "jonatasgrosman/wav2vec2-large-xlsr-53-japanese"},
)


def test_the_alignment_model_of_every_configured_language_is_fetched(tmp_path):
    hub = FakeHub()
    marker = fetch_models(
        settings_for(tmp_path),
        hub,
        with_alignment=True,
        log=lambda _: None,
        environ={"F5TTS_ALIGN_LANGUAGES": "en, fr,ja"},
        align_catalogue=lambda: CATALOGUE,
    )
    assert hub.bundles == ["WAV2VEC2_ASR_BASE_960H", "VOXPOPULI_ASR_BASE_10K_FR"]
    assert "jonatasgrosman/wav2vec2-large-xlsr-53-japanese/*" in hub.fetched
    assert (tmp_path / "models/align/ja/model.safetensors").is_file()
    assert marker.features["alignment.ja"] and marker.features["alignment.fr"]
    assert marker.features["alignment"]


def refusal(tmp_path, with_alignment: bool, **environ) -> str:
    """The sentence fetch-models refuses these settings with, before any download."""
    hub = FakeHub()
    with pytest.raises(BootstrapError) as caught:
        fetch_models(
            settings_for(tmp_path),
            hub,
            with_alignment=with_alignment,
            log=lambda _: None,
            environ=environ,
            align_catalogue=lambda: CATALOGUE,
        )
    assert hub.fetched == [] and caught.value.code == ExitCode.SETTINGS
    return caught.value.message


def test_a_language_whisperx_has_no_model_for_is_refused_with_a_sentence(tmp_path):
    message = refusal(tmp_path, True, F5TTS_ALIGN_LANGUAGES="en,xx")
    assert "xx" in message and "F5TTS_ALIGN_LANGUAGES" in message


def test_a_model_whose_weights_live_in_another_repository_is_fetched_from_there(tmp_path):
    hub = FakeHub()
    fetch_models(
        settings_for(tmp_path),
        hub,
        with_alignment=False,
        log=lambda _: None,
        environ={"F5TTS_MODEL": "E2TTS_Base"},
    )
    assert hub.fetched[:2] == [
        "SWivid/E2-TTS/E2TTS_Base/model_1200000.safetensors",
        "SWivid/E2-TTS/E2TTS_Base/vocab.txt",
    ]
    # where the handler's engine looks for a model of that name
    assert (tmp_path / "models/f5tts/E2TTS_Base/model_1200000.safetensors").is_file()


def test_a_model_name_without_published_weights_is_refused_with_the_settings_to_give(tmp_path):
    message = refusal(tmp_path, False, F5TTS_MODEL="MyFineTune")
    assert "MyFineTune" in message and "F5TTS_MODEL_FILE" in message and "\n" not in message


@pytest.mark.heavy  # whisperx imports torch
def test_the_catalogue_is_whisperx_own_default_model_per_language():
    from bootstrap.models import plan_alignment, whisperx_align_catalogue

    catalogue = whisperx_align_catalogue()
    planned = plan_alignment(["en", "fr", "ja"], catalogue)
    assert [(m.kind, m.name) for m in planned] == [
        ("torchaudio", "WAV2VEC2_ASR_BASE_960H"),
        ("torchaudio", "VOXPOPULI_ASR_BASE_10K_FR"),
        ("huggingface", "jonatasgrosman/wav2vec2-large-xlsr-53-japanese"),
    ]
