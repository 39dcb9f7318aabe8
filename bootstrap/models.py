"""`fetch-models`: the F5-TTS weights, the vocoder, the reference transcriber and
(with whisperx) the alignment model of every language in F5TTS_ALIGN_LANGUAGES,
onto the volume.

Which checkpoint: F5TTS_MODEL names a published model (`PUBLISHED_MODELS`; E2TTS_Base
lives in SWivid/E2-TTS, not SWivid/F5-TTS) or F5TTS_MODEL_REPO/_FILE/VOCAB_FILE say
where the weights are; a name with neither is refused. Which alignment models:
whisperx's default for each language (DEFAULT_ALIGN_MODELS_TORCH: torchaudio bundles
into TORCH_HOME; DEFAULT_ALIGN_MODELS_HF: Hugging Face repos into models/align/<lang>,
where handler/alignment.py loads them). F5TTS_MODEL and the language list are read
here from the environment, under the same names the handler reads them.

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
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.marker import ModelsMarker, models_marker_path, read_models_marker, write_marker
from bootstrap.settings import Settings

F5_DIR = "f5tts"
VOCODER_DIR = "vocos-mel-24khz"
VOCODER_FILES = ("config.yaml", "pytorch_model.bin")
# What a transformers ASR pipeline loads from a whisper repo (weights, config, tokenizer).
ASR_PATTERNS = ("*.json", "*.safetensors", "*.txt")
ALIGN_DIR = "align"
# What whisperx's aligner loads from a wav2vec2 repo; pytorch_model.bin only when the
# repo has no safetensors (fetching both would double the size).
ALIGN_PATTERNS = ("*.json", "*.txt", "*.safetensors")
ALIGN_FALLBACK_PATTERNS = ("pytorch_model.bin",)
NLTK_PACKAGE = "punkt_tab"
DEFAULT_MODEL_REPO = "SWivid/F5-TTS"
DEFAULT_MODEL_FILE = "F5TTS_v1_Base/model_1250000.safetensors"
DEFAULT_VOCAB_FILE = "F5TTS_v1_Base/vocab.txt"
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
class ModelChoice:
    """Where the F5-TTS checkpoint and vocabulary of the configured model live."""

    name: str
    repo: str
    model_file: str  # path inside the repo; lands at models/f5tts/<model_file>
    vocab_file: str


# The checkpoints SWivid publishes, as f5_tts's own api.py and infer_cli.py fetch them.
PUBLISHED_MODELS: dict[str, ModelChoice] = {
    "F5TTS_v1_Base": ModelChoice(
        "F5TTS_v1_Base", "SWivid/F5-TTS", DEFAULT_MODEL_FILE, DEFAULT_VOCAB_FILE
    ),
    "F5TTS_Base": ModelChoice(
        "F5TTS_Base",
        "SWivid/F5-TTS",
        "F5TTS_Base/model_1200000.safetensors",
        "F5TTS_Base/vocab.txt",
    ),
    "E2TTS_Base": ModelChoice(
        "E2TTS_Base",
        "SWivid/E2-TTS",
        "E2TTS_Base/model_1200000.safetensors",
        "E2TTS_Base/vocab.txt",
    ),
}


@dataclass(frozen=True)
class AlignmentModel:
    language: str
    kind: Literal["torchaudio", "huggingface"]
    name: str  # a torchaudio.pipelines bundle or a Hugging Face repo


# whisperx's default alignment models: (torchaudio bundles, Hugging Face repos) by language
AlignCatalogue = tuple[Mapping[str, str], Mapping[str, str]]


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

    def torchaudio_bundle(self, name: str, torch_home: Path) -> list[Path]: ...

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

    def torchaudio_bundle(self, name: str, torch_home: Path) -> list[Path]:
        import torch
        import torchaudio

        hub = torch_home / "hub"
        torch.hub.set_dir(str(hub))
        getattr(torchaudio.pipelines, name).get_model()
        return sorted(p for p in hub.rglob("*") if p.is_file())

    def nltk_data(self, package: str, directory: Path) -> bool:
        import nltk

        return bool(nltk.download(package, download_dir=str(directory), quiet=True))


def whisperx_available() -> bool:
    return importlib.util.find_spec("whisperx") is not None


def whisperx_align_catalogue() -> AlignCatalogue:
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    return DEFAULT_ALIGN_MODELS_TORCH, DEFAULT_ALIGN_MODELS_HF


def choose_model(settings: Settings, environ: Mapping[str, str]) -> ModelChoice:
    """The checkpoint to fetch: the published files of F5TTS_MODEL, or the files the
    F5TTS_MODEL_REPO/_FILE/VOCAB_FILE settings name (their folder is the model name,
    as the handler reads it), from the repository that publishes that model."""
    named = environ.get("F5TTS_MODEL", "").strip()
    files_given = settings.model_file != DEFAULT_MODEL_FILE
    if named and not files_given:
        published = PUBLISHED_MODELS.get(named)
        if published is None:
            raise BootstrapError(
                ExitCode.SETTINGS,
                f"F5TTS_MODEL={named[:80]!r} is not a published checkpoint this worker knows "
                f"({', '.join(PUBLISHED_MODELS)}); set F5TTS_MODEL_REPO, F5TTS_MODEL_FILE "
                "and F5TTS_VOCAB_FILE to where its weights are.",
            )
        if settings.model_repo != DEFAULT_MODEL_REPO:
            return ModelChoice(
                named, settings.model_repo, published.model_file, published.vocab_file
            )
        return published
    folder = settings.model_file.split("/", 1)[0] if "/" in settings.model_file else ""
    published = PUBLISHED_MODELS.get(folder)
    repo = settings.model_repo
    vocab = settings.vocab_file
    if published is not None:
        repo = published.repo if repo == DEFAULT_MODEL_REPO else repo
        vocab = published.vocab_file if vocab == DEFAULT_VOCAB_FILE else vocab
    return ModelChoice(named or folder or "custom", repo, settings.model_file, vocab)


def required_files(settings: Settings, choice: ModelChoice | None = None) -> list[HubFile]:
    choice = choice or choose_model(settings, {})
    f5_dir = settings.models_dir / F5_DIR
    vocoder_dir = settings.models_dir / VOCODER_DIR
    return [
        HubFile(choice.repo, choice.model_file, f5_dir),
        HubFile(choice.repo, choice.vocab_file, f5_dir),
        *(HubFile(settings.vocoder_repo, name, vocoder_dir) for name in VOCODER_FILES),
    ]


def plan_hub_files(settings: Settings, choice: ModelChoice | None = None) -> list[HubFile]:
    """The required files still to fetch. A file present at its target is complete:
    huggingface_hub moves a download into place only when it has finished."""
    return [item for item in required_files(settings, choice) if not item.target.is_file()]


def alignment_languages(environ: Mapping[str, str]) -> list[str]:
    """F5TTS_ALIGN_LANGUAGE first, then F5TTS_ALIGN_LANGUAGES (as handler/settings.py)."""
    default = environ.get("F5TTS_ALIGN_LANGUAGE", "").strip().lower() or "en"
    listed = environ.get("F5TTS_ALIGN_LANGUAGES", "").split(",")
    return list(dict.fromkeys([default, *(x.strip().lower() for x in listed if x.strip())]))


def plan_alignment(languages: list[str], catalogue: AlignCatalogue) -> list[AlignmentModel]:
    """whisperx's default model of each language; a language without one is refused."""
    torch_models, hub_models = catalogue
    unknown = [lang for lang in languages if lang not in torch_models and lang not in hub_models]
    if unknown:
        raise BootstrapError(
            ExitCode.SETTINGS,
            f"F5TTS_ALIGN_LANGUAGES names {', '.join(u[:8] for u in unknown[:5])}, for which "
            "whisperx has no default alignment model; use languages from "
            f"{', '.join(sorted([*torch_models, *hub_models]))}.",
        )
    return [
        AlignmentModel(lang, "torchaudio", torch_models[lang])
        if lang in torch_models
        else AlignmentModel(lang, "huggingface", hub_models[lang])
        for lang in languages
    ]


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
    environ: Mapping[str, str] | None = None,
    align_catalogue: Callable[[], AlignCatalogue] | None = None,
) -> ModelsMarker:
    env = os.environ if environ is None else environ
    downloader = downloader or HubDownloader()
    choice = choose_model(settings, env)
    wants_alignment = whisperx_available() if with_alignment is None else with_alignment
    # Planned before anything downloads: a bad language list is a setting to fix.
    alignment = (
        plan_alignment(alignment_languages(env), (align_catalogue or whisperx_align_catalogue)())
        if wants_alignment
        else []
    )
    inventory = _Inventory(settings)
    try:
        for item in plan_hub_files(settings, choice):
            log(f"fetch-models: downloading {item.repo}/{item.filename}")
            downloader.hub_file(item)
    except Exception as exc:
        raise _as_bootstrap_error(exc) from exc
    for item in required_files(settings, choice):
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

    if wants_alignment:
        for model in alignment:
            features[f"alignment.{model.language}"] = _optional(
                f"the {model.language} alignment model",
                lambda model=model: _fetch_alignment(model, settings, downloader, inventory, log),
                log,
            )

        def fetch_punkt() -> None:
            # whisperx splits sentences with NLTK's punkt_tab; keep it on the volume.
            if not downloader.nltk_data(NLTK_PACKAGE, settings.nltk_dir):
                raise RuntimeError(f"nltk could not download {NLTK_PACKAGE}")

        punkt = _optional("the sentence splitter (punkt_tab)", fetch_punkt, log)
        features["alignment"] = punkt and all(
            features[f"alignment.{m.language}"] for m in alignment
        )

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


def _fetch_alignment(
    model: AlignmentModel, settings: Settings, downloader: Downloader, inventory: _Inventory, log
) -> None:
    log(f"fetch-models: downloading the {model.language} alignment model ({model.name})")
    if model.kind == "torchaudio":
        for path in downloader.torchaudio_bundle(model.name, settings.torch_hub_dir):
            inventory.add(path, f"torchaudio:{model.name}")
        return
    target = settings.models_dir / ALIGN_DIR / model.language
    paths = downloader.hub_snapshot(model.name, target, ALIGN_PATTERNS)
    if not any(p.name.endswith((".safetensors", ".bin")) for p in paths):
        paths = downloader.hub_snapshot(model.name, target, ALIGN_FALLBACK_PATTERNS)
    for path in paths:
        inventory.add(path, f"hf://{model.name}")


def models_ready(settings: Settings) -> bool:
    marker = read_models_marker(settings.models_dir)
    if marker is None:
        return False
    return all((settings.volume / rel).is_file() for rel in marker.files)
