"""bootstrap/lock: the `--check` logic and argument handling. The real solve needs
conda-forge, which this workplace cannot reach: it is verified only on a machine
that does (docs/lockfile.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.errors import ExitCode
from bootstrap.relock import (
    DOCKER_IMAGE,
    INPUTS_HEADER,
    Paths,
    conda_lock_command,
    main,
    sha256_of,
    stale_leftovers,
)
from tests.conftest import REPO


def lock_leftovers_by_hand(requirements: Path, name: str, body: str) -> None:
    source = requirements / f"{name}.in"
    source.write_text(body)
    (requirements / f"{name}.txt").write_text(f"{INPUTS_HEADER}{sha256_of(source)}\nx==1\n")


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


def test_check_passes_when_every_lock_matches_its_source(checkout, lock_bundle, capsys):
    assert check(checkout, lock_bundle) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_fails_when_environment_yml_changed_since_the_lock(checkout, lock_bundle, capsys):
    env = checkout / "environment.yml"
    env.write_text(env.read_text() + "- librosa\n")
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE
    assert "content hash does not match environment.yml" in capsys.readouterr().err


def test_check_fails_when_virtual_packages_changed_since_the_lock(checkout, lock_bundle):
    vp = checkout / "virtual-packages.yml"
    vp.write_text(vp.read_text().replace("12.9", "12.4"))
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE


def test_check_fails_when_a_leftovers_in_changed_since_its_lock(checkout, lock_bundle, capsys):
    (checkout / "requirements/leftovers.in").write_text("runpod==1.13.0\n")
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE
    assert (
        capsys.readouterr().err
        == "lock --check: leftovers.in changed since leftovers.txt was made; run bootstrap/lock.\n"
    )


def test_check_names_locks_without_sources_and_sources_without_locks(checkout):
    (checkout / "requirements/leftovers-old.txt").write_text("x==1\n")
    (checkout / "requirements/leftovers-new.in").write_text("y==2\n")
    assert stale_leftovers(Paths(checkout)) == [
        "leftovers-new.txt is missing; run bootstrap/lock to generate it.",
        "leftovers-old.txt has no leftovers-old.in; delete it.",
    ]


def test_check_without_a_conda_lock_says_where_to_make_one(checkout, lock_bundle, capsys):
    (checkout / "conda-lock.yml").unlink()
    assert check(checkout, lock_bundle) == ExitCode.LOCK_STALE
    assert "run bootstrap/lock on a machine that reaches conda-forge" in capsys.readouterr().err


def test_the_repository_leftovers_locks_match_their_sources():
    assert stale_leftovers(Paths(REPO)) == []


def test_conda_lock_is_asked_for_linux_64_with_the_virtual_packages(tmp_path):
    command = conda_lock_command(Paths(tmp_path), "/opt/micromamba")
    assert command == [
        "conda-lock", "lock", "--micromamba", "--conda", "/opt/micromamba",
        "-f", str(tmp_path / "environment.yml"), "-p", "linux-64",
        "--virtual-package-spec", str(tmp_path / "virtual-packages.yml"),
        "--lockfile", str(tmp_path / "conda-lock.yml"),
    ]  # fmt: skip


class Recorder:
    def __init__(self, version: str = "2.5.0"):
        self.calls: list[list[str]] = []
        self.version = version

    def __call__(self, command, **kwargs):
        self.calls.append(command)
        if command[-1] == "--version":
            return subprocess.CompletedProcess(command, 0, self.version + "\n", "")
        if "compile" in command:
            out = Path(kwargs["cwd"]) / command[command.index("-o") + 1]
            out.write_text("runpod==1.12.0 \\\n    --hash=sha256:00\n")
        return subprocess.CompletedProcess(command, 0, "", "")


def test_a_micromamba_that_conda_lock_cannot_drive_is_refused(checkout, capsys):
    runner = Recorder(version="2.8.0")
    code = main(["--root", str(checkout), "--micromamba", "/mm", "--uv", "/uv"], run=runner)
    assert code == ExitCode.LOCK_TOOL
    assert "needs micromamba 2.5.x to solve" in capsys.readouterr().err
    assert runner.calls == [["/mm", "--version"]]


def test_leftovers_locks_are_regenerated_with_the_hash_of_their_source(checkout):
    (checkout / "requirements/leftovers.in").write_text("runpod==1.12.0\n# changed\n")
    runner = Recorder()
    assert main(["--leftovers-only", "--root", str(checkout), "--uv", "/uv"], run=runner) == 0
    assert [c[0] for c in runner.calls] == ["/uv", "/uv"]
    assert "--no-deps" in runner.calls[0] and "x86_64-manylinux_2_28" in runner.calls[0]
    assert stale_leftovers(Paths(checkout)) == []


def test_a_missing_uv_is_one_sentence(checkout, capsys, monkeypatch):
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setenv("PATH", str(checkout))
    assert main(["--leftovers-only", "--root", str(checkout)], run=Recorder()) == ExitCode.LOCK_TOOL
    assert "uv was not found" in capsys.readouterr().err


def test_docker_mode_runs_the_same_command_in_the_pinned_micromamba_image(checkout):
    runner = Recorder()
    assert main(["--docker", "--root", str(checkout)], run=runner) == 0
    [command] = runner.calls
    assert command[:3] == ["docker", "run", "--rm"]
    assert DOCKER_IMAGE in command and DOCKER_IMAGE.split(":")[1].startswith("2.5.")
    assert "&& python bootstrap/lock --micromamba /bin/micromamba &&" in command[-1]
    assert f"chown {os.getuid()}:{os.getgid()} conda-lock.yml" in command[-1]


def test_check_and_docker_are_exclusive(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--check", "--docker"])
    assert caught.value.code == 2


def test_the_lock_script_runs_from_anywhere(tmp_path):
    script = REPO / "bootstrap/lock"
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--check" in result.stdout
