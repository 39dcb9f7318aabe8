"""The job input: one pydantic model per operation, defaults written once here.

This is the product's API (documented in docs/api.md). `parse_job` also accepts the
earlier system's payloads (`endpoint`, `local_voice`, `return_word_timings`, ...)
by rewriting them to the current names before validation (`LEGACY_ALIASES`).
"""

from __future__ import annotations

import re
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

from handler.errors import UserError, validation_sentences

VOICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
AudioFormat = Literal["wav", "flac", "mp3", "ogg"]
SubtitleFormat = Literal["srt", "vtt", "ass", "json", "csv"]
SUBTITLE_FORMATS: tuple[str, ...] = ("srt", "vtt", "ass", "json", "csv")
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

VoiceId = Annotated[str, Field(pattern=VOICE_ID_PATTERN)]

# earlier name -> what it became (documented in docs/api.md's alias table)
LEGACY_ALIASES: dict[str, str] = {
    "endpoint": "op (tts, upload -> voice.create, list_voices -> voice.list)",
    "local_voice": "voice (a library id) or ref_audio (when it is a URL)",
    "return_word_timings": "words",
    "timing_format": "subtitles",
    "voice_name": "voice_id",
    "voice_file_url": "ref_audio",
    "timing_method": "(only `whisperx` is accepted; ignored)",
}
LEGACY_ENDPOINTS = {"tts": "tts", "upload": "voice.create", "list_voices": "voice.list"}


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TtsJob(_Job):
    """Speech from `text` in the voice of a reference clip or a saved voice."""

    op: Literal["tts"] = "tts"
    text: str = Field(min_length=1, description="what to say")
    voice: VoiceId | None = Field(None, description="id of a saved voice (voice.create)")
    ref_audio: str | None = Field(
        None, description="reference clip: https:// URL, s3://bucket/key or data: URI"
    )
    ref_audio_base64: str | None = Field(None, description="reference clip as plain base64")
    ref_text: str | None = Field(
        None, description="what is said in the reference; transcribed when absent"
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
    subtitles: list[SubtitleFormat] = Field(default_factory=list)
    words: bool = Field(False, description="return the word timings in the output")
    words_per_cue: int = Field(7, ge=1, le=50)
    karaoke: bool = Field(False, description="ASS: highlight each word with {\\k} tags")
    delivery: Literal["auto", "url", "base64"] = "auto"

    @field_validator("text")
    @classmethod
    def _text_not_too_long(cls, text: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_text_chars")
        if limit and len(text) > limit:
            raise ValueError(
                f"text is {len(text)} characters; the limit is {limit} "
                "(F5TTS_MAX_TEXT_CHARS): split it into several jobs"
            )
        return text

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
    def _one_reference(self) -> TtsJob:
        given = [
            n for n in ("voice", "ref_audio", "ref_audio_base64") if getattr(self, n) is not None
        ]
        if len(given) != 1:
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


def _lax_bool(value: Any) -> Any:
    """ "true", 1, "no"... as pydantic reads a bool field, so the legacy rules below see
    what the `words` field will; anything else is left for validation to refuse."""
    try:
        return TypeAdapter(bool).validate_python(value)
    except ValidationError:
        return value


def rewrite_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    """Maps the earlier system's field names onto the current ones (pure)."""
    data = dict(payload)
    if "endpoint" in data:
        endpoint = data.pop("endpoint")
        if not isinstance(endpoint, str):
            raise UserError(
                "Field endpoint must be a string such as 'tts'; better, use op (see docs/api.md)"
            )
        if endpoint == "download":
            raise UserError(
                "The download operation was removed: tts returns presigned URLs (or base64 "
                "without a bucket), so fetch the file from the url in its output"
            )
        if "op" not in data:
            data["op"] = LEGACY_ENDPOINTS.get(endpoint, endpoint)
    op = data.get("op", "tts")
    if "local_voice" in data:
        local_voice = data.pop("local_voice")
        if isinstance(local_voice, str) and "://" in local_voice:
            data.setdefault("ref_audio", local_voice)
        else:
            data.setdefault("voice", _legacy_voice_id(local_voice))
    if "return_word_timings" in data:
        wanted = _lax_bool(data.pop("return_word_timings"))
        data.setdefault("words", wanted)
        if wanted is False:
            # The earlier worker made timing files only when asked; its clients often
            # send timing_format regardless, which must not start an alignment.
            data.pop("timing_format", None)
        if wanted is True and "subtitles" not in data and "timing_format" not in data:
            data["subtitles"] = ["srt"]  # the earlier system's default timing file
    if "timing_format" in data:
        data.setdefault("subtitles", data.pop("timing_format"))
    if "timing_method" in data:
        method = data.pop("timing_method")
        if method not in (None, "whisperx"):
            raise UserError(
                f"timing_method {method!r} is not available; word timings come from "
                "whisperx alignment, so drop timing_method or set it to 'whisperx'"
            )
    if op == "voice.create":
        if "voice_name" in data:  # named like local_voice, so tts finds it under that name
            data.setdefault("voice_id", _legacy_voice_id(data.pop("voice_name")))
        if "voice_file_url" in data:
            data.setdefault("ref_audio", data.pop("voice_file_url"))
    return data


def _legacy_voice_id(name: Any) -> Any:
    """The earlier worker's voice name or key as a voice id: "voices/Narrator.wav" ->
    "narrator" (anything else is left for validation to refuse)."""
    if not isinstance(name, str):
        return name
    name = name.rsplit("/", 1)[-1].lower()
    return re.sub(r"\.(wav|mp3|flac|ogg|m4a)$", "", name)


def parse_job(payload: Any, *, max_text_chars: int | None = None) -> Any:
    """Validates a job's `input`; raises UserError with one sentence per problem."""
    if not isinstance(payload, dict):
        raise UserError(
            f"The job input must be a JSON object, got {type(payload).__name__}; "
            'send {"input": {"text": ..., "ref_audio": ...}}'
        )
    data = rewrite_legacy(payload)
    data.setdefault("op", "tts")
    if data["op"] not in OPS:
        raise UserError(f"Unknown op {str(data['op'])[:40]!r}; use one of {', '.join(OPS)}")
    try:
        return _JOB.validate_python(data, context={"max_text_chars": max_text_chars})
    except ValidationError as exc:
        raise UserError(validation_sentences(exc)) from None
