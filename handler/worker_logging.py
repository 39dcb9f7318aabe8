"""What the worker's logs may hold: no presigned URL, credential or audio, at any level.

runpod-python logs every job's output (`Handler output: ...`) and, under --test_input,
the job itself at DEBUG, which is its default level (`RUNPOD_LOG_LEVEL`, read once
when `runpod` is first imported); --test_input also prints the result at INFO. An
output holds presigned URLs (valid for F5TTS_URL_EXPIRY_S) and, delivered inline,
the audio itself; an input can hold a base64 reference clip. So, before runpod is
imported, the SDK's level defaults to INFO, and every line the SDK or our own
logging writes goes through `redact` whatever the level.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping

SDK_DEFAULT_LEVEL = "INFO"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_URL_QUERY = re.compile(r"""((?:https?|s3)://[^\s'"?<>]+)\?[^\s'"<>]*""")
_SIGNED_PARAM = re.compile(
    r"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId|sig)=)[^&\s'\"]+"
)
_SECRET_VALUE = re.compile(
    r"""((?:aws_secret_access_key|aws_session_token|secret|password|token|authorization)"""
    r"""['"]?\s*[:=]\s*['"]?(?:bearer\s+)?)[^\s'",}]+""",
    re.IGNORECASE,
)
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# Audio as base64: far longer runs of the alphabet than any id, digest or word.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{120,}={0,2}")


def redact(text: str) -> str:
    """`text` with URL query strings, signatures, secrets and base64 blobs cut out."""
    text = _URL_QUERY.sub(r"\1?<query redacted>", text)
    text = _SIGNED_PARAM.sub(r"\1<redacted>", text)
    text = _SECRET_VALUE.sub(r"\1<redacted>", text)
    text = _ACCESS_KEY_ID.sub("<access key id>", text)
    return _BASE64_RUN.sub(lambda m: f"<{len(m.group(0))} base64 characters>", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _redact_sdk_logger(env: MutableMapping[str, str]) -> None:
    from runpod.serverless.modules import rp_logger

    logger_class = rp_logger.RunPodLogger
    if getattr(logger_class.log, "redacts", False):
        return
    original = logger_class.log

    def log(self, message, message_level="INFO", job_id=None):
        levels = rp_logger.LOG_LEVELS
        if self.level == "NOTSET" or (
            message_level != "TIP" and levels.index(self.level) > levels.index(message_level)
        ):
            return None  # not written: a streamed piece's megabyte is not searched for nothing
        return original(self, redact(str(message)), message_level, job_id)

    log.redacts = True  # type: ignore[attr-defined]
    logger_class.log = log  # type: ignore[method-assign]
    # The level is a class attribute computed at import: follow the variable set above
    # even when runpod was imported before this ran.
    level = env.get("RUNPOD_LOG_LEVEL") or env.get("RUNPOD_DEBUG_LEVEL")
    logger_class.level = rp_logger._validate_log_level(level or SDK_DEFAULT_LEVEL)


def configure_logging(environ: MutableMapping[str, str] | None = None) -> None:
    """Our log format and level (F5TTS_LOG_LEVEL), the SDK's level (RUNPOD_LOG_LEVEL,
    default INFO), and redaction of both."""
    env = os.environ if environ is None else environ
    if not env.get("RUNPOD_LOG_LEVEL") and not env.get("RUNPOD_DEBUG_LEVEL"):
        env["RUNPOD_LOG_LEVEL"] = SDK_DEFAULT_LEVEL
    logging.basicConfig(level=env.get("F5TTS_LOG_LEVEL", "INFO"), format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    _redact_sdk_logger(env)
