"""Small stand-ins for the model protocols (handler/contracts.py), for tests only.

They honour the contracts (right sample rate, length that grows with the text,
per-chunk progress, monotonic word times) without torch, so the job layer can be
tested end to end in milliseconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from handler.contracts import PreparedReference, SynthesisParams, Word
from handler.engine.noise import chunk_seed
from handler.engine.scheduler import BatchBudget, ChunkWork, SamplingKey
from handler.jobs import Models
from handler.settings import Settings

SECONDS_PER_CHAR = 0.05


def split_chunks(text: str) -> list[str]:
    return [c for c in re.split(r"(?<=[.!?])\s+", text.strip()) if c]


class SineEngine:
    """A tone whose length follows the text; the seed picks the pitch. It plans and
    runs chunks as the engine protocol says (one chunk per sentence), so the job layer's
    model thread, batching, cross-fade and streaming run on it in milliseconds."""

    sample_rate = 24000
    model_name = "sine-double"

    def __init__(self, budget: BatchBudget | None = None) -> None:
        self.budget = budget or BatchBudget()
        self.calls: list[tuple[str, SynthesisParams, PreparedReference]] = []
        self.batches: list[list[ChunkWork]] = []

    def plan(self, reference, text, params, *, job=None, short_first=True):
        assert reference.audio_path.is_file(), "the job layer must hand over a real file"
        self.calls.append((text, params, reference))
        key = SamplingKey(params.nfe_step, params.cfg_strength, params.sway_sampling_coef)
        works = []
        for i, chunk in enumerate(split_chunks(text) or [text]):
            n = max(1, int(len(chunk) * SECONDS_PER_CHAR / params.speed * self.sample_rate))
            pitch = 200 + params.seed % 200
            seed = chunk_seed(params.seed, i)
            works.append(ChunkWork(job, i, chunk, n, n // 256 + 1, seed, key, pitch))
        return works

    def run_batch(self, works):
        self.batches.append(list(works))
        waves = []
        for work in works:
            t = np.arange(work.duration) / self.sample_rate
            waves.append((0.3 * np.sin(2 * np.pi * work.conditioning * t)).astype(np.float32))
        return waves

    def synthesize(self, reference, text, params, on_progress=None):
        works = self.plan(reference, text, params)
        waves = self.run_batch(works)
        if on_progress is not None:
            on_progress(len(works), len(works))
        return np.concatenate(waves).astype(np.float32)


class EvenAligner:
    """Spreads the words of the text evenly over the audio."""

    def __init__(self) -> None:
        self.calls = 0

    def align(self, audio, sample_rate, text):
        self.calls += 1
        words = text.split()
        duration = len(audio) / sample_rate
        step = duration / max(1, len(words))
        # Deliberately a little untidy (last word past the end), as real alignment can be.
        return [
            Word(w, i * step, (i + 1) * step + (0.2 if i == len(words) - 1 else 0.0), 0.9)
            for i, w in enumerate(words)
        ]


class FixedTranscriber:
    def __init__(self, text: str = "This is the reference speaker.") -> None:
        self.text = text
        self.calls: list[Path] = []

    def transcribe(self, audio_path: Path) -> str:
        assert audio_path.is_file()
        self.calls.append(audio_path)
        return self.text


class CudaCrashEngine(SineEngine):
    def run_batch(self, works):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def double_models(settings: Settings | None = None) -> Models:
    return Models(SineEngine(), EvenAligner(), FixedTranscriber())


class SlowSineEngine(SineEngine):
    """Takes `seconds` per model pass, so jobs overlap and can be stopped midway;
    `running` is set once a pass has begun."""

    def __init__(self, seconds: float = 0.05, **kwargs) -> None:
        import threading

        super().__init__(**kwargs)
        self.seconds = seconds
        self.running = threading.Event()

    def run_batch(self, works):
        import time

        self.running.set()
        time.sleep(self.seconds)
        return super().run_batch(works)


class FailingChunkEngine(SlowSineEngine):
    """Fails every batch holding a chunk whose text contains `marker` (as a model
    failing on one input would), so the batcher's one-by-one rerun finds it."""

    def __init__(self, marker: str = "Boom", seconds: float = 0.0, **kwargs) -> None:
        super().__init__(seconds, **kwargs)
        self.marker = marker

    def run_batch(self, works):
        if any(self.marker in w.text for w in works):
            self.batches.append(list(works))
            raise RuntimeError(f"the model failed on a chunk containing {self.marker!r}")
        return super().run_batch(works)
