"""Turning a caller's reference clip into what the engine wants, once per clip.

Prepared means what F5-TTS's `preprocess_ref_audio_text` does, in memory and cached:
decoded to mono at the engine's rate; leading and trailing silence trimmed (upstream's
rule: 10 ms steps below -42 dBFS); when the caller gave no `ref_text`, clipped at a
pause to at most F5TTS_REF_CLIP_SECONDS (12 s, as upstream) and transcribed; then
50 ms of silence appended. A clip sent with its `ref_text` is never clipped, since
the text must keep matching the audio: when its speech is longer than the engine's
reference limit (15 s, `chunking.REFERENCE_MAX_SECONDS`) the job is refused with a
sentence saying so (clipping would silently drop words the transcript still holds).
The transcript must also be plausible for the clip's length (`reference_problem`),
so every chunk of every later job fits the model.

Results are cached on the volume under the clip's sha256 (and `CACHE_LAYOUT`), so a
reused reference is neither decoded nor transcribed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from handler import audio
from handler.contracts import PreparedReference, Transcriber
from handler.engine.chunking import (
    REFERENCE_MAX_SECONDS,
    REFERENCE_PAD_SECONDS,
    reference_problem,
)
from handler.errors import UserError
from handler.settings import Settings

MIN_REF_SECONDS = 1.0
CACHE_LAYOUT = 2  # bump when the preparation changes, so old entries are not reused
# upstream's remove_silence_edges: silence_threshold=-42 dBFS, in 10 ms chunks
EDGE_SILENCE_DBFS = -42.0
EDGE_STEP_S = 0.01
# A quiet recording is not all "silence": the threshold stays this far below its peak.
EDGE_BELOW_PEAK_DB = 24.0


class PreparedMeta(BaseModel):
    """meta.json of a cache entry (and of a saved voice)."""

    model_config = ConfigDict(extra="ignore")

    sha256: str
    text: str | None
    duration_s: float
    sample_rate: int
    clipped: bool  # True when the clip-at-a-pause policy applied (no ref_text)


def plan_clip(
    samples: np.ndarray,
    rate: int,
    target_s: float,
    *,
    min_keep_s: float = 3.0,
    frame_s: float = 0.02,
    min_pause_s: float = 0.1,
    quiet_db: float = -40.0,
) -> int:
    """Number of samples to keep: all when short enough, else up to the last pause
    (>= `min_pause_s` below `quiet_db` relative to the peak) between `min_keep_s`
    and `target_s`, else exactly `target_s`."""
    limit = int(target_s * rate)
    if samples.size <= limit:
        return int(samples.size)
    frame = max(1, int(frame_s * rate))
    n_frames = limit // frame
    framed = samples[: n_frames * frame].reshape(n_frames, frame)
    rms = np.sqrt(np.mean(np.square(framed, dtype=np.float64), axis=1))
    peak = float(np.max(np.abs(samples[:limit]))) or 1.0
    quiet = 20 * np.log10(np.maximum(rms, 1e-10) / peak) < quiet_db
    need = max(1, round(min_pause_s / frame_s))
    best: int | None = None
    run = 0
    for i, is_quiet in enumerate(quiet):
        run = run + 1 if is_quiet else 0
        if run >= need:
            middle = (i - run // 2) * frame
            if middle >= min_keep_s * rate:
                best = middle
    return best if best is not None else limit


def plan_trim(samples: np.ndarray, rate: int) -> tuple[int, int]:
    """(start, end) of the clip without its silent ends: upstream's
    `remove_silence_edges`, i.e. pydub's `detect_leading_silence` from each end (whole
    10 ms steps whose level is below the threshold are silence)."""
    if samples.size == 0:
        return 0, 0
    peak = float(np.max(np.abs(samples)))
    peak_db = 20 * np.log10(peak) if peak > 0 else -200.0
    threshold = min(EDGE_SILENCE_DBFS, peak_db - EDGE_BELOW_PEAK_DB)
    step = max(1, int(EDGE_STEP_S * rate))
    start = _leading_silence(samples, step, threshold)
    end = samples.size - _leading_silence(samples[start:][::-1], step, threshold)
    return start, max(start, end)


def _leading_silence(samples: np.ndarray, step: int, threshold_db: float) -> int:
    """Samples of silence at the start, in whole steps (the last one may be partial)."""
    n_steps = -(-samples.size // step)
    padded = np.zeros(n_steps * step, dtype=np.float64)
    padded[: samples.size] = samples
    counts = np.full(n_steps, step)
    counts[-1] = samples.size - (n_steps - 1) * step
    rms = np.sqrt(np.square(padded).reshape(n_steps, step).sum(axis=1) / counts)
    loud = 20 * np.log10(np.maximum(rms, 1e-12)) >= threshold_db
    if not loud.any():
        return samples.size
    return min(int(np.argmax(loud)) * step, samples.size)


def plan_prune(entries: list[tuple[str, float]], limit: int, in_use: str) -> list[str]:
    """Cache entries to delete: the least recently used beyond `limit`, never `in_use`."""
    excess = len(entries) - limit
    if excess <= 0:
        return []
    oldest_first = sorted((e for e in entries if e[0] != in_use), key=lambda e: (e[1], e[0]))
    return [name for name, _mtime in oldest_first[:excess]]


def _touch(entry: Path) -> None:
    """Marks a cache entry as used (its folder's mtime is the LRU clock)."""
    with contextlib.suppress(OSError):  # pruned by another worker meanwhile: harmless
        os.utime(entry)


def private_suffix() -> str:
    """A name part no other process, nor other thread of this one, uses at the same
    time: jobs of one worker run concurrently (F5TTS_MAX_CONCURRENCY)."""
    return f"{os.getpid()}-{threading.get_ident()}"


def write_json_atomic(path: Path, model: BaseModel) -> None:
    tmp = path.with_name(f".{path.name}.{private_suffix()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(model.model_dump_json(indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ReferencePreparer:
    def __init__(
        self, settings: Settings, sample_rate: int, transcriber: Transcriber | None
    ) -> None:
        self.settings = settings
        self.sample_rate = sample_rate
        self.transcriber = transcriber

    def prepare(self, data: bytes, ref_text: str | None) -> PreparedReference:
        ref_text = (ref_text or "").strip() or None
        digest = hashlib.sha256(data).hexdigest()
        variant = "full" if ref_text else f"clip{self.settings.ref_clip_seconds:g}"
        entry = self.settings.reference_cache_dir / (
            f"{digest}-{self.sample_rate}-{variant}-v{CACHE_LAYOUT}"
        )
        meta = self._cached(entry)
        if meta is None:
            meta = self._build(entry, data, digest, clip=ref_text is None)
            self._prune(keep=entry)
        else:
            _touch(entry)
        text = ref_text or meta.text
        transcribed = not text
        if transcribed:
            text = self._transcribe(entry, meta)
        problem = reference_problem(text, meta.duration_s)
        if problem:
            source = " (as transcribed by the speech recogniser)" if transcribed else ""
            raise UserError(
                f"The reference cannot be used because {problem}{source}; send ref_text "
                "with exactly the words spoken in the clip"
            )
        return PreparedReference(entry / "ref.wav", text, meta.duration_s)

    # -- cache -------------------------------------------------------------------
    def _prune(self, keep: Path) -> None:
        root = self.settings.reference_cache_dir
        entries = []
        for child in root.iterdir():
            if child.name.startswith(".") or not child.is_dir():
                continue
            try:
                entries.append((child.name, child.stat().st_mtime))
            except OSError:  # removed by another worker meanwhile
                continue
        for name in plan_prune(entries, self.settings.ref_cache_entries, keep.name):
            retired = root / f".{name}.pruned.{private_suffix()}"
            try:
                (root / name).rename(retired)
            except OSError:
                continue
            shutil.rmtree(retired, ignore_errors=True)

    def _trimmed(self, samples: np.ndarray) -> np.ndarray:
        start, end = plan_trim(samples, self.sample_rate)
        speech = (end - start) / self.sample_rate
        if speech < MIN_REF_SECONDS:
            raise UserError(
                f"The reference audio holds only {speech:.1f} s of sound after trimming "
                "silence; give 3-12 s of clear speech"
            )
        return samples[start:end]

    @staticmethod
    def _cached(entry: Path) -> PreparedMeta | None:
        try:
            meta = PreparedMeta.model_validate_json((entry / "meta.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return meta if (entry / "ref.wav").is_file() else None

    def _build(self, entry: Path, data: bytes, digest: str, *, clip: bool) -> PreparedMeta:
        samples = audio.decode(
            data, self.sample_rate, self.settings.max_ref_seconds, what="reference audio"
        )
        samples = self._trimmed(samples)
        if clip:
            samples = self._trimmed(
                samples[: plan_clip(samples, self.sample_rate, self.settings.ref_clip_seconds)]
            )
        speech = samples.size / self.sample_rate
        if not clip and speech > REFERENCE_MAX_SECONDS:
            raise UserError(
                f"The reference audio holds {speech:.1f} s of sound after trimming its silent "
                f"ends, and with ref_text the limit is {REFERENCE_MAX_SECONDS:g} s; send a "
                f"clip of at most {REFERENCE_MAX_SECONDS:g} s with the words spoken in it, or "
                "leave ref_text out to have the clip cut at a pause and transcribed"
            )
        pad = np.zeros(int(REFERENCE_PAD_SECONDS * self.sample_rate), dtype=np.float32)
        samples = np.concatenate([samples.astype(np.float32), pad])
        meta = PreparedMeta(
            sha256=digest,
            text=None,
            duration_s=round(samples.size / self.sample_rate, 3),
            sample_rate=self.sample_rate,
            clipped=clip,
        )
        entry.parent.mkdir(parents=True, exist_ok=True)
        # Built in a private folder, published by one rename: readers never see half.
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            audio.write_wav(staging / "ref.wav", samples, self.sample_rate)
            write_json_atomic(staging / "meta.json", meta)
            try:
                staging.rename(entry)
            except OSError:
                # Another job or worker published the same entry first; use theirs.
                cached = self._cached(entry)
                if cached is None:
                    raise
                return cached
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return meta

    def _transcribe(self, entry: Path, meta: PreparedMeta) -> str:
        if self.transcriber is None:
            raise UserError(
                "ref_text is missing and no speech recogniser is available in this "
                "environment; send ref_text with the words spoken in the reference clip"
            )
        text = " ".join(self.transcriber.transcribe(entry / "ref.wav").split())
        if not text:
            raise UserError(
                "No speech was recognised in the reference audio; send a clip with clear "
                "speech, or give ref_text"
            )
        write_json_atomic(entry / "meta.json", meta.model_copy(update={"text": text}))
        return text
