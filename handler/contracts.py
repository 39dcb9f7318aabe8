"""The seams between the job layer and the models.

The job layer (schema, storage, voices, subtitles) only talks to these protocols, so
the real F5-TTS / whisperx implementations (`engine.py`, `alignment.py`, `asr.py`)
can be replaced by small doubles in the fast test tier without touching job code.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # handler.engine imports this module
    from handler.engine.scheduler import BatchBudget, ChunkWork


@dataclass(frozen=True)
class PreparedReference:
    """A reference clip ready for synthesis: mono WAV at the engine's rate, clipped."""

    audio_path: Path
    text: str
    duration_s: float


@dataclass(frozen=True)
class SynthesisParams:
    speed: float = 1.0
    nfe_step: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    cross_fade_duration: float = 0.15
    seed: int = 0
    remove_silence: bool = False


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    score: float | None = None
    speaker: str | None = None  # set in multi-speaker scripts (handler/script.py)


# Called with (chunks done, chunks total) after each text chunk.
ProgressCallback = Callable[[int, int], None]


class SpeechEngine(Protocol):
    """A job's text is planned into chunks (`plan`), the chunks of every job in flight
    run in shared batches on one model thread (`run_batch`, driven by
    handler/engine/batcher.py), and the job layer joins each job's chunk waves."""

    sample_rate: int
    model_name: str
    budget: BatchBudget  # what one batched model pass may hold

    def plan(
        self,
        reference: PreparedReference,
        text: str,
        params: SynthesisParams,
        *,
        job: Hashable = None,
        short_first: bool = True,
    ) -> list[ChunkWork]:
        """The chunks of `text`, in speaking order, tagged with `job`."""
        ...

    def run_batch(self, works: Sequence[ChunkWork]) -> list[np.ndarray]:
        """One model pass: each chunk's wave (float32 at `sample_rate`), in order."""
        ...

    def synthesize(
        self,
        reference: PreparedReference,
        text: str,
        params: SynthesisParams,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """All of `text` at once: mono float32 samples in [-1, 1] at `sample_rate`."""
        ...


class Aligner(Protocol):
    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> list[Word]:
        """Word timings of the known `text` in `audio` (seconds, monotonic)."""
        ...


class Transcriber(Protocol):
    def transcribe(self, audio_path: Path) -> str: ...
