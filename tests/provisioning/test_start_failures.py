"""Failures a restart cannot fix: one sentence (cause and fix), a documented exit code
(docs/troubleshooting.md), and nothing marked ready."""

from __future__ import annotations

import os

import pytest

from tests.provisioning.deployment import Result, Site
from tests.support.lockfiles import with_foreign_url, with_wrong_sha256, without_sha256


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


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (without_sha256, "package pytorch has no sha256"),
        (with_foreign_url, "package pytorch comes from https://example.org/chan/linux-64/"),
    ],
)
def test_lockfile_failing_the_structural_check_is_refused_with_exit_14(
    site: Site, breakage, reason
):
    lock = site.app / "conda-lock.yml"
    broken = breakage(lock, site.root / "broken-lock.yml")
    lock.write_bytes(broken.read_bytes())

    result = site.run()

    assert_refused(site, result, 14, f"{lock} is not a usable lock ({reason}")
    assert site.realizations() == 0


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
