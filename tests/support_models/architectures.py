"""Model architectures built exactly as the F5-TTS inference loader builds them.

`build_cfm` mirrors `f5_tts.infer.utils_infer.load_model` (same CFM wrapper, mel
settings and tokenizer) so that random weights saved from it load through the real
loader, and so that the speed benchmark can time the real F5TTS_v1_Base shape
without a 1.3 GB download. Only tests and benchmarks import this module.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

# The vocoder the F5-TTS v1 checkpoints were trained with (charactr/vocos-mel-24khz),
# written here so a random vocoder can be built without the Hugging Face download.
VOCOS_MEL_24KHZ: dict[str, Any] = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {
            "sample_rate": 24000,
            "n_fft": 1024,
            "hop_length": 256,
            "n_mels": 100,
            "padding": "center",
        },
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "center"},
    },
}


def package_vocab_file() -> Path:
    """The vocab.txt F5-TTS ships (identical to the one published with the weights)."""
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


def package_config(model_name: str) -> Path:
    return Path(str(files("f5_tts").joinpath(f"configs/{model_name}.yaml")))


def load_arch(config_file: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_file)
    return OmegaConf.to_container(cfg.model.arch, resolve=True)  # type: ignore[return-value]


def build_cfm(arch: dict[str, Any], vocab_file: Path):
    """A randomly initialised CFM(DiT) with the loader's exact wrapper settings."""
    from f5_tts.infer import utils_infer as ui
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer

    vocab_char_map, vocab_size = get_tokenizer(str(vocab_file), "custom")
    return CFM(
        transformer=DiT(**arch, text_num_embeds=vocab_size, mel_dim=ui.n_mel_channels),
        mel_spec_kwargs={
            "n_fft": ui.n_fft,
            "hop_length": ui.hop_length,
            "win_length": ui.win_length,
            "n_mel_channels": ui.n_mel_channels,
            "target_sample_rate": ui.target_sample_rate,
            "mel_spec_type": "vocos",
        },
        odeint_kwargs={"method": ui.ode_method},
        vocab_char_map=vocab_char_map,
    )


def wake_zero_initialised(module, std: float = 0.02) -> None:
    """DiT zero-initialises its output projection and AdaLN gates, so an untrained
    model outputs silence and ignores text and seed; give those layers small noise."""
    import torch

    with torch.no_grad():
        for param in module.parameters():
            if param.ndim >= 1 and not bool(param.any()):
                param.normal_(0.0, std)


def vocos_config(dim: int = 512, intermediate_dim: int = 1536, num_layers: int = 8) -> dict:
    config = {
        key: {**value, "init_args": dict(value["init_args"])}
        for key, value in VOCOS_MEL_24KHZ.items()
    }
    config["backbone"]["init_args"].update(
        {"dim": dim, "intermediate_dim": intermediate_dim, "num_layers": num_layers}
    )
    config["head"]["init_args"]["dim"] = dim
    return config


def build_vocos(config_file: Path):
    from vocos import Vocos

    return Vocos.from_hparams(str(config_file))
