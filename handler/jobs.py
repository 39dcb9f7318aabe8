"""What each operation does, given models that are already loaded.

`JobRunner.run` validates the input (schema, in any of the shapes of shapes.py),
dispatches on `op` and returns the output dict in the shape the request came in;
failures are raised (UserError and friends) and turned into RunPod's error shape by
the worker. Nothing here knows about RunPod. Several jobs may run at once, each on
its own thread (F5TTS_MAX_CONCURRENCY); their chunks meet on the one model thread
(handler/engine/batcher.py).

A tts job runs: plan the script (script.py) -> prepare each distinct reference ->
refuse an inline output that cannot fit -> plan every segment's chunks and hand them
all to the model thread -> join each segment's chunk waves as they come (the
engine's cross-fade) and the segments with their pauses -> align each segment's
words -> normalise loudness -> encode -> subtitles -> deliver.

A streamed tts job (`stream: true`, handler/streaming.py) runs the same steps and
makes the same samples; each run of them is encoded and emitted as a piece as soon
as it is final, and its output (the last piece) describes the stream and the stored
file instead of carrying the audio.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from handler import audio, script, streaming, subtitles
from handler.contracts import (
    Aligner,
    PreparedReference,
    ProgressCallback,
    SpeechEngine,
    SynthesisParams,
    Transcriber,
)
from handler.engine.batcher import Batcher
from handler.engine.presets import resolve_nfe
from handler.engine.synthesis import Crossfader, remove_long_silences
from handler.errors import UserError
from handler.fetch import ReferenceFetcher
from handler.reference import ReferencePreparer
from handler.schema import (
    InfoJob,
    TtsJob,
    VoiceCreateJob,
    VoiceDeleteJob,
    VoiceGetJob,
    VoiceListJob,
    parse_request,
)
from handler.script import PlannedSegment, VoiceSource
from handler.settings import Settings
from handler.shapes import shape_output
from handler.storage import Artifact, Delivery, ObjectStore

VERSIONED_PACKAGES = ("f5-tts", "torch", "torchaudio", "whisperx", "transformers", "runpod")
# Inline outputs are refused before the work only when 3/4 of the estimated length
# would already be over the limit: the estimate must never refuse what would fit.
ESTIMATE_SHARE = 0.75


@dataclass
class Models:
    """What the worker loaded once at start."""

    engine: SpeechEngine
    aligner: Aligner | None = None
    transcriber: Transcriber | None = None
    notes: list[str] = field(default_factory=list)  # optional parts that did not load
    # Loads the aligner of another language (F5TTS_ALIGN_LANGUAGES) on first use.
    load_aligner: Callable[[str], Aligner] | None = None


class JobCancelled(Exception):
    """The job was stopped (RunPod cancelled its task); nothing more is done for it."""


class JobControl:
    """Lets the worker stop one job from another thread: `cancel` drops the job's
    pending chunks (hooks registered with `on_cancel`) and the job stops at its next
    `check`, never delivering anything."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append(hook)
            run_now = self.cancelled
        if run_now:
            hook()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled()


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = round((now - self.last) * 1000, 1)
        self.last = now


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        models: Models,
        store: ObjectStore | None,
        *,
        fetcher: ReferenceFetcher | None = None,
    ) -> None:
        from handler.voices import VoiceLibrary

        self.settings = settings
        self.models = models
        self.fetcher = fetcher or ReferenceFetcher(settings, store)
        self.preparer = ReferencePreparer(settings, models.engine.sample_rate, models.transcriber)
        self.voices = VoiceLibrary.from_settings(settings, store)
        self.delivery = Delivery(settings, store)
        self.env = read_env_marker(settings)
        self.batcher = Batcher(models.engine)
        self._aligners: dict[str, Aligner] = {}
        self._aligners_lock = threading.Lock()

    def run(
        self,
        job_id: str,
        payload: Any,
        on_progress: ProgressCallback | None = None,
        *,
        control: JobControl | None = None,
        emit: streaming.Emit | None = None,
    ) -> dict[str, Any]:
        """The job's output. On a streaming worker the caller passes `emit`: a streamed
        tts job then emits its pieces through it and returns its last piece."""
        request = parse_request(
            payload,
            max_text_chars=self.settings.max_text_chars,
            max_segments=self.settings.max_segments,
        )
        job = request.job
        out = self._dispatch(job_id, job, on_progress, control or JobControl(), emit)
        if isinstance(job, TtsJob) and job.stream:
            out["result"] = shape_output(request.shape, job.op, out["result"], job_id, job.text)
            return out
        return shape_output(request.shape, job.op, out, job_id, getattr(job, "text", None))

    def _dispatch(
        self,
        job_id: str,
        job: Any,
        on_progress: ProgressCallback | None,
        control: JobControl,
        emit: streaming.Emit | None,
    ) -> dict[str, Any]:
        match job:
            case TtsJob():
                return self.tts(job_id, job, on_progress, control=control, emit=emit)
            case VoiceCreateJob():
                return self.voice_create(job)
            case VoiceListJob():
                return self.voice_list(job)
            case VoiceGetJob():
                return self.voice_get(job)
            case VoiceDeleteJob():
                return self.voice_delete(job)
            case InfoJob():
                return self.info()
        raise AssertionError(f"unhandled job type {type(job).__name__}")

    # -- tts ---------------------------------------------------------------------
    def tts(
        self,
        job_id: str,
        job: TtsJob,
        on_progress: ProgressCallback | None = None,
        *,
        control: JobControl | None = None,
        emit: streaming.Emit | None = None,
    ) -> dict[str, Any]:
        control = control or JobControl()
        if job.stream:
            why = streaming.refusal(job) if emit is not None else streaming.STREAMING_OFF
            if why:
                raise UserError(why)
        aligner = self._aligner(job.language) if job.wants_words else None
        nfe_step, quality = resolve_nfe(
            job.quality, job.nfe_step, nfe_step_sent="nfe_step" in job.model_fields_set
        )
        clock = _Clock()
        seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        plan = script.plan_script(job, seed)
        sources = dict.fromkeys(s.source for s in plan)  # each distinct voice once
        references = {source: self._reference(source) for source in sources}
        clock.lap("ref_ms")
        control.check()

        rate = self.models.engine.sample_rate
        stream = None
        if job.stream:
            assert emit is not None
            # A streamed job's file is stored only when a bucket takes it (its audio goes
            # out in pieces), encoded whole, with the headers a stream lacks.
            keep_audio = not self.delivery.inline(job.delivery)
            # Started now, so the encoder's start overlaps the first chunk's synthesis.
            stream = streaming.PieceStream(job.format, rate, job.sample_rate, emit)
        else:
            keep_audio = True
            self._refuse_outputs_that_cannot_fit(job, plan, references, rate)
        try:
            waves = self._render(job, nfe_step, plan, references, on_progress, control, stream)
            if stream is not None:
                stream.end_audio()
                clock.ms["first_audio_ms"] = round(
                    ((stream.first_audio_at or clock.start) - clock.start) * 1000, 1
                )
        except BaseException:
            if stream is not None:
                stream.close()
            raise
        samples, starts = script.join(waves, [s.pause_after_s for s in plan], rate)
        duration = samples.size / rate
        clock.lap("synth_ms")

        words: list[subtitles.Word] = []
        if aligner is not None:
            for segment, wave, start in zip(plan, waves, starts, strict=True):
                offset = start / rate
                words += [
                    subtitles.Word(
                        w.text, w.start + offset, w.end + offset, w.score, segment.speaker
                    )
                    for w in aligner.align(wave, rate, segment.text)
                ]
            words = subtitles.clean_words(words, duration)
        clock.lap("align_ms")

        loudness = None
        if job.normalize:
            samples, loudness = audio.normalize_loudness(samples, rate, job.loudness_lufs)
            clock.lap("loudness_ms")

        encoded = audio.encode(samples, rate, job.format, job.sample_rate) if keep_audio else None
        extension = audio.ENCODINGS[job.format].extension
        content_type = audio.ENCODINGS[job.format].content_type
        artifacts = [Artifact(f"audio.{extension}", encoded.data, content_type)] if encoded else []
        cues = subtitles.group_cues(words, job.words_per_cue)
        for fmt in job.subtitles:
            text = subtitles.render(fmt, words, cues, karaoke=job.karaoke)
            data = text.encode("utf-8-sig" if fmt == "ass" else "utf-8")
            artifacts.append(
                Artifact(f"subtitles.{fmt}", data, subtitles.CONTENT_TYPES[fmt], is_text=True)
            )
        clock.lap("encode_ms")

        control.check()
        delivered = self.delivery.deliver(job_id, artifacts, job.delivery)
        clock.lap("upload_ms")
        clock.ms["total_ms"] = round((time.perf_counter() - clock.start) * 1000, 1)
        clock.ms["rtf"] = round(clock.ms["synth_ms"] / 1000 / duration, 4)

        described: dict[str, Any] = {
            "format": job.format,
            "content_type": content_type,
            "sample_rate": job.sample_rate or rate,
            "duration_s": round(duration, 3),
        }
        if encoded is not None:
            described = {
                **delivered[artifacts[0].name],
                **described,
                "bytes": len(encoded.data),
                "sha256": hashlib.sha256(encoded.data).hexdigest(),
            }
        if stream is not None:
            described["stream"] = stream.info()
        out: dict[str, Any] = {
            "audio": described,
            "seed": seed,
            "nfe_step": nfe_step,
            "quality": quality,
            "timings": clock.ms,
            "env_id": self.env.get("env_id"),
        }
        if job.normalize:
            out["audio"]["loudness_lufs"] = loudness
        if plan[0].speaker is not None:
            out["segments"] = [
                {
                    "index": s.index,
                    "speaker": s.speaker,
                    "start_s": round(start / rate, 3),
                    "end_s": round((start + wave.size) / rate, 3),
                    "seed": s.seed,
                }
                for s, wave, start in zip(plan, waves, starts, strict=True)
            ]
        if job.subtitles:
            out["subtitles"] = {fmt: delivered[f"subtitles.{fmt}"] for fmt in job.subtitles}
        if job.words:
            out["words"] = [subtitles.word_dict(w) for w in words]
        return stream.final(out) if stream is not None else out

    def _aligner(self, language: str | None) -> Aligner:
        """The aligner of the job's language, loaded before any synthesis runs."""
        language = language or self.settings.align_language
        if language not in self.settings.align_language_list:
            raise UserError(
                f"Word timings in {language!r} are not set up on this worker; add {language} "
                "to F5TTS_ALIGN_LANGUAGES and run `python -m bootstrap fetch-models`, or drop "
                "subtitles and words"
            )
        if language == self.settings.align_language and self.models.aligner is not None:
            return self.models.aligner
        if self.models.load_aligner is None or language == self.settings.align_language:
            raise UserError(
                "Word timings (subtitles/words) need the whisperx aligner, which is not "
                "available on this worker; drop subtitles and words, or deploy the "
                "environment with the alignment feature"
            )
        with self._aligners_lock:  # concurrent jobs load a language once
            if language not in self._aligners:
                self._aligners[language] = self.models.load_aligner(language)
            return self._aligners[language]

    def _reference(self, source: VoiceSource) -> PreparedReference:
        if source.kind == "voice":
            return self.voices.reference(str(source.voice))
        clip = source.ref_audio or ""
        data = self.fetcher.decode_base64(clip) if source.is_base64 else self.fetcher.fetch(clip)
        return self.preparer.prepare(data, source.ref_text)

    def _refuse_outputs_that_cannot_fit(
        self,
        job: TtsJob,
        plan: list[PlannedSegment],
        references: dict[VoiceSource, PreparedReference],
        rate: int,
    ) -> None:
        # remove_silence can shorten the audio by any amount: no estimate is a floor then.
        if not self.delivery.inline(job.delivery) or job.remove_silence:
            return
        seconds = sum(
            script.estimated_seconds(references[s.source], s.text, s.speed) + s.pause_after_s
            for s in plan
        )
        size = audio.estimated_bytes(job.format, ESTIMATE_SHARE * seconds, job.sample_rate or rate)
        self.delivery.check_inline_size(size, job.delivery, estimated=True)

    def _render(
        self,
        job: TtsJob,
        nfe_step: int,
        plan: list[PlannedSegment],
        references: dict[VoiceSource, PreparedReference],
        on_progress: ProgressCallback | None,
        control: JobControl,
        stream: streaming.PieceStream | None,
    ) -> list[np.ndarray]:
        """Each segment's audio; a stream gets every run of samples as it is final,
        with the pauses between segments."""
        rate = self.models.engine.sample_rate
        waves: list[np.ndarray] = []
        parts: list[np.ndarray] = []
        speech = self._speak(job, nfe_step, plan, references, on_progress, control)
        for segment, samples, ends in speech:
            parts.append(samples)
            if stream is not None:
                stream.feed(samples)
            if not ends:
                continue
            wave = np.concatenate(parts)
            parts = []
            if wave.size == 0:
                where = f" in segment {segment.index + 1}" if len(plan) > 1 else ""
                raise UserError(
                    f"The engine produced no audio for the text{where}; check that it has "
                    "words the model can read"
                )
            waves.append(wave)
            if stream is not None and segment.pause_after_s:
                stream.feed(np.zeros(round(segment.pause_after_s * rate), dtype=np.float32))
        return waves

    def _speak(
        self,
        job: TtsJob,
        nfe_step: int,
        plan: list[PlannedSegment],
        references: dict[VoiceSource, PreparedReference],
        on_progress: ProgressCallback | None,
        control: JobControl,
    ) -> Iterator[tuple[PlannedSegment, np.ndarray, bool]]:
        """(segment, final samples, whether the segment ends there), in speaking order,
        as the model thread finishes the chunks.

        Every segment's chunks go to the model thread at once, numbered across the job
        (its first chunk is chunk 0, which the scheduler runs without the job's other
        chunks), whether the job streams or not: so a job batches, and sounds, the
        same either way. A segment's chunk waves are joined with the engine's
        cross-fade as they come; only its fade tail waits for the next chunk."""
        engine = self.models.engine
        key = object()  # this run's chunks, whatever the job id
        planned = []
        for segment in plan:
            params = SynthesisParams(
                speed=segment.speed,
                nfe_step=nfe_step,
                cfg_strength=job.cfg_strength,
                sway_sampling_coef=job.sway_sampling_coef,
                cross_fade_duration=job.cross_fade_duration,
                seed=segment.seed,
                remove_silence=job.remove_silence,
            )
            works = engine.plan(
                references[segment.source],
                segment.text,
                params,
                job=key,
                short_first=segment.index == 0,
            )
            planned.append(works)
        control.check()
        numbered = [replace(w, index=i) for i, w in enumerate(itertools.chain(*planned))]
        futures = iter(self.batcher.submit(numbered))
        control.on_cancel(lambda: self.batcher.cancel(key))
        fade = int(job.cross_fade_duration * engine.sample_rate)
        done = 0
        try:
            for segment, works in zip(plan, planned, strict=True):
                fader = Crossfader(fade)
                whole: list[np.ndarray] = []
                for _ in works:
                    try:
                        wave = next(futures).result()
                    except CancelledError:
                        raise JobCancelled() from None
                    done += 1
                    if on_progress is not None:
                        on_progress(done, len(numbered))
                    final = fader.push(wave)
                    if job.remove_silence:  # needs the whole segment (not streamed)
                        whole.append(final)
                    elif final.size:
                        yield segment, _clipped(final), False
                tail = fader.finish()
                if job.remove_silence:
                    joined = np.concatenate([*whole, tail])
                    tail = remove_long_silences(joined, engine.sample_rate)
                yield segment, _clipped(tail), True
        finally:
            self.batcher.cancel(key)  # what a failed or stopped job left pending

    # -- voices ------------------------------------------------------------------
    def voice_create(self, job: VoiceCreateJob) -> dict[str, Any]:
        clip = job.ref_audio if job.ref_audio is not None else job.ref_audio_base64
        base64 = job.ref_audio is None
        reference = self._reference(
            VoiceSource("main", ref_audio=clip, ref_text=job.ref_text, is_base64=base64)
        )
        meta = self.voices.create(job.voice_id, reference, overwrite=job.overwrite)
        return {"voice": meta.public()}

    def voice_list(self, job: VoiceListJob) -> dict[str, Any]:
        metas, cursor = self.voices.list(job.limit, job.cursor)
        return {
            "voices": [m.public() for m in metas],
            "count": len(metas),
            "next_cursor": cursor,
        }

    def voice_get(self, job: VoiceGetJob) -> dict[str, Any]:
        return {"voice": self.voices.get(job.voice_id).public()}

    def voice_delete(self, job: VoiceDeleteJob) -> dict[str, Any]:
        self.voices.delete(job.voice_id)
        return {"deleted": job.voice_id}

    # -- info --------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "env_id": self.env.get("env_id"),
            "env": self.env,
            "model": getattr(self.models.engine, "model_name", "unknown"),
            "sample_rate": self.models.engine.sample_rate,
            # Where it runs and with which attention (flash_attn only when installed on a
            # GPU that can use it: docs/lockfile.md).
            "device": getattr(self.models.engine, "device", None),
            "attention": getattr(self.models.engine, "attention", None),
            "features": {
                "word_timings": self.models.aligner is not None,
                "word_timing_languages": list(self.settings.align_language_list),
                "transcription": self.models.transcriber is not None,
                "storage": "s3" if s.s3_bucket else "inline",
            },
            "notes": self.models.notes,
            "limits": {
                "max_text_chars": s.max_text_chars,
                "max_segments": s.max_segments,
                "max_ref_seconds": s.max_ref_seconds,
                "max_ref_bytes": s.max_ref_bytes,
                "max_inline_bytes": s.max_inline_bytes,
                "url_expiry_s": s.url_expiry_s,
            },
            "versions": package_versions(),
            "gpu": gpu_info(),
        }


def _clipped(samples: np.ndarray) -> np.ndarray:
    """The engine's last step on its audio: clipped to [-1, 1], float32."""
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def read_env_marker(settings: Settings) -> dict[str, Any]:
    """The bootstrap's ready.json (env id, features) when the worker runs from an env."""
    path = settings.env_marker
    if path is None or not path.is_file():
        return {"env_id": None}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {"env_id": None, "marker": f"unreadable: {path}"}
    if not isinstance(data, dict):
        return {"env_id": None}
    env_id = data.get("env_id") or data.get("id")
    keep = {k: v for k, v in data.items() if k in ("features", "versions", "created_at")}
    return {"env_id": env_id, **keep}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_info() -> dict[str, Any] | None:
    # Only when the engine already imported torch: `info` must stay cheap.
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    info: dict[str, Any] = {"cuda": getattr(torch.version, "cuda", None)}
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info(0)
            info.update(
                name=props.name,
                memory_total_mb=round(total / 2**20),
                memory_free_mb=round(free / 2**20),
                capability=f"{props.major}.{props.minor}",
            )
        else:
            info["name"] = None
    except Exception as exc:  # a broken driver must not break `info`
        info["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return info
