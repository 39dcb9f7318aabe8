"""A new lock is a new prefix: published by a symlink swap, the old one collected later."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.provisioning.deployment import Site
from tests.support.lockfiles import DEFAULT_SPECS, LockBundle, write_lock


def age_in_use_records(site: Site, env_id: str, seconds: float = 3600) -> None:
    """The workers of `env_id` stopped refreshing their records (they are gone)."""
    past = time.time() - seconds
    for record in (site.envs / ".in-use" / env_id).iterdir():
        os.utime(record, (past, past))


def built_from(site: Site, env_id: str) -> set[Path]:
    """The package-cache entries micromamba linked `env_id` from (its conda-meta says)."""
    paths = set()
    for meta in (site.envs / f"f5tts-{env_id}" / "conda-meta").glob("*.json"):
        record = json.loads(meta.read_text())
        extracted = Path(record["extracted_package_dir"])
        paths |= {extracted, extracted.parent / record["fn"]}
    return paths


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
    # And the package cache holds only what the active and previous envs were built from
    # (prefix-probe, used by the first lock alone, is gone), besides micromamba's urls.txt.
    cache = {p for p in (site.volume / "pkgs").iterdir() if p.name != "urls.txt"}
    assert cache == built_from(site, second) | built_from(site, third)
    assert not [p for p in cache if p.name.startswith("prefix-probe")]
