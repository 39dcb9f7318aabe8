"""A new lock is a new prefix: published by a symlink swap, the old one collected later."""

from __future__ import annotations

import os
import time

from tests.provisioning.deployment import Site
from tests.support.lockfiles import DEFAULT_SPECS, LockBundle, write_lock


def age_in_use_records(site: Site, env_id: str, seconds: float = 3600) -> None:
    """The workers of `env_id` stopped refreshing their records (they are gone)."""
    past = time.time() - seconds
    for record in (site.envs / ".in-use" / env_id).iterdir():
        os.utime(record, (past, past))


def test_lock_change_builds_a_new_prefix_swaps_the_link_and_old_prefix_is_collected_later(
    site: Site, cuda_lock: LockBundle
):
    first = site.env_id()
    assert site.run().returncode == 0

    # Each new lock drops one spec: new bytes, so a new env id.
    specs = tuple(s for s in DEFAULT_SPECS if s != "prefix-probe")
    second = site.use_lock(write_lock(cuda_lock.channel, site.root / "b", specs=specs).lockfile)
    result = site.run()

    assert result.returncode == 0, result.stderr
    assert second != first
    assert result.probe["executable"] == str(site.envs / f"f5tts-{second}" / "bin" / "python")
    assert site.active() == f"f5tts-{second}"
    assert site.previous() == f"f5tts-{first}"
    assert site.realizations() == 2
    # The previous prefix stays: a rollback to the old image is warm.
    assert [p.name for p in site.marked_prefixes()] == sorted([f"f5tts-{first}", f"f5tts-{second}"])

    specs = tuple(s for s in specs if not s.startswith("cuda-version"))
    age_in_use_records(site, first)
    third = site.use_lock(write_lock(cuda_lock.channel, site.root / "c", specs=specs).lockfile)
    result = site.run()

    assert result.returncode == 0, result.stderr
    assert site.active() == f"f5tts-{third}"
    assert site.previous() == f"f5tts-{second}"
    # Neither active, nor previous, nor in use: collected by `bootstrap gc` after the build.
    assert not (site.envs / f"f5tts-{first}").exists()
    assert {p.name for p in site.prefixes()} == {f"f5tts-{second}", f"f5tts-{third}"}
