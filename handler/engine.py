"""The F5-TTS speech engine: weights loaded once, jobs synthesized one at a time.

Synthesis goes through F5-TTS's own inference code (`f5_tts.infer.utils_infer`:
`load_vocoder`, `load_model`, `chunk_text`, `infer_batch_process`) so that upgrades
of the package keep their behaviour. Two things are done differently on purpose:

* `preprocess_ref_audio_text` is never called: it caches every reference by md5 in
  module globals and leaks a temp file per new reference, which grows without bound
  in a long-lived worker. The job layer hands over an already prepared reference.
* Chunks are generated one `infer_batch_process` call at a time instead of all at
  once: upstream runs every chunk in its own thread, which makes the random noise
  each chunk draws depend on thread timing (so a seed would not reproduce the audio),
  holds every chunk in GPU memory at once, and gives no per-chunk progress.
  The chunks are then cross-faded exactly like upstream does.

torch and f5_tts are imported lazily so that this module (and the job code that
imports it) can be loaded without them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handler.contracts import PreparedReference, ProgressCallback, SynthesisParams
from handler.errors import UserError

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


def normalize_ref_text(text: str) -> str:
    """End the reference transcript with sentence punctuation and a space, as F5-TTS
    expects (the reference and generated text are read as one utterance)."""
    text = text.strip()
    if text.endswith("。"):
        return text
    if not text.endswith((".", "!", "?")):
        text += "."
    return text + " "


def plan_chunks(ref_text: str, ref_seconds: float, text: str, speed: float) -> list[str]:
    """Split `text` the way `infer_process` does: each chunk plus the reference has to
    fit the model's ~22 s window, at the reference's bytes-per-second rate."""
    from f5_tts.infer.utils_infer import chunk_text

    ref_bytes = len(ref_text.encode("utf-8"))
    max_chars = int(ref_bytes / ref_seconds * (22 - ref_seconds) * speed)
    return chunk_text(text.strip(), max_chars=max(max_chars, 1))


def crossfade(waves: list[np.ndarray], fade_samples: int) -> np.ndarray:
    """Join chunks with a linear cross-fade (the same join as `infer_batch_process`)."""
    if not waves:
        return np.zeros(0, dtype=np.float32)
    out = waves[0]
    for wave in waves[1:]:
        n = min(fade_samples, len(out), len(wave))
        if n <= 0:
            out = np.concatenate([out, wave])
            continue
        overlap = out[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
        out = np.concatenate([out[:-n], overlap, wave[n:]])
    return out


def remove_long_silences(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """F5-TTS's `remove_silence_for_generated_wav`, in memory instead of on a file."""
    from pydub import AudioSegment, silence

    pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    segment = AudioSegment(data=pcm, sample_width=2, frame_rate=sample_rate, channels=1)
    kept = silence.split_on_silence(
        segment, min_silence_len=1000, silence_thresh=-50, keep_silence=500, seek_step=10
    )
    joined = sum(kept, AudioSegment.silent(duration=0, frame_rate=sample_rate))
    return np.frombuffer(joined.raw_data, dtype="<i2").astype(np.float32) / 32767


class F5Engine:
    """A loaded F5-TTS model and vocoder; `synthesize` serialises jobs with a lock."""

    sample_rate = 24000

    def __init__(self, model: Any, vocoder: Any, device: str, model_name: str):
        self.model = model
        self.vocoder = vocoder
        self.device = device
        self.model_name = model_name
        self._lock = threading.Lock()

    def synthesize(
        self,
        reference: PreparedReference,
        text: str,
        params: SynthesisParams,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        import soundfile as sf
        import torch
        from f5_tts.infer.utils_infer import infer_batch_process
        from f5_tts.model.utils import seed_everything

        samples, ref_rate = sf.read(str(reference.audio_path), dtype="float32", always_2d=True)
        ref_audio = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))[None, :]
        ref_text = normalize_ref_text(reference.text)
        chunks = plan_chunks(ref_text, ref_audio.shape[-1] / ref_rate, text, params.speed)
        if not chunks:
            raise UserError("text has nothing to speak; send at least one word")

        with self._lock:
            # One seed for the whole job: chunks run one after another, so the noise
            # they draw is the same sequence every time.
            seed_everything(params.seed)
            waves = []
            for done, chunk in enumerate(chunks, start=1):
                wave, _, _ = next(
                    infer_batch_process(
                        (ref_audio, ref_rate),
                        ref_text,
                        [chunk],
                        self.model,
                        self.vocoder,
                        mel_spec_type="vocos",
                        progress=None,
                        nfe_step=params.nfe_step,
                        cfg_strength=params.cfg_strength,
                        sway_sampling_coef=params.sway_sampling_coef,
                        speed=params.speed,
                        device=self.device,
                    )
                )
                waves.append(np.asarray(wave, dtype=np.float32).reshape(-1))
                if on_progress is not None:
                    on_progress(done, len(chunks))

        audio = crossfade(waves, int(params.cross_fade_duration * self.sample_rate))
        if params.remove_silence:
            audio = remove_long_silences(audio, self.sample_rate)
        return np.clip(audio, -1.0, 1.0).astype(np.float32)


def load_engine(settings: Any) -> F5Engine:
    """Load F5-TTS from the volume (never from the network).

    Reads settings.volume, model_name, arch_config, ckpt_file, vocab_file,
    vocoder_dir and device ("auto": CUDA when available). fp16 on CUDA, float32 on CPU
    (F5-TTS's loader decides). Raises EngineFilesMissing naming every missing file.
    """
    engine_files = resolve_engine_files(settings)
    missing = engine_files.missing()
    if missing:
        raise EngineFilesMissing(missing)

    from f5_tts import model as f5_models
    from f5_tts.infer.utils_infer import load_model, load_vocoder
    from omegaconf import OmegaConf

    config = OmegaConf.load(engine_files.arch_config).model
    mel_spec_type = config.mel_spec.mel_spec_type
    if mel_spec_type != "vocos":
        raise EngineConfigError(
            f"{engine_files.arch_config} uses the {mel_spec_type} vocoder; this worker "
            "ships only vocos, so pick a vocos model such as F5TTS_v1_Base."
        )
    backbone = getattr(f5_models, config.backbone)
    arch = OmegaConf.to_container(config.arch, resolve=True)
    device = pick_device(_setting(settings, "device", "auto"))
    log.info("loading %s from %s on %s", engine_files.model_name, engine_files.ckpt_file, device)
    vocoder = load_vocoder(
        "vocos", is_local=True, local_path=str(engine_files.vocoder_dir), device=device
    )
    model = load_model(
        backbone,
        arch,
        str(engine_files.ckpt_file),
        mel_spec_type="vocos",
        vocab_file=str(engine_files.vocab_file),
        device=device,
    )
    return F5Engine(model, vocoder, device, engine_files.model_name)
