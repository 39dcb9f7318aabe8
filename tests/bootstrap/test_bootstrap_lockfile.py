"""The lockfile validator: a real conda-lock file passes, each broken variant fails
with its own sentence, and every problem is reported at once."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import yaml

from bootstrap.errors import ExitCode
from bootstrap.lockfile import required_packages, validate_lock
from tests.conftest import REPO
from tests.support.lockfiles import (
    DEFAULT_SPECS,
    PipLock,
    lock_packages,
    with_cpu_pytorch,
    with_foreign_url,
    with_stale_content_hash,
    without_sha256,
    write_lock,
)


def validate(bundle, lockfile=None, **kwargs):
    return validate_lock(
        lockfile or bundle.lockfile,
        allowed_channel=bundle.channel.url + "/",
        environment=bundle.environment_yml,
        virtual_packages=bundle.virtual_packages_yml,
        **kwargs,
    )


def test_a_lock_made_by_conda_lock_for_a_cuda_env_passes(lock_bundle):
    report = validate(lock_bundle)
    assert report.problems == []
    assert report.packages["pytorch"].build.startswith("cuda")
    assert report.packages["python"].version.startswith("3.11")


def test_a_cpu_pytorch_is_refused(lock_bundle, tmp_path):
    broken = with_cpu_pytorch(lock_bundle.lockfile, tmp_path / "cpu-lock.yml", lock_bundle.channel)
    problems = validate(lock_bundle, broken).problems
    assert any(p.startswith("pytorch is the build 'cpu_") for p in problems)
    assert any(p.startswith("torchaudio is the build 'cpu_") for p in problems)


def test_a_package_without_sha256_is_refused(lock_bundle, tmp_path):
    broken = without_sha256(lock_bundle.lockfile, tmp_path / "nosha-lock.yml")
    assert "pytorch has no valid sha256 in the lock; regenerate it with conda-lock 4." in (
        validate(lock_bundle, broken).problems
    )


def test_a_package_from_another_channel_is_refused(lock_bundle, tmp_path):
    broken = with_foreign_url(lock_bundle.lockfile, tmp_path / "foreign-lock.yml")
    [problem] = [p for p in validate(lock_bundle, broken).problems if "example.org" in p]
    assert problem.startswith("pytorch comes from https://example.org/chan/linux-64/")
    assert problem.endswith("only conda-forge may be used (channels: conda-forge, nodefaults).")


def test_a_lock_older_than_its_environment_yml_is_refused(lock_bundle, tmp_path):
    broken = with_stale_content_hash(lock_bundle.lockfile, tmp_path / "stale-lock.yml")
    assert validate(lock_bundle, broken).problems == [
        "the lock's content hash does not match environment.yml: it changed since the lock "
        "was made; regenerate it with bootstrap/lock."
    ]


def test_without_environment_yml_the_content_hash_is_not_compared(lock_bundle, tmp_path):
    broken = with_stale_content_hash(lock_bundle.lockfile, tmp_path / "stale-lock.yml")
    report = validate_lock(broken, allowed_channel=lock_bundle.channel.url)
    assert report.ok


def test_a_lock_missing_ffmpeg_and_pip_names_both(local_channel, tmp_path):
    specs = [s for s in DEFAULT_SPECS if not s.startswith(("ffmpeg", "pip"))]
    bundle = write_lock(local_channel, tmp_path, specs=specs)
    assert validate(bundle).problems == [
        "the lock has no pip; add it to environment.yml and relock.",
        "the lock has no ffmpeg; add it to environment.yml and relock.",
    ]


def test_pip_packages_in_the_conda_lock_are_refused(local_channel, tmp_path):
    pip = PipLock("runpod", "1.12.0", "https://files.example/runpod.whl", "a" * 64)
    bundle = write_lock(local_channel, tmp_path, pip=[pip])
    assert any(
        p.startswith("runpod is a pip package in the lock") for p in validate(bundle).problems
    )


def test_a_lock_for_several_platforms_or_another_format_lists_every_problem(lock_bundle, tmp_path):
    data = yaml.safe_load(lock_bundle.lockfile.read_text())
    data["version"] = 2
    data["metadata"]["platforms"] = ["linux-64", "osx-arm64"]
    data["package"][0]["platform"] = "osx-arm64"
    data["package"][1]["hash"] = {"md5": "0" * 32}
    edited = tmp_path / "edited-lock.yml"
    edited.write_text(yaml.safe_dump(data))
    problems = validate_lock(edited, allowed_channel=lock_bundle.channel.url).problems
    assert len(problems) == 4
    assert problems[0].startswith("edited-lock.yml is conda-lock format version 2, not 1")
    assert problems[1] == (
        "the lock covers platforms ['linux-64', 'osx-arm64']; it must cover only linux-64."
    )
    assert "is locked for 'osx-arm64'; only linux-64 is supported" in problems[2]
    assert "has no valid sha256" in problems[3]


def test_the_default_channel_is_conda_forge(lock_bundle):
    problems = validate_lock(
        lock_bundle.lockfile, allowed_channel="https://conda.anaconda.org/conda-forge"
    ).problems
    assert any("only conda-forge may be used" in p for p in problems)


def run_check_lock(*args):
    return subprocess.run(
        [sys.executable, "-m", "bootstrap", "check-lock", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_check_lock_command_accepts_a_good_lock_and_lists_problems_of_a_bad_one(
    lock_bundle, tmp_path
):
    channel = ["--channel", lock_bundle.channel.url]
    good = run_check_lock(
        lock_bundle.lockfile, "--environment", lock_bundle.environment_yml, *channel
    )
    assert good.returncode == 0, good.stderr
    assert f"is valid ({len(lock_packages(lock_bundle.lockfile))} packages)" in good.stdout

    broken = with_cpu_pytorch(lock_bundle.lockfile, tmp_path / "cpu-lock.yml", lock_bundle.channel)
    bad = run_check_lock(broken, *channel)
    assert bad.returncode == ExitCode.LOCKFILE_INVALID
    assert "has 2 problem(s)." in bad.stderr


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (None, ExitCode.LOCKFILE_MISSING, "cannot read the lockfile"),
        ("key: [unclosed", ExitCode.LOCKFILE_INVALID, "is not valid YAML"),
        ("- a list", ExitCode.LOCKFILE_INVALID, "is not a conda-lock file"),
    ],
)
def test_an_unreadable_lock_is_one_sentence(tmp_path, content, code, words):
    path = tmp_path / "conda-lock.yml"
    if content is not None:
        path.write_text(content)
    result = run_check_lock(path)
    assert result.returncode == code
    assert words in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_repository_lock_inputs_yield_a_content_hash(tmp_path):
    """environment.yml and virtual-packages.yml parse with conda-lock's own code."""
    from bootstrap.lockfile import expected_content_hashes

    hashes = expected_content_hashes(REPO / "environment.yml", REPO / "virtual-packages.yml")
    assert hashes and all(len(h) == 64 for h in hashes)


# Imported by bootstrap/*.py but not by the Python stage the entrypoint runs: conda-lock
# is for maintainers (bootstrap/lock), and the validator skips its check with a notice
# where it is absent.
# whisperx is the optional pip feature (requirements/leftovers-whisperx.txt): fetch-models
# imports it only when find_spec says it is installed, so no conda package provides it.
NOT_IN_THE_ENV = {"conda_lock", "whisperx"}


def third_party_imports_of_bootstrap() -> set[str]:
    modules = set()
    for path in (REPO / "bootstrap").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"bootstrap", "__future__"}


def test_required_packages_provide_every_module_the_python_stage_imports():
    provided = {module for need in required_packages() for module in need.modules}
    imported = third_party_imports_of_bootstrap() - NOT_IN_THE_ENV
    assert imported - provided == set(), "add their conda packages to required-packages.txt"
    assert provided - imported == set(), "required-packages.txt names modules nothing imports"
    assert {"yaml", "huggingface_hub", "torch"} <= imported  # the walk does see them


def test_required_packages_are_in_environment_yml():
    """What every lock must hold is asked for by the source it is solved from."""
    specs = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    names = {str(s).split("=")[0].split("<")[0].split(">")[0].strip() for s in specs}
    assert {need.name for need in required_packages()} - names == set()
