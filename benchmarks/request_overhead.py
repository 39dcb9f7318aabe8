"""Job-layer cost of one tts job: local API + S3 upload time beyond the synthesis itself.

Starts the worker as RunPod's local API (`python -m handler --rp_serve_api`) with
outputs going to a real S3 API (moto's server on loopback), sends the same wav tts
job N times to /runsync and reports the medians of the client-side job time, the
engine's synthesis time (from the job's own `timings`) and their difference.

The engine is the real F5-TTS code with tiny random weights when torch and f5-tts
are importable (tests/support_models/tiny.py), else the sine test double; the
output says which. Usage: scripts/bench request-overhead [--runs N] [--engine E]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXT = "The quick brown fox jumps over the lazy dog."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ffmpeg_dir(scratch: Path) -> str:
    if shutil.which("ffmpeg"):
        return str(Path(shutil.which("ffmpeg") or "").parent)
    import imageio_ffmpeg

    bin_dir = scratch / "ffmpeg-bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return str(bin_dir)


def _tiny_engine(scratch: Path) -> tuple[list[str], dict[str, str], bytes, str] | None:
    """The real handler with tiny random F5-TTS weights, when the heavy stack imports."""
    try:
        sys.path.insert(0, str(REPO))
        from tests.support_models.tiny import build_tiny_volume

        tiny = build_tiny_volume(scratch / "tiny", with_aligner=False)
    except Exception as exc:  # torch / f5-tts missing: fall back to the double
        print(f"request-overhead: tiny F5-TTS unavailable ({type(exc).__name__}: {exc})")
        return None
    env = {
        "F5TTS_VOLUME": str(tiny.volume),
        "F5TTS_MODEL": tiny.model_name,
        "F5TTS_MODEL_CONFIG": str(tiny.arch_config),
        "F5TTS_DEVICE": "cpu",
    }
    return (
        [sys.executable, "-m", "handler"],
        env,
        tiny.reference_wav.read_bytes(),
        tiny.reference_text,
    )


def _double_engine(scratch: Path) -> tuple[list[str], dict[str, str], bytes, str]:
    sys.path.insert(0, str(REPO))
    from tests.handler.clips import speechlike, wav_bytes

    env = {"F5TTS_VOLUME": str(scratch / "volume")}
    command = [sys.executable, "-m", "tests.handler.double_worker"]
    return command, env, wav_bytes(speechlike(3.0)), "A reference sentence."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--engine", choices=["auto", "tiny-f5tts", "sine-double"], default="auto")
    args = parser.parse_args()

    import logging

    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines

    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, s3_port = s3.get_host_and_port()
    endpoint = f"http://{host}:{s3_port}"
    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        **{k.lower(): v for k, v in creds.items()},
    ).create_bucket(Bucket="bench")

    chosen = None if args.engine == "sine-double" else _tiny_engine(scratch)
    if chosen is None and args.engine == "tiny-f5tts":
        sys.exit("request-overhead: --engine tiny-f5tts needs torch and f5-tts")
    engine_name = "tiny-f5tts" if chosen else "sine-double"
    command, engine_env, ref_wav, ref_text = chosen or _double_engine(scratch)

    api_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "F5TTS_", "S3_"))}
    env.update(engine_env, **creds)
    env.update(
        PATH=f"{_ffmpeg_dir(scratch)}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),
        S3_BUCKET="bench",
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        F5TTS_S3_ADDRESSING_STYLE="path",
        F5TTS_LOG_LEVEL="WARNING",
        RUNPOD_LOG_LEVEL="ERROR",
        UVICORN_LOG_LEVEL="warning",
    )
    log_file = scratch / "worker.log"
    worker = subprocess.Popen(
        [*command, "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(api_port)],
        cwd=REPO,
        env=env,
        stdout=log_file.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{api_port}/runsync"
    job = {
        "input": {
            "text": TEXT,
            "ref_audio_base64": base64.b64encode(ref_wav).decode(),
            "ref_text": ref_text,
            "format": "wav",
            "seed": 1,
            "nfe_step": 8,
        }
    }
    try:
        deadline = time.monotonic() + 300
        while True:
            if worker.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"request-overhead: worker did not start:\n{log_file.read_text()[-3000:]}")
            try:
                requests.get(f"http://127.0.0.1:{api_port}/docs", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.25)
        print(f"request-overhead: engine {engine_name}, first job (prepares the reference)")
        first = requests.post(url, json=job, timeout=300).json()
        if first.get("status") != "COMPLETED":
            sys.exit(f"request-overhead: job failed: {first}")
        job_ms, synth_ms = [], []
        for i in range(args.runs):
            t0 = time.perf_counter()
            result = requests.post(url, json=job, timeout=300).json()
            elapsed = (time.perf_counter() - t0) * 1000
            if result.get("status") != "COMPLETED":
                sys.exit(f"request-overhead: job failed: {result}")
            job_ms.append(elapsed)
            synth_ms.append(result["output"]["timings"]["synth_ms"])
            print(f"  run {i + 1}: job {elapsed:.1f} ms, synth {synth_ms[-1]:.1f} ms")
    finally:
        worker.terminate()
        worker.wait(10)
        s3.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    overheads = [j - s for j, s in zip(job_ms, synth_ms, strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "request-overhead",
                "engine": engine_name,
                "job_ms": round(statistics.median(job_ms), 1),
                "synth_ms": round(statistics.median(synth_ms), 1),
                "overhead_ms": round(statistics.median(overheads), 1),
                "runs": args.runs,
                "baseline": None,
                "baseline_note": "the earlier system published no per-request measurement",
            }
        )
    )


if __name__ == "__main__":
    main()
