"""Failures as the user sees them: one sentence naming the cause and the fix.

RunPod reports a job as FAILED only when the handler's result carries a top-level
`error` *string* (a dict or list there yields an empty COMPLETED job), and an
escaped exception becomes a JSON blob with a traceback. So every failure the job
layer knows about is turned into one sentence here, and the worker returns it as
`{"error": sentence}`.
"""

from __future__ import annotations

import re

from pydantic import ValidationError


class UserError(Exception):
    """A failure the caller (or the operator) can fix; its message is the sentence."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class StorageError(UserError):
    """Object storage failed after retries; nothing was reported as stored."""


class FatalDeviceError(Exception):
    """The GPU is in a state only a new process can fix (RunPod `refresh_worker`)."""


# Substrings of CUDA failures after which the CUDA context is unusable.
_FATAL_CUDA_MARKERS = (
    "cuda error: an illegal memory access",
    "device-side assert",
    "cuda error: unspecified launch failure",
    "cuda error: misaligned address",
    "cublas_status_execution_failed",
    "cudnn_status_execution_failed",
    "cuda error: uncorrectable ecc",
    "cuda error: device not ready",
    "nccl error",
    "cuda driver error",
)


def is_fatal_device_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _FATAL_CUDA_MARKERS)


def is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


# Longest error a caller sees; each echoed value is cut to SHOWN_CHARS before that.
MAX_ERROR_CHARS = 500
SHOWN_CHARS = 80
MAX_FIELD_SENTENCES = 5
# A first word made only of lower-case letters is prose; anything else (timing_method,
# s3://..., ffmpeg's own words) is an identifier and keeps its case.
_PROSE_WORD = re.compile(r"[a-z]+[,:;]?")


def cut(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as text of at most about `limit` characters (a key, a host name)."""
    text = value if isinstance(value, str) else str(value)
    return text[:limit] + "..." if len(text) > limit else text


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as it is echoed in an error: quoted, cut to `limit` characters."""
    return repr(cut(value, limit))


def sentence(text: str) -> str:
    """Normalises a message to one bounded sentence: single line, a capital first
    letter unless it starts with an identifier or URL, a full stop."""
    text = " ".join(str(text).split()).strip()
    if not text:
        return "The job failed for an unknown reason; see the worker log."
    first = text.split(" ", 1)[0]
    if _PROSE_WORD.fullmatch(first):
        text = text[0].upper() + text[1:]
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3].rstrip() + "..."
    return text if text.endswith((".", "!", "?")) else text + "."


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS)]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "input"


# Discriminated-union tags pydantic puts in error locations; users never typed them.
_UNION_TAGS = {
    "tts",
    "voice.create",
    "voice.list",
    "voice.get",
    "voice.delete",
    "info",
}


def validation_sentences(exc: ValidationError) -> str:
    """One sentence per invalid field, e.g. `Field speed: input should be <= 3 (got 9).`,
    at most MAX_FIELD_SENTENCES of them (a job with 2000 unknown fields gets five)."""
    out: list[str] = []
    for err in exc.errors(include_url=False):
        where = _location(tuple(err.get("loc", ())))
        if len(where) > SHOWN_CHARS:
            where = where[:SHOWN_CHARS] + "..."
        msg = str(err.get("msg", "is invalid")).rstrip(".")
        if msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        got = err.get("input")
        shown_value = ""
        if err.get("type") not in ("missing", "extra_forbidden") and isinstance(
            got, str | int | float | bool
        ):
            shown_value = f" (got {shown(got, 40) if isinstance(got, str) else repr(got)[:40]})"
        if err.get("type") == "string_pattern_mismatch" and where.endswith(("voice", "voice_id")):
            msg = "must be 1-64 of a-z, 0-9, '_' or '-', starting with a letter or digit"
        if err.get("type") == "extra_forbidden":
            msg = "is not a known field; remove it or check its spelling (see docs/api.md)"
            out.append(sentence(f"Field {where} {msg}"))
            continue
        if where == "input":  # a rule across fields: the message says which
            out.append(sentence(f"Job input: {msg}"))
            continue
        out.append(sentence(f"Field {where}: {msg[:1].lower()}{msg[1:]}{shown_value}"))
    unique = list(dict.fromkeys(out))
    if len(unique) > MAX_FIELD_SENTENCES:
        more = len(unique) - MAX_FIELD_SENTENCES
        unique = [*unique[:MAX_FIELD_SENTENCES], f"And {more} more problems like these."]
    return " ".join(unique) or sentence("The job input is invalid")


def error_result(exc: BaseException) -> dict[str, object]:
    """The handler's return value for a failed job (`error` is always a string)."""
    if isinstance(exc, UserError):
        return {"error": sentence(exc.sentence)}
    if isinstance(exc, FatalDeviceError) or is_fatal_device_error(exc):
        return {
            "error": sentence(
                f"The GPU failed during the job ({str(exc)[:160]}); this worker is being "
                "replaced, resubmit the job"
            ),
            "refresh_worker": True,
        }
    if is_out_of_memory(exc):
        return {
            "error": sentence(
                "The GPU ran out of memory during the job; send shorter text or a shorter "
                "reference, or use a GPU with more memory"
            )
        }
    return {
        "error": sentence(
            f"Internal error {type(exc).__name__}: {str(exc)[:200]} (details in the worker "
            "log); resubmit the job, and report it if it happens again"
        )
    }
