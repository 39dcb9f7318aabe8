"""`scripts/bench rtf` on a machine without a GPU: says so, exits 0, JSON last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_rtf_bench_without_gpu_reports_skipped_and_exits_zero():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would really run")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "benchmarks/rtf.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["device"] == "cpu"
    assert last["skipped"].startswith("no GPU")
    assert last["baseline"]["paper_rtf_nfe16"] == 0.15
