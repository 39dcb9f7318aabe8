"""gc against a real directory tree laid out like the volume."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bootstrap.gc import PROBE_NAME, observe, run_gc
from bootstrap.marker import EnvMarker, env_marker_path, write_marker
from bootstrap.settings import Settings


def make_prefix(settings: Settings, env_id: str, packages=(), marked=True) -> Path:
    path = settings.prefix_for(env_id)
    (path / "conda-meta").mkdir(parents=True)
    (path / "bin").mkdir()
    (path / "bin" / "python").write_text("#!\n")
    for stem in packages:
        (path / "conda-meta" / f"{stem}.json").write_text(json.dumps({"fn": f"{stem}.conda"}))
    if marked:
        marker = EnvMarker(env_id, "0" * 64, {}, {}, {}, 1)
        write_marker(env_marker_path(path), marker)
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
