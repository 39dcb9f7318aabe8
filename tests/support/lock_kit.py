"""A fresh clone and the tools bootstrap/lock needs, offline, for the lock scenarios.

`make_checkout` is a repository as `git clone` gives it (bootstrap/, an
environment.yml of the local channel, leftovers .in/.txt of the kit's wheelhouse;
a conda-lock.yml only when asked). `LockRun` runs that checkout's own bootstrap/lock
with only micromamba on PATH: the micromamba double, answering `--version` with
the pinned version (bootstrap/pins.env), realizes the tools env from the local
channel, whose conda-lock and uv are stand-ins running tests/support's doubles.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.conda_channel import LocalChannel
from tests.support.lockfiles import DEFAULT_SPECS, write_environment, write_lock
from tests.support.micromamba_double import MicromambaDouble, install_launcher, realizations
from tests.support.wheels import Wheelhouse

REPO = Path(__file__).resolve().parents[2]
# What a clone's bootstrap/ holds that the lock command and the entrypoint read (no
# env-id: docker build writes it).
BOOTSTRAP_FILES = ("*.sh", "*.py", "*.env", "*.txt", "lock", "LAYOUT_VERSION")


def install_micromamba_of_version(bin_dir: Path, version: str) -> MicromambaDouble:
    """`bin_dir/micromamba`: the micromamba double playing `version` instead of the pin."""
    double = install_launcher(bin_dir / "double")
    launcher = bin_dir / "micromamba"
    launcher.write_text(
        f'#!/bin/sh\nMICROMAMBA_DOUBLE_VERSION={version} exec {double.executable} "$@"\n'
    )
    launcher.chmod(0o755)
    return MicromambaDouble(bin_dir=bin_dir, executable=launcher)


def copy_bootstrap(dest: Path, patterns: Sequence[str] = BOOTSTRAP_FILES) -> None:
    """The repository's bootstrap/ files matching `patterns`, copied into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for source in (REPO / "bootstrap").glob(pattern):
            if source.is_file():
                shutil.copy2(source, dest / source.name)


def leftovers_lock_text(source: Path, find_links: Path) -> str:
    """The .txt bootstrap/lock writes for the leftovers .in `source`, its pins compiled
    by the uv double from the distributions in `find_links`."""
    from bootstrap.relock import leftovers_text
    from tests.support import uv_double

    compiled = source.with_name(f".{source.stem}.compiled")
    previous = os.environ.get("UV_FIND_LINKS")
    os.environ["UV_FIND_LINKS"] = str(find_links)
    try:
        args = [
            "pip",
            "compile",
            "--no-deps",
            "--generate-hashes",
            str(source),
            "-o",
            str(compiled),
        ]
        if uv_double.main(args) != 0:
            raise RuntimeError(f"the uv double could not compile {source}")
        return leftovers_text(source, compiled.read_text())
    finally:
        os.environ.pop("UV_FIND_LINKS")
        if previous is not None:
            os.environ["UV_FIND_LINKS"] = previous
        compiled.unlink(missing_ok=True)


def write_leftovers(checkout: Path, wheelhouse: Wheelhouse) -> Path:
    """requirements/leftovers.in of the wheelhouse and its .txt (committed in a clone)."""
    requirements = checkout / "requirements"
    requirements.mkdir(parents=True, exist_ok=True)
    source = requirements / "leftovers.in"
    source.write_text("".join(f"{w.name}=={w.version}\n" for w in wheelhouse.wheels))
    source.with_suffix(".txt").write_text(leftovers_lock_text(source, wheelhouse.dir))
    return source


def make_checkout(
    dest: Path,
    channel: LocalChannel,
    wheelhouse: Wheelhouse,
    *,
    specs: Sequence[str] = DEFAULT_SPECS,
    with_lock: bool = False,
) -> Path:
    """A clone under `dest`: bootstrap/, environment.yml and the leftovers locks."""
    copy_bootstrap(dest / "bootstrap")
    if with_lock:
        write_lock(channel, dest, specs=specs)
    else:
        write_environment(channel, dest, specs)
    write_leftovers(dest, wheelhouse)
    return dest


def clean_environ() -> dict[str, str]:
    """os.environ without the variables of the tools bootstrap/lock drives."""
    drop = ("MAMBA_", "CONDA_", "MICROMAMBA", "F5TTS_", "UV_", "PYTHONPATH", "XDG_CACHE_HOME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class LockRun:
    """How a test runs a checkout's bootstrap/lock: the environment and the logs."""

    checkout: Path
    micromamba: MicromambaDouble
    channel: LocalChannel
    wheelhouse: Wheelhouse
    work: Path

    @property
    def tools_dir(self) -> Path:
        return self.work / "lock-tools"

    @property
    def micromamba_log(self) -> Path:
        return self.work / "micromamba-calls.jsonl"

    @property
    def conda_lock_log(self) -> Path:
        return self.work / "conda-lock-calls.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_environ()
        env.update(
            # Only micromamba is installed: no docker, conda-lock or uv on PATH.
            PATH=f"{self.micromamba.bin_dir}{os.pathsep}{base_tools_dir(self.work / 'base-bin')}",
            HOME=str(self.work / "home"),
            MICROMAMBA_DOUBLE_LOG=str(self.micromamba_log),
            CONDA_LOCK_DOUBLE_LOG=str(self.conda_lock_log),
            UV_FIND_LINKS=str(self.wheelhouse.dir),
        )
        env.update(extra)
        return env

    def args(self, *args: str) -> list[str]:
        return [
            str(self.checkout / "bootstrap" / "lock"),
            *args,
            "--tools-dir",
            str(self.tools_dir),
            "--channel",
            self.channel.url,
        ]

    def start(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.args(*args),
            cwd=self.work,
            env=self.env(**extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def run(self, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.args(*args),
            cwd=self.work,
            env=self.env(**extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def tools_realizations(self) -> list[dict]:
        return [c for c in realizations(self.micromamba_log) if "-f" not in c["argv"]]

    def tools_prefixes(self) -> list[Path]:
        return sorted(p for p in self.tools_dir.glob("conda-lock-*") if p.is_dir())


def make_lock_run(
    work: Path, channel: LocalChannel, wheelhouse: Wheelhouse, micromamba: MicromambaDouble
) -> LockRun:
    work.mkdir(parents=True, exist_ok=True)
    checkout = make_checkout(work / "clone", channel, wheelhouse)
    return LockRun(checkout, micromamba, channel, wheelhouse, work)


# What bootstrap/lock and the stand-ins' launchers call by name: POSIX tools, no Python.
BASE_TOOLS = ("sh", "sed", "sha256sum", "cut", "mkdir", "rm", "mv", "ln", "dirname", "id", "cat")


def base_tools_dir(dest: Path) -> Path:
    """A directory with just the POSIX tools a bare machine has, for a PATH without Python."""
    if dest.is_dir():
        return dest
    dest.mkdir(parents=True)
    for name in BASE_TOOLS:
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"{name} is not installed on this machine")
        (dest / name).symlink_to(found)
    return dest
