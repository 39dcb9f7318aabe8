"""Dockerfile.runpod: its stages, what each copies, and the bootstrap/lock commands its
lock stages run, executed here against a clone with the test kit's tools. `docker
build` itself is verified only on a machine with Docker (docs/lockfile.md)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

import pytest

from bootstrap.errors import ExitCode
from tests.conftest import REPO
from tests.support.conda_lock_double import lock_calls
from tests.support.lock_kit import LockRun
from tests.support.lockfiles import write_lock
from tests.support.pins import pins


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """The ARG defaults before the first FROM, and the stages in order."""
    text = (REPO / "Dockerfile.runpod").read_text()
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip() or None))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def stage(name: str | None) -> Stage:
    return next(s for s in dockerfile()[1] if s.name == name)


def copy_sources(instruction: str) -> tuple[str | None, list[str]]:
    words = shlex.split(instruction)
    source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
    paths = [w for w in words if not w.startswith("--")]
    return source_stage, paths[:-1]


def test_the_stages_lock_first_and_end_in_the_minimal_worker_image():
    args, stages = dockerfile()
    assert [(s.name, s.base) for s in stages] == [
        ("micromamba", "${MICROMAMBA_IMAGE}"),
        ("lock-tools", "micromamba"),
        ("locked", "lock-tools"),
        ("lock", "scratch"),
        (None, "${BASE_IMAGE}"),
    ]
    assert args["MICROMAMBA_IMAGE"] == pins()["MICROMAMBA_IMAGE"]
    assert args["BASE_IMAGE"] == "debian:12-slim"


def test_the_tools_layer_depends_only_on_the_pins_and_the_lock_script():
    """So it stays cached while environment.yml, the code or the lock change."""
    tools = stage("lock-tools")
    assert [copy_sources(c)[1] for c in tools.all("COPY")] == [
        ["bootstrap/lock", "bootstrap/pins.env"]
    ]
    assert len(tools.all("RUN")) == 1


def test_the_lock_stage_holds_only_the_lock_for_exporting():
    assert stage("lock").instructions == [
        ("COPY", "--from=locked /src/conda-lock.yml /conda-lock.yml")
    ]


def test_the_worker_image_gets_only_micromamba_certificates_code_and_locks():
    final = stage(None)
    copied = [copy_sources(c) for c in final.all("COPY")]
    assert copied == [
        ("micromamba", ["/bin/micromamba"]),
        ("micromamba", ["/etc/ssl/certs/ca-certificates.crt"]),
        (None, ["bootstrap/"]),
        (None, ["requirements/leftovers*.txt"]),
        ("lock", ["/conda-lock.yml"]),
        (None, ["handler/"]),
    ]
    assert not any("apt" in run for run in final.all("RUN"))
    assert "RUNPOD_INIT_TIMEOUT=1800" in final.all("ENV")
    assert final.all("ENTRYPOINT") == ['["/app/bootstrap/entrypoint.sh"]']


def test_the_build_context_lets_in_everything_the_stages_copy():
    allowed = {
        line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] == "!"
    }
    for name in ("lock-tools", "locked", None):
        for instruction in stage(name).all("COPY"):
            source_stage, paths = copy_sources(instruction)
            if source_stage is None:
                for path in paths:
                    top = path.split("/")[0] + "/" if "/" in path.rstrip("/") else path
                    # conda-lock.y[m]l is optional; requirements/ holds only allowed files.
                    assert (
                        path in allowed
                        or top in allowed
                        or path.replace("y[m]l", "yml") in allowed
                        or path == "requirements/"
                    ), path
    assert {"requirements/leftovers*.in", "requirements/leftovers*.txt"} <= allowed


def lock_runs(name: str) -> list[list[str]]:
    """The bootstrap/lock command lines of a stage's RUN instructions."""
    runs = [shlex.split(run) for run in stage(name).all("RUN")]
    assert all(run[0] == "/src/bootstrap/lock" for run in runs), runs
    # The micromamba image's RUN shell has `set -f`: nothing may rely on a glob.
    assert not any("*" in word for run in runs for word in run)
    return runs


def run_stage_commands(lock_run: LockRun, name: str):
    """Runs a stage's RUN lines on the clone: its own script, the pinned micromamba
    double for /bin/micromamba, a temp tools dir, and the local channel."""
    result = None
    for argv in lock_runs(name):
        args = argv[1:]
        assert args[args.index("--micromamba") + 1] == "/bin/micromamba"
        assert args[args.index("--tools-dir") + 1] == "/opt/lock-tools"
        mode = [a for a in args if a.startswith("--") and a not in ("--micromamba", "--tools-dir")]
        result = lock_run.run(*mode, "--micromamba", str(lock_run.micromamba.executable))
        if result.returncode != 0:
            return result
    return result


def test_a_clone_without_a_lock_gets_one_from_the_build(lock_run: LockRun):
    assert run_stage_commands(lock_run, "lock-tools").returncode == 0
    result = run_stage_commands(lock_run, "locked")
    assert result.returncode == 0, result.stderr
    assert (lock_run.checkout / "conda-lock.yml").is_file()
    assert len(lock_calls(lock_run.conda_lock_log)) == 1


def test_a_committed_lock_is_used_verbatim(lock_run: LockRun):
    write_lock(lock_run.channel, lock_run.checkout)
    before = (lock_run.checkout / "conda-lock.yml").read_bytes()
    for name in ("lock-tools", "locked"):
        assert run_stage_commands(lock_run, name).returncode == 0
    assert (lock_run.checkout / "conda-lock.yml").read_bytes() == before
    assert lock_calls(lock_run.conda_lock_log) == []


@pytest.mark.parametrize("edit", ["environment", "leftovers"])
def test_a_stale_committed_lock_fails_the_build_naming_bootstrap_lock(lock_run: LockRun, edit):
    write_lock(lock_run.channel, lock_run.checkout)
    if edit == "environment":
        env = lock_run.checkout / "environment.yml"
        env.write_text(env.read_text().replace("- prefix-probe\n", ""))
    else:
        source = lock_run.checkout / "requirements/leftovers.in"
        source.write_text(source.read_text() + "# a change\n")
    assert run_stage_commands(lock_run, "lock-tools").returncode == 0
    result = run_stage_commands(lock_run, "locked")
    assert result.returncode == ExitCode.LOCK_STALE
    assert result.stderr.splitlines()[-1] == (
        "bootstrap/lock: a lock is out of date with its source (listed above); "
        "run bootstrap/lock and commit the result."
    )
