"""No sdist is built with build dependencies pip fetches unhashed: a leftovers lock
allows wheels only, except the sdists its .in declares (`--no-binary NAME`), and
`finish` builds those with --no-build-isolation against the env's own setuptools.

Real pip, offline: the command is finish's own (`pip_command`), run by the test
interpreter (which, like the conda env, has setuptools) into a --target directory.
encodec 0.1.1 itself was checked the same way from PyPI: docs/lockfile.md."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.finish import pip_command
from bootstrap.settings import Settings
from tests.support.lock_kit import leftovers_lock_text
from tests.support.wheels import build_sdist, build_wheel


@pytest.fixture
def dists(tmp_path) -> Path:
    """An index of one setup.py-only sdist (like encodec 0.1.1) and one wheel."""
    directory = tmp_path / "dists"
    build_sdist(directory, "sdist-probe", "0.1.1")
    build_wheel(directory, "wheel-probe", "1.0")
    return directory


def leftovers_lock(tmp_path: Path, dists: Path, source_text: str) -> Path:
    """The .txt bootstrap/lock writes for this .in."""
    source = tmp_path / "leftovers.in"
    source.write_text(source_text)
    lock = tmp_path / "leftovers.txt"
    lock.write_text(leftovers_lock_text(source, dists))
    return lock


def install(lock: Path, dists: Path, target: Path, *, isolated: bool = False):
    settings = Settings.from_env(
        {"F5TTS_PIP_ARGS": f"--no-index --find-links {dists} --target {target}"}
    )
    command = pip_command(Path(sys.executable), lock, settings)
    if isolated:
        command.remove("--no-build-isolation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


DECLARED = "--no-binary sdist-probe\nsdist-probe==0.1.1\nwheel-probe==1.0\n"


def test_a_declared_sdist_builds_offline_against_the_envs_setuptools(tmp_path, dists):
    lock = leftovers_lock(tmp_path, dists, DECLARED)
    result = install(lock, dists, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site/sdist_probe/__init__.py").is_file()
    assert (tmp_path / "site/wheel_probe/__init__.py").is_file()


def test_an_isolated_build_would_first_download_setuptools(tmp_path, dists):
    """What --no-build-isolation prevents: offline, the download is all that fails."""
    lock = leftovers_lock(tmp_path, dists, DECLARED)
    result = install(lock, dists, tmp_path / "site", isolated=True)
    assert result.returncode != 0
    assert "Installing build dependencies" in result.stdout
    assert "No matching distribution found for setuptools" in result.stdout + result.stderr


def test_pip_refuses_an_sdist_the_lock_does_not_declare(tmp_path, dists):
    lock = leftovers_lock(tmp_path, dists, "wheel-probe==1.0\n")
    # Added by hand, hash and all: the lock's options still allow only a wheel for it.
    sdist_hash = hashlib.sha256((dists / "sdist_probe-0.1.1.tar.gz").read_bytes()).hexdigest()
    lock.write_text(lock.read_text() + f"sdist-probe==0.1.1 \\\n    --hash=sha256:{sdist_hash}\n")
    result = install(lock, dists, tmp_path / "site")
    assert result.returncode != 0
    assert "No matching distribution found for sdist-probe==0.1.1" in result.stderr
    assert not (tmp_path / "site").exists()
