"""What each operation does, given models that are already loaded.

`JobRunner.run` validates the input (schema), dispatches on `op` and returns the
output dict; failures are raised (UserError and friends) and turned into RunPod's
error shape by the worker. Nothing here knows about RunPod.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from handler import audio, subtitles
from handler.contracts import (
    Aligner,
    PreparedReference,
    ProgressCallback,
    SpeechEngine,
    SynthesisParams,
    Transcriber,
)
from handler.engine.presets import resolve_nfe
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
    parse_job,
)
from handler.settings import Settings
from handler.storage import Artifact, Delivery, ObjectStore

VERSIONED_PACKAGES = ("f5-tts", "torch", "torchaudio", "whisperx", "transformers", "runpod")


@dataclass
class Models:
    """What the worker loaded once at start."""

    engine: SpeechEngine
    aligner: Aligner | None = None
    transcriber: Transcriber | None = None
    notes: list[str] = field(default_factory=list)  # optional parts that did not load


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

    def run(
        self, job_id: str, payload: Any, on_progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        job = parse_job(payload, max_text_chars=self.settings.max_text_chars)
        match job:
            case TtsJob():
                return self.tts(job_id, job, on_progress)
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
        self, job_id: str, job: TtsJob, on_progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        wants_words = bool(job.subtitles) or job.words
        if wants_words and self.models.aligner is None:
            raise UserError(
                "Word timings (subtitles/words) need the whisperx aligner, which is not "
                "available on this worker; drop subtitles and words, or deploy the "
                "environment with the alignment feature"
            )
        nfe_step, quality = resolve_nfe(
            job.quality, job.nfe_step, nfe_step_sent="nfe_step" in job.model_fields_set
        )
        clock = _Clock()
        reference = self._reference(job.voice, job.ref_audio, job.ref_audio_base64, job.ref_text)
        clock.lap("ref_ms")

        seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        params = SynthesisParams(
            speed=job.speed,
            nfe_step=nfe_step,
            cfg_strength=job.cfg_strength,
            sway_sampling_coef=job.sway_sampling_coef,
            cross_fade_duration=job.cross_fade_duration,
            seed=seed,
            remove_silence=job.remove_silence,
        )
        engine = self.models.engine
        samples = np.asarray(
            engine.synthesize(reference, job.text, params, on_progress), dtype=np.float32
        ).reshape(-1)
        if samples.size == 0:
            raise UserError(
                "The engine produced no audio for this text; check that text has words "
                "the model can read"
            )
        rate = engine.sample_rate
        duration = samples.size / rate
        clock.lap("synth_ms")

        words: list[subtitles.Word] = []
        if wants_words and self.models.aligner is not None:
            words = subtitles.clean_words(
                self.models.aligner.align(samples, rate, job.text), duration
            )
        clock.lap("align_ms")

        encoded = audio.encode(samples, rate, job.format, job.sample_rate)
        artifacts = [Artifact(f"audio.{job.format}", encoded.data, encoded.content_type)]
        cues = subtitles.group_cues(words, job.words_per_cue)
        for fmt in job.subtitles:
            text = subtitles.render(fmt, words, cues, karaoke=job.karaoke)
            data = text.encode("utf-8-sig" if fmt == "ass" else "utf-8")
            artifacts.append(
                Artifact(f"subtitles.{fmt}", data, subtitles.CONTENT_TYPES[fmt], is_text=True)
            )
        clock.lap("encode_ms")

        delivered = self.delivery.deliver(job_id, artifacts, job.delivery)
        clock.lap("upload_ms")
        clock.ms["total_ms"] = round((time.perf_counter() - clock.start) * 1000, 1)
        clock.ms["rtf"] = round(clock.ms["synth_ms"] / 1000 / duration, 4)

        out: dict[str, Any] = {
            "audio": {
                **delivered[artifacts[0].name],
                "format": job.format,
                "content_type": encoded.content_type,
                "sample_rate": encoded.sample_rate,
                "duration_s": round(duration, 3),
                "bytes": len(encoded.data),
                "sha256": hashlib.sha256(encoded.data).hexdigest(),
            },
            "seed": seed,
            "nfe_step": nfe_step,
            "quality": quality,
            "timings": clock.ms,
            "env_id": self.env.get("env_id"),
        }
        if job.subtitles:
            out["subtitles"] = {fmt: delivered[f"subtitles.{fmt}"] for fmt in job.subtitles}
        if job.words:
            out["words"] = [subtitles.word_dict(w) for w in words]
        return out

    def _reference(
        self,
        voice: str | None,
        ref_audio: str | None,
        ref_audio_base64: str | None,
        ref_text: str | None,
    ) -> PreparedReference:
        if voice is not None:
            return self.voices.reference(voice)
        if ref_audio is not None:
            data = self.fetcher.fetch(ref_audio)
        else:
            data = self.fetcher.decode_base64(ref_audio_base64 or "")
        return self.preparer.prepare(data, ref_text)

    # -- voices ------------------------------------------------------------------
    def voice_create(self, job: VoiceCreateJob) -> dict[str, Any]:
        reference = self._reference(None, job.ref_audio, job.ref_audio_base64, job.ref_text)
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
            "features": {
                "word_timings": self.models.aligner is not None,
                "transcription": self.models.transcriber is not None,
                "storage": "s3" if s.s3_bucket else "inline",
            },
            "notes": self.models.notes,
            "limits": {
                "max_text_chars": s.max_text_chars,
                "max_ref_seconds": s.max_ref_seconds,
                "max_ref_bytes": s.max_ref_bytes,
                "max_inline_bytes": s.max_inline_bytes,
                "url_expiry_s": s.url_expiry_s,
            },
            "versions": package_versions(),
            "gpu": gpu_info(),
        }


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
