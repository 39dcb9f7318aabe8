"""Which pending chunks run together in one batched model pass: the one batching scheduler.

A batch is one `CFM.sample` call (then one vocoder call) over several chunks, from
one job or from several. Chunks may share a batch when they are sampled the same way
(`SamplingKey`: NFE, CFG strength, sway; one `sample` call takes one of each). A
batch is bounded by `BatchBudget`: at most `max_chunks`, and an estimate of the
transient memory of the padded batch within `memory_bytes` (`batch_memory_bytes`,
the arithmetic is in docs/performance.md). Order is first come, first served: the
oldest pending chunk always runs in the next batch (alone if it must), later ones
join it while they fit, so no chunk waits behind a stream of newer ones.

A job's first chunk (index 0) runs in a batch holding no other chunk of the same job
(it may share one with other jobs' chunks): the first audio of a job is then made by
the smallest pass that can make it, and a job alone on the worker is batched the
same way whether it streams or not ([0], then its other chunks in order), so a
streamed job's audio equals the same job's audio not streamed.

A chunk's audio does not depend on its batch-mates (its noise has its own seed,
handler/engine/noise.py; padding is masked), so this module decides only speed and
memory, never what is heard. Pure: no torch. A caller that serves several jobs keeps
one list of pending `ChunkWork`, asks `next_batch` for what to run, runs it on the
model thread (`F5Engine.run_batch`), hands each result to its job, and asks again;
if a batch fails, running its chunks again one by one tells whose chunk failed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_BATCH_MEMORY_MB = 6144
DEFAULT_BATCH_MAX_CHUNKS = 8


@dataclass(frozen=True)
class SamplingKey:
    nfe_step: int
    cfg_strength: float
    sway_sampling_coef: float


@dataclass(frozen=True)
class ChunkWork:
    """One chunk waiting for the model: everything its generation needs."""

    job: Hashable  # whose chunk it is (results are handed back by this key)
    index: int  # position in the job's plan
    text: str  # what the model reads after the reference transcript
    duration: int  # frames asked of CFM.sample, reference included (upstream's rule)
    frames: int  # upper bound of the frames CFM will use (it raises short durations)
    seed: int  # this chunk's own noise seed (noise.chunk_seed)
    sampling: SamplingKey
    conditioning: Any  # the job's prepared reference (sampling.Conditioning), opaque here


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs to know of the DiT."""

    dim: int
    depth: int
    heads: int
    ff_inner: int
    text_dim: int
    mel_dim: int = 100
    dtype_bytes: int = 4
    flash_attention: bool = False


@dataclass(frozen=True)
class BatchBudget:
    memory_bytes: int = DEFAULT_BATCH_MEMORY_MB * 2**20
    max_chunks: int = DEFAULT_BATCH_MAX_CHUNKS
    shape: ModelShape | None = None  # None: bound by max_chunks alone


def batch_memory_bytes(shape: ModelShape, items: int, frames: int, steps: int) -> int:
    """Estimated transient memory of one batched `sample` call: `items` chunks padded
    to `frames`, sampled in `steps` steps (weights not included).

    CFG runs each item twice (2 rows). Per row and frame, a DiT block holds about six
    `dim`-wide tensors (input, norm, q, k, v, attention output) and two `ff_inner`-wide
    ones, plus the cached text embeddings; the torch attention backend materialises
    per head an n x n mask (batches > 1) and score matrix, flash-attn none; the ODE
    keeps every step's state (steps + 1) plus noise, condition and mask copies.
    """
    rows = 2 * items
    e = shape.dtype_bytes
    per_frame = 6 * shape.dim + 2 * shape.ff_inner + 2 * shape.text_dim
    activations = rows * frames * per_frame * e
    attention = 0 if shape.flash_attention else rows * shape.heads * frames * frames * 3 * e
    ode = items * frames * shape.mel_dim * (steps + 4) * e
    return activations + attention + ode


def next_batch(pending: Sequence[ChunkWork], budget: BatchBudget) -> list[ChunkWork]:
    """The chunks to run next: the oldest pending one, and after it in order every
    chunk sampled the same way that still fits the budget."""
    if not pending:
        return []
    head = pending[0]
    batch = [head]
    longest = head.frames
    for work in pending[1:]:
        if len(batch) >= budget.max_chunks:
            break
        if work.sampling != head.sampling or not _may_join(batch, work):
            continue
        frames = max(longest, work.frames)
        if budget.shape is not None:
            cost = batch_memory_bytes(budget.shape, len(batch) + 1, frames, head.sampling.nfe_step)
            if cost > budget.memory_bytes:
                continue
        batch.append(work)
        longest = frames
    return batch


def _may_join(batch: Sequence[ChunkWork], work: ChunkWork) -> bool:
    """A job's first chunk shares its batch with no other chunk of that job."""
    same_job = [w for w in batch if w.job == work.job]
    return not same_job or (work.index != 0 and all(w.index != 0 for w in same_job))


def plan_batches(pending: Sequence[ChunkWork], budget: BatchBudget) -> list[list[ChunkWork]]:
    """All of `pending` as a sequence of batches (`next_batch` until none is left)."""
    left = list(pending)
    batches: list[list[ChunkWork]] = []
    while left:
        batch = next_batch(left, budget)
        taken = {id(work) for work in batch}
        left = [work for work in left if id(work) not in taken]
        batches.append(batch)
    return batches
