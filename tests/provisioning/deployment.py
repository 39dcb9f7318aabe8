"""A worker deployment in a temp dir, started through the real bootstrap/entrypoint.sh.

`Site` = one app directory (a copy of bootstrap/ as the image has it, a test
conda-lock.yml of real conda packages from the local channel, hash-locked leftovers,
the probe handler) plus one network volume. Workers are real `sh` processes; only
micromamba is the test double of tests/support, and the handler is probe_handler.py,
which prints what it was exec'd with.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.lock_kit import copy_bootstrap as copy_bootstrap_files
from tests.support.lockfiles import LockBundle
from tests.support.micromamba_double import MicromambaDouble, realizations
from tests.support.wheels import Wheelhouse

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The image's bootstrap/ minus what docker build adds (env-id), Python caches and
# bootstrap/lock (tests/test_dockerfile.py starts the image's own /app).
BOOTSTRAP_FILES = ("*.sh", "*.py", "*.env", "*.txt", "LAYOUT_VERSION")


def copy_bootstrap(dest: Path) -> None:
    # No `lock`, and no env-id: a site's missing lock is exit 13 (the image has env-id,
    # so it never locks; a fresh clone has bootstrap/lock, test_start_without_lock.py).
    copy_bootstrap_files(dest, BOOTSTRAP_FILES)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def probe(self) -> dict | None:
        """What probe_handler saw, or None when no handler was exec'd."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return None

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("[bootstrap] error")]


@dataclass
class Worker:
    """One entrypoint process, its own process group (a container, for SIGKILL)."""

    process: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_stderr(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.process.returncode}) before {text!r}:\n{self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout} s:\n{self.stderr()}")
            time.sleep(0.05)

    def kill_container(self) -> None:
        """SIGKILL the worker and everything it started, as when a machine dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def result(self, timeout: float = 120) -> Result:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(
                f"worker still running after {timeout} s:\n{self.stderr()}"
            ) from None
        return Result(
            self.process.returncode,
            self.stdout_path.read_text(errors="replace"),
            self.stderr(),
        )


@dataclass
class Site:
    root: Path
    app: Path
    volume: Path
    env: dict[str, str]
    double_log: Path
    _count: int = field(default=0)

    def start(self, *args: str, **overrides: str) -> Worker:
        self._count += 1
        out = self.root / f"worker-{self._count}.out"
        err = self.root / f"worker-{self._count}.err"
        env = {**self.env, **overrides}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [str(self.app / "bootstrap" / "entrypoint.sh"), *args],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        return Worker(process, out, err)

    def run(self, *args: str, timeout: float = 120, **overrides: str) -> Result:
        return self.start(*args, **overrides).result(timeout)

    # ---- what the volume holds

    @property
    def envs(self) -> Path:
        return self.volume / "envs"

    def realizations(self) -> int:
        return len(realizations(self.double_log)) if self.double_log.exists() else 0

    def prefixes(self) -> list[Path]:
        return sorted(p for p in self.envs.glob("f5tts-*") if p.is_dir() and not p.is_symlink())

    def marked_prefixes(self) -> list[Path]:
        return [p for p in self.prefixes() if (p / ".f5tts" / "ready.json").is_file()]

    def active(self) -> str | None:
        link = self.envs / "f5tts"
        return os.readlink(link) if link.is_symlink() else None

    def previous(self) -> str | None:
        link = self.envs / "f5tts.previous"
        return os.readlink(link) if link.is_symlink() else None

    def env_id(self) -> str:
        """The id the entrypoint computes for the current app dir (bootstrap/env-id.sh)."""
        return subprocess.run(
            ["sh", str(self.app / "bootstrap" / "env-id.sh"), str(self.app)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def use_lock(self, lockfile: Path) -> str:
        shutil.copy(lockfile, self.app / "conda-lock.yml")
        return self.env_id()


def clean_environ() -> dict[str, str]:
    """os.environ without anything that would leak into the worker's settings."""
    prefixes = ("F5TTS_", "HF_", "MAMBA_", "CONDA_", "MICROMAMBA", "PIP_", "TORCH_HOME", "NLTK_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def make_site(
    root: Path, lock: LockBundle, double: MicromambaDouble, wheelhouse: Wheelhouse
) -> Site:
    """An app dir and an empty volume under `root`; settings tuned for fast tests."""
    app = root / "app"
    copy_bootstrap(app / "bootstrap")
    shutil.copy(lock.lockfile, app / "conda-lock.yml")
    (app / "requirements").mkdir()
    shutil.copy(wheelhouse.requirements, app / "requirements" / "leftovers.txt")
    shutil.copy(HERE / "probe_handler.py", app / "probe_handler.py")
    volume = root / "volume"
    volume.mkdir()
    double_log = root / "micromamba-calls.jsonl"
    env = clean_environ()
    env.update(
        PATH=f"{double.bin_dir}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(root / "home"),
        TMPDIR=str(root),
        MICROMAMBA_DOUBLE_LOG=str(double_log),
        F5TTS_VOLUME=str(volume),
        F5TTS_ALLOWED_CHANNEL=lock.channel.url,
        F5TTS_MIN_FREE_GB="0.01",
        F5TTS_FETCH_MODELS="0",
        F5TTS_HANDLER_MODULE="probe_handler",
        F5TTS_PIP_ARGS=f"--no-index --find-links {wheelhouse.dir}",
        F5TTS_CORE_IMPORTS="yaml,torch,torchaudio",
        F5TTS_LEASE_STALE_S="1",
        F5TTS_LEASE_HEARTBEAT_S="0.2",
        F5TTS_LEASE_POLL_MAX_S="0.3",
        F5TTS_LEASE_WAIT_MAX_S="60",
    )
    return Site(root=root, app=app, volume=volume, env=env, double_log=double_log)
