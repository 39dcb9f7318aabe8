"""Dockerfile.runpod: its stages, what each copies, and its RUN lines executed here on
what the stage would hold: the build context (git's files less .dockerignore, as
Docker's patternmatcher reads it), copied by the stage's own COPY lines, with the test
kit's tools, channel and wheels. `docker build` itself is verified only on a machine
with Docker (docs/lockfile.md)."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
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


# ---------------------------------------------------------------- the build context


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore or COPY pattern as Docker matches it: `*` and `?` stop at `/`,
    `**` crosses it, `[...]` is a class."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        char = text[i]
        if char == "[":
            end = text.index("]", i)
            out, i = out + text[i : end + 1], end + 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out + "$")


def build_context(root=REPO) -> set[str]:
    """The files `docker build .` sends: what git tracks (and a conda-lock.yml, if any),
    less what .dockerignore excludes. As Docker's patternmatcher does it, a pattern
    matches a path or any folder above it, and the last matching line wins."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, _pattern(line.removeprefix("!").strip("/"))))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    files = set(tracked) | ({"conda-lock.yml"} if (root / "conda-lock.yml").is_file() else set())

    def sent(path: str) -> bool:
        parts, included = path.split("/"), True
        for keep, rule in rules:
            if any(rule.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
                included = keep
        return included

    return {f for f in files if sent(f) and (root / f).is_file()}


def copy_from_context(stage_: Stage, context: set[str], root, dest_root) -> None:
    """Performs the stage's `COPY` lines that read the build context (not --from)."""
    for instruction in stage_.all("COPY"):
        source_stage, sources = copy_sources(instruction)
        if source_stage is not None:
            continue
        dest = shlex.split(instruction)[-1]
        target = dest_root / dest.lstrip("/")
        for source in sources:
            folder = source.rstrip("/") + "/"
            if any(f.startswith(folder) for f in context):  # a folder: its contents
                picked = {f: f[len(folder) :] for f in context if f.startswith(folder)}
            else:  # a file or a pattern; one that matches nothing is allowed
                picked = {f: f.rsplit("/", 1)[-1] for f in context if _pattern(source).match(f)}
            for path, relative in picked.items():
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / path, target / relative)


def test_the_build_context_is_what_docker_sends():
    """The model above agrees with Docker on this repository's .dockerignore."""
    context = build_context()
    assert {"bootstrap/entrypoint.sh", "bootstrap/pins.env", "handler/__init__.py"} <= context
    requirements = {f for f in context if f.startswith("requirements/")}
    assert requirements == {
        f"requirements/leftovers{part}.{ext}" for part in ("", "-whisperx") for ext in ("in", "txt")
    }
    assert not [f for f in context if f.startswith(("tests/", "docs/", "scripts/", ".venv/"))]
    assert not [f for f in context if "__pycache__" in f or f == "bootstrap/env-id"]


def test_the_worker_image_holds_every_file_of_the_bootstrap(tmp_path):
    """What the final stage copies from the context is the whole of bootstrap/ (its
    code, pins.env, required-packages.txt, LAYOUT_VERSION, ...): .dockerignore lets
    nothing the entrypoint or the Python stage reads fall out."""
    copy_from_context(stage(None), build_context(), REPO, tmp_path)
    tracked = subprocess.run(
        ["git", "ls-files", "bootstrap", "handler"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(tracked) == sorted(
        str(p.relative_to(tmp_path / "app"))
        for p in (tmp_path / "app").rglob("*")
        if p.is_file() and p.parent.name != "requirements"
    )
    assert sorted(p.name for p in (tmp_path / "app" / "requirements").iterdir()) == [
        "leftovers-whisperx.txt",
        "leftovers.txt",
    ]


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


def test_the_lock_stages_run_on_only_what_they_copy_from_the_build_context(
    lock_run: LockRun, tmp_path
):
    """Each lock stage's RUN, in a /src holding only what its COPY lines (and the stage
    before) put there from the build context: the repository's bootstrap/ as docker
    sends it, with the kit's environment, channel and wheels as the data to lock."""
    context, root = build_context(), tmp_path / "stage"
    copy_from_context(stage("lock-tools"), context, REPO, root)
    src = root / "src"
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()) == [
        "bootstrap/lock",
        "bootstrap/pins.env",
    ]
    in_stage = dataclasses.replace(lock_run, checkout=src)
    assert run_stage_commands(in_stage, "lock-tools").returncode == 0

    copy_from_context(stage("locked"), context, REPO, root)
    assert not (src / "conda-lock.yml").exists()  # this repository commits none (yet)
    for name in ("environment.yml", "virtual-packages.yml"):
        shutil.copy(lock_run.checkout / name, src / name)
    shutil.rmtree(src / "requirements")
    shutil.copytree(lock_run.checkout / "requirements", src / "requirements")
    result = run_stage_commands(in_stage, "locked")

    assert result.returncode == 0, result.stderr
    assert (src / "conda-lock.yml").is_file()
    assert len(lock_calls(lock_run.conda_lock_log)) == 1


def test_the_worker_image_starts_cold_then_warm_from_what_the_final_stage_copies(
    tmp_path, cuda_lock, micromamba_double, wheelhouse
):
    """/app as the final stage builds it (its COPY lines from the build context, the
    lock, then its RUN writing bootstrap/env-id), started with the test kit's
    micromamba and channel: the image's entrypoint has every file it reads."""
    from tests.provisioning.deployment import HERE, make_site

    site = make_site(tmp_path / "site", cuda_lock, micromamba_double, wheelhouse)
    shutil.rmtree(site.app)
    copy_from_context(stage(None), build_context(), REPO, tmp_path / "image")
    shutil.copytree(tmp_path / "image" / "app", site.app)
    shutil.copy(cuda_lock.lockfile, site.app / "conda-lock.yml")  # COPY --from=lock
    # The kit's wheels for the repository's leftovers (PyPI is not reached in tests).
    for lock in (site.app / "requirements").iterdir():
        lock.unlink()
    shutil.copy(wheelhouse.requirements, site.app / "requirements" / "leftovers.txt")
    shutil.copy(HERE / "probe_handler.py", site.app / "probe_handler.py")
    [env_id_run] = stage(None).all("RUN")
    assert env_id_run.startswith("/app/bootstrap/env-id.sh /app > /app/bootstrap/env-id")
    env_id = subprocess.run(
        [str(site.app / "bootstrap" / "env-id.sh"), str(site.app)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (site.app / "bootstrap" / "env-id").write_text(env_id)

    cold, warm = site.run(), site.run()

    assert cold.returncode == 0, cold.stderr
    assert "ready: cold" in cold.stderr and "making it with bootstrap/lock" not in cold.stderr
    assert warm.returncode == 0, warm.stderr
    assert f"ready: warm env={env_id.strip()}" in warm.stderr
    assert warm.probe["executable"] == str(site.envs / f"f5tts-{env_id.strip()}" / "bin" / "python")
