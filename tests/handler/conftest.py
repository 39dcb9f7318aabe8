"""Fixtures of the job-layer tests: settings on a temporary volume, a real S3 API
(moto's server on loopback, reached through boto3), and synthetic audio clips."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handler.jobs import JobRunner, Models
from handler.settings import Settings
from tests.handler.clips import speechlike, wav_bytes
from tests.handler.doubles import EvenAligner, FixedTranscriber, SineEngine

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def reference_wav() -> bytes:
    return wav_bytes(speechlike(3.0))


@pytest.fixture
def make_settings(tmp_path: Path, ffmpeg_bin_dir: Path) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        values = {"volume": tmp_path / "volume", "warmup": False}
        values.update(overrides)
        return Settings.model_validate(values)

    return make


@pytest.fixture
def models() -> Models:
    """The test doubles of the models (tests/handler/doubles.py)."""
    return Models(SineEngine(), EvenAligner(), FixedTranscriber())


@pytest.fixture
def inline_runner(make_settings, models) -> JobRunner:
    """A JobRunner without a bucket: outputs come back inline."""
    return JobRunner(make_settings(), models, None)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(make_settings, s3_endpoint: str, bucket: str) -> Settings:
    return make_settings(
        s3_bucket=bucket,
        aws_endpoint_url=s3_endpoint,
        aws_region="us-east-1",
        s3_addressing_style="path",
        s3_backoff_s=0.01,
    )
