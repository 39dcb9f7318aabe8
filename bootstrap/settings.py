"""Every knob of the Python stage, read once from the environment.

The names are shared with the shell stage (bootstrap/entrypoint.sh); defaults live
here and in docs/configuration.md. Nothing else in `bootstrap` reads os.environ.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bootstrap.errors import BootstrapError, ExitCode

ENV_NAME = "f5tts"
DEFAULT_CORE_IMPORTS = (
    "torch",
    "torchaudio",
    "f5_tts.infer.utils_infer",
    "f5_tts.model",
    "vocos",
    "transformers",
    "soundfile",
    "numpy",
    "boto3",
    "pydantic",
    "runpod",
    "yaml",
)
DEFAULT_ALLOWED_CHANNEL = "https://conda.anaconda.org/conda-forge"


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise BootstrapError(ExitCode.SETTINGS, f"{name}={raw!r} is not a yes/no value; use 1 or 0.")


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise BootstrapError(
            ExitCode.SETTINGS,
            f"{name}={raw!r} is not a number >= {minimum:g}; fix it or unset it for the default.",
        )
    return value


def _text(environ: Mapping[str, str], name: str, default: str) -> str:
    return environ.get(name, "").strip() or default


def _path(environ: Mapping[str, str], name: str) -> Path | None:
    raw = environ.get(name, "").strip()
    return Path(raw) if raw else None


@dataclass(frozen=True)
class Settings:
    volume: Path
    app_dir: Path
    lockfile: Path
    min_free_gb: float = 25.0
    in_use_ttl_s: float = 900.0
    require_gpu: bool = False
    # Extra arguments for every `pip install` (tests add --no-index --find-links DIR).
    pip_args: tuple[str, ...] = ()
    pip_retries: int = 3
    pip_backoff_s: float = 5.0
    allowed_channel: str = DEFAULT_ALLOWED_CHANNEL
    # An unmarked prefix younger than this is a build that may still be running.
    gc_grace_s: float = 6 * 3600.0
    lease_stale_s: float = 120.0
    core_imports: tuple[str, ...] = DEFAULT_CORE_IMPORTS
    model_repo: str = "SWivid/F5-TTS"
    model_file: str = "F5TTS_v1_Base/model_1250000.safetensors"
    vocab_file: str = "F5TTS_v1_Base/vocab.txt"
    vocoder_repo: str = "charactr/vocos-mel-24khz"
    # The reference transcriber (handler/asr.py): fetched unless F5TTS_FETCH_ASR=0.
    asr_repo: str = "openai/whisper-large-v3-turbo"
    fetch_asr: bool = True
    asr_model_dir: Path | None = None
    # Where torch hub (the alignment model) and NLTK data live; on the volume by default.
    torch_home: Path | None = None
    pip_cache: Path | None = None
    nltk_data: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        app_dir = Path(_text(env, "F5TTS_APP_DIR", str(Path(__file__).resolve().parent.parent)))
        imports = _text(env, "F5TTS_CORE_IMPORTS", ",".join(DEFAULT_CORE_IMPORTS))
        try:
            pip_args = tuple(shlex.split(env.get("F5TTS_PIP_ARGS", "")))
        except ValueError as exc:
            raise BootstrapError(
                ExitCode.SETTINGS,
                f"F5TTS_PIP_ARGS cannot be split into words ({exc}); fix its quoting.",
            ) from exc
        return cls(
            volume=Path(_text(env, "F5TTS_VOLUME", "/runpod-volume")),
            app_dir=app_dir,
            lockfile=Path(_text(env, "F5TTS_LOCKFILE", str(app_dir / "conda-lock.yml"))),
            min_free_gb=_number(env, "F5TTS_MIN_FREE_GB", 25.0),
            in_use_ttl_s=_number(env, "F5TTS_IN_USE_TTL_S", 900.0, minimum=1),
            require_gpu=_flag(env, "F5TTS_REQUIRE_GPU", False),
            pip_args=pip_args,
            pip_retries=int(_number(env, "F5TTS_PIP_RETRIES", 3, minimum=1)),
            pip_backoff_s=_number(env, "F5TTS_PIP_BACKOFF_S", 5.0),
            allowed_channel=_text(env, "F5TTS_ALLOWED_CHANNEL", DEFAULT_ALLOWED_CHANNEL).rstrip(
                "/"
            ),
            gc_grace_s=_number(env, "F5TTS_GC_GRACE_S", 6 * 3600.0),
            lease_stale_s=_number(env, "F5TTS_LEASE_STALE_S", 120.0, minimum=1),
            core_imports=tuple(m.strip() for m in imports.split(",") if m.strip()),
            model_repo=_text(env, "F5TTS_MODEL_REPO", "SWivid/F5-TTS"),
            model_file=_text(env, "F5TTS_MODEL_FILE", "F5TTS_v1_Base/model_1250000.safetensors"),
            vocab_file=_text(env, "F5TTS_VOCAB_FILE", "F5TTS_v1_Base/vocab.txt"),
            vocoder_repo=_text(env, "F5TTS_VOCODER_REPO", "charactr/vocos-mel-24khz"),
            asr_repo=_text(env, "F5TTS_ASR_REPO", "openai/whisper-large-v3-turbo"),
            fetch_asr=_flag(env, "F5TTS_FETCH_ASR", True),
            asr_model_dir=_path(env, "F5TTS_ASR_MODEL_DIR"),
            torch_home=_path(env, "TORCH_HOME"),
            nltk_data=_path(env, "NLTK_DATA"),
            pip_cache=_path(env, "PIP_CACHE_DIR"),
        )

    # The volume layout of docs/architecture.md, in one place.
    @property
    def envs_dir(self) -> Path:
        return self.volume / "envs"

    @property
    def active_link(self) -> Path:
        return self.envs_dir / ENV_NAME

    @property
    def previous_link(self) -> Path:
        return self.envs_dir / f"{ENV_NAME}.previous"

    def prefix_for(self, env_id: str) -> Path:
        return self.envs_dir / f"{ENV_NAME}-{env_id}"

    @property
    def leases_dir(self) -> Path:
        return self.envs_dir / ".leases"

    @property
    def in_use_dir(self) -> Path:
        return self.envs_dir / ".in-use"

    @property
    def pkgs_dir(self) -> Path:
        return self.volume / "pkgs"

    @property
    def cache_dir(self) -> Path:
        return self.volume / "cache"

    @property
    def models_dir(self) -> Path:
        return self.volume / "models"

    @property
    def torch_hub_dir(self) -> Path:
        return self.torch_home or self.cache_dir / "torch"

    @property
    def asr_dir(self) -> Path:
        return self.asr_model_dir or self.models_dir / "whisper-large-v3-turbo"

    @property
    def pip_cache_dir(self) -> Path:
        return self.pip_cache or self.cache_dir / "pip"

    @property
    def nltk_dir(self) -> Path:
        return self.nltk_data or self.cache_dir / "nltk"

    @property
    def requirements_dir(self) -> Path:
        return self.app_dir / "requirements"
