"""Object storage (any S3-compatible store through boto3) and output delivery.

Outputs go to `outputs/<yyyy-mm-dd>/<job id>/audio.<ext>` with subtitles beside
them and are returned as presigned GET URLs. Each call is retried on 5xx and
timeouts (botocore's own retries, then ours with backoff), and an upload counts as
done only after a HEAD shows the object with the right size. Without a bucket,
outputs are returned inline as base64 up to F5TTS_MAX_INLINE_BYTES.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from handler.errors import StorageError, UserError, cut
from handler.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE_CODES = {"500", "502", "503", "504", "InternalError", "SlowDown", "RequestTimeout"}


class ObjectMissing(UserError):
    """The key is not in the bucket."""


def output_key(day: dt.date, job_id: str, name: str) -> str:
    safe_job = "".join(c if c.isalnum() or c in "-_" else "_" for c in job_id)[:128] or "job"
    return f"outputs/{day.isoformat()}/{safe_job}/{name}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise UserError(f"{cut(uri)!r} is not an s3://bucket/key URI; name the bucket and the key")
    return bucket, key


class ObjectStore:
    """A bucket, with the retries and checks the job layer relies on."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        if not settings.s3_bucket:
            raise ValueError("ObjectStore needs S3_BUCKET")
        self.bucket = settings.s3_bucket
        self.settings = settings
        self.client = client or make_client(settings)

    # -- retries -----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        attempts = self.settings.s3_attempts
        delay = self.settings.s3_backoff_s
        last = ""
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in _RETRYABLE_CODES and not (500 <= int(status or 0) < 600):
                    raise _client_error(what, self.bucket, code, exc) from None
                last = f"{code or status}"
            except NoCredentialsError:
                raise StorageError(
                    f"No storage credentials to {what}; set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY on the endpoint (or unset S3_BUCKET)"
                ) from None
            except BotoCoreError as exc:  # connection refused, timeouts, DNS
                last = type(exc).__name__
            if attempt < attempts:
                log.warning("storage: %s failed (%s), retry %d/%d", what, last, attempt, attempts)
                time.sleep(delay)
                delay *= 2
        raise StorageError(
            f"Object storage did not answer while trying to {what} ({last} after {attempts} "
            "attempts); check AWS_ENDPOINT_URL and that the store is up, then resubmit the job"
        )

    # -- operations --------------------------------------------------------------
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Stores `data` and checks it is there; raises StorageError otherwise."""

        def put_and_verify() -> None:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            if int(head.get("ContentLength", -1)) != len(data):
                raise StorageError(
                    f"Object storage kept {head.get('ContentLength')} of {len(data)} bytes of "
                    f"{cut(key)}; check the store's health and resubmit the job"
                )

        self._call(f"store {cut(key)}", put_and_verify)

    def presign(self, key: str) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.settings.url_expiry_s,
        )

    def get(self, key: str, max_bytes: int, bucket: str | None = None) -> bytes:
        bucket = bucket or self.bucket

        def read() -> bytes:
            obj = self.client.get_object(Bucket=bucket, Key=key)
            size = int(obj.get("ContentLength", 0))
            if size > max_bytes:
                obj["Body"].close()
                raise UserError(
                    f"{cut(f's3://{bucket}/{key}')} is {size} bytes; the limit is {max_bytes} "
                    "(F5TTS_MAX_REF_BYTES): send a shorter clip"
                )
            return obj["Body"].read(max_bytes + 1)

        return self._call(f"read {cut(f's3://{bucket}/{key}')}", read)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                    return False
                raise

        return self._call(f"look up {cut(key)}", head)

    def delete_prefix(self, prefix: str) -> int:
        def delete() -> int:
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
            keys = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if keys:
                done = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                # A refused key is reported in the answer, not raised: never claim it gone.
                refused = done.get("Errors") or []
                if refused:
                    code = refused[0].get("Code", "error")
                    raise StorageError(
                        f"Object storage refused to delete {len(refused)} of {len(keys)} "
                        f"objects under {cut(prefix)} ({code}); give the credentials delete "
                        "permission on the bucket and resubmit the job"
                    )
            return len(keys)

        return self._call(f"delete {cut(prefix)}", delete)

    def list_prefixes(
        self, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        """Sub-"folders" of `prefix` that sort after the sub-folder `after`, one page,
        and the name to continue after (None on the last page).

        `StartAfter` rather than S3's continuation token: the caller's cursor is then a
        name we can check, and every key of `after/` sorts before `after0`, while each
        later name sorts after it ('/' is the byte just before '0')."""

        def page() -> tuple[list[str], str | None]:
            kwargs: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": prefix,
                "Delimiter": "/",
                "MaxKeys": limit,
            }
            if after:
                kwargs["StartAfter"] = f"{prefix}{after}0"
            listed = self.client.list_objects_v2(**kwargs)
            names = [
                p["Prefix"][len(prefix) :].rstrip("/") for p in listed.get("CommonPrefixes", [])
            ]
            more = bool(listed.get("IsTruncated")) and bool(names)
            return names, (names[-1] if more else None)

        return self._call(f"list {cut(prefix)}", page)


def _client_error(what: str, bucket: str, code: str, exc: Exception) -> UserError:
    if code in ("NoSuchBucket",):
        return StorageError(f"Bucket {bucket!r} does not exist; create it or fix S3_BUCKET")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
        return StorageError(
            f"Object storage refused to {what} ({code}); check AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and the bucket's permissions"
        )
    if code in ("NoSuchKey", "404"):
        return ObjectMissing(f"Object storage has no object to {what}; check the key")
    return StorageError(f"Object storage refused to {what} ({cut(code, 40)}: {cut(exc, 120)})")


def make_client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=settings.s3_timeout_s,
        read_timeout=settings.s3_timeout_s,
        s3={"addressing_style": settings.s3_addressing_style},
        signature_version="s3v4",
    )
    # A session of its own: credentials are read now, not from a process-wide cache.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.aws_endpoint_url or None,
        region_name=settings.aws_region or None,
        config=config,
    )


@dataclass(frozen=True)
class Artifact:
    name: str  # file name under the job's folder, e.g. audio.mp3
    data: bytes
    content_type: str
    is_text: bool = False  # inline delivery returns text as text, not base64


class Delivery:
    """Puts a job's files where the caller can get them: presigned URL or inline."""

    def __init__(self, settings: Settings, store: ObjectStore | None) -> None:
        self.settings = settings
        self.store = store

    def inline(self, mode: str) -> bool:
        """Whether a job with this `delivery` gets its files inline (base64 / text)."""
        if mode == "url" and self.store is None:
            raise UserError(
                "delivery 'url' needs object storage; set S3_BUCKET (and the AWS_* "
                "variables) on the endpoint, or use delivery 'base64'"
            )
        return self.store is None or mode == "base64"

    def check_inline_size(self, size: int, mode: str, *, estimated: bool = False) -> None:
        """Refuses an inline output of `size` bytes over F5TTS_MAX_INLINE_BYTES."""
        limit = self.settings.max_inline_bytes
        if self.inline(mode) and size > limit:
            what = f"would be at least {size}" if estimated else f"is {size}"
            raise UserError(
                f"The output {what} bytes, over the {limit}-byte inline limit "
                "(F5TTS_MAX_INLINE_BYTES); set S3_BUCKET to get URLs, send shorter text, "
                "or ask for a compressed format such as mp3"
            )

    def deliver(
        self, job_id: str, artifacts: list[Artifact], mode: str = "auto"
    ) -> dict[str, dict[str, Any]]:
        """name -> {"url", "key"}, {"base64"} or {"text"}; all or nothing (no partial success)."""
        if self.inline(mode):
            self.check_inline_size(sum(len(a.data) for a in artifacts), mode)
            return {
                a.name: {"text": a.data.decode("utf-8")}
                if a.is_text
                else {"base64": base64.b64encode(a.data).decode()}
                for a in artifacts
            }
        assert self.store is not None
        today = dt.datetime.now(dt.UTC).date()
        out: dict[str, dict[str, Any]] = {}
        for artifact in artifacts:
            key = output_key(today, job_id, artifact.name)
            self.store.put(key, artifact.data, artifact.content_type)
            out[artifact.name] = {"url": self.store.presign(key), "key": key}
        return out
