"""Transcription of a reference clip whose text the caller did not send.

F5-TTS needs the reference's transcript. Its own helper downloads
openai/whisper-large-v3-turbo from the Hugging Face hub at job time; here the model is
a local directory on the volume, loaded once through a transformers ASR pipeline, and
when it is not there the feature is simply off (the job layer then asks for ref_text).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ASR_DIR = Path("models") / "whisper-large-v3-turbo"


def resolve_asr_dir(settings: Any) -> Path:
    configured = getattr(settings, "asr_model_dir", None)
    if configured:
        return Path(configured)
    return Path(getattr(settings, "volume", None) or "/runpod-volume") / DEFAULT_ASR_DIR


class PipelineTranscriber:
    """A transformers automatic-speech-recognition pipeline; one clip at a time."""

    def __init__(self, pipe: Any):
        self.pipe = pipe
        self._lock = threading.Lock()

    def transcribe(self, audio_path: Path) -> str:
        import soundfile as sf
        import torch
        import torchaudio

        samples, rate = sf.read(str(audio_path), dtype="float32", always_2d=True)
        mono = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
        target = self.pipe.feature_extractor.sampling_rate
        if rate != target:
            mono = torchaudio.functional.resample(mono[None, :], rate, target)[0]
        kwargs: dict[str, Any] = {"chunk_length_s": 30}
        if self.pipe.type == "seq2seq_whisper":
            kwargs["generate_kwargs"] = {"task": "transcribe"}
        with self._lock:
            result = self.pipe({"raw": mono.numpy(), "sampling_rate": target}, **kwargs)
        return str(result["text"]).strip()


def try_load_transcriber(settings: Any) -> tuple[PipelineTranscriber | None, str | None]:
    """(transcriber, None), or (None, a sentence saying why transcription is off).

    Reads settings.asr_model_dir (default $volume/models/whisper-large-v3-turbo),
    volume and device. fp16 on CUDA, float32 on CPU.
    """
    model_dir = resolve_asr_dir(settings)
    if not (model_dir / "config.json").is_file():
        return None, (
            f"reference transcription is off because no speech recognition model is in "
            f"{model_dir}; send ref_text with each voice, or run "
            "`python -m bootstrap fetch-models` to put one there."
        )
    import torch
    from transformers import pipeline

    from handler.engine import pick_device

    device = pick_device(getattr(settings, "device", None))
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = pipeline(
        "automatic-speech-recognition", model=str(model_dir), dtype=dtype, device=device
    )
    return PipelineTranscriber(pipe), None


def load_transcriber(settings: Any) -> PipelineTranscriber | None:
    """The transcriber, or None (with the reason logged) when no model is on the volume."""
    transcriber, reason = try_load_transcriber(settings)
    if reason:
        log.info(reason)
    return transcriber
