"""The job input: one pydantic model per operation, defaults written once here.

This is the product's API (documented in docs/api.md). `parse_request` first maps the
shapes other clients send (the earlier system's payloads, OpenAI's speech request;
handler/shapes.py) onto these models, then validates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from handler import script
from handler.errors import UserError, shown, validation_sentences
from handler.shapes import LEGACY_ALIASES, Shape, read_request

__all__ = ["LEGACY_ALIASES", "OPS", "ParsedRequest", "TtsJob", "parse_job", "parse_request"]

VOICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
AudioFormat = Literal["wav", "flac", "mp3", "ogg", "aac", "pcm"]
SubtitleFormat = Literal["srt", "vtt", "ass", "json", "csv"]
SUBTITLE_FORMATS: tuple[str, ...] = ("srt", "vtt", "ass", "json", "csv")
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
LANGUAGE_PATTERN = r"^[a-z]{2,3}$"

VoiceId = Annotated[str, Field(pattern=VOICE_ID_PATTERN)]


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Segment(_Job):
    """One speaker's turn in a multi-speaker script."""

    text: str = Field(min_length=1, description="what this speaker says")
    voice: VoiceId | None = Field(None, description="a saved voice; else the job's reference")
    ref_audio: str | None = Field(None, description="this turn's own reference clip")
    ref_text: str | None = Field(None, description="what is said in this turn's ref_audio")
    speaker: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$",
        description="label in words and subtitles; the voice id when absent",
    )
    speed: float | None = Field(None, ge=0.3, le=3.0, description="the job's speed when absent")
    pause_s: float | None = Field(
        None, ge=0.0, le=10.0, description="silence after this turn; the job's pause_s when absent"
    )

    @model_validator(mode="after")
    def _one_voice(self) -> Segment:
        if self.voice is not None and self.ref_audio is not None:
            raise ValueError("a segment takes voice or ref_audio, not both")
        if self.ref_text is not None and self.ref_audio is None:
            raise ValueError("a segment's ref_text belongs to its ref_audio")
        return self


class TtsJob(_Job):
    """Speech from `text` (or `segments`) in the voice of a reference clip or a saved voice."""

    op: Literal["tts"] = "tts"
    text: str | None = Field(
        None, min_length=1, description="what to say; [voice_id] tags switch speakers"
    )
    segments: list[Segment] | None = Field(
        None, min_length=1, description="a multi-speaker script, instead of text"
    )
    pause_s: float = Field(0.3, ge=0.0, le=10.0, description="silence between segments")
    voice: VoiceId | None = Field(None, description="id of a saved voice (voice.create)")
    ref_audio: str | None = Field(
        None, description="reference clip: https:// URL, s3://bucket/key, data: URI or base64"
    )
    ref_audio_base64: str | None = Field(None, description="reference clip as plain base64")
    ref_text: str | None = Field(
        None, description="what is said in the reference; transcribed when absent"
    )
    language: str | None = Field(
        None, pattern=LANGUAGE_PATTERN, description="language of the text, for word timings"
    )
    speed: float = Field(1.0, ge=0.3, le=3.0)
    nfe_step: int = Field(32, ge=4, le=128, description="denoising steps: quality vs speed")
    quality: Literal["fast", "balanced", "best"] | None = Field(
        None, description="speed preset: NFE 7 / 16 / 32 (handler/engine/presets.py)"
    )
    cfg_strength: float = Field(2.0, ge=0.0, le=10.0)
    sway_sampling_coef: float = Field(-1.0, ge=-1.0, le=1.0)
    cross_fade_duration: float = Field(0.15, ge=0.0, le=1.0)
    remove_silence: bool = False
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="random when absent")
    format: AudioFormat = "wav"
    sample_rate: int | None = Field(
        None, ge=8000, le=48000, description="output rate; the engine's (24000) when absent"
    )
    normalize: bool = Field(False, description="bring the output to loudness_lufs (EBU R128)")
    loudness_lufs: float = Field(-16.0, ge=-40.0, le=-5.0, description="target of normalize")
    subtitles: list[SubtitleFormat] = Field(default_factory=list)
    words: bool = Field(False, description="return the word timings in the output")
    words_per_cue: int = Field(7, ge=1, le=50)
    karaoke: bool = Field(False, description="ASS: highlight each word with {\\k} tags")
    delivery: Literal["auto", "url", "base64"] = "auto"
    stream: bool = Field(
        False, description="send the audio in pieces as it is made (F5TTS_STREAMING workers)"
    )

    @field_validator("subtitles", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value.lower()) if v]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(dict.fromkeys(v.lower() for v in value))
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format_alias(cls, value: Any) -> Any:
        return "ogg" if isinstance(value, str) and value.lower() == "opus" else value

    @model_validator(mode="after")
    def _script_limits(self, info: ValidationInfo) -> TtsJob:
        context = info.context or {}
        if (self.text is None) == (self.segments is None):
            raise ValueError("give text or segments (a multi-speaker script), exactly one of them")
        texts = [self.text] if self.text is not None else [s.text for s in self.segments or []]
        total = sum(len(t) for t in texts)
        limit = context.get("max_text_chars")
        if limit and total > limit:
            raise ValueError(
                f"text is {total} characters; the limit is {limit} "
                "(F5TTS_MAX_TEXT_CHARS): split it into several jobs"
            )
        planned = script.count_segments(self.text, self.segments)
        if planned == 0:
            raise ValueError(
                "text holds only voice tags; put the words to speak after each tag, "
                "such as [anna] Hello"
            )
        max_segments = context.get("max_segments")
        if max_segments and planned > max_segments:
            raise ValueError(
                f"the script has {planned} segments; the limit is {max_segments} "
                "(F5TTS_MAX_SEGMENTS): split it into several jobs"
            )
        return self

    @model_validator(mode="after")
    def _one_reference(self) -> TtsJob:
        given = [
            n for n in ("voice", "ref_audio", "ref_audio_base64") if getattr(self, n) is not None
        ]
        needed = script.needs_main_reference(self.text, self.segments)
        if len(given) > 1 or (needed and not given):
            raise ValueError(
                "give exactly one of voice, ref_audio or ref_audio_base64"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.voice is not None and self.ref_text is not None:
            raise ValueError("ref_text belongs to a reference clip; a saved voice has its own")
        if self.format == "ogg" and self.sample_rate not in (None, *OPUS_RATES):
            raise ValueError(
                f"ogg (Opus) supports sample rates {', '.join(map(str, OPUS_RATES))}; "
                f"choose one of them instead of {self.sample_rate}"
            )
        return self

    @property
    def wants_words(self) -> bool:
        return bool(self.subtitles) or self.words


class VoiceCreateJob(_Job):
    """Save a reference clip (prepared and transcribed once) under an id."""

    op: Literal["voice.create"]
    voice_id: VoiceId
    ref_audio: str | None = None
    ref_audio_base64: str | None = None
    ref_text: str | None = None
    overwrite: bool = False

    @model_validator(mode="after")
    def _one_reference(self) -> VoiceCreateJob:
        if (self.ref_audio is None) == (self.ref_audio_base64 is None):
            raise ValueError("give exactly one of ref_audio or ref_audio_base64")
        return self


class VoiceListJob(_Job):
    op: Literal["voice.list"]
    limit: int = Field(50, ge=1, le=200, description="voices per page (one read each)")
    cursor: str | None = Field(None, max_length=2048, description="next_cursor of a previous page")


class VoiceGetJob(_Job):
    op: Literal["voice.get"]
    voice_id: VoiceId


class VoiceDeleteJob(_Job):
    op: Literal["voice.delete"]
    voice_id: VoiceId


class InfoJob(_Job):
    op: Literal["info"]


Job = Annotated[
    TtsJob | VoiceCreateJob | VoiceListJob | VoiceGetJob | VoiceDeleteJob | InfoJob,
    Field(discriminator="op"),
]
_JOB = TypeAdapter(Job)
OPS = ("tts", "voice.create", "voice.list", "voice.get", "voice.delete", "info")


@dataclass(frozen=True)
class ParsedRequest:
    job: Any  # one of the *Job models
    shape: Shape  # which client shape it came in (handler/shapes.py)


def parse_request(
    payload: Any, *, max_text_chars: int | None = None, max_segments: int | None = None
) -> ParsedRequest:
    """Validates a job's `input`; raises UserError with one sentence per problem."""
    data, shape = read_request(payload)
    data.setdefault("op", "tts")
    if data["op"] not in OPS:
        raise UserError(f"Unknown op {shown(data['op'], 40)}; use one of {', '.join(OPS)}")
    context = {"max_text_chars": max_text_chars, "max_segments": max_segments}
    try:
        return ParsedRequest(_JOB.validate_python(data, context=context), shape)
    except ValidationError as exc:
        raise UserError(validation_sentences(exc)) from None


def parse_job(payload: Any, **limits: Any) -> Any:
    """The validated job of `payload` (any shape)."""
    return parse_request(payload, **limits).job
