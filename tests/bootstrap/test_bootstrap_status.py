"""`python -m bootstrap status`: envs, roles, users, leases and models at a glance."""

from __future__ import annotations

import json
import subprocess
import sys

from bootstrap.marker import EnvMarker, ModelsMarker, env_marker_path, write_marker
from bootstrap.settings import Settings
from bootstrap.status import gather, render
from tests.conftest import REPO


def a_volume(tmp_path) -> Settings:
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path)})
    for env_id, marked in [("aaaaaaaaaaaa", True), ("bbbbbbbbbbbb", False)]:
        prefix = settings.prefix_for(env_id)
        prefix.mkdir(parents=True)
        if marked:
            marker = EnvMarker(env_id, "0" * 64, {}, {"whisperx": True}, {}, 8_500_000_000)
            write_marker(env_marker_path(prefix), marker)
    settings.active_link.symlink_to("f5tts-aaaaaaaaaaaa")
    record = settings.in_use_dir / "aaaaaaaaaaaa" / "worker1-77"
    record.parent.mkdir(parents=True)
    record.write_text("")
    lease = settings.leases_dir / "env"
    lease.mkdir(parents=True)
    (lease / "owner").write_text("host=worker2 pid=9 token=abc\n")
    (lease / "heartbeat").write_text("3\n")
    write_marker(
        settings.models_dir / ".ready.json",
        ModelsMarker(files={"models/f5tts/x": 1_300_000_000}, sources={}, features={}),
    )
    return settings


def test_status_shows_each_env_its_role_and_who_uses_it(tmp_path):
    status = gather(a_volume(tmp_path))
    envs = {e.env_id: e for e in status.envs}
    assert envs["aaaaaaaaaaaa"].ready and envs["aaaaaaaaaaaa"].role == "active"
    assert envs["aaaaaaaaaaaa"].in_use_by[0].startswith("worker1-77 (")
    assert not envs["bbbbbbbbbbbb"].ready and envs["bbbbbbbbbbbb"].role == ""
    assert status.leases[0].name == "env" and "worker2" in status.leases[0].owner
    assert status.models_ready and status.models_bytes == 1_300_000_000
    table = render(status)
    assert "f5tts-aaaaaaaaaaaa" in table and "active" in table and "8.5 GB" in table
    assert "lease env: host=worker2 pid=9 token=abc" in table
    assert "models: ready since" in table


def test_status_json_is_machine_readable(tmp_path):
    a_volume(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap", "status", "--json"],
        cwd=REPO,
        env={"F5TTS_VOLUME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [e["env_id"] for e in data["envs"]] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert data["free_bytes"] > 0


def test_an_empty_volume_says_so(tmp_path):
    table = render(gather(Settings.from_env({"F5TTS_VOLUME": str(tmp_path)})))
    assert "(no environments)" in table
    assert "no lease is held" in table
    assert "models: not downloaded" in table


def test_status_names_the_workers_running_an_env_other_than_the_link(tmp_path):
    settings = a_volume(tmp_path)
    older = settings.in_use_dir / "bbbbbbbbbbbb" / "worker3-41"
    older.parent.mkdir(parents=True)
    older.write_text("")

    status = gather(settings)

    assert status.active_link.state == "ready"
    assert [w.split(" (")[0] for w in status.workers_elsewhere] == [
        "worker3-41 uses f5tts-bbbbbbbbbbbb"
    ]
    table = render(status)
    assert "envs/f5tts -> f5tts-aaaaaaaaaaaa" in table
    assert "workers not on envs/f5tts's env: worker3-41 uses f5tts-bbbbbbbbbbbb (" in table


def test_status_says_when_the_link_is_missing_or_dangling(tmp_path):
    settings = a_volume(tmp_path)
    settings.active_link.unlink()
    assert gather(settings).active_link.state == "missing"
    assert "envs/f5tts is missing: the next start" in render(gather(settings))
    # Every live worker now runs an env that is not the link's.
    assert gather(settings).workers_elsewhere[0].startswith("worker1-77 uses f5tts-aaaaaaaaaaaa")

    settings.active_link.symlink_to("f5tts-0123456789ab")
    assert gather(settings).active_link.state == "dangling"
    assert "envs/f5tts -> f5tts-0123456789ab, which is dangling" in render(gather(settings))


def test_leftovers_of_an_interrupted_release_or_takeover_are_not_shown_as_held_leases(tmp_path):
    """A worker killed while it deleted its released lease (or a dead one it took over)
    leaves `.released.<name>.<token>` (`.dead...`): renamed away, so no lease."""
    settings = Settings.from_env({"F5TTS_VOLUME": str(tmp_path)})
    for leftover in (".released.env.abc", ".dead.models.def", "env.takeover.ghi"):
        (settings.leases_dir / leftover).mkdir(parents=True)
        (settings.leases_dir / leftover / "owner").write_text("host=gone\npid=1\ntoken=x\n")

    status = gather(settings)

    assert status.leases == []
    assert "no lease is held" in render(status)
