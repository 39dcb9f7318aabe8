"""The worker as a subprocess serving runpod's local API (`--rp_serve_api`), for tests
and benchmarks that call it over HTTP like RunPod would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
MODULE = "tests.handler.double_worker"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(ffmpeg_bin_dir, volume: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "S3_", "F5TTS_"))}
    env.update(
        PATH=f"{ffmpeg_bin_dir}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(REPO),
        F5TTS_VOLUME=str(volume),
        **extra,
    )
    return env


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The variables that point a worker at the loopback S3 server."""
    return {
        "S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "F5TTS_S3_ADDRESSING_STYLE": "path",
    }


class LocalApi:
    def __init__(self, env: dict[str, str], log: Path, module: str = MODULE) -> None:
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--rp_serve_api",
                "--rp_api_host",
                "127.0.0.1",
                "--rp_api_port",
                str(self.port),
            ],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {log.read_text()[-3000:]}")
            try:
                requests.get(f"http://127.0.0.1:{self.port}/docs", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(f"local API did not come up: {log.read_text()[-3000:]}")

    def runsync(self, job_input) -> dict:
        response = requests.post(
            f"http://127.0.0.1:{self.port}/runsync", json={"input": job_input}, timeout=60
        )
        assert response.status_code == 200, response.text
        return response.json()

    def run(self, job_input) -> str:
        """POST /run: the job's id (the local API runs it when /stream or /status asks)."""
        response = requests.post(
            f"http://127.0.0.1:{self.port}/run", json={"input": job_input}, timeout=60
        )
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def stream(self, job_id: str) -> dict:
        """POST /stream/{id}: the local API runs the whole generator, then answers."""
        response = requests.post(f"http://127.0.0.1:{self.port}/stream/{job_id}", timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
