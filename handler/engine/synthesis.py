"""A job's path through the engine: plan the chunks, run them in batches, join them.

    reference + text ──plan──▶ ChunkWork per chunk (chunking: frames within budget;
                                noise: a seed per chunk)
                    ──scheduler.plan_batches──▶ batches within the memory budget
                    ──run_batch──▶ sampling.sample_mels (one CFM.sample per batch)
                                   + vocoder.decode_batch (one Vocos call per batch)
                    ──crossfade──▶ the job's audio (upstream's join, unchanged)

`plan` and `run_batch` are the `SpeechEngine` protocol (handler/contracts.py): the job
layer plans each job and hands its chunks to the one model thread
(handler/engine/batcher.py), which puts the pending chunks of every job in flight into
shared batches (scheduler.next_batch). `synthesize` is both halves for one text
(warm-up, benchmarks, tests). Every model pass holds the engine's lock: passes never
overlap, whichever thread asks.

Every plan makes its first chunk short (`chunking.FIRST_CHUNK_SHARE`), so the first
audio of a job, streamed or not, comes after one short pass.

`preprocess_ref_audio_text` is never called (it caches every reference in module
globals and leaks a temp file per reference); the job layer hands over a reference
prepared the same way (handler/reference.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from handler.contracts import PreparedReference, ProgressCallback, SynthesisParams
from handler.engine.chunking import (
    FIRST_CHUNK_SHARE,
    SAMPLE_RATE,
    ChunkBudget,
    ChunkPlanError,
    model_ref_text,
    plan_chunks,
    reference_problem,
    upstream_duration,
    utf8_len,
)
from handler.engine.noise import chunk_seed
from handler.engine.scheduler import BatchBudget, ChunkWork, SamplingKey, plan_batches
from handler.errors import UserError

log = logging.getLogger(__name__)


class Crossfader:
    """Upstream's join (`infer_batch_process`: a linear cross-fade of `fade_samples`
    between consecutive chunks) done chunk by chunk: `push` returns the samples that
    no later chunk can change, holding back the fade tail until the next chunk
    exists; `finish` returns the tail. Every sample is computed exactly as the whole
    join computes it, so the increments concatenated equal `crossfade` bit for bit
    (float64, as numpy promotes the fade)."""

    def __init__(self, fade_samples: int) -> None:
        self.fade = max(0, int(fade_samples))
        self.length = 0  # samples of the join so far, held ones included
        self.tail = np.zeros(0, dtype=np.float64)  # the last min(fade, length) of them
        self.started = False

    def push(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave).reshape(-1).astype(np.float64)
        n = min(self.fade, self.length, wave.size) if self.started else 0
        if n > 0:
            overlap = self.tail[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
            open_part = np.concatenate([self.tail[:-n], overlap, wave[n:]])
        else:
            open_part = np.concatenate([self.tail, wave])
        self.started = True
        self.length += wave.size - n
        hold = min(self.fade, self.length)
        cut = open_part.size - hold
        self.tail = open_part[cut:]
        return open_part[:cut]

    def finish(self) -> np.ndarray:
        tail, self.tail = self.tail, np.zeros(0, dtype=np.float64)
        return tail


def crossfade(waves: Sequence[np.ndarray], fade_samples: int) -> np.ndarray:
    """Join chunks with a linear cross-fade (the same join as `infer_batch_process`)."""
    fader = Crossfader(fade_samples)
    parts = [fader.push(wave) for wave in waves]
    return np.concatenate([*parts, fader.finish()]) if waves else np.zeros(0, np.float32)


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


def read_reference(reference: PreparedReference) -> tuple[np.ndarray, int]:
    """The clip as mono float32 samples and their rate."""
    import soundfile as sf

    samples, rate = sf.read(str(reference.audio_path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32), int(rate)


class F5Engine:
    """A loaded F5-TTS model and vocoder, the budget its batches keep to (`budget`) and
    the one its chunks keep to (`chunk_budget`)."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: Any,
        vocoder: Any,
        device: str,
        model_name: str,
        *,
        budget: BatchBudget | None = None,
        chunk_budget: ChunkBudget | None = None,
        attention: str = "torch",
    ) -> None:
        from handler.engine.masking import enable_padding_masks
        from handler.engine.sampling import model_shape

        enable_padding_masks(model)
        self.model = model
        self.vocoder = vocoder
        self.device = device
        self.model_name = model_name
        self.attention = attention  # the DiT's attn_backend: torch or flash_attn
        self.budget = budget or BatchBudget(shape=model_shape(model))
        self.chunk_budget = chunk_budget or ChunkBudget(first_share=FIRST_CHUNK_SHARE)
        self._lock = threading.Lock()

    def plan(
        self,
        reference: PreparedReference,
        text: str,
        params: SynthesisParams,
        *,
        job: Hashable = None,
        chunk_budget: ChunkBudget | None = None,
        short_first: bool = True,
    ) -> list[ChunkWork]:
        """The chunks of one text, ready for `run_batch` (raises UserError for a
        reference the model cannot be conditioned on, or nothing to speak).
        `short_first=False` gives the first chunk the full budget (a script's later
        segments: only a job's first audio needs to come early)."""
        from handler.engine.sampling import prepare_conditioning

        samples, rate = read_reference(reference)
        problem = reference_problem(reference.text, samples.size / rate)
        if problem:
            raise UserError(
                f"The reference cannot be used because {problem}; send a clip of at most "
                "15 s of speech with exactly the words spoken in it"
            )
        ref_text = model_ref_text(reference.text)
        if rate != SAMPLE_RATE:
            samples = _resample(samples, rate)
        budget = chunk_budget or self.chunk_budget
        with self._lock:
            conditioning = prepare_conditioning(self.model, samples, ref_text)
        try:
            chunks = plan_chunks(
                text,
                ref_text=ref_text,
                ref_frames=conditioning.ref_frames,
                speed=params.speed,
                budget=budget if short_first else full_first(budget),
            )
        except ChunkPlanError as exc:  # ruled out by reference_problem; kept as a sentence
            raise UserError(f"The text cannot be split to fit the model ({exc})") from None
        if not chunks:
            raise UserError("text has nothing to speak; send at least one word")
        key = SamplingKey(params.nfe_step, params.cfg_strength, params.sway_sampling_coef)
        ref_bytes = utf8_len(ref_text)
        return [
            ChunkWork(
                job=job,
                index=i,
                text=chunk.text,
                duration=upstream_duration(
                    conditioning.ref_frames, ref_bytes, utf8_len(chunk.text), params.speed
                ),
                frames=chunk.frames,
                seed=chunk_seed(params.seed, i),
                sampling=key,
                conditioning=conditioning,
            )
            for i, chunk in enumerate(chunks)
        ]

    def run_batch(self, works: Sequence[ChunkWork]) -> list[np.ndarray]:
        """One batched model pass: each chunk's wave (float32), in the order given."""
        from handler.engine.sampling import TARGET_RMS, sample_mels
        from handler.engine.vocoder import decode_batch

        with self._lock:
            waves = decode_batch(self.vocoder, sample_mels(self.model, works))
        out = []
        for work, wave in zip(works, waves, strict=True):
            rms = work.conditioning.rms
            out.append(wave * (rms / TARGET_RMS) if rms < TARGET_RMS else wave)
        return out

    def synthesize(
        self,
        reference: PreparedReference,
        text: str,
        params: SynthesisParams,
        on_progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        works = self.plan(reference, text, params)
        waves: list[np.ndarray] = [np.zeros(0, np.float32)] * len(works)
        done = 0
        for batch in plan_batches(works, self.budget):
            for work, wave in zip(batch, self.run_batch(batch), strict=True):
                waves[work.index] = wave
            done += len(batch)
            if on_progress is not None:
                on_progress(done, len(works))
        audio = crossfade(waves, int(params.cross_fade_duration * self.sample_rate))
        if params.remove_silence:
            audio = remove_long_silences(audio, self.sample_rate)
        return np.clip(audio, -1.0, 1.0).astype(np.float32)


def full_first(budget: ChunkBudget) -> ChunkBudget:
    """`budget` without a smaller budget for the first chunk."""
    return ChunkBudget(budget.max_frames)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """As `infer_batch_process` does for a clip not at 24 kHz."""
    import torch
    import torchaudio

    wave = torchaudio.transforms.Resample(rate, SAMPLE_RATE)(torch.from_numpy(samples)[None])
    return wave[0].numpy()
