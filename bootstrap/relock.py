"""The Python half of `bootstrap/lock`: make and check the locks (docs/lockfile.md).

bootstrap/lock (POSIX sh) first realizes the pinned tools env (python 3.11,
conda-lock, uv; bootstrap/pins.env) with micromamba, then runs this module with that
env's Python and passes the tools' paths. So nothing here needs a system Python.

    (default)          conda-lock.yml, then requirements/leftovers*.txt
    --conda-only       conda-lock.yml only      --leftovers-only   the leftovers only
    --check            fail (46) when a lock is older than its source
    --ensure           conda-lock.yml made if missing, then --check: what `docker
                       build` runs, so a committed lock is used verbatim or refused

conda-lock writes the new lock next to the old one under a temporary name; it
replaces conda-lock.yml only once it passes the validator (bootstrap/lockfile.py),
so a failed or interrupted lock leaves the old file as it was. Each leftovers .txt
starts with `# inputs-sha256: <sha256 of its .in>` (how --check knows a .in
changed) and pip options that allow wheels only, except the sdists its .in declares
with `--no-binary NAME`: `finish` builds those with --no-build-isolation against the
setuptools of the conda env, so pip never fetches unhashed build dependencies.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.lockfile import validate_lock
from bootstrap.settings import DEFAULT_ALLOWED_CHANNEL

INPUTS_HEADER = "# inputs-sha256: "
ONLY_WHEELS = "--only-binary :all:"
NO_BINARY = re.compile(r"^--no-binary[ =]\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:#.*)?$", re.M)
# What builds a declared sdist (pip --no-build-isolation), from environment.yml.
SDIST_BUILD_TOOLS = ("setuptools",)
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
    # A pin without a wheel fails the lock, unless its .in declares it --no-binary.
    "--only-binary",
    ":all:",
)

Runner = Callable[..., subprocess.CompletedProcess]


class Step(Enum):
    LOCK_CONDA = "lock conda-lock.yml"
    LOCK_LEFTOVERS = "lock the leftovers"
    CHECK = "check every lock against its source"


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

    @property
    def new_lockfile(self) -> Path:
        # Beside the real one, so conda-lock writes the same relative `sources`.
        return self.root / f".conda-lock.{os.getpid()}.yml"

    def leftover_inputs(self) -> list[Path]:
        return sorted((self.root / "requirements").glob("leftovers*.in"))

    def leftover_locks(self) -> list[Path]:
        return sorted((self.root / "requirements").glob("leftovers*.txt"))


@dataclass(frozen=True)
class Tools:
    """The binaries of the tools env (and the pinned micromamba conda-lock solves with)."""

    micromamba: str | None = None
    conda_lock: str | None = None
    uv: str | None = None


# ---------------------------------------------------------------- deciding


def plan(mode: str, what: str, lock_exists: bool) -> list[Step]:
    """The steps for a mode (lock, check, ensure) and a part (all, conda, leftovers)."""
    if mode == "check":
        return [Step.CHECK]
    if mode == "ensure":
        return [Step.CHECK] if lock_exists else [Step.LOCK_CONDA, Step.CHECK]
    steps = {"all": [Step.LOCK_CONDA, Step.LOCK_LEFTOVERS], "conda": [Step.LOCK_CONDA]}
    return steps.get(what, [Step.LOCK_LEFTOVERS])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_inputs_hash(lock: Path) -> str | None:
    first = lock.read_text(encoding="utf-8").split("\n", 1)[0]
    return first[len(INPUTS_HEADER) :].strip() if first.startswith(INPUTS_HEADER) else None


def declared_sdists(source: Path) -> list[str]:
    """The `--no-binary NAME` lines of a leftovers .in: pins allowed to be sdists."""
    return NO_BINARY.findall(source.read_text(encoding="utf-8"))


def build_options(source: Path) -> list[str]:
    """The pip options a leftovers .txt starts with. `--only-binary :all:` comes first:
    pip applies these lines in order, and `:all:` clears every earlier `--no-binary`."""
    return [ONLY_WHEELS, *(f"--no-binary {name}" for name in declared_sdists(source))]


def conda_names(environment: Path) -> set[str]:
    import yaml

    data = yaml.safe_load(environment.read_text(encoding="utf-8")) or {}
    return {
        re.split(r"[\s=<>!~]", str(dep), maxsplit=1)[0].lower()
        for dep in data.get("dependencies") or []
        if isinstance(dep, str)
    }


def sdist_problems(paths: Paths) -> list[str]:
    """Declared sdists need their build tools in environment.yml (pip builds them
    without isolation, so nothing is fetched unhashed)."""
    problems = []
    available = conda_names(paths.environment) if paths.environment.is_file() else set()
    for source in paths.leftover_inputs():
        sdists = declared_sdists(source)
        missing = [tool for tool in SDIST_BUILD_TOOLS if tool not in available]
        if sdists and missing:
            problems.append(
                f"{source.name} declares the sdist {', '.join(sdists)} (--no-binary), which pip "
                f"builds with {', '.join(missing)} from the conda env, but environment.yml "
                f"lacks {', '.join(missing)}; add it there and relock."
            )
    return problems


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
        elif not _starts_with_options(lock, build_options(source)):
            problems.append(
                f"{lock.name} does not start with the pip options bootstrap/lock writes "
                f"({'; '.join(build_options(source))}); run bootstrap/lock."
            )
    for lock in paths.leftover_locks():
        if lock.with_suffix(".in") not in inputs:
            problems.append(f"{lock.name} has no {lock.with_suffix('.in').name}; delete it.")
    return problems + sdist_problems(paths)


def _starts_with_options(lock: Path, options: list[str]) -> bool:
    lines = [
        line.strip()
        for line in lock.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return lines[: len(options)] == options


def stale_conda_lock(paths: Paths, allowed_channel: str) -> list[str]:
    if not paths.lockfile.is_file():
        return [
            f"{paths.lockfile.name} does not exist; run bootstrap/lock to make it "
            "(it needs micromamba or Docker, and conda-forge)."
        ]
    try:
        import conda_lock  # noqa: F401
    except ImportError:
        return [
            "conda-lock is not importable here, so the lock cannot be compared with "
            "environment.yml; run bootstrap/lock --check, which brings its own conda-lock."
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


def conda_lock_command(paths: Paths, tools: Tools, lockfile: Path) -> list[str]:
    """The `conda-lock lock` call; its flags are checked against conda-lock's own CLI."""
    return [
        _need(tools.conda_lock, "conda-lock"),
        "lock",
        "--micromamba",
        "--conda",
        _need(tools.micromamba, "micromamba"),
        "-f",
        str(paths.environment),
        "-p",
        "linux-64",
        "--virtual-package-spec",
        str(paths.virtual_packages),
        "--lockfile",
        str(lockfile),
    ]


def uv_compile_command(tools: Tools, source: Path, output: Path) -> list[str]:
    # Relative names, run beside them: the "# via" lines do not depend on the caller.
    return [_need(tools.uv, "uv"), *UV_COMPILE, source.name, "-o", output.name]


def leftovers_text(source: Path, compiled: str) -> str:
    header = [
        f"{INPUTS_HEADER}{sha256_of(source)}",
        f"# Generated by bootstrap/lock from {source.name}; do not edit.",
        *build_options(source),
    ]
    return "\n".join(header) + "\n\n" + compiled


# ---------------------------------------------------------------- doing


def _need(path: str | None, name: str) -> str:
    if not path:
        raise BootstrapError(
            ExitCode.LOCK_TOOL,
            f"no {name} was given; run bootstrap/lock, which realizes the lock tools itself.",
        )
    return path


def _run(
    command: Sequence[str], run: Runner, what: str, cwd: Path | None = None, hint: str = ""
) -> None:
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    result = run(list(command), cwd=cwd)
    if result.returncode != 0:
        raise BootstrapError(
            ExitCode.LOCK_TOOL,
            f"{what} failed with exit code {result.returncode}; its reason is above{hint}.",
        )


def write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    publish(temp, path)


def publish(temp: Path, path: Path) -> None:
    """Renames a written, fsynced file over `path` and makes the rename durable."""
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def lock_conda(paths: Paths, tools: Tools, run: Runner, allowed_channel: str) -> None:
    new = paths.new_lockfile
    new.unlink(missing_ok=True)
    try:
        _run(conda_lock_command(paths, tools, new), run, "conda-lock", cwd=paths.root)
        if not new.is_file():
            raise BootstrapError(
                ExitCode.LOCK_TOOL, f"conda-lock exited 0 but wrote no {new.name}; see above."
            )
        report = validate_lock(
            new,
            allowed_channel=allowed_channel,
            environment=paths.environment,
            virtual_packages=paths.virtual_packages,
        )
        if not report.ok:
            raise BootstrapError(
                ExitCode.LOCKFILE_INVALID,
                "the new lock fails validation, so conda-lock.yml was left as it was: "
                + " ".join(report.problems),
            )
        publish(new, paths.lockfile)
    finally:
        new.unlink(missing_ok=True)
    print(f"bootstrap/lock: wrote {paths.lockfile}.", file=sys.stderr)


def lock_leftovers(paths: Paths, tools: Tools, run: Runner) -> None:
    problems = sdist_problems(paths)
    if problems:
        raise BootstrapError(ExitCode.LEFTOVERS_SDIST, " ".join(problems))
    for source in paths.leftover_inputs():
        target = source.with_suffix(".txt")
        compiled = source.with_name(f".{source.stem}.{os.getpid()}.compiled")
        try:
            _run(
                uv_compile_command(tools, source, compiled),
                run,
                f"uv pip compile {source.name}",
                cwd=source.parent,
                hint="; a pin with no usable wheels needs a --no-binary NAME line in its .in "
                "(docs/lockfile.md)",
            )
            write_atomically(target, leftovers_text(source, compiled.read_text(encoding="utf-8")))
        finally:
            compiled.unlink(missing_ok=True)
        print(f"bootstrap/lock: wrote {target}.", file=sys.stderr)


def run_step(step: Step, paths: Paths, tools: Tools, run: Runner, channel: str) -> None:
    if step is Step.LOCK_CONDA:
        lock_conda(paths, tools, run, channel)
    elif step is Step.LOCK_LEFTOVERS:
        lock_leftovers(paths, tools, run)
    else:
        problems = check(paths, channel)
        for problem in problems:
            print(f"bootstrap/lock: {problem}", file=sys.stderr)
        if problems:
            raise BootstrapError(
                ExitCode.LOCK_STALE,
                "a lock is out of date with its source (listed above); run bootstrap/lock "
                "and commit the result.",
            )
        print("bootstrap/lock: conda-lock.yml and the leftovers locks are up to date.")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bootstrap/lock", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_const", dest="mode", const="check")
    mode.add_argument("--ensure", action="store_const", dest="mode", const="ensure")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--conda-only", action="store_const", dest="what", const="conda")
    what.add_argument("--leftovers-only", action="store_const", dest="what", const="leftovers")
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--channel", default=DEFAULT_ALLOWED_CHANNEL, help="the one allowed channel")
    p.add_argument("--micromamba", help="the pinned micromamba conda-lock solves with")
    p.add_argument("--conda-lock", help="conda-lock of the tools env")
    p.add_argument("--uv", help="uv of the tools env")
    p.set_defaults(mode="lock", what="all")
    return p


def main(argv: Sequence[str] | None = None, run: Runner = subprocess.run) -> int:
    args = parser().parse_args(argv)
    paths = Paths(args.root.resolve())
    tools = Tools(args.micromamba, args.conda_lock, args.uv)
    channel = args.channel.rstrip("/")
    try:
        steps = plan(args.mode, args.what, paths.lockfile.is_file())
        for step in steps:
            run_step(step, paths, tools, run, channel)
    except BootstrapError as exc:
        print(f"bootstrap/lock: {exc.message}", file=sys.stderr)
        return int(exc.code)
    made = [
        name
        for step, name in (
            (Step.LOCK_CONDA, "conda-lock.yml"),
            (Step.LOCK_LEFTOVERS, "requirements/leftovers*.txt"),
        )
        if step in steps
    ]
    if made:
        print(
            f"bootstrap/lock: done; commit {' and '.join(made)}: with the locks committed, "
            "every image build and start installs exactly these packages.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
