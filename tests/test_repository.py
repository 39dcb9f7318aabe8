"""The repository keeps the shape users and CI rely on."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def test_top_level_layout_is_the_one_users_were_promised():
    for path in [
        "environment.yml",
        "bootstrap",
        "handler",
        "Dockerfile.runpod",
        "tests",
        "docs",
        "README.md",
        "scripts/test",
        "scripts/bench",
        ".ci/run",
    ]:
        assert (REPO / path).exists(), f"{path} is missing"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO / ".ci/run").read_text()
    assert "exec ./scripts/test\n" in ci
    assert "./scripts/test" in (REPO / "README.md").read_text()


def test_bench_lists_every_benchmark_without_running_any():
    listing = subprocess.run(
        [str(REPO / "scripts/bench")], capture_output=True, text=True, check=True
    ).stdout
    names = sorted(p.stem.replace("_", "-") for p in (REPO / "benchmarks").glob("[!_]*.py"))
    for name in names:
        assert name in listing


def test_bench_refuses_an_unknown_name_with_the_list():
    result = subprocess.run(
        [str(REPO / "scripts/bench"), "no-such-bench"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "no benchmark named 'no-such-bench'" in result.stderr
