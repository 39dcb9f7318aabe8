"""A builder killed at any phase is recovered by the next start; an unmarked prefix
is never run (docs/architecture.md, "Life of a prefix")."""

from __future__ import annotations

import shutil

import pytest

from tests.provisioning.deployment import HERE, Site

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
