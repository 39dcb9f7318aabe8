"""Each chunk's starting noise, from its own generator seeded by (job seed, chunk index).

Why: a chunk's audio then depends only on the job's seed and the chunk itself, never
on which other chunks (of this job or of other jobs) share its batch, on the batch
size, or on the order batches run in. So a seed gives the same audio batched or one
chunk at a time. The noise is drawn on the CPU in float32 and then moved to the
model's device and dtype, so it is also the same noise on every device.

How: `CFM.sample` draws its noise itself, one `torch.randn(duration, channels, ...)`
per batch item, in batch order (after `torch.manual_seed(seed)` when given a seed,
which would give every item the *same* noise). It takes no noise argument. Rather
than re-implement the sampler (and drift from upstream's ODE, masking and EPSS code
with every release), `per_item_noise` supplies the noise by swapping the `torch` name
inside `f5_tts.model.cfm` for a thin proxy for the duration of one `sample` call:

* the proxy forwards every attribute to torch, except `randn` on the thread that
  opened the context, which returns the next item's noise (shape checked);
* any other thread calling `randn` through that module gets plain `torch.randn`,
  so the swap is invisible to it;
* one swap at a time (a module lock): the engine runs all model passes on one
  thread anyway, and a second caller waits instead of interleaving;
* leaving the context restores the module and checks that exactly one draw per item
  happened, so an f5-tts release that draws noise differently fails loudly in the
  tests instead of quietly losing the per-chunk seeds.

`chunk_seed` is pure (hashlib); torch is imported only when noise is drawn.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

_SWAP_LOCK = threading.Lock()


class NoiseSupplyError(RuntimeError):
    """CFM.sample did not draw its noise the way this module supplies it."""


def chunk_seed(job_seed: int, index: int) -> int:
    """A 63-bit seed for chunk `index` of a job seeded `job_seed` (stable forever)."""
    digest = hashlib.blake2b(f"f5tts-chunk:{job_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def chunk_noise(seed: int, frames: int, channels: int) -> Any:
    """The noise of one chunk: float32, on the CPU, from its own generator."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(frames, channels, generator=generator, dtype=torch.float32)


class _TorchWithItemNoise:
    """`torch` as `f5_tts.model.cfm` sees it during one batched `sample` call."""

    def __init__(self, real_torch: Any, seeds: Sequence[int], owner: int) -> None:
        self._torch = real_torch
        self._seeds = list(seeds)
        self._owner = owner
        self.frames: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._torch, name)

    def randn(self, *size: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != self._owner:
            return self._torch.randn(*size, **kwargs)
        if len(self.frames) >= len(self._seeds) or len(size) != 2:
            raise NoiseSupplyError(
                f"CFM.sample drew noise of shape {size} as draw {len(self.frames) + 1} for a "
                f"batch of {len(self._seeds)}; the installed f5-tts draws noise differently "
                "than handler/engine/noise.py expects"
            )
        frames, channels = (int(n) for n in size)
        noise = chunk_noise(self._seeds[len(self.frames)], frames, channels)
        self.frames.append(frames)
        return noise.to(device=kwargs.get("device"), dtype=kwargs.get("dtype"))


@contextlib.contextmanager
def per_item_noise(seeds: Sequence[int]) -> Iterator[_TorchWithItemNoise]:
    """Within the block, `CFM.sample` on this thread draws item i's noise from seeds[i].

    Yields the proxy; its `frames` lists the length drawn for each item (CFM's final
    per-item duration, after its own minimums).
    """
    from f5_tts.model import cfm

    with _SWAP_LOCK:
        real = cfm.torch
        proxy = _TorchWithItemNoise(real, seeds, threading.get_ident())
        cfm.torch = proxy
        try:
            yield proxy
        finally:
            cfm.torch = real
        if len(proxy.frames) != len(seeds):
            raise NoiseSupplyError(
                f"CFM.sample drew noise {len(proxy.frames)} times for a batch of {len(seeds)}; "
                "the installed f5-tts draws noise differently than handler/engine/noise.py "
                "expects"
            )
