"""Mel frames to waveforms, several chunks in one Vocos call.

The mels are padded at the end with zeros and decoded together, and each wave is cut
to the length its own decode would have (`(frames - 1) * hop`, torch.istft with
center=True). Padding is not invisible to Vocos: its ConvNeXt blocks (kernel 7) and
the inverse STFT's overlap-add (window 1024 = 4 hops) reach a little past a shorter
chunk's end, so the last ~0.1 s of a shorter chunk differ slightly from a decode of
that chunk alone (measured on CPU with the real vocoder shape: see
`test_batched_vocoder_differs_from_one_by_one_only_in_the_last_frames` and
docs/performance.md). Everything before that tail is the same within float error, and
the tail is where the next chunk's cross-fade goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from handler.engine.chunking import HOP_LENGTH


def wave_length(frames: int) -> int:
    """Samples Vocos (torch.istft, center=True) makes of `frames` mel frames."""
    return max(0, (frames - 1) * HOP_LENGTH)


def decode_batch(vocoder: Any, mels: Sequence[Any]) -> list[np.ndarray]:
    """Waves (float32 numpy) of mels shaped (frames, n_mels), in one vocoder call."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    if len(mels) == 1:  # upstream's exact call
        batch = mels[0].T[None]
    else:
        batch = pad_sequence(list(mels), batch_first=True).permute(0, 2, 1)
    with torch.inference_mode():
        waves = vocoder.decode(batch)
    return [
        waves[i, : wave_length(mel.shape[0])].cpu().numpy().astype(np.float32)
        for i, mel in enumerate(mels)
    ]
