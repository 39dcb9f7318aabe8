"""The request shapes other clients send, mapped onto the job API, and back.

Three shapes reach the worker (docs/api.md):

* native: `{"op": ..., "text": ...}`, the job API itself;
* legacy: the earlier worker's payloads (`endpoint`, `local_voice`, ...), whose clients
  also read the earlier output fields (`audio_url`, `duration`, ...), added here;
* openai: OpenAI's speech request (`model`, `input`, `voice`, `response_format`,
  `speed`), also wrapped the way RunPod's OpenAI-compatible route wraps requests
  (`{"openai_route": "/v1/audio/speech", "openai_input": {...}}`).

`read_request` is pure: it returns the native payload and the shape, or raises
UserError with one sentence; `shape_output` adds what the shape's clients read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from handler.errors import UserError, shown

Shape = Literal["native", "legacy", "openai"]

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
LEGACY_STATUS = "completed"

OPENAI_SPEECH_ROUTES = ("/v1/audio/speech", "/audio/speech")
# OpenAI's response_format -> ours; mp3 is OpenAI's default.
OPENAI_FORMATS = {
    "mp3": "mp3",
    "opus": "ogg",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm",
}
OPENAI_DEFAULT_FORMAT = "mp3"


def read_request(payload: Any) -> tuple[dict[str, Any], Shape]:
    """(native payload, shape) of a job's `input`."""
    if not isinstance(payload, dict):
        raise UserError(
            f"The job input must be a JSON object, got {type(payload).__name__}; "
            'send {"input": {"text": ..., "ref_audio": ...}}'
        )
    if "openai_route" in payload or "openai_input" in payload:
        return from_openai(unwrap_openai_route(payload)), "openai"
    if "input" in payload:
        return from_openai(payload), "openai"
    if any(name in payload for name in LEGACY_ALIASES):
        return rewrite_legacy(payload), "legacy"
    return dict(payload), "native"


def unwrap_openai_route(payload: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI request body inside RunPod's OpenAI-route wrapping."""
    route = payload.get("openai_route")
    body = payload.get("openai_input")
    others = sorted(set(payload) - {"openai_route", "openai_input"})
    if others:
        raise UserError(
            f"A request on the OpenAI route carries only openai_route and openai_input, not "
            f"{shown(', '.join(others))}; put the other fields inside openai_input"
        )
    if not isinstance(route, str) or route not in OPENAI_SPEECH_ROUTES:
        raise UserError(
            f"This worker serves only /v1/audio/speech on the OpenAI route, not {shown(route)}; "
            "call client.audio.speech.create"
        )
    if not isinstance(body, dict):
        raise UserError(
            "openai_input must be the JSON body of the speech request "
            '({"model", "input", "voice", ...}); RunPod puts it there on the OpenAI route'
        )
    return body


def from_openai(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's speech request as a tts job; the job API's own fields may come along."""
    data = dict(body)
    text = data.pop("input", None)
    if not isinstance(text, str):
        raise UserError(
            "Field input must be the text to speak (OpenAI's speech request); "
            'send {"input": "Hello", "voice": "<saved voice id>", ...}'
        )
    if "text" in data:
        raise UserError("Give the text once: input (OpenAI's name) or text, not both")
    data["text"] = text
    if "op" in data and data["op"] != "tts":
        raise UserError(f"An OpenAI speech request is a tts job, not op {shown(data['op'])}")
    data["op"] = "tts"
    voice = data.get("voice")
    if isinstance(voice, dict):  # the client's custom voice object, {"id": "voice_1234"}
        if set(voice) != {"id"} or not isinstance(voice["id"], str):
            raise UserError(
                'Field voice must be a saved voice id, as a string or as {"id": "<voice id>"}'
            )
        data["voice"] = voice["id"]
    model = data.pop("model", None)
    if model is not None and not isinstance(model, str):
        raise UserError(
            "Field model must be a string such as 'f5-tts' (it is accepted and ignored)"
        )
    if "response_format" in data:
        if "format" in data:
            raise UserError("Give the audio format once: response_format or format, not both")
        fmt = data.pop("response_format")
        if not isinstance(fmt, str) or fmt not in OPENAI_FORMATS:
            raise UserError(
                f"response_format {shown(fmt)} is not offered; use one of "
                f"{', '.join(OPENAI_FORMATS)}"
            )
        data["format"] = OPENAI_FORMATS[fmt]
    data.setdefault("format", OPENAI_DEFAULT_FORMAT)
    if data.pop("instructions", None) not in (None, ""):
        raise UserError(
            "instructions (OpenAI's style prompt) is not supported: F5-TTS takes the style "
            "from the reference voice, so drop instructions or record a voice in that style"
        )
    stream_format = data.pop("stream_format", "audio")
    if stream_format != "audio":
        raise UserError(
            f"stream_format {shown(stream_format)} is not offered; audio comes as one file, or "
            "in pieces with stream: true on a streaming worker (docs/api.md, Streaming), so "
            "drop stream_format or set it to 'audio'"
        )
    return data


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
        op = LEGACY_ENDPOINTS.get(endpoint, endpoint)
        if "op" in data and data["op"] != op:
            raise UserError(
                f"endpoint {shown(endpoint, 40)} and op {shown(data['op'], 40)} name different "
                "operations; send only op (endpoint is the earlier name of it)"
            )
        data["op"] = op
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
                f"timing_method {shown(method, 40)} is not available; word timings come from "
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


def shape_output(shape: Shape, op: str, out: dict[str, Any], job_id: str, text: str | None) -> dict:
    """`out` plus the fields the shape's clients read (only legacy clients need more)."""
    if shape != "legacy":
        return out
    shaped = {**out, "status": LEGACY_STATUS, "job_id": job_id}
    if op == "tts":
        shaped["audio_url"] = out["audio"].get("url")
        shaped["duration"] = out["audio"]["duration_s"]
        shaped["text"] = text
        if "subtitles" in out:
            shaped["timing_files"] = {fmt: f.get("url") for fmt, f in out["subtitles"].items()}
        if "words" in out:
            shaped["word_count"] = len(out["words"])
        if out.get("words"):
            scores = [w["score"] for w in out["words"] if w.get("score") is not None]
            shaped["timing_confidence"] = round(sum(scores) / len(scores), 3) if scores else None
    elif op == "voice.list":
        shaped["voices"] = [legacy_voice(v) for v in out["voices"]]
    elif op == "voice.create":
        shaped["message"] = f"Voice {out['voice']['voice_id']!r} saved"
        shaped["voice"] = legacy_voice(out["voice"])
    return shaped


def legacy_voice(voice: dict[str, Any]) -> dict[str, Any]:
    return {
        **voice,
        "name": voice["voice_id"],
        "size": voice["bytes"],
        "last_modified": voice["created_at"],
    }
