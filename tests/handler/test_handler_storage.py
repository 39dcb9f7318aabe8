"""Storage through boto3 against a real S3 API (moto's server on loopback)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from handler.errors import StorageError, UserError
from handler.storage import Artifact, Delivery, ObjectStore, output_key


def test_output_keys_are_dated_per_job():
    key = output_key(dt.date(2026, 1, 2), "job/../x", "audio.mp3")
    assert key == "outputs/2026-01-02/job____x/audio.mp3"


def test_upload_is_verified_and_presigned_url_serves_the_bytes(s3_settings):
    store = ObjectStore(s3_settings)
    store.put("outputs/x/audio.mp3", b"ID3" + b"\0" * 100, "audio/mpeg")
    response = requests.get(store.presign("outputs/x/audio.mp3"), timeout=10)
    assert response.status_code == 200 and response.content == b"ID3" + b"\0" * 100
    assert response.headers["Content-Type"] == "audio/mpeg"


def test_presigned_urls_carry_the_configured_expiry(s3_settings):
    store = ObjectStore(s3_settings.model_copy(update={"url_expiry_s": 123}))
    assert "X-Amz-Expires=123" in store.presign("outputs/a")


def test_delivery_uploads_every_artifact_under_the_job(s3_settings):
    delivered = Delivery(s3_settings, ObjectStore(s3_settings)).deliver(
        "job-1",
        [Artifact("audio.wav", b"RIFF", "audio/wav"), Artifact("subtitles.srt", b"1\n", "x", True)],
    )
    assert delivered["audio.wav"]["key"].endswith("/job-1/audio.wav")
    assert delivered["subtitles.srt"]["key"].endswith("/job-1/subtitles.srt")
    assert requests.get(delivered["subtitles.srt"]["url"], timeout=10).content == b"1\n"


def test_missing_bucket_is_a_sentence_naming_the_setting(s3_settings):
    store = ObjectStore(s3_settings.model_copy(update={"s3_bucket": "no-such-bucket"}))
    with pytest.raises(StorageError, match="S3_BUCKET"):
        store.put("k", b"x", "text/plain")


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_storage_down_is_retried_then_reported_without_success(s3_settings):
    settings = s3_settings.model_copy(
        update={"aws_endpoint_url": f"http://127.0.0.1:{_closed_port()}", "s3_attempts": 3}
    )
    delivery = Delivery(settings, ObjectStore(settings))
    with pytest.raises(StorageError, match="after 3 attempts") as caught:
        delivery.deliver("job", [Artifact("audio.wav", b"RIFF", "audio/wav")])
    assert "AWS_ENDPOINT_URL" in caught.value.sentence


class Always503(BaseHTTPRequestHandler):
    hits = 0

    def log_message(self, *args):
        pass

    def _fail(self):
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_GET = do_HEAD = do_POST = _fail


def test_server_errors_are_retried_by_botocore_and_by_us(s3_settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Always503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = s3_settings.model_copy(
            update={
                "aws_endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
                "s3_attempts": 2,
            }
        )
        with pytest.raises(StorageError, match="after 2 attempts"):
            ObjectStore(settings).put("k", b"x", "text/plain")
        assert Always503.hits >= 4  # botocore's own retries inside each of our attempts
    finally:
        server.shutdown()


def test_without_a_bucket_small_outputs_come_back_inline(make_settings):
    delivered = Delivery(make_settings(), None).deliver(
        "job", [Artifact("audio.wav", b"RIFF", "audio/wav"), Artifact("s.srt", b"1\n", "t", True)]
    )
    assert delivered == {"audio.wav": {"base64": "UklGRg=="}, "s.srt": {"text": "1\n"}}


def test_without_a_bucket_large_outputs_are_refused_with_the_fix(make_settings):
    delivery = Delivery(make_settings(max_inline_bytes=10), None)
    with pytest.raises(UserError, match="F5TTS_MAX_INLINE_BYTES"):
        delivery.deliver("job", [Artifact("audio.wav", b"x" * 11, "audio/wav")])
    with pytest.raises(UserError, match="S3_BUCKET"):
        delivery.deliver("job", [Artifact("audio.wav", b"x", "audio/wav")], mode="url")


def test_reading_an_s3_reference_respects_the_size_cap(s3_settings):
    store = ObjectStore(s3_settings)
    store.put("refs/a.wav", b"x" * 500, "audio/wav")
    assert store.get("refs/a.wav", 1000) == b"x" * 500
    with pytest.raises(UserError, match="F5TTS_MAX_REF_BYTES"):
        store.get("refs/a.wav", 100)


def test_missing_credentials_are_not_retried_and_name_the_variables(s3_settings, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        ObjectStore(s3_settings).put("k", b"x", "text/plain")


class _DeleteRefused:
    """A real client whose bulk delete answers 200 with every key refused, as S3 does
    for credentials without s3:DeleteObject."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def delete_objects(self, Bucket, Delete):  # boto3 calls it with these names
        errors = [{"Key": o["Key"], "Code": "AccessDenied"} for o in Delete["Objects"]]
        return {"Errors": errors}


def test_a_delete_the_store_refused_per_key_is_not_reported_as_done(s3_settings):
    store = ObjectStore(s3_settings)
    store.put("voices/anna/meta.json", b"{}", "application/json")
    refusing = ObjectStore(s3_settings, client=_DeleteRefused(store.client))
    with pytest.raises(StorageError, match="AccessDenied"):
        refusing.delete_prefix("voices/anna/")
    assert store.exists("voices/anna/meta.json")
