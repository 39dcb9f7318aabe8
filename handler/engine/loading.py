"""Loading F5-TTS from the volume: which files, which device, dtype and attention.

Weights are never downloaded here: a missing file is `EngineFilesMissing`, naming
every path and the fix. The model goes through upstream's `load_model` (fp16 on CUDA
compute capability >= 7, float32 elsewhere, as F5-TTS decides) and the vocoder through
`load_vocoder`. Two things are set on the architecture before loading:

* `attn_mask_enabled: true`, so padded frames of a batch are masked in attention
  (it has no effect on batches of one, for which CFM passes no mask);
* `attn_backend`: `flash_attn` when F5TTS_ATTENTION allows it, the package imports,
  the device is CUDA with compute capability >= 8.0 (what flash-attn 2 supports) and
  the weights are fp16; else `torch` (scaled_dot_product_attention).

F5TTS_COMPILE=1 compiles each DiT block with `torch.compile(dynamic=True)` (chunks
vary in length, so static shapes would recompile for every new length). torch and
f5_tts are imported only inside the functions.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handler.engine.scheduler import (
    DEFAULT_BATCH_MAX_CHUNKS,
    DEFAULT_BATCH_MEMORY_MB,
    BatchBudget,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "F5TTS_v1_Base"
# File names the published checkpoints have (SWivid/F5-TTS on Hugging Face).
CHECKPOINT_NAMES = {
    "F5TTS_v1_Base": "model_1250000.safetensors",
    "F5TTS_Base": "model_1200000.safetensors",
    "E2TTS_Base": "model_1200000.safetensors",
}
FETCH_HINT = "run `python -m bootstrap fetch-models` (it needs network access once)"


class EngineFilesMissing(FileNotFoundError):
    """Weights or configuration the engine needs are not on the volume; never downloaded."""

    def __init__(self, missing: list[tuple[str, Path]]):
        self.missing = missing
        listed = ", ".join(f"{what} at {path}" for what, path in missing)
        verb = "is" if len(missing) == 1 else "are"
        super().__init__(
            f"F5-TTS cannot start because {listed} {verb} missing; {FETCH_HINT}, "
            f"or point {_setting_names()} at existing files."
        )


def _setting_names() -> str:
    """The environment variables behind the engine's file settings, when the worker's
    settings module is there to name them (this module does not depend on it)."""
    fields = ("ckpt_file", "vocab_file", "vocoder_dir", "arch_config")
    try:
        from handler.settings import ENV_VARS

        by_field = {field: var for var, (field, *_rest) in ENV_VARS.items()}
    except ImportError:
        by_field = {}
    return ", ".join(by_field.get(field, field) for field in fields)


class EngineConfigError(ValueError):
    """The model configuration names something this engine cannot run."""


@dataclass(frozen=True)
class EngineFiles:
    model_name: str
    arch_config: Path
    ckpt_file: Path
    vocab_file: Path
    vocoder_dir: Path

    def missing(self) -> list[tuple[str, Path]]:
        wanted = [
            ("the model configuration", self.arch_config),
            ("the F5-TTS checkpoint", self.ckpt_file),
            ("the vocabulary", self.vocab_file),
            ("the vocoder configuration", self.vocoder_dir / "config.yaml"),
            ("the vocoder weights", self.vocoder_dir / "pytorch_model.bin"),
        ]
        return [(what, path) for what, path in wanted if not path.is_file()]


def _setting(settings: Any, name: str, default: Any = None) -> Any:
    value = getattr(settings, name, None)
    return default if value in (None, "") else value


def _arch_setting(settings: Any) -> str | Path | None:
    """The architecture setting: `arch_config`, or `model_config` on plain objects
    (on a pydantic model that name is the model's own ConfigDict, hence the type check)."""
    for name in ("arch_config", "model_config"):
        value = getattr(settings, name, None)
        if isinstance(value, (str, Path)) and str(value):
            return value
    return None


def resolve_engine_files(settings: Any) -> EngineFiles:
    """Where the engine's files are: explicit settings, else the volume layout

    $volume/models/f5tts/<model_name>/<checkpoint>, .../vocab.txt and
    $volume/models/vocos-mel-24khz/; the architecture from `arch_config` (a YAML path,
    or the name of one of f5_tts/configs/*.yaml), defaulting to `model_name`.
    """
    model_name = str(_setting(settings, "model_name", DEFAULT_MODEL_NAME))
    models = Path(_setting(settings, "volume", "/runpod-volume")) / "models"
    model_dir = models / "f5tts" / model_name
    ckpt_name = CHECKPOINT_NAMES.get(model_name, "model_last.safetensors")
    return EngineFiles(
        model_name=model_name,
        arch_config=_config_path(str(_arch_setting(settings) or model_name)),
        ckpt_file=Path(_setting(settings, "ckpt_file", model_dir / ckpt_name)),
        vocab_file=Path(_setting(settings, "vocab_file", model_dir / "vocab.txt")),
        vocoder_dir=Path(_setting(settings, "vocoder_dir", models / "vocos-mel-24khz")),
    )


def _config_path(config: str) -> Path:
    if config.endswith((".yaml", ".yml")) or "/" in config:
        return Path(config)
    from importlib.resources import files

    return Path(str(files("f5_tts").joinpath(f"configs/{config}.yaml")))


def pick_device(requested: str | None) -> str:
    import torch

    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(requested)


FLASH_ATTN_MIN_CAPABILITY = (8, 0)


def choose_attention(requested: str, device: str, half: bool) -> str:
    """The DiT's attn_backend: "flash_attn" or "torch" (see the module docstring)."""
    if requested == "torch":
        return "torch"
    usable, why = _flash_attn_usable(device, half)
    if usable:
        return "flash_attn"
    if requested == "flash_attn":
        raise EngineConfigError(
            f"F5TTS_ATTENTION=flash_attn but {why}; set F5TTS_ATTENTION to auto or torch, "
            "or deploy the environment with the flash-attn feature on a GPU of compute "
            "capability 8.0 or newer"
        )
    return "torch"


def _flash_attn_usable(device: str, half: bool) -> tuple[bool, str]:
    if not device.startswith("cuda"):
        return False, f"the device is {device}"
    if importlib.util.find_spec("flash_attn") is None:
        return False, "the flash_attn package is not installed"
    import torch

    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < FLASH_ATTN_MIN_CAPABILITY:
        return False, f"the GPU's compute capability is {capability[0]}.{capability[1]}"
    if not half:
        return False, "the weights are not fp16"
    return True, ""


def uses_half_precision(device: str) -> bool:
    """F5-TTS's own rule (utils_infer.load_checkpoint): fp16 on CUDA with cc >= 7."""
    if not device.startswith("cuda"):
        return False
    import torch

    return torch.cuda.get_device_properties(device).major >= 7


def batch_budget(settings: Any, model: Any) -> BatchBudget:
    from handler.engine.sampling import model_shape

    memory_mb = int(_setting(settings, "batch_memory_mb", DEFAULT_BATCH_MEMORY_MB))
    return BatchBudget(
        memory_bytes=memory_mb * 2**20,
        max_chunks=int(_setting(settings, "batch_max_chunks", DEFAULT_BATCH_MAX_CHUNKS)),
        shape=model_shape(model),
    )


def compile_blocks(model: Any) -> None:
    """torch.compile every DiT block in place (keys of the state dict unchanged)."""
    for block in model.transformer.transformer_blocks:
        block.compile(dynamic=True)


def load_engine(settings: Any):
    """Load F5-TTS from the volume (never from the network).

    Reads settings.volume, model_name, arch_config, ckpt_file, vocab_file, vocoder_dir,
    device ("auto": CUDA when available), attn_backend, compile_dit, batch_memory_mb and
    batch_max_chunks. Raises EngineFilesMissing naming every missing file.
    """
    engine_files = resolve_engine_files(settings)
    missing = engine_files.missing()
    if missing:
        raise EngineFilesMissing(missing)

    from f5_tts import model as f5_models
    from f5_tts.infer.utils_infer import load_model, load_vocoder
    from omegaconf import OmegaConf

    from handler.engine.synthesis import F5Engine

    config = OmegaConf.load(engine_files.arch_config).model
    mel_spec_type = config.mel_spec.mel_spec_type
    if mel_spec_type != "vocos":
        raise EngineConfigError(
            f"{engine_files.arch_config} uses the {mel_spec_type} vocoder; this worker "
            "ships only vocos, so pick a vocos model such as F5TTS_v1_Base."
        )
    backbone = getattr(f5_models, config.backbone)
    device = pick_device(_setting(settings, "device", "auto"))
    arch = OmegaConf.to_container(config.arch, resolve=True)
    arch["attn_backend"] = choose_attention(
        str(_setting(settings, "attn_backend", "auto")), device, uses_half_precision(device)
    )
    arch["attn_mask_enabled"] = True
    log.info(
        "loading %s from %s on %s (attention: %s)",
        engine_files.model_name,
        engine_files.ckpt_file,
        device,
        arch["attn_backend"],
    )
    vocoder = load_vocoder(
        "vocos", is_local=True, local_path=str(engine_files.vocoder_dir), device=device
    )
    with warnings.catch_warnings():
        # Upstream warns that masks cost memory with the torch backend; the batch
        # budget accounts for it (scheduler.batch_memory_bytes).
        warnings.filterwarnings("ignore", message="attn_mask_enabled=True")
        model = load_model(
            backbone,
            arch,
            str(engine_files.ckpt_file),
            mel_spec_type="vocos",
            vocab_file=str(engine_files.vocab_file),
            device=device,
        )
    if _setting(settings, "compile_dit", False):
        compile_blocks(model)
    return F5Engine(
        model,
        vocoder,
        device,
        engine_files.model_name,
        budget=batch_budget(settings, model),
        attention=arch["attn_backend"],
    )
