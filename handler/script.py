"""Multi-speaker scripts: which voice says what, planned before anything runs.

A tts job is a script of one or more segments. It comes as `segments`
(`[{text, voice | ref_audio, speed?, pause_s?, speaker?}]`) or as `text` with
F5-TTS's inline voice tags (its infer_cli splits on `[name]`: text before the first
tag is the main voice, each tag switches voice until the next one). Here a tag is
`[voice_id]` for a saved voice and `[main]` for the job's own reference; a tag must
start with a letter, so `[1]` stays text.

Everything here is pure: `plan_script` turns a job into `PlannedSegment`s (text,
voice source, speed, pause, seed, speaker label) and `join` lays rendered segments
end to end with their pauses. The job layer fetches, synthesizes and aligns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from handler.contracts import PreparedReference
from handler.engine.chunking import model_ref_text, utf8_len

if TYPE_CHECKING:
    from handler.schema import Segment, TtsJob

MAIN = "main"
VOICE_TAG = re.compile(r"\[([a-z][a-z0-9_-]{0,63})\]")


@dataclass(frozen=True)
class VoiceSource:
    """Where a segment's voice comes from: the job's reference, a saved voice or a clip."""

    kind: Literal["main", "voice", "clip"]
    voice: str | None = None
    ref_audio: str | None = None
    ref_text: str | None = None
    is_base64: bool = False  # ref_audio came as ref_audio_base64


@dataclass(frozen=True)
class PlannedSegment:
    index: int
    text: str
    source: VoiceSource
    speaker: str | None  # None for a plain single-voice job (its output stays as before)
    speed: float
    pause_after_s: float  # 0 after the last segment
    seed: int


def split_tags(text: str) -> list[tuple[str | None, str]]:
    """[(voice tag or None for the main voice, text)], empty pieces dropped."""
    pieces: list[tuple[str | None, str]] = []
    voice: str | None = None
    position = 0
    for match in VOICE_TAG.finditer(text):
        pieces.append((voice, text[position : match.start()]))
        voice = match.group(1)
        position = match.end()
    pieces.append((voice, text[position:]))
    return [(v, " ".join(t.split())) for v, t in pieces if t.strip()]


def has_tags(text: str | None) -> bool:
    return text is not None and VOICE_TAG.search(text) is not None


def count_segments(text: str | None, segments: list[Segment] | None) -> int:
    if segments is not None:
        return len(segments)
    return len(split_tags(text)) if has_tags(text) else 1


def needs_main_reference(text: str | None, segments: list[Segment] | None) -> bool:
    """Whether some segment speaks in the job's own reference voice."""
    if segments is not None:
        return any(s.voice is None and s.ref_audio is None for s in segments)
    if text is None or not has_tags(text):
        return True
    return any(voice in (None, MAIN) for voice, _ in split_tags(text))


def segment_seed(job_seed: int, index: int) -> int:
    """The first segment uses the job's seed; each later one a seed derived from it, so
    a script reproduces and appending a segment leaves the earlier ones unchanged."""
    if index == 0:
        return job_seed
    digest = hashlib.sha256(f"{job_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _main_source(job: TtsJob) -> VoiceSource:
    if job.voice is not None:
        return VoiceSource("voice", voice=job.voice)
    if job.ref_audio is not None:
        return VoiceSource("main", ref_audio=job.ref_audio, ref_text=job.ref_text)
    return VoiceSource(
        "main", ref_audio=job.ref_audio_base64, ref_text=job.ref_text, is_base64=True
    )


def _label(source: VoiceSource, index: int, given: str | None) -> str:
    if given:
        return given
    if source.kind == "voice":
        return str(source.voice)
    return MAIN if source.kind == "main" else f"segment{index + 1}"


def plan_script(job: TtsJob, seed: int) -> list[PlannedSegment]:
    """The segments of a validated job, in speaking order."""
    main = _main_source(job)
    turns: list[tuple[str, VoiceSource, Any]] = []
    multi = job.segments is not None or has_tags(job.text)
    if job.segments is not None:
        for segment in job.segments:
            if segment.voice is not None:
                source = VoiceSource("voice", voice=segment.voice)
            elif segment.ref_audio is not None:
                source = VoiceSource("clip", ref_audio=segment.ref_audio, ref_text=segment.ref_text)
            else:
                source = main
            turns.append((segment.text, source, segment))
    elif multi:
        for voice, text in split_tags(job.text or ""):
            source = main if voice in (None, MAIN) else VoiceSource("voice", voice=voice)
            turns.append((text, source, None))
    else:
        turns.append((job.text or "", main, None))

    planned = []
    for index, (text, source, segment) in enumerate(turns):
        last = index == len(turns) - 1
        pause = (
            segment.pause_s if segment is not None and segment.pause_s is not None else job.pause_s
        )
        speed = segment.speed if segment is not None and segment.speed is not None else job.speed
        label = _label(source, index, segment.speaker if segment is not None else None)
        planned.append(
            PlannedSegment(
                index=index,
                text=text,
                source=source,
                speaker=label if multi else None,
                speed=speed,
                pause_after_s=0.0 if last else pause,
                seed=segment_seed(seed, index),
            )
        )
    return planned


def estimated_seconds(reference: PreparedReference, text: str, speed: float) -> float:
    """How long F5-TTS makes `text`, at least: it gives the generated audio the
    reference's seconds per UTF-8 byte of the transcript as the model reads it
    (`model_ref_text`: closing punctuation and spaces added, which matters for a short
    one), divided by the speed. Runs of whitespace count as one space, since the
    chunks drop the whitespace between them."""
    ref_bytes = utf8_len(model_ref_text(reference.text))
    return reference.duration_s / ref_bytes * utf8_len(" ".join(text.split())) / speed


def join(
    waves: list[np.ndarray], pauses_after_s: list[float], rate: int
) -> tuple[np.ndarray, list[int]]:
    """One track: each wave followed by its pause in silence; returns the track and the
    sample offset where each wave starts."""
    parts: list[np.ndarray] = []
    starts: list[int] = []
    position = 0
    for wave, pause in zip(waves, pauses_after_s, strict=True):
        starts.append(position)
        silence = np.zeros(round(pause * rate), dtype=np.float32)
        parts += [np.asarray(wave, dtype=np.float32).reshape(-1), silence]
        position += wave.size + silence.size
    track = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return track, starts
