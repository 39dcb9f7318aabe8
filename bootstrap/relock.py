"""The maintainers' lock command (`bootstrap/lock`): regenerate and check the locks.

    bootstrap/lock            conda-lock.yml from environment.yml, validated, then
                              requirements/leftovers*.txt from leftovers*.in
    bootstrap/lock --check    fail when environment.yml, virtual-packages.yml or a
                              leftovers .in changed since the locks were made
    bootstrap/lock --docker   the same inside the official micromamba image

Runs on a maintainer's machine that reaches conda-forge and PyPI, never in the
worker. conda-lock solves with micromamba 2.5.x (conda-lock pins micromamba < 2.6
for locking); the worker may realize the lock with a newer micromamba.
Each leftovers .txt starts with `# inputs-sha256: <sha256 of its .in>`, which is
how --check knows a .in changed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.lockfile import validate_lock
from bootstrap.settings import DEFAULT_ALLOWED_CHANNEL

REPO = Path(__file__).resolve().parent.parent
DOCKER_IMAGE = "mambaorg/micromamba:2.5.0"
MICROMAMBA_SERIES = "2.5."
CONDA_LOCK_VERSION = "4.0.3"
UV_VERSION = "0.13.9"
INPUTS_HEADER = "# inputs-sha256: "
UV_COMPILE = (
    "pip",
    "compile",
    "--no-deps",
    "--generate-hashes",
    "--python-version",
    "3.11",
    "--python-platform",
    "x86_64-manylinux_2_28",
    "--no-header",
    "--quiet",
)

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def environment(self) -> Path:
        return self.root / "environment.yml"

    @property
    def virtual_packages(self) -> Path:
        return self.root / "virtual-packages.yml"

    @property
    def lockfile(self) -> Path:
        return self.root / "conda-lock.yml"

    def leftover_inputs(self) -> list[Path]:
        return sorted((self.root / "requirements").glob("leftovers*.in"))

    def leftover_locks(self) -> list[Path]:
        return sorted((self.root / "requirements").glob("leftovers*.txt"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_inputs_hash(lock: Path) -> str | None:
    first = lock.read_text(encoding="utf-8").split("\n", 1)[0]
    return first[len(INPUTS_HEADER) :].strip() if first.startswith(INPUTS_HEADER) else None


def stale_leftovers(paths: Paths) -> list[str]:
    problems = []
    inputs = paths.leftover_inputs()
    for source in inputs:
        lock = source.with_suffix(".txt")
        if not lock.is_file():
            problems.append(f"{lock.name} is missing; run bootstrap/lock to generate it.")
        elif recorded_inputs_hash(lock) != sha256_of(source):
            problems.append(
                f"{source.name} changed since {lock.name} was made; run bootstrap/lock."
            )
    for lock in paths.leftover_locks():
        if lock.with_suffix(".in") not in inputs:
            problems.append(f"{lock.name} has no {lock.with_suffix('.in').name}; delete it.")
    return problems


def stale_conda_lock(paths: Paths, allowed_channel: str) -> list[str]:
    if not paths.lockfile.is_file():
        return [
            f"{paths.lockfile.name} does not exist; run bootstrap/lock on a machine that "
            "reaches conda-forge."
        ]
    try:
        import conda_lock  # noqa: F401
    except ImportError:
        return [
            "conda-lock is not installed, so the lock cannot be compared with environment.yml; "
            f"pip install conda-lock=={CONDA_LOCK_VERSION}."
        ]
    report = validate_lock(
        paths.lockfile,
        allowed_channel=allowed_channel,
        environment=paths.environment,
        virtual_packages=paths.virtual_packages,
    )
    return report.problems


def check(paths: Paths, allowed_channel: str) -> list[str]:
    return stale_conda_lock(paths, allowed_channel) + stale_leftovers(paths)


def _tool(explicit: str | None, env_name: str, default: str) -> str:
    found = explicit or os.environ.get(env_name) or shutil.which(default)
    if not found:
        raise BootstrapError(
            ExitCode.LOCK_TOOL,
            f"{default} was not found; install it or pass its path with --{default} or {env_name}.",
        )
    return found


def _run(command: Sequence[str], run: Runner, what: str, cwd: Path | None = None) -> None:
    print("+ " + " ".join(command), flush=True)
    result = run(list(command), cwd=cwd)
    if result.returncode != 0:
        raise BootstrapError(
            ExitCode.LOCK_TOOL,
            f"{what} failed with exit code {result.returncode}; see its output above.",
        )


def conda_lock_command(paths: Paths, micromamba: str) -> list[str]:
    return [
        "conda-lock",
        "lock",
        "--micromamba",
        "--conda",
        micromamba,
        "-f",
        str(paths.environment),
        "-p",
        "linux-64",
        "--virtual-package-spec",
        str(paths.virtual_packages),
        "--lockfile",
        str(paths.lockfile),
    ]


def micromamba_version(micromamba: str, run: Runner) -> str:
    result = run([micromamba, "--version"], capture_output=True, text=True)
    return (result.stdout or "").strip()


def lock_conda(paths: Paths, micromamba: str, run: Runner) -> None:
    version = micromamba_version(micromamba, run)
    if not version.startswith(MICROMAMBA_SERIES):
        raise BootstrapError(
            ExitCode.LOCK_TOOL,
            f"{micromamba} is version {version or '?'}, but conda-lock {CONDA_LOCK_VERSION} needs "
            f"micromamba {MICROMAMBA_SERIES}x to solve; "
            "pass one with --micromamba or use --docker.",
        )
    _run(conda_lock_command(paths, micromamba), run, "conda-lock")
    report = validate_lock(
        paths.lockfile,
        allowed_channel=DEFAULT_ALLOWED_CHANNEL,
        environment=paths.environment,
        virtual_packages=paths.virtual_packages,
    )
    if not report.ok:
        raise BootstrapError(
            ExitCode.LOCKFILE_INVALID,
            "the new conda-lock.yml fails validation: " + " ".join(report.problems),
        )


def lock_leftovers(paths: Paths, uv: str, run: Runner) -> None:
    for source in paths.leftover_inputs():
        target = source.with_suffix(".txt")
        # Relative names, run beside them: the "# via" lines do not depend on the caller.
        command = [uv, *UV_COMPILE, source.name, "-o", target.name]
        _run(command, run, f"uv pip compile {source.name}", cwd=source.parent)
        body = target.read_text(encoding="utf-8")
        target.write_text(
            f"{INPUTS_HEADER}{sha256_of(source)}\n"
            f"# Generated by bootstrap/lock from {source.name}; do not edit.\n{body}",
            encoding="utf-8",
        )


def docker_command(paths: Paths, image: str) -> list[str]:
    # The image has micromamba 2.5 at /bin/micromamba and activates its base env;
    # conda-lock and uv go into base, then this same script runs inside. As root, so
    # the install into /opt/conda works; the results are handed back to the caller.
    owner = f"{os.getuid()}:{os.getgid()}"
    inner = (
        f"micromamba install -y -n base -c conda-forge python=3.11 "
        f"conda-lock={CONDA_LOCK_VERSION} uv={UV_VERSION} "
        "&& python bootstrap/lock --micromamba /bin/micromamba "
        f"&& chown {owner} conda-lock.yml requirements/leftovers*.txt"
    )
    return [
        "docker",
        "run",
        "--rm",
        "-u",
        "root",
        "-v",
        f"{paths.root}:/src",
        "-w",
        "/src",
        image,
        "bash",
        "-c",
        inner,
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bootstrap/lock", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if a lock is out of date")
    mode.add_argument("--docker", action="store_true", help="lock inside the micromamba image")
    p.add_argument("--micromamba", help="micromamba 2.5.x binary (default: $MICROMAMBA or PATH)")
    p.add_argument("--uv", help="uv binary (default: $UV or PATH)")
    p.add_argument("--image", default=DOCKER_IMAGE, help=f"image for --docker ({DOCKER_IMAGE})")
    p.add_argument("--root", type=Path, default=REPO, help="repository root")
    p.add_argument("--channel", default=DEFAULT_ALLOWED_CHANNEL, help="allowed channel (--check)")
    p.add_argument("--leftovers-only", action="store_true", help="only relock the pip leftovers")
    return p


def main(argv: Sequence[str] | None = None, run: Runner = subprocess.run) -> int:
    args = parser().parse_args(argv)
    paths = Paths(args.root.resolve())
    try:
        if args.check:
            problems = check(paths, args.channel)
            for problem in problems:
                print(f"lock --check: {problem}", file=sys.stderr)
            if problems:
                return int(ExitCode.LOCK_STALE)
            print("lock --check: conda-lock.yml and the leftovers locks are up to date.")
            return 0
        if args.docker:
            _run(docker_command(paths, args.image), run, "docker run")
            return 0
        if not args.leftovers_only:
            lock_conda(paths, _tool(args.micromamba, "MICROMAMBA", "micromamba"), run)
        lock_leftovers(paths, _tool(args.uv, "UV", "uv"), run)
    except BootstrapError as exc:
        print(f"bootstrap/lock: {exc.message}", file=sys.stderr)
        return int(exc.code)
    print("bootstrap/lock: done; commit conda-lock.yml and requirements/leftovers*.txt.")
    return 0
