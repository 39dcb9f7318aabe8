"""`fetch-models`: the F5-TTS weights, the vocoder, the reference transcriber and
(with whisperx) the alignment model, onto the volume.

Everything lands on the volume once, under the `models` lease the entrypoint holds,
and models/.ready.json (`ModelsMarker`) is written last; the handler then runs with
HF_HUB_OFFLINE=1. The F5-TTS checkpoint, vocab and vocoder are required; the
transcriber (used when a job sends no ref_text) and the alignment model (word
timings) are optional: a failure is a WARNING and the marker records it. Downloads
go through `Downloader`, whose real implementation imports huggingface_hub,
torchaudio and nltk lazily (they exist only in the env). Verified against the real
hub only on RunPod: this workplace cannot reach it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.marker import ModelsMarker, models_marker_path, read_models_marker, write_marker
from bootstrap.settings import Settings

F5_DIR = "f5tts"
VOCODER_DIR = "vocos-mel-24khz"
VOCODER_FILES = ("config.yaml", "pytorch_model.bin")
# What a transformers ASR pipeline loads from a whisper repo (weights, config, tokenizer).
ASR_PATTERNS = ("*.json", "*.safetensors", "*.txt")
ALIGNMENT_SOURCE = "torchaudio:WAV2VEC2_ASR_BASE_960H"
NLTK_PACKAGE = "punkt_tab"
# Exceptions that mean "no network", whichever library raised them.
OFFLINE_ERRORS = {
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "URLError",
    "gaierror",
}


@dataclass(frozen=True)
class HubFile:
    repo: str
    filename: str  # path inside the repo
    local_dir: Path  # the file lands at local_dir / filename

    @property
    def target(self) -> Path:
        return self.local_dir / self.filename


class Downloader(Protocol):
    def hub_file(self, item: HubFile) -> Path: ...

    def hub_snapshot(self, repo: str, local_dir: Path, patterns: tuple[str, ...]) -> list[Path]: ...

    def alignment_model(self, torch_home: Path) -> list[Path]: ...

    def nltk_data(self, package: str, directory: Path) -> bool: ...


def _hub():
    try:
        import huggingface_hub
    except ImportError as exc:
        raise BootstrapError(
            ExitCode.MODELS_NO_HUB,
            "huggingface_hub is not importable in this env; it belongs to environment.yml, relock.",
        ) from exc
    return huggingface_hub


class HubDownloader:
    """The real downloads (verified only on RunPod)."""

    def hub_file(self, item: HubFile) -> Path:
        return Path(_hub().hf_hub_download(item.repo, item.filename, local_dir=item.local_dir))

    def hub_snapshot(self, repo: str, local_dir: Path, patterns: tuple[str, ...]) -> list[Path]:
        _hub().snapshot_download(repo, local_dir=local_dir, allow_patterns=list(patterns))
        return sorted(p for p in local_dir.rglob("*") if p.is_file() and ".cache" not in p.parts)

    def alignment_model(self, torch_home: Path) -> list[Path]:
        import torch
        import torchaudio

        hub = torch_home / "hub"
        torch.hub.set_dir(str(hub))
        torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H.get_model()
        return sorted(p for p in hub.rglob("*") if p.is_file())

    def nltk_data(self, package: str, directory: Path) -> bool:
        import nltk

        return bool(nltk.download(package, download_dir=str(directory), quiet=True))


def whisperx_available() -> bool:
    return importlib.util.find_spec("whisperx") is not None


def required_files(settings: Settings) -> list[HubFile]:
    f5_dir = settings.models_dir / F5_DIR
    vocoder_dir = settings.models_dir / VOCODER_DIR
    return [
        HubFile(settings.model_repo, settings.model_file, f5_dir),
        HubFile(settings.model_repo, settings.vocab_file, f5_dir),
        *(HubFile(settings.vocoder_repo, name, vocoder_dir) for name in VOCODER_FILES),
    ]


def plan_hub_files(settings: Settings) -> list[HubFile]:
    """The required files still to fetch. A file present at its target is complete:
    huggingface_hub moves a download into place only when it has finished."""
    return [item for item in required_files(settings) if not item.target.is_file()]


def _offline(exc: BaseException) -> bool:
    chain: BaseException | None = exc
    while chain is not None:
        if type(chain).__name__ in OFFLINE_ERRORS:
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def _as_bootstrap_error(exc: Exception) -> BootstrapError:
    if isinstance(exc, BootstrapError):
        return exc
    if _offline(exc):
        return BootstrapError(
            ExitCode.MODELS_OFFLINE,
            f"the model hub cannot be reached ({type(exc).__name__}); give the worker network "
            "access once, or copy the weights to the volume (docs/troubleshooting.md).",
        )
    return BootstrapError(
        ExitCode.MODELS_FAILED,
        f"downloading the models failed ({type(exc).__name__}: {exc}); check the F5TTS_MODEL_* "
        "settings and free space, then restart.",
    )


class _Inventory:
    """Files on the volume with their source, keyed relative to the volume."""

    def __init__(self, settings: Settings):
        self.volume = settings.volume
        self.files: dict[str, int] = {}
        self.sources: dict[str, str] = {}

    def add(self, path: Path, source: str) -> None:
        try:
            key = str(path.relative_to(self.volume))
        except ValueError:
            key = str(path)
        self.files[key] = path.stat().st_size
        self.sources[key] = source


def _optional(name: str, fetch: Callable[[], None], log) -> bool:
    try:
        fetch()
    except Exception as exc:
        log(f"fetch-models: WARNING {name} is unavailable ({_as_bootstrap_error(exc).message})")
        return False
    return True


def fetch_models(
    settings: Settings,
    downloader: Downloader | None = None,
    with_alignment: bool | None = None,
    log=print,
) -> ModelsMarker:
    downloader = downloader or HubDownloader()
    inventory = _Inventory(settings)
    try:
        for item in plan_hub_files(settings):
            log(f"fetch-models: downloading {item.repo}/{item.filename}")
            downloader.hub_file(item)
    except Exception as exc:
        raise _as_bootstrap_error(exc) from exc
    for item in required_files(settings):
        if not item.target.is_file() or item.target.stat().st_size == 0:
            raise BootstrapError(
                ExitCode.MODELS_FAILED,
                f"{item.target} is missing or empty after the download; check "
                "F5TTS_MODEL_REPO and the F5TTS_*_FILE settings, then restart.",
            )
        inventory.add(item.target, f"hf://{item.repo}/{item.filename}")

    features: dict[str, bool] = {}
    if settings.fetch_asr:

        def fetch_asr() -> None:
            log(f"fetch-models: downloading the transcriber {settings.asr_repo}")
            for path in downloader.hub_snapshot(settings.asr_repo, settings.asr_dir, ASR_PATTERNS):
                inventory.add(path, f"hf://{settings.asr_repo}")

        features["asr"] = _optional("the reference transcriber", fetch_asr, log)

    if whisperx_available() if with_alignment is None else with_alignment:

        def fetch_alignment() -> None:
            log("fetch-models: downloading the alignment model (WAV2VEC2_ASR_BASE_960H)")
            for path in downloader.alignment_model(settings.torch_hub_dir):
                inventory.add(path, ALIGNMENT_SOURCE)
            # whisperx splits sentences with NLTK's punkt_tab; keep it on the volume.
            if not downloader.nltk_data(NLTK_PACKAGE, settings.nltk_dir):
                raise RuntimeError(f"nltk could not download {NLTK_PACKAGE}")

        features["alignment"] = _optional("the alignment model", fetch_alignment, log)

    marker = ModelsMarker(files=inventory.files, sources=inventory.sources, features=features)
    try:
        write_marker(models_marker_path(settings.models_dir), marker)
    except OSError as exc:
        raise BootstrapError(
            ExitCode.MODELS_FAILED,
            f"cannot write {models_marker_path(settings.models_dir)} ({exc.strerror}); "
            "free space on the volume and restart.",
        ) from exc
    log(f"fetch-models: ready ({sum(marker.files.values()) / 1e9:.2f} GB)")
    return marker


def models_ready(settings: Settings) -> bool:
    marker = read_models_marker(settings.models_dir)
    if marker is None:
        return False
    return all((settings.volume / rel).is_file() for rel in marker.files)
