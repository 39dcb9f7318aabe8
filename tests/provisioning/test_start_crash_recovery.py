"""A builder killed at any phase is recovered by the next start; an unmarked prefix
is never run (docs/architecture.md, "Life of a prefix")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.provisioning.deployment import HERE, Site
from tests.support.lockfiles import DEFAULT_SPECS, LockBundle, write_lock

# phase -> how the worker is stopped there: the micromamba double's own pause for the
# conda part, tests/provisioning/pause_points.py for the Python stage.
PAUSES = {
    "download": {"MICROMAMBA_DOUBLE_PAUSE": "download:600"},
    "link": {"MICROMAMBA_DOUBLE_PAUSE": "link:600"},
    "leftovers": {"F5TTS_TEST_PAUSE": "leftovers"},
    "verify": {"F5TTS_TEST_PAUSE": "verify"},
    "marker": {"F5TTS_TEST_PAUSE": "marker"},
}


@pytest.mark.parametrize("phase", list(PAUSES))
def test_builder_killed_during_phase_is_rebuilt_by_the_next_start(site: Site, phase: str):
    shutil.copy(HERE / "pause_points.py", site.app / "sitecustomize.py")
    builder = site.start(**PAUSES[phase])
    builder.wait_for_stderr(f"PAUSED {phase}")
    builder.kill_container()

    prefix = site.envs / f"f5tts-{site.env_id()}"
    assert prefix.is_dir()
    assert not (prefix / ".f5tts" / "ready.json").exists()
    # The dead builder's lease is still there; its heartbeat has stopped.
    assert (site.envs / ".leases" / "env" / "owner").is_file()

    result = site.run()

    assert result.returncode == 0, result.stderr
    assert "took over the env lease" in result.stderr
    assert f"removing the unfinished prefix {prefix}" in result.stderr
    assert " ready: cold " in result.stderr
    assert result.probe["marker_present"]
    assert site.realizations() == 2
    assert site.marked_prefixes() == [prefix]
    assert not (site.envs / ".leases" / "env").exists()


def test_publish_temp_links_left_by_a_builder_killed_with_the_same_pid_do_not_block_publishing(
    site: Site, cuda_lock: LockBundle
):
    # The entrypoint is pid 1 in every container (and a restarted container keeps its
    # hostname): a builder killed between `ln -s` and `mv` leaves .f5tts.<host>.1,
    # the next container's name. Launched through a shell that plants them for its
    # own pid, then execs the entrypoint under that pid.
    first = site.env_id()
    assert site.run().returncode == 0
    specs = tuple(s for s in DEFAULT_SPECS if s != "prefix-probe")
    second = site.use_lock(write_lock(cuda_lock.channel, site.root / "b", specs=specs).lockfile)
    entrypoint = site.app / "bootstrap" / "entrypoint.sh"
    plant = (
        'ln -s f5tts-gone "$1/.f5tts.$3.$$" && ln -s f5tts-gone "$1/.f5tts.previous.$3.$$" '
        '&& exec "$2"'
    )
    host = Path("/proc/sys/kernel/hostname").read_text().strip()

    done = subprocess.run(
        ["sh", "-c", plant, "sh", str(site.envs), str(entrypoint), host],
        env=site.env,
        cwd=site.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert site.active() == f"f5tts-{second}"
    assert site.previous() == f"f5tts-{first}"


@pytest.mark.parametrize("damage", ["missing", "dangling"])
def test_warm_start_repairs_the_envs_f5tts_link_a_builder_killed_before_publishing_left(
    site: Site, damage: str
):
    assert site.run().returncode == 0
    link = site.envs / "f5tts"
    # Killed between its marker and the swap: no link yet, or still the one to an env
    # gc has collected since.
    link.unlink()
    if damage == "dangling":
        link.symlink_to("f5tts-0123456789ab")

    result = site.run()

    assert result.returncode == 0, result.stderr
    assert " ready: warm " in result.stderr and site.realizations() == 1
    assert site.active() == f"f5tts-{site.env_id()}"
    assert f"repaired {link}: it " in result.stderr
    assert [p.name for p in site.envs.iterdir() if p.name.startswith(".f5tts")] == []
    # Repaired once; a healthy link costs a warm start nothing and says nothing.
    again = site.run()
    assert "repaired" not in again.stderr and site.active() == f"f5tts-{site.env_id()}"
