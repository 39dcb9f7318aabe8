"""Failures a restart cannot fix: one sentence (cause and fix), a documented exit code
(docs/troubleshooting.md), and nothing marked ready."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.lockfile import validate_lock
from tests.provisioning.deployment import Result, Site
from tests.support.lockfiles import (
    DEFAULT_SPECS,
    LockBundle,
    PipLock,
    with_cpu_pytorch,
    with_foreign_url,
    with_wrong_sha256,
    without_sha256,
    write_lock,
)
from tests.support.micromamba_double import MicromambaDouble, read_calls


def assert_refused(site: Site, result: Result, code: int, sentence: str) -> None:
    assert result.returncode == code, result.stderr
    errors = result.error_lines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"[bootstrap] error {code}: {sentence}"), errors[0]
    assert errors[0].endswith("."), errors[0]
    assert result.probe is None
    assert site.marked_prefixes() == []
    assert site.active() is None
    # Whatever lease the worker took is released on the way out.
    leases = site.envs / ".leases"
    assert not leases.exists() or not [p for p in leases.iterdir() if not p.name.startswith(".")]


def test_missing_volume_is_refused_with_exit_10(site: Site):
    result = site.run(F5TTS_VOLUME=str(site.root / "not-mounted"))

    assert_refused(
        site, result, 10, f"the network volume {site.root / 'not-mounted'} is not mounted"
    )
    assert "attach a network volume" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_read_only_volume_is_refused_with_exit_11(site: Site):
    site.volume.chmod(0o555)
    try:
        result = site.run()
    finally:
        site.volume.chmod(0o755)

    assert_refused(site, result, 11, f"the network volume {site.volume} is not writable")


def test_too_little_space_is_refused_before_anything_is_downloaded(site: Site):
    result = site.run(F5TTS_MIN_FREE_GB="1000000")

    assert_refused(site, result, 12, f"the volume {site.volume} has ")
    assert "GB free but building the environment needs 1000000 GB" in result.stderr
    assert site.realizations() == 0
    assert not any((site.volume / "pkgs").glob("*"))


def test_missing_lockfile_is_refused_with_exit_13(site: Site):
    (site.app / "conda-lock.yml").unlink()

    result = site.run()

    assert_refused(
        site,
        result,
        13,
        f"no conda-lock.yml at {site.app / 'conda-lock.yml'}: "
        "a maintainer runs bootstrap/lock to make it",
    )


def edited(src: Path, dst: Path, edit) -> Path:
    """The lock at `src` with its YAML edited (as a hand edit would leave it)."""
    data = yaml.safe_load(src.read_text())
    edit(data)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def without(*names: str):
    """A lock solved without the specs of `names` (so, say, no pyyaml anywhere)."""

    def make(lock: LockBundle, dst: Path) -> Path:
        specs = [s for s in DEFAULT_SPECS if s.split()[0] not in names]
        return write_lock(lock.channel, dst.parent / dst.stem, specs=specs).lockfile

    return make


def with_pip_entry(lock: LockBundle, dst: Path) -> Path:
    pip = PipLock("runpod", "1.12.0", "https://files.pythonhosted.org/runpod.whl", "a" * 64)
    return write_lock(lock.channel, dst.parent / dst.stem, pip=[pip]).lockfile


def with_metadata_channel(url: str):
    def make(lock: LockBundle, dst: Path) -> Path:
        def edit(data):
            data["metadata"]["channels"].append({"url": url, "used_env_vars": []})

        return edited(lock.lockfile, dst, edit)

    return make


def with_platforms(*platforms: str):
    def make(lock: LockBundle, dst: Path) -> Path:
        def edit(data):
            data["metadata"]["platforms"] = list(platforms)

        return edited(lock.lockfile, dst, edit)

    return make


def with_package_platform(platform: str):
    def make(lock: LockBundle, dst: Path) -> Path:
        def edit(data):
            next(p for p in data["package"] if p["name"] == "ffmpeg")["platform"] = platform

        return edited(lock.lockfile, dst, edit)

    return make


BAD_LOCKS = {
    "no-sha256": (
        lambda lock, dst: without_sha256(lock.lockfile, dst),
        "package pytorch has no sha256",
    ),
    "foreign-package": (
        lambda lock, dst: with_foreign_url(lock.lockfile, dst),
        "package pytorch comes from https://example.org/chan/linux-64/",
    ),
    "pip-entry": (
        with_pip_entry,
        "package runpod is a pip package, and pip packages belong in requirements/leftovers.in",
    ),
    "foreign-channel": (
        with_metadata_channel("https://conda.anaconda.org/pytorch"),
        "it was solved with the channel https://conda.anaconda.org/pytorch, and only ",
    ),
    "two-platforms": (
        with_platforms("linux-64", "osx-arm64"),
        "it covers the platforms linux-64, osx-arm64, not linux-64 alone",
    ),
    "package-for-another-platform": (
        with_package_platform("osx-arm64"),
        "package ffmpeg is locked for platform osx-arm64, not linux-64",
    ),
    "no-pyyaml": (without("pyyaml"), "it has no pyyaml, which environment.yml must list"),
    "no-huggingface-hub": (
        without("huggingface_hub"),
        "it has no huggingface_hub, which environment.yml must list",
    ),
    "no-ffmpeg": (without("ffmpeg"), "it has no ffmpeg, which environment.yml must list"),
    "cpu-pytorch": (
        lambda lock, dst: with_cpu_pytorch(lock.lockfile, dst, lock.channel),
        "pytorch is the build cpu_",
    ),
}


def plant_volume_state(site: Site, env_id: str) -> list[Path]:
    """What a volume holds after earlier starts: nothing of it may go for a bad lock."""
    crashed = site.envs / f"f5tts-{env_id}" / "conda-meta"  # a build's remains
    crashed.mkdir(parents=True)
    old = site.envs / "f5tts-0123456789ab" / "conda-meta"  # what gc would collect
    old.mkdir(parents=True)
    cached = site.volume / "pkgs" / "old-1.0-h0_0.conda"
    cached.parent.mkdir()
    cached.write_text("x")
    return [crashed, old, cached]


@pytest.mark.parametrize(("breakage", "reason"), BAD_LOCKS.values(), ids=BAD_LOCKS.keys())
def test_a_lock_the_validator_would_refuse_is_refused_before_any_download_with_exit_14(
    site: Site, cuda_lock: LockBundle, breakage, reason
):
    lock = site.app / "conda-lock.yml"
    lock.write_bytes(breakage(cuda_lock, site.root / "broken" / "conda-lock.yml").read_bytes())
    planted = plant_volume_state(site, site.env_id())

    result = site.run()

    assert_refused(site, result, 14, f"{lock} is not a usable lock ({reason}")
    assert "a maintainer regenerates it with bootstrap/lock and commits it" in result.stderr
    assert read_calls(site.double_log) == []  # not even `micromamba --version`
    assert all(path.exists() for path in planted)
    # The full validator refuses each of these too: the two checks agree.
    report = validate_lock(lock, allowed_channel=cuda_lock.channel.url)
    assert not report.ok


def test_a_lock_left_with_merge_conflict_markers_is_refused_before_any_download(
    site: Site, cuda_lock: LockBundle
):
    lock = site.app / "conda-lock.yml"
    text = cuda_lock.lockfile.read_text()
    lock.write_text(f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> relock\n")
    planted = plant_volume_state(site, site.env_id())

    result = site.run()

    assert_refused(
        site,
        result,
        14,
        f"{lock} is not a usable lock (its line 1 (<<<<<<< HEAD) is none of the top-level "
        "keys conda-lock writes: version, metadata, package; a merge conflict?)",
    )
    assert read_calls(site.double_log) == []
    assert all(path.exists() for path in planted)
    # The full validator refuses it too, as YAML that does not parse.
    with pytest.raises(BootstrapError) as refused:
        validate_lock(lock, allowed_channel=cuda_lock.channel.url)
    assert refused.value.code == ExitCode.LOCKFILE_INVALID


def test_the_structural_check_passes_the_kits_conda_lock_file(site: Site):
    result = site.run()

    assert result.returncode == 0, result.stderr
    assert "check_lockfile" in result.stderr


def test_missing_micromamba_is_refused_with_exit_15(site: Site):
    result = site.run(MICROMAMBA=str(site.root / "no-micromamba"))

    assert_refused(site, result, 15, "micromamba was not found")


def test_wrong_sha256_fails_realization_after_the_retries_with_exit_16(site: Site):
    lock = site.app / "conda-lock.yml"
    lock.write_bytes(with_wrong_sha256(lock, site.root / "wrong-lock.yml").read_bytes())

    result = site.run(F5TTS_REALIZE_RETRIES="2")

    assert_refused(site, result, 16, "micromamba could not realize ")
    assert "after 2 attempts" in result.stderr
    assert "realize attempt 1 of 2 failed (exit 1); retrying in 2s" in result.stderr
    assert "pytorch" in result.stderr  # micromamba's own reason, above ours
    assert site.realizations() == 2


def test_a_failed_activation_script_is_exit_16_and_the_next_start_rebuilds(
    site: Site, micromamba_double: MicromambaDouble
):
    # The pinned micromamba, whose `shell activate` fails (the bootstrap runs it under
    # `env -i`, so the double's fault variables would not reach it).
    failing = site.root / "failing-activate" / "micromamba"
    failing.parent.mkdir()
    failing.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = shell ]; then echo "critical libmamba injected" >&2; exit 1; fi\n'
        f'exec "{micromamba_double.executable}" "$@"\n'
    )
    failing.chmod(0o755)
    result = site.run(MICROMAMBA=str(failing))

    prefix = site.envs / f"f5tts-{site.env_id()}"
    assert_refused(
        site,
        result,
        16,
        f"micromamba could not write the activation script of {prefix} (exit 1, its reason "
        f"is above): fix that cause and restart, the next start rebuilds {prefix} from scratch.",
    )
    again = site.run()
    assert again.returncode == 0, again.stderr
    assert "removing the unfinished prefix" in again.stderr


def test_failing_finish_step_is_reported_with_exit_18_and_leaves_the_prefix_unmarked(site: Site):
    result = site.run(F5TTS_CORE_IMPORTS="yaml,module_that_is_not_there")

    assert_refused(
        site, result, 18, "finishing the env failed (python -m bootstrap finish exited 35"
    )
    assert "module_that_is_not_there" in result.stderr  # the Python stage's sentence
    # The unmarked prefix stays for the next builder to delete; no one runs it.
    assert len(site.prefixes()) == 1


def test_unusable_setting_is_refused_with_exit_20(site: Site):
    result = site.run(F5TTS_LEASE_STALE_S="two minutes")

    assert_refused(site, result, 20, "F5TTS_LEASE_STALE_S=two minutes is not a number")


def test_heartbeat_slower_than_half_the_stale_time_is_refused_with_exit_20(site: Site):
    result = site.run(F5TTS_LEASE_STALE_S="10", F5TTS_LEASE_HEARTBEAT_S="6")

    assert_refused(site, result, 20, "F5TTS_LEASE_HEARTBEAT_S=6 must be above 0 and at most half")
