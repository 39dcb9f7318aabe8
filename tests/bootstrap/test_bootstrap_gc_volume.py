"""gc against a real directory tree laid out like the volume."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from bootstrap.gc import PROBE_NAME, cache_entries, observe, run_gc
from bootstrap.marker import EnvMarker, env_marker_path, write_marker
from bootstrap.settings import Settings
from tests.support.lockfiles import DEFAULT_SPECS, LockBundle, lock_packages, write_lock
from tests.support.micromamba_double import DOUBLE_VERSION, MicromambaDouble, cache_folder


def mark(path: Path, env_id: str) -> None:
    write_marker(env_marker_path(path), EnvMarker(env_id, "0" * 64, {}, {}, {}, 1))


def make_prefix(settings: Settings, env_id: str, packages=(), marked=True) -> Path:
    path = settings.prefix_for(env_id)
    (path / "conda-meta").mkdir(parents=True)
    (path / "bin").mkdir()
    (path / "bin" / "python").write_text("#!\n")
    for stem in packages:
        (path / "conda-meta" / f"{stem}.json").write_text(json.dumps({"fn": f"{stem}.conda"}))
    if marked:
        mark(path, env_id)
    return path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_gc_keeps_what_workers_need_and_frees_the_rest(tmp_path):
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path), "F5TTS_IN_USE_TTL_S": "900"})
    old = make_prefix(settings, "aaaaaaaaaaaa", packages=["torch-1.0-old_0"])
    running = make_prefix(settings, "bbbbbbbbbbbb", packages=["numpy-1.0-x_0"])
    previous = make_prefix(settings, "cccccccccccc", packages=["python-3.11.7-h_0"])
    active = make_prefix(settings, "dddddddddddd", packages=["pytorch-2.8.0-cuda129_0"])
    crashed = make_prefix(settings, "eeeeeeeeeeee", marked=False)
    (settings.envs_dir / "f5tts").symlink_to(active.name)
    (settings.envs_dir / "f5tts.previous").symlink_to(previous.name)
    record = settings.in_use_dir / "bbbbbbbbbbbb" / "host-42"
    record.parent.mkdir(parents=True)
    record.write_text("")
    dead = settings.in_use_dir / "aaaaaaaaaaaa" / "host-7"
    dead.parent.mkdir(parents=True)
    dead.write_text("")
    age(dead, 3600)
    settings.pkgs_dir.mkdir()
    for name in ["torch-1.0-old_0.conda", "pytorch-2.8.0-cuda129_0.conda", "urls.txt"]:
        (settings.pkgs_dir / name).write_text("x")
    (settings.pkgs_dir / "torch-1.0-old_0" / "info").mkdir(parents=True)
    (settings.pkgs_dir / "torch-1.0-old_0" / "info" / "index.json").write_text("{}")
    unrelated = settings.envs_dir / "my-notes"
    unrelated.mkdir()

    run_gc(settings)

    assert not old.exists() and not crashed.exists()
    assert running.exists() and previous.exists() and active.exists()
    assert not dead.exists() and not dead.parent.exists() and record.exists()
    assert sorted(p.name for p in settings.pkgs_dir.iterdir()) == [
        "pytorch-2.8.0-cuda129_0.conda",
        "urls.txt",
    ]
    assert unrelated.exists()
    assert list((settings.envs_dir / ".trash").iterdir()) == []


def test_ages_are_measured_against_the_volume_clock_not_the_local_one(tmp_path):
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path)})
    make_prefix(settings, "bbbbbbbbbbbb")
    record = settings.in_use_dir / "bbbbbbbbbbbb" / "host-42"
    record.parent.mkdir(parents=True)
    record.write_text("")
    # Another machine's clock runs an hour ahead: its record looks "from the future".
    future = time.time() + 3600
    os.utime(record, (future, future))
    state = observe(settings)
    assert (settings.envs_dir / PROBE_NAME).exists()
    assert state.in_use[0].age_s == 0.0


def test_dry_run_deletes_nothing(tmp_path, capsys):
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path)})
    old = make_prefix(settings, "aaaaaaaaaaaa")
    plan = run_gc(settings, dry_run=True)
    assert old.exists()
    assert [d.path for d in plan.deletions] == [old]
    assert "would delete prefix" in capsys.readouterr().out


def test_the_callers_own_env_lease_does_not_count_as_another_build(tmp_path):
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path)})
    lease = settings.leases_dir / "env"
    lease.mkdir(parents=True)
    (lease / "owner").write_text("host=h\npid=1\ntoken=mine\n")

    assert observe(settings, own_lease_token="mine").build_lease_held is False
    assert observe(settings, own_lease_token="theirs").build_lease_held is True
    assert observe(settings).build_lease_held is True


def realize(double: MicromambaDouble, settings: Settings, version: str, env_id: str, lock: Path):
    """A marked prefix made by the micromamba double playing `version`, on the volume."""
    env = double.env(
        settings.volume.parent,
        CONDA_PKGS_DIRS=str(settings.pkgs_dir),
        MAMBA_ROOT_PREFIX=str(settings.volume / "mamba"),
        MICROMAMBA_DOUBLE_VERSION=version,
    )
    prefix = settings.prefix_for(env_id)
    command = [str(double.executable), "create", "-y", "-p", str(prefix), "-f", str(lock)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    mark(prefix, env_id)
    return prefix


def cache_paths_of(lock: LockBundle, pkgs: Path, version: str) -> set[Path]:
    """The tarball and extracted dir of every package of `lock`, where `version` keeps them."""
    paths = set()
    for package in lock_packages(lock.lockfile):
        fn = package["url"].rsplit("/", 1)[-1]
        folder = cache_folder(pkgs, package["url"], version)
        paths |= {folder / fn, folder / fn.removesuffix(".conda").removesuffix(".tar.bz2")}
    return paths


@pytest.mark.parametrize(
    "version", [DOUBLE_VERSION, "2.6.0"], ids=["flat-cache-pinned", "hierarchical-cache-2.6"]
)
def test_gc_frees_a_collected_envs_packages_in_the_cache_layout_of_the_micromamba_in_use(
    tmp_path, micromamba_double, cuda_lock, version
):
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path / "volume")})
    specs = tuple(s for s in DEFAULT_SPECS if s != "prefix-probe")
    newer = write_lock(cuda_lock.channel, tmp_path / "newer", specs=specs)
    old = realize(micromamba_double, settings, version, "aaaaaaaaaaaa", cuda_lock.lockfile)
    active = realize(micromamba_double, settings, version, "bbbbbbbbbbbb", newer.lockfile)
    (settings.envs_dir / "f5tts").symlink_to(active.name)
    before = {e.path for e in cache_entries(settings.pkgs_dir)}
    assert before == cache_paths_of(cuda_lock, settings.pkgs_dir, version)

    run_gc(settings)

    assert not old.exists()
    # Only what the active env was built from stays: prefix-probe's tarball and dir go.
    assert {e.path for e in cache_entries(settings.pkgs_dir)} == cache_paths_of(
        newer, settings.pkgs_dir, version
    )
    assert len(before) - len(cache_paths_of(newer, settings.pkgs_dir, version)) == 2
    assert list(settings.pkgs_dir.rglob("urls.txt"))  # bookkeeping stays
    # The active env is untouched: its files are hardlinks, not the cache's own.
    python = active / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import yaml"], check=False).returncode == 0
