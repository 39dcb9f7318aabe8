"""`python -m bootstrap finish` inside a prefix realized from a real conda-lock file
(H1's local channel + micromamba double): leftovers, features, checks, marker."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bootstrap.errors import ExitCode
from bootstrap.finish import version_mismatches
from bootstrap.lockfile import LockedPackage, LockReport
from bootstrap.marker import read_env_marker
from tests.conftest import REPO
from tests.support.wheels import build_wheel, write_hashed_requirements

ENV_ID = "0123456789ab"


def realize(micromamba_env, lockfile: Path, prefix: Path) -> Path:
    subprocess.run(
        ["micromamba", "create", "-y", "-p", str(prefix), "-f", str(lockfile)],
        env=micromamba_env,
        check=True,
        capture_output=True,
    )
    return prefix


@pytest.fixture
def app(tmp_path, cuda_lock, wheelhouse) -> Path:
    """An image's /app: the bootstrap, the lock and the leftovers lock."""
    app = tmp_path / "app"
    (app / "requirements").mkdir(parents=True)
    (app / "bootstrap").symlink_to(REPO / "bootstrap")
    shutil.copy(cuda_lock.lockfile, app / "conda-lock.yml")
    shutil.copy(wheelhouse.requirements, app / "requirements" / "leftovers.txt")
    return app


@pytest.fixture
def prefix(tmp_path, micromamba_env, cuda_lock) -> Path:
    return realize(micromamba_env, cuda_lock.lockfile, tmp_path / "vol/envs" / f"f5tts-{ENV_ID}")


def finish(prefix: Path, app: Path, cuda_lock, wheelhouse, **overrides: str):
    env = {
        "PATH": "/usr/bin:/bin",
        "F5TTS_APP_DIR": str(app),
        "F5TTS_VOLUME": str(prefix.parent.parent),
        "F5TTS_ALLOWED_CHANNEL": cuda_lock.channel.url,
        "F5TTS_PIP_ARGS": f"--no-index --find-links {wheelhouse.dir}",
        "F5TTS_PIP_BACKOFF_S": "0",
        "F5TTS_PIP_RETRIES": "2",
        "F5TTS_CORE_IMPORTS": "torch,torchaudio,yaml,f5tts_probe,leftover_probe",
        **overrides,
    }
    command = ["-m", "bootstrap", "finish", "--prefix", str(prefix), "--env-id", ENV_ID]
    return subprocess.run(
        [str(prefix / "bin/python"), *command],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
    )


def test_finish_installs_the_leftovers_checks_the_env_and_writes_the_marker(
    prefix, app, cuda_lock, wheelhouse
):
    result = finish(prefix, app, cuda_lock, wheelhouse)
    assert result.returncode == 0, result.stderr
    marker = read_env_marker(prefix, ENV_ID)
    assert marker is not None
    assert marker.versions["torch"] == "2.8.0"
    assert marker.versions["torchaudio"] == "2.8.0"
    assert marker.versions["python"] == cuda_lock_version(cuda_lock, "python")
    assert marker.versions["dist:leftover-probe"] == "1.2.3"
    assert marker.versions["ffmpeg"].startswith("ffmpeg version 7.1")
    assert set(marker.timings) == {"leftovers", "features", "verify", "validate", "size"}
    assert marker.size_bytes > 0
    assert marker.features == {}
    stored = json.loads((prefix / ".f5tts/ready.json").read_text())
    assert stored["env_id"] == ENV_ID and len(stored["lock_sha256"]) == 64
    # The stand-in torch sees no GPU: a warning, not a failure.
    assert "WARNING torch sees no CUDA device" in result.stderr


def cuda_lock_version(cuda_lock, name: str) -> str:
    from bootstrap.lockfile import validate_lock

    report = validate_lock(cuda_lock.lockfile, allowed_channel=cuda_lock.channel.url)
    return report.packages[name].version


def test_a_failing_optional_feature_is_marked_unavailable_not_fatal(
    prefix, app, cuda_lock, wheelhouse, tmp_path
):
    missing = build_wheel(tmp_path / "elsewhere", "whisperx", "3.8.6")
    write_hashed_requirements([missing], app / "requirements" / "leftovers-whisperx.txt")
    result = finish(prefix, app, cuda_lock, wheelhouse)
    assert result.returncode == 0, result.stderr
    assert read_env_marker(prefix, ENV_ID).features == {"whisperx": False}
    assert "optional feature whisperx is unavailable: pip failed" in result.stderr


def test_an_optional_feature_that_installs_and_imports_is_available(
    prefix, app, cuda_lock, wheelhouse, tmp_path
):
    wheel = build_wheel(
        wheelhouse.dir.parent / "feature-wheels",
        "whisperx",
        "3.8.6",
        {"whisperx/__init__.py": "", "whisperx/alignment.py": "OK = True\n"},
    )
    write_hashed_requirements([wheel], app / "requirements" / "leftovers-whisperx.txt")
    result = finish(
        prefix,
        app,
        cuda_lock,
        wheelhouse,
        F5TTS_PIP_ARGS=f"--no-index --find-links {wheelhouse.dir} --find-links {wheel.path.parent}",
    )
    assert result.returncode == 0, result.stderr
    marker = read_env_marker(prefix, ENV_ID)
    assert marker.features == {"whisperx": True}
    assert marker.versions["dist:whisperx"] == "3.8.6"


def test_when_pip_cannot_install_the_leftovers_no_marker_is_written(
    prefix, app, cuda_lock, wheelhouse, tmp_path
):
    result = finish(prefix, app, cuda_lock, wheelhouse, F5TTS_PIP_ARGS="--no-index")
    assert result.returncode == ExitCode.PIP_LEFTOVERS
    assert "retry 1 in 0 s" in result.stderr
    assert "bootstrap: pip could not install leftovers.txt after 2 tries" in result.stderr
    assert read_env_marker(prefix) is None


def test_a_core_module_that_does_not_import_fails_the_build(prefix, app, cuda_lock, wheelhouse):
    result = finish(prefix, app, cuda_lock, wheelhouse, F5TTS_CORE_IMPORTS="yaml,f5_tts.model")
    assert result.returncode == ExitCode.IMPORT_FAILED
    assert "`import f5_tts.model` fails in the new env (ModuleNotFoundError" in result.stderr
    assert read_env_marker(prefix) is None


def test_a_worker_that_requires_a_gpu_refuses_an_env_without_one(
    prefix, app, cuda_lock, wheelhouse
):
    result = finish(prefix, app, cuda_lock, wheelhouse, F5TTS_REQUIRE_GPU="1")
    assert result.returncode == ExitCode.GPU_REQUIRED
    assert "F5TTS_REQUIRE_GPU=1" in result.stderr
    assert read_env_marker(prefix) is None


def test_a_broken_ffmpeg_fails_the_build(prefix, app, cuda_lock, wheelhouse):
    ffmpeg = prefix / "bin/ffmpeg"
    ffmpeg.unlink()
    ffmpeg.write_text("#!/bin/sh\nexit 3\n")
    ffmpeg.chmod(0o755)
    result = finish(prefix, app, cuda_lock, wheelhouse)
    assert result.returncode == ExitCode.FFMPEG_BROKEN
    assert "-version` exited with 3" in result.stderr
    assert read_env_marker(prefix) is None


def test_a_lock_failing_validation_gets_no_marker(prefix, app, cuda_lock, wheelhouse):
    result = finish(
        prefix, app, cuda_lock, wheelhouse, F5TTS_ALLOWED_CHANNEL="https://conda.anaconda.org/x"
    )
    assert result.returncode == ExitCode.LOCKFILE_INVALID
    assert "only conda-forge may be used" in result.stderr
    assert read_env_marker(prefix) is None


def test_a_prefix_without_python_is_reported(tmp_path, app, cuda_lock, wheelhouse):
    from bootstrap.__main__ import main

    code = main(["finish", "--prefix", str(tmp_path / "nothing"), "--env-id", ENV_ID])
    assert code == ExitCode.PREFIX_MISSING


def test_versions_that_differ_from_the_lock_are_each_named():
    lock = LockReport(
        packages={
            "python": LockedPackage("python", "3.11.7", "h_0", "u", "s"),
            "pytorch": LockedPackage("pytorch", "2.8.0", "cuda129_0", "u", "s"),
            "torchaudio": LockedPackage("torchaudio", "2.8.0", "cuda129_0", "u", "s"),
        }
    )
    versions = {"python": "3.11.7", "torch": "2.9.0+cu129", "torchaudio": "2.8.0+cu129"}
    assert version_mismatches(lock, versions) == ["torch is 2.9.0+cu129 but the lock has 2.8.0"]
    assert version_mismatches(lock, {"python": "3.11.7"}) == [
        "torch is missing but the lock has 2.8.0",
        "torchaudio is missing but the lock has 2.8.0",
    ]


def test_pip_runs_with_its_cache_on_the_volume_and_backs_off_between_tries(tmp_path):
    from bootstrap.finish import pip_install
    from bootstrap.settings import Settings

    settings = Settings.from_env(
        {"F5TTS_VOLUME": str(tmp_path), "F5TTS_PIP_RETRIES": "3", "F5TTS_PIP_ARGS": "--no-index"}
    )
    calls, sleeps = [], []

    def flaky_pip(command, env, **kwargs):
        calls.append((command, env["PIP_CACHE_DIR"]))
        ok = len(calls) == 3
        return subprocess.CompletedProcess(command, 0 if ok else 1, "", "ReadTimeoutError")

    error = pip_install(Path("/p/bin/python"), Path("r.txt"), settings, flaky_pip, sleeps.append)
    assert error is None
    assert sleeps == [5.0, 10.0]
    command, cache = calls[0]
    assert cache == str(tmp_path / "cache/pip")
    assert command[:9] == [
        "/p/bin/python",
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--require-hashes",
        "--disable-pip-version-check",
        "--no-input",
        "--no-build-isolation",
    ]
    assert command[9:] == ["--no-index", "-r", "r.txt"]


@pytest.mark.heavy
def test_the_default_core_imports_all_import_in_an_env_like_the_real_one():
    """The heavy tier's .venv holds the same leftovers and runtime as the conda env."""
    import sys

    from bootstrap.finish import FEATURE_IMPORTS, probe_env
    from bootstrap.settings import DEFAULT_CORE_IMPORTS

    modules = [*DEFAULT_CORE_IMPORTS, *FEATURE_IMPORTS.values()]
    probe = probe_env(Path(sys.executable), modules, ["f5-tts", "whisperx"])
    assert probe.import_errors == {}
    assert probe.versions["torch"].startswith("2.8.0")
    assert probe.versions["dist:f5-tts"] == "1.1.22"
