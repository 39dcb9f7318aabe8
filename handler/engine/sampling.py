"""Batched generation: several chunks through one upstream `CFM.sample` call.

This does for a batch what `infer_batch_process` does for one chunk, with upstream's
own pieces: the reference is loudness-normalised to `target_rms` and turned into a
mel by the model's own `mel_spec`; the text is `convert_char_to_pinyin(ref_text +
chunk)`; `CFM.sample` runs with per-item `duration` and `lens`; the generated frames
after the reference are kept and, after the vocoder, scaled back to the reference's
loudness. What batching adds:

* each reference's mel is computed alone and the mels are padded (a batched STFT
  over padded waves would change the last frames of the shorter references);
* attention masking of the padding is enabled on every DiT block (upstream masks
  attention only when `attn_mask_enabled`; with it off, padded frames leak into
  attention and a chunk's audio would depend on its batch-mates);
* every item's noise comes from its own seed (handler/engine/noise.py).

A batch of one takes exactly upstream's path (CFM passes no mask for one item), which
is what the equality tests compare against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handler.engine.noise import per_item_noise
from handler.engine.scheduler import ChunkWork, ModelShape

TARGET_RMS = 0.1  # utils_infer.target_rms


@dataclass(frozen=True)
class Conditioning:
    """One reference, ready to condition any number of chunks."""

    mel: Any  # (frames + 1, n_mels) float32 on the model's device, from model.mel_spec
    ref_frames: int  # audio samples // hop: where generated frames start
    ref_text: str  # as the model reads it (chunking.model_ref_text)
    rms: float  # loudness of the clip before normalisation


def model_shape(model: Any) -> ModelShape:
    """The DiT's sizes, read from the loaded modules (for the memory estimate)."""
    dit = model.transformer
    block = dit.transformer_blocks[0]
    ff_inner = next(m.out_features for m in block.ff.modules() if hasattr(m, "out_features"))
    return ModelShape(
        dim=dit.dim,
        depth=len(dit.transformer_blocks),
        heads=block.attn.heads,
        ff_inner=int(ff_inner),
        text_dim=dit.text_embed.text_embed.embedding_dim,
        mel_dim=model.num_channels,
        dtype_bytes=next(model.parameters()).element_size(),
        flash_attention=block.attn.processor.attn_backend == "flash_attn",
    )


def prepare_conditioning(model: Any, samples: np.ndarray, ref_text: str) -> Conditioning:
    """`infer_batch_process`'s reference handling, once per job: mono float32 samples at
    24 kHz in, normalised mel on the model's device out."""
    import torch

    from handler.engine.chunking import ref_frames_of

    audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, :]
    rms = float(torch.sqrt(torch.mean(torch.square(audio))))
    if rms < TARGET_RMS:
        audio = audio * TARGET_RMS / rms
    audio = audio.to(model.device)
    with torch.inference_mode():
        mel = model.mel_spec(audio).permute(0, 2, 1)[0]
    return Conditioning(mel, ref_frames_of(audio.shape[-1]), ref_text, rms)


def sample_mels(model: Any, works: Sequence[ChunkWork]) -> list[Any]:
    """The generated mel frames (float32, (frames, n_mels)) of each chunk of one batch;
    all `works` must share one SamplingKey."""
    import torch
    from f5_tts.model.utils import convert_char_to_pinyin
    from torch.nn.utils.rnn import pad_sequence

    key = works[0].sampling
    if any(work.sampling != key for work in works):
        raise ValueError("one batch takes one SamplingKey; group chunks with next_batch")
    conds = [work.conditioning for work in works]
    device = model.device
    cond = pad_sequence([c.mel for c in conds], batch_first=True)
    lens = torch.tensor([c.mel.shape[0] for c in conds], device=device, dtype=torch.long)
    duration = torch.tensor([work.duration for work in works], device=device, dtype=torch.long)
    texts = [c.ref_text + work.text for c, work in zip(conds, works, strict=True)]
    text = convert_char_to_pinyin(texts)
    with torch.inference_mode(), per_item_noise([work.seed for work in works]) as noise:
        generated, _ = model.sample(
            cond=cond,
            text=text,
            duration=duration,
            lens=lens,
            steps=key.nfe_step,
            cfg_strength=key.cfg_strength,
            sway_sampling_coef=key.sway_sampling_coef,
        )
        del _
        generated = generated.to(torch.float32)
        return [
            generated[i, c.ref_frames : frames, :]
            for i, (c, frames) in enumerate(zip(conds, noise.frames, strict=True))
        ]
