"""bootstrap/lock on a fresh clone, driven end to end offline: only micromamba (the
double, at the pinned version) on PATH, no Python; the tools env is realized from the
local channel, whose conda-lock and uv run the test doubles (tests/support/lock_kit.py).
The real tools and conda-forge: verified only where they are reachable (docs/lockfile.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bootstrap.errors import ExitCode
from bootstrap.lockfile import validate_lock
from bootstrap.relock import Paths, stale_leftovers
from tests.support.conda_lock_double import lock_calls
from tests.support.lock_kit import LockRun, base_tools_dir, install_micromamba_of_version
from tests.support.lockfiles import content_hash_for, write_lock
from tests.support.micromamba_double import realizations
from tests.support.pins import pins
from tests.support.wheels import build_sdist

READY = ".f5tts-lock-tools-ready"


def wait_for(process: subprocess.Popen, text: str, timeout: float = 60) -> None:
    """Reads the process's stderr until `text` appears (it must not exit first)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while text not in seen:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before {text!r}:\n{seen}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} after {timeout} s:\n{seen}")
        seen += line


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the whole run, as when the machine dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def assert_valid_lock(lock_run: LockRun) -> None:
    clone = lock_run.checkout
    report = validate_lock(
        clone / "conda-lock.yml",
        allowed_channel=lock_run.channel.url,
        environment=clone / "environment.yml",
        virtual_packages=clone / "virtual-packages.yml",
    )
    assert report.ok, report.problems
    assert report.notices == []  # the content hash was really compared


def stray_files(clone: Path) -> list[Path]:
    return sorted(p for p in clone.rglob(".*") if p.is_file())


def test_a_fresh_clone_gets_valid_locks_with_only_micromamba_on_path(lock_run: LockRun):
    result = lock_run.run()

    assert result.returncode == 0, result.stderr
    assert_valid_lock(lock_run)
    clone = lock_run.checkout
    lock_text = (clone / "conda-lock.yml").read_text()
    assert content_hash_for(clone / "environment.yml", clone / "virtual-packages.yml") in lock_text
    assert stale_leftovers(Paths(clone)) == []
    assert stray_files(clone) == []
    [tools] = lock_run.tools_realizations()
    assert tools["argv"][:5] == [
        "create",
        "-y",
        "-p",
        str(lock_run.tools_prefixes()[0]),
        "--override-channels",
    ]
    assert tools["argv"][5:] == [
        "-c",
        lock_run.channel.url,
        "python=3.11",
        f"conda-lock=={pins()['CONDA_LOCK_VERSION']}",
        f"uv=={pins()['UV_VERSION']}",
    ]
    [conda_lock] = lock_calls(lock_run.conda_lock_log)
    assert conda_lock["argv"][:4] == [
        "lock",
        "--micromamba",
        "--conda",
        str(lock_run.micromamba.executable),
    ]
    assert "commit conda-lock.yml" in result.stderr


def test_a_second_run_reuses_the_cached_tools_env(lock_run: LockRun):
    assert lock_run.run("--conda-only").returncode == 0
    (lock_run.checkout / "conda-lock.yml").unlink()
    second = lock_run.run("--conda-only")

    assert second.returncode == 0, second.stderr
    assert len(lock_run.tools_realizations()) == 1
    assert "realizing the lock tools" not in second.stderr
    assert len(lock_calls(lock_run.conda_lock_log)) == 2
    assert_valid_lock(lock_run)


def test_a_crash_while_realizing_the_tools_leaves_nothing_marked_and_the_next_run_rebuilds(
    lock_run: LockRun,
):
    process = lock_run.start("--conda-only", MICROMAMBA_DOUBLE_PAUSE="link:60")
    wait_for(process, "PAUSED link")
    kill(process)
    [prefix] = lock_run.tools_prefixes()
    assert (prefix / "conda-meta").is_dir() and not (prefix / READY).exists()
    assert not (lock_run.checkout / "conda-lock.yml").exists()

    rerun = lock_run.run("--conda-only")

    assert rerun.returncode == 0, rerun.stderr
    assert f"removing the unfinished tools env {prefix}" in rerun.stderr
    assert len(lock_run.tools_realizations()) == 2
    assert (prefix / READY).is_file()
    assert_valid_lock(lock_run)


def test_a_failed_tools_realization_is_one_sentence_and_stays_unmarked(lock_run: LockRun):
    result = lock_run.run("--conda-only", MICROMAMBA_DOUBLE_FAIL="download")

    assert result.returncode == ExitCode.LOCK_TOOL
    [prefix] = lock_run.tools_prefixes()
    assert result.stderr.splitlines()[-1] == (
        f"bootstrap/lock: micromamba could not realize the lock tools into {prefix} (exit 1, its "
        f"reason is above): check that {lock_run.channel.url} is reachable; the next run rebuilds "
        "the unfinished env."
    )
    assert not (prefix / READY).exists()
    assert lock_calls(lock_run.conda_lock_log) == []


def test_a_crash_while_conda_lock_runs_leaves_no_lock_and_no_temp_file(lock_run: LockRun):
    process = lock_run.start("--conda-only", CONDA_LOCK_DOUBLE_PAUSE="60")
    wait_for(process, "PAUSED lock")
    kill(process)
    assert not (lock_run.checkout / "conda-lock.yml").exists()

    rerun = lock_run.run("--conda-only")
    assert rerun.returncode == 0, rerun.stderr
    assert_valid_lock(lock_run)


def test_a_failed_solve_leaves_the_committed_lock_as_it_was(lock_run: LockRun):
    write_lock(lock_run.channel, lock_run.checkout)
    before = (lock_run.checkout / "conda-lock.yml").read_bytes()

    result = lock_run.run("--conda-only", CONDA_LOCK_DOUBLE_FAIL="solve")

    assert result.returncode == ExitCode.LOCK_TOOL
    assert (
        "bootstrap/lock: conda-lock failed with exit code 1; its reason is above." in result.stderr
    )
    assert (lock_run.checkout / "conda-lock.yml").read_bytes() == before
    assert stray_files(lock_run.checkout) == []


def test_a_stale_lock_fails_check_and_ensure_with_a_sentence_naming_bootstrap_lock(
    lock_run: LockRun,
):
    assert lock_run.run().returncode == 0
    environment = lock_run.checkout / "environment.yml"
    environment.write_text(environment.read_text().replace("- ffmpeg\n", ""))

    for mode in ("--check", "--ensure"):
        result = lock_run.run(mode)
        assert result.returncode == ExitCode.LOCK_STALE, mode
        assert (
            "bootstrap/lock: the lock's content hash does not match environment.yml: it changed "
            "since the lock was made; regenerate it with bootstrap/lock." in result.stderr
        )
    assert len(lock_calls(lock_run.conda_lock_log)) == 1


def test_ensure_uses_a_current_committed_lock_verbatim(lock_run: LockRun):
    assert lock_run.run().returncode == 0
    before = (lock_run.checkout / "conda-lock.yml").read_bytes()

    result = lock_run.run("--ensure")

    assert result.returncode == 0, result.stderr
    assert (lock_run.checkout / "conda-lock.yml").read_bytes() == before
    assert len(lock_calls(lock_run.conda_lock_log)) == 1


def test_a_micromamba_of_another_version_is_refused_before_anything_runs(lock_run: LockRun):
    other = install_micromamba_of_version(lock_run.work / "other-micromamba", "2.8.0")
    result = lock_run.run("--micromamba", str(other.executable))

    assert result.returncode == ExitCode.LOCK_TOOL
    assert result.stderr == (
        f"bootstrap/lock: {other.executable} is micromamba 2.8.0, but locks are made with the "
        f"pinned micromamba {pins()['MICROMAMBA_VERSION']} (bootstrap/pins.env): pass that one "
        "with --micromamba, or run bootstrap/lock --docker.\n"
    )
    assert realizations(lock_run.micromamba_log) == []


def test_without_micromamba_it_says_what_to_install(lock_run: LockRun):
    bare = base_tools_dir(lock_run.work / "base-bin")
    result = lock_run.run(PATH=str(bare))

    assert result.returncode == ExitCode.LOCK_TOOL
    assert result.stderr == (
        "bootstrap/lock: micromamba was not found (tried micromamba): install micromamba "
        f"{pins()['MICROMAMBA_VERSION']} (bootstrap/pins.env) and pass it with --micromamba, "
        "or run bootstrap/lock --docker.\n"
    )


def test_tools_only_prints_the_prefix_and_marks_it(lock_run: LockRun):
    result = lock_run.run("--tools-only")

    assert result.returncode == 0, result.stderr
    [prefix] = lock_run.tools_prefixes()
    assert result.stdout == f"{prefix}\n"
    assert prefix.name.startswith(
        f"conda-lock-{pins()['CONDA_LOCK_VERSION']}-uv-{pins()['UV_VERSION']}-py3.11-"
    )
    assert (prefix / READY).is_file()
    assert not (lock_run.checkout / "conda-lock.yml").exists()


def test_unknown_arguments_and_conflicting_modes_are_usage_errors(lock_run: LockRun):
    assert lock_run.run("--frobnicate").returncode == 2
    conflict = lock_run.run("--check", "--ensure")
    assert conflict.returncode == 2
    assert conflict.stderr == (
        "bootstrap/lock: --check and --ensure cannot be combined; run them one after the other.\n"
    )


def docker_recorder(bin_dir: Path, log: Path) -> Path:
    bin_dir.mkdir(parents=True)
    docker = bin_dir / "docker"
    docker.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    docker.chmod(0o755)
    return bin_dir


def test_docker_mode_runs_the_same_command_in_the_pinned_image(lock_run: LockRun):
    log = lock_run.work / "docker-argv.json"
    recorder = docker_recorder(lock_run.work / "docker-bin", log)
    path = f"{recorder}:{base_tools_dir(lock_run.work / 'base-bin')}"
    result = lock_run.run("--docker", "--conda-only", PATH=path)

    assert result.returncode == 0, result.stderr
    argv = json.loads(log.read_text())
    image = pins()["MICROMAMBA_IMAGE"]
    assert argv[: argv.index(image)] == [
        "run",
        "--rm",
        "-u",
        "root",
        "-e",
        f"LOCK_OWNER={os.getuid()}:{os.getgid()}",
        "-v",
        f"{lock_run.checkout}:/src",
        "-v",
        "f5tts-lock-tools:/opt/lock-tools",
    ]
    inner = argv[argv.index(image) + 1 :]
    assert inner[:2] == ["/bin/sh", "-c"]
    assert '/src/bootstrap/lock "$@"' in inner[2] and 'chown "$LOCK_OWNER"' in inner[2]
    assert inner[3:] == [
        "bootstrap/lock",
        "--micromamba",
        "/bin/micromamba",
        "--tools-dir",
        "/opt/lock-tools",
        "--channel",
        lock_run.channel.url,
        "--conda-only",
    ]


def test_a_leftover_with_only_an_sdist_fails_the_lock_unless_its_in_declares_it(
    lock_run: LockRun,
):
    index = lock_run.work / "index"
    shutil.copytree(lock_run.wheelhouse.dir, index)
    build_sdist(index, "sdist-probe", "0.1.1")
    source = lock_run.checkout / "requirements/leftovers.in"
    before = (lock_run.checkout / "requirements/leftovers.txt").read_bytes()
    source.write_text(source.read_text() + "sdist-probe==0.1.1\n")

    refused = lock_run.run("--leftovers-only", UV_FIND_LINKS=str(index))
    assert refused.returncode == ExitCode.LOCK_TOOL
    assert "sdist-probe==0.1.1 has no usable wheels" in refused.stderr
    assert (lock_run.checkout / "requirements/leftovers.txt").read_bytes() == before

    # Declared, but the env that would build it has no setuptools: refused before uv runs.
    source.write_text("--no-binary sdist-probe\n" + source.read_text())
    no_build_tools = lock_run.run("--leftovers-only", UV_FIND_LINKS=str(index))
    assert no_build_tools.returncode == ExitCode.LEFTOVERS_SDIST

    environment = lock_run.checkout / "environment.yml"
    environment.write_text(environment.read_text() + "- setuptools\n")
    declared = lock_run.run("--leftovers-only", UV_FIND_LINKS=str(index))
    assert declared.returncode == 0, declared.stderr
    lock = (lock_run.checkout / "requirements/leftovers.txt").read_text()
    assert "--only-binary :all:\n--no-binary sdist-probe\n" in lock
    assert "sdist-probe==0.1.1 \\\n    --hash=sha256:" in lock


def test_a_micromamba_under_another_name_reaches_conda_lock_as_micromamba(lock_run: LockRun):
    """conda-lock decides by the name whether a binary is micromamba or conda."""
    renamed = lock_run.work / "bin" / "micromamba-2.5.0"
    renamed.parent.mkdir()
    renamed.symlink_to(lock_run.micromamba.executable)
    result = lock_run.run("--conda-only", "--micromamba", str(renamed))

    assert result.returncode == 0, result.stderr
    [call] = lock_calls(lock_run.conda_lock_log)
    conda = call["argv"][call["argv"].index("--conda") + 1]
    assert conda == str(lock_run.tools_dir / "bin" / "micromamba")
    assert_valid_lock(lock_run)
