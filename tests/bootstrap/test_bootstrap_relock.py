"""bootstrap/relock.py, the Python half of bootstrap/lock: its plans, the commands it
gives conda-lock and uv (checked against conda-lock's own CLI), the checks, and the
atomic replacement of the locks. The real solve needs conda-forge: verified only on
a machine that reaches it (docs/lockfile.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bootstrap.errors import ExitCode
from bootstrap.relock import (
    INPUTS_HEADER,
    UV_COMPILE,
    Paths,
    Step,
    Tools,
    build_options,
    conda_lock_command,
    leftovers_text,
    main,
    plan,
    sha256_of,
    stale_leftovers,
)
from tests.conftest import REPO

TOOLS = ["--micromamba", "/mm", "--conda-lock", "/tools/bin/conda-lock", "--uv", "/tools/bin/uv"]


def lock_leftovers_by_hand(requirements: Path, name: str, body: str) -> None:
    source = requirements / f"{name}.in"
    source.write_text(body)
    (requirements / f"{name}.txt").write_text(
        leftovers_text(source, "x==1 \\\n    --hash=sha256:00\n")
    )


@pytest.fixture
def checkout(tmp_path, lock_bundle) -> Path:
    """A repository whose locks match their sources."""
    root = tmp_path / "repo"
    (root / "requirements").mkdir(parents=True)
    shutil.copy(lock_bundle.environment_yml, root / "environment.yml")
    shutil.copy(lock_bundle.virtual_packages_yml, root / "virtual-packages.yml")
    shutil.copy(lock_bundle.lockfile, root / "conda-lock.yml")
    lock_leftovers_by_hand(root / "requirements", "leftovers", "runpod==1.12.0\n")
    lock_leftovers_by_hand(root / "requirements", "leftovers-whisperx", "whisperx==3.8.6\n")
    return root


def check(root: Path, lock_bundle) -> int:
    return main(["--check", "--root", str(root), "--channel", lock_bundle.channel.url])


# ---------------------------------------------------------------- plans


@pytest.mark.parametrize(
    ("mode", "what", "lock_exists", "steps"),
    [
        ("lock", "all", True, [Step.LOCK_CONDA, Step.LOCK_LEFTOVERS]),
        ("lock", "conda", False, [Step.LOCK_CONDA]),
        ("lock", "leftovers", True, [Step.LOCK_LEFTOVERS]),
        ("check", "all", True, [Step.CHECK]),
        ("ensure", "all", False, [Step.LOCK_CONDA, Step.CHECK]),
        ("ensure", "all", True, [Step.CHECK]),
    ],
)
def test_each_mode_plans_its_steps(mode, what, lock_exists, steps):
    assert plan(mode, what, lock_exists) == steps


# ---------------------------------------------------------------- --check


def test_check_passes_when_every_lock_matches_its_source(checkout, lock_bundle, capsys):
    assert check(checkout, lock_bundle) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_fails_when_environment_yml_changed_since_the_lock(checkout, lock_bundle, capsys):
    env = checkout / "environment.yml"
    env.write_text(env.read_text() + "- librosa\n")
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE
    err = capsys.readouterr().err
    assert "content hash does not match environment.yml" in err
    assert err.endswith(
        "bootstrap/lock: a lock is out of date with its source (listed above); "
        "run bootstrap/lock and commit the result.\n"
    )


def test_check_fails_when_virtual_packages_changed_since_the_lock(checkout, lock_bundle):
    vp = checkout / "virtual-packages.yml"
    vp.write_text(vp.read_text().replace("12.9", "12.4"))
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE


def test_check_fails_when_a_leftovers_in_changed_since_its_lock(checkout, lock_bundle, capsys):
    (checkout / "requirements/leftovers.in").write_text("runpod==1.13.0\n")
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE
    assert (
        "bootstrap/lock: leftovers.in changed since leftovers.txt was made; run bootstrap/lock.\n"
        in capsys.readouterr().err
    )


def test_check_names_locks_without_sources_and_sources_without_locks(checkout):
    (checkout / "requirements/leftovers-old.txt").write_text("x==1\n")
    (checkout / "requirements/leftovers-new.in").write_text("y==2\n")
    assert stale_leftovers(Paths(checkout)) == [
        "leftovers-new.txt is missing; run bootstrap/lock to generate it.",
        "leftovers-old.txt has no leftovers-old.in; delete it.",
    ]


def test_check_refuses_a_leftovers_lock_without_the_wheels_only_options(checkout):
    lock = checkout / "requirements/leftovers.txt"
    lock.write_text(lock.read_text().replace("--only-binary :all:\n", ""))
    assert stale_leftovers(Paths(checkout)) == [
        "leftovers.txt does not start with the pip options bootstrap/lock writes "
        "(--only-binary :all:); run bootstrap/lock."
    ]


def test_check_without_a_conda_lock_says_how_to_make_one(checkout, lock_bundle, capsys):
    (checkout / "conda-lock.yml").unlink()
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE
    assert "conda-lock.yml does not exist; run bootstrap/lock to make it" in capsys.readouterr().err


def test_the_repository_leftovers_locks_match_their_sources():
    assert stale_leftovers(Paths(REPO)) == []


# ---------------------------------------------------------------- the commands


def test_conda_lock_gets_only_flags_that_the_pinned_conda_lock_defines(tmp_path):
    """Parsed by conda-lock 4.0.3's own click command, as the real `conda-lock` would."""
    import conda_lock
    from conda_lock.conda_lock import main as conda_lock_cli

    tools = Tools(micromamba="/opt/micromamba", conda_lock="/tools/bin/conda-lock")
    command = conda_lock_command(Paths(tmp_path), tools, tmp_path / ".new.yml")
    assert command[:2] == ["/tools/bin/conda-lock", "lock"]
    assert conda_lock.__version__ == "4.0.3"
    params = conda_lock_cli.commands["lock"].make_context("conda-lock lock", command[2:]).params
    assert params["micromamba"] is True
    assert params["conda"] == "/opt/micromamba"
    assert params["files"] == (str(tmp_path / "environment.yml"),)
    assert params["platform"] == ("linux-64",)
    assert params["virtual_package_spec"] == str(tmp_path / "virtual-packages.yml")
    assert params["lockfile"] == str(tmp_path / ".new.yml")
    # Nothing that would reuse or update an existing lock: every lock is a fresh solve.
    assert params["update"] == () and params["check_input_hash"] is False


def test_uv_compiles_for_the_worker_platform_with_wheels_only():
    assert UV_COMPILE[:4] == ("pip", "compile", "--no-deps", "--generate-hashes")
    flags = " ".join(UV_COMPILE)
    assert "--python-version 3.11 --python-platform x86_64-manylinux_2_28" in flags
    assert "--only-binary :all:" in flags


def test_the_wheels_only_option_comes_before_the_declared_sdists(tmp_path):
    """pip applies these lines in order; `--only-binary :all:` clears earlier --no-binary."""
    source = tmp_path / "leftovers.in"
    source.write_text("--no-binary encodec  # sdist only\nencodec==0.1.1\nass==1.0.3\n")
    assert build_options(source) == ["--only-binary :all:", "--no-binary encodec"]
    text = leftovers_text(source, "ass==1.0.3 \\\n    --hash=sha256:00\n")
    assert text.splitlines()[:5] == [
        f"{INPUTS_HEADER}{sha256_of(source)}",
        "# Generated by bootstrap/lock from leftovers.in; do not edit.",
        "--only-binary :all:",
        "--no-binary encodec",
        "",
    ]


class Recorder:
    """Stands in for subprocess.run: records commands, plays conda-lock and uv."""

    def __init__(self, lock_from: Path | None = None, fail: str | None = None):
        self.calls: list[list[str]] = []
        self.lock_from = lock_from
        self.fail = fail

    def __call__(self, command, **kwargs):
        self.calls.append(command)
        tool = Path(command[0]).name
        if tool == self.fail:
            return subprocess.CompletedProcess(command, 1, "", "")
        if tool == "conda-lock" and self.lock_from is not None:
            shutil.copy(self.lock_from, command[command.index("--lockfile") + 1])
        if tool == "uv":
            out = Path(kwargs["cwd"]) / command[command.index("-o") + 1]
            out.write_text("runpod==1.12.0 \\\n    --hash=sha256:00\n")
        return subprocess.CompletedProcess(command, 0, "", "")


def relock(root: Path, lock_bundle, *args: str, run: Recorder) -> int:
    return main([*args, "--root", str(root), "--channel", lock_bundle.channel.url, *TOOLS], run=run)


def leftovers_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.startswith("."))


def test_a_failed_conda_lock_leaves_the_committed_lock_as_it_was(checkout, lock_bundle, capsys):
    before = (checkout / "conda-lock.yml").read_bytes()
    code = relock(checkout, lock_bundle, "--conda-only", run=Recorder(fail="conda-lock"))
    assert code == ExitCode.LOCK_TOOL
    assert "conda-lock failed with exit code 1; its reason is above." in capsys.readouterr().err
    assert (checkout / "conda-lock.yml").read_bytes() == before
    assert leftovers_of(checkout) == []


def test_a_new_lock_that_fails_validation_never_replaces_the_old(
    checkout, lock_bundle, tmp_path, capsys
):
    from tests.support.lockfiles import with_foreign_url

    bad = with_foreign_url(lock_bundle.lockfile, tmp_path / "bad-lock.yml")
    before = (checkout / "conda-lock.yml").read_bytes()
    code = relock(checkout, lock_bundle, "--conda-only", run=Recorder(lock_from=bad))
    assert code == ExitCode.LOCKFILE_INVALID
    err = capsys.readouterr().err
    assert "the new lock fails validation, so conda-lock.yml was left as it was:" in err
    assert "pytorch comes from https://example.org/chan" in err
    assert (checkout / "conda-lock.yml").read_bytes() == before
    assert leftovers_of(checkout) == []


def test_a_valid_new_lock_replaces_the_old_one(checkout, lock_bundle, capsys):
    (checkout / "conda-lock.yml").write_text("old\n")
    runner = Recorder(lock_from=lock_bundle.lockfile)
    assert relock(checkout, lock_bundle, "--conda-only", run=runner) == 0
    assert (checkout / "conda-lock.yml").read_bytes() == lock_bundle.lockfile.read_bytes()
    [command] = runner.calls
    assert Path(command[command.index("--lockfile") + 1]).parent == checkout
    assert "commit conda-lock.yml" in capsys.readouterr().err


def test_leftovers_locks_are_regenerated_with_the_hash_of_their_source(checkout, lock_bundle):
    (checkout / "requirements/leftovers.in").write_text("runpod==1.12.0\n# changed\n")
    runner = Recorder()
    assert relock(checkout, lock_bundle, "--leftovers-only", run=runner) == 0
    assert [c[0] for c in runner.calls] == ["/tools/bin/uv", "/tools/bin/uv"]
    assert stale_leftovers(Paths(checkout)) == []
    assert leftovers_of(checkout) == []


def test_a_failed_compile_says_how_to_allow_an_sdist(checkout, lock_bundle, capsys):
    before = (checkout / "requirements/leftovers.txt").read_bytes()
    code = relock(checkout, lock_bundle, "--leftovers-only", run=Recorder(fail="uv"))
    assert code == ExitCode.LOCK_TOOL
    assert capsys.readouterr().err.splitlines()[-1] == (
        "bootstrap/lock: uv pip compile leftovers-whisperx.in failed with exit code 1; its reason "
        "is above; a pin with no usable wheels needs a --no-binary NAME line in its .in "
        "(docs/lockfile.md)."
    )
    assert (checkout / "requirements/leftovers.txt").read_bytes() == before
    assert leftovers_of(checkout) == []


def test_a_declared_sdist_without_its_build_tools_in_the_env_is_refused(
    checkout, lock_bundle, capsys
):
    (checkout / "requirements/leftovers.in").write_text("--no-binary encodec\nencodec==0.1.1\n")
    runner = Recorder()
    assert relock(checkout, lock_bundle, "--leftovers-only", run=runner) == ExitCode.LEFTOVERS_SDIST
    assert runner.calls == []
    assert capsys.readouterr().err == (
        "bootstrap/lock: leftovers.in declares the sdist encodec (--no-binary), which pip builds "
        "with setuptools from the conda env, but environment.yml lacks setuptools; add it there "
        "and relock.\n"
    )


def test_without_the_tools_env_relock_says_to_run_bootstrap_lock(checkout, capsys):
    assert main(["--leftovers-only", "--root", str(checkout)], run=Recorder()) == ExitCode.LOCK_TOOL
    assert "no uv was given; run bootstrap/lock" in capsys.readouterr().err


def test_check_and_ensure_are_exclusive():
    with pytest.raises(SystemExit) as caught:
        main(["--check", "--ensure"])
    assert caught.value.code == 2
