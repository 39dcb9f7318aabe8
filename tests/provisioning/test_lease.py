"""The cross-machine lease: a dead holder is replaced, a live one never is."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from tests.provisioning.deployment import HERE, Site


def plant_lease(site: Site, name: str = "env", token: str = "deadbeef") -> Path:
    """A lease as another machine's worker leaves it: owner and heartbeat files."""
    lease = site.envs / ".leases" / name
    lease.mkdir(parents=True)
    (lease / "owner").write_text(f"host=other-machine\npid=4242\ntoken={token}\n")
    (lease / "heartbeat").write_text(f"{token} 17\n")
    return lease


def hand_lease_to_another_machine(site: Site) -> Path:
    """What a takeover by another machine leaves in the running builder's lease."""
    owner = site.envs / ".leases" / "env" / "owner"
    owner.write_text("host=other-machine\npid=4242\ntoken=feedface\n")
    return owner


class Heartbeat:
    """Rewrites a planted lease's heartbeat like a live holder's background loop."""

    def __init__(self, lease: Path, token: str, every_s: float = 0.2) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(lease, token, every_s))

    def _beat(self, lease: Path, token: str, every_s: float) -> None:
        count = 17
        while not self._stop.wait(every_s):
            count += 1
            tmp = lease / f".heartbeat.{token}"
            tmp.write_text(f"{token} {count}\n")
            tmp.replace(lease / "heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_lease_of_a_dead_worker_is_taken_over_once_its_heartbeat_stops(site: Site):
    plant_lease(site)

    result = site.run(F5TTS_LEASE_STALE_S="1.5")

    assert result.returncode == 0, result.stderr
    assert (
        "took over the env lease of host other-machine pid 4242: "
        "its heartbeat had not changed for 1." in result.stderr
    )
    assert " ready: cold " in result.stderr
    assert "for=other-machine:4242 " in result.stderr.splitlines()[-1]
    assert site.realizations() == 1
    assert not (site.envs / ".leases" / "env").exists()
    assert not list((site.envs / ".leases").glob("*takeover*"))


def test_heartbeating_lease_is_never_taken_and_the_waiter_gives_up_with_exit_17(site: Site):
    lease = plant_lease(site, token="alive")
    started = time.monotonic()

    with Heartbeat(lease, "alive"):
        # Stale after 1 s of silence, but the holder beats every 0.2 s; the wait is
        # just over 10 s so the periodic "waiting for" line shows up once.
        result = site.run(F5TTS_LEASE_STALE_S="1", F5TTS_LEASE_WAIT_MAX_S="10.5")

    assert result.returncode == 17, result.stderr
    assert time.monotonic() - started >= 10.5
    assert "waiting for env lease held by host other-machine pid 4242 for 10 s" in result.stderr
    assert result.error_lines() == [
        next(
            line for line in result.stderr.splitlines() if line.startswith("[bootstrap] error 17: ")
        )
    ]
    assert "gave up waiting for the env lease after 10." in result.stderr
    assert "host other-machine pid 4242 holds it and is still heartbeating" in result.stderr
    assert "took over" not in result.stderr
    assert (lease / "owner").read_text() == "host=other-machine\npid=4242\ntoken=alive\n"
    assert site.realizations() == 0
    assert result.probe is None


def test_models_lease_follows_the_same_protocol(site: Site):
    # The env is built first; then a dead holder of the models lease is replaced and
    # fetch-models runs (and fails here: the test env has no huggingface_hub).
    plant_lease(site, name="models", token="gone")

    result = site.run(F5TTS_FETCH_MODELS="1")

    assert "took over the models lease of host other-machine pid 4242" in result.stderr
    assert result.returncode == 19, result.stderr
    assert result.error_lines()[-1].startswith(
        "[bootstrap] error 19: fetching the model weights failed "
        "(python -m bootstrap fetch-models exited 4"
    )
    # Released on the way out, so the next start can retry at once.
    assert not (site.envs / ".leases" / "models").exists()
    assert not (site.volume / "models" / ".ready.json").exists()


def test_one_of_many_waiters_takes_over_a_dead_lease_and_the_env_is_built_once(site: Site):
    plant_lease(site)

    workers = [site.start() for _ in range(4)]
    results = [w.result(timeout=120) for w in workers]

    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    # One waiter removes the dead lease; whoever's mkdir comes next builds.
    assert sum("took over the env lease" in r.stderr for r in results) == 1
    assert sum(" ready: cold " in r.stderr for r in results) == 1
    assert site.realizations() == 1
    assert not list((site.envs / ".leases").iterdir())


def test_takeover_claim_left_by_a_waiter_that_died_does_not_block_forever(site: Site):
    lease = plant_lease(site, token="deadbeef")
    # A waiter died between claiming the dead lease and replacing it.
    (lease.parent / "env.takeover.deadbeef").mkdir()

    result = site.run(F5TTS_LEASE_STALE_S="1", F5TTS_LEASE_WAIT_MAX_S="30")

    assert result.returncode == 0, result.stderr
    assert "removing the takeover claim of the env lease left by a waiter that died" in (
        result.stderr
    )
    assert "took over the env lease of host other-machine pid 4242" in result.stderr
    assert not list(lease.parent.iterdir())


def test_builder_that_lost_its_lease_while_stalled_marks_and_publishes_nothing(site: Site):
    builder = site.start(MICROMAMBA_DOUBLE_PAUSE="link:2")
    builder.wait_for_stderr("PAUSED link")
    # Meanwhile another machine judged the stalled builder dead and took the lease.
    owner = hand_lease_to_another_machine(site)

    result = builder.result()

    assert result.returncode == 22, result.stderr
    assert "lost the env lease while building" in result.error_lines()[0]
    assert site.marked_prefixes() == []
    assert site.active() is None
    assert "token=feedface" in owner.read_text()  # the new holder's lease is left alone


def test_builder_taken_over_during_the_finish_step_writes_no_marker(site: Site):
    # The stall happens inside `python -m bootstrap finish`, after the entrypoint's own
    # lease check: finish itself must see the takeover before it writes the marker.
    shutil.copy(HERE / "pause_points.py", site.app / "sitecustomize.py")
    builder = site.start(F5TTS_TEST_PAUSE="verify:2")
    builder.wait_for_stderr("PAUSED verify")
    owner = hand_lease_to_another_machine(site)

    result = builder.result()

    assert result.returncode == 22, result.stderr
    assert site.marked_prefixes() == []
    assert "is no longer this worker's" in result.stderr
    assert "lost the env lease while building" in result.error_lines()[-1]
    assert site.active() is None
    assert "token=feedface" in owner.read_text()


def test_gc_after_a_build_runs_while_the_builder_still_holds_the_lease(site: Site):
    # Otherwise a builder of another image could take the lease while gc deletes
    # package dirs it links from, or the prefix gc saw as a crashed build.
    crashed = site.envs / "f5tts-0123456789ab"
    (crashed / "conda-meta").mkdir(parents=True)
    shutil.copy(HERE / "pause_points.py", site.app / "sitecustomize.py")
    builder = site.start(F5TTS_TEST_PAUSE="gc:1")
    builder.wait_for_stderr("PAUSED gc")

    lease = site.envs / ".leases" / "env"
    assert (lease / "owner").is_file()  # held by the builder: nobody else can build now

    result = builder.result()
    assert result.returncode == 0, result.stderr
    assert not crashed.exists()
    assert not lease.exists()


def test_worker_waiting_for_the_models_lease_already_counts_as_using_its_env(site: Site):
    # It runs fetch-models from its prefix next; a gc by another image's builder in
    # the meantime must see the prefix in use.
    assert site.run().returncode == 0
    env_id = site.env_id()
    for record in (site.envs / ".in-use" / env_id).iterdir():
        record.unlink()
    lease = plant_lease(site, name="models", token="alive")
    with Heartbeat(lease, "alive"):
        waiter = site.start(F5TTS_FETCH_MODELS="1", F5TTS_LEASE_WAIT_MAX_S="30")
        records_dir = site.envs / ".in-use" / env_id
        deadline = time.monotonic() + 5
        while not any(records_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert waiter.process.poll() is None, waiter.stderr()  # still waiting for the lease
        assert len(list(records_dir.iterdir())) == 1
        waiter.kill_container()


def test_builder_taken_over_during_a_failing_attempt_does_not_retry_over_the_new_build(
    site: Site,
):
    # A retry's `micromamba create -y` deletes the prefix first: after a takeover that
    # prefix is the new holder's work in progress.
    builder = site.start(
        MICROMAMBA_DOUBLE_PAUSE="link:2", MICROMAMBA_DOUBLE_FAIL="link", F5TTS_REALIZE_RETRIES="2"
    )
    builder.wait_for_stderr("PAUSED link")
    owner = hand_lease_to_another_machine(site)

    result = builder.result()

    assert result.returncode == 22, result.stderr
    assert site.realizations() == 1
    assert "lost the env lease while building" in result.error_lines()[-1]
    assert "token=feedface" in owner.read_text()


def wait_on_a_live_holder_at(site: Site, progress: str):
    """A worker that waits 1 s for another machine's live lease, whose holder noted
    `progress` ("<step> <seconds in>") in it."""
    lease = plant_lease(site, token="alive")
    (lease / "progress").write_text(progress + "\n")
    with Heartbeat(lease, "alive"):
        return site.run(F5TTS_LEASE_WAIT_MAX_S="1")


def test_a_waiter_says_at_once_who_it_waits_for_and_about_how_long(site: Site):
    result = wait_on_a_live_holder_at(site, "realize_env 100")

    assert result.returncode == 17, result.stderr
    # No earlier build on this volume: the documented first-build figure.
    assert (
        "waiting for env lease held by host other-machine pid 4242 for 0 s; it is at "
        "realize_env, 100 s in: about 500 s left (a first build takes about 600 s)"
    ) in result.stderr


def test_a_waiter_estimates_from_the_previous_build_and_says_when_it_runs_over(site: Site):
    assert site.run().returncode == 0
    recorded = site.envs / "f5tts" / ".f5tts" / "build-seconds"
    assert recorded.read_text().strip().isdigit()  # what the builder took, kept with the env
    recorded.write_text("40\n")
    (site.app / "conda-lock.yml").write_text(
        (site.app / "conda-lock.yml").read_text() + "# another lock\n"
    )
    result = wait_on_a_live_holder_at(site, "finish_env 55")

    assert result.returncode == 17, result.stderr
    assert (
        "it is at finish_env, 55 s in: longer than expected (the previous build took 40 s)"
    ) in result.stderr


def test_a_builder_notes_its_step_in_its_lease_for_the_waiters(site: Site):
    builder = site.start(MICROMAMBA_DOUBLE_PAUSE="download:600")
    try:
        builder.wait_for_stderr("PAUSED download")
        progress = (site.envs / ".leases" / "env" / "progress").read_text().split()
        assert progress[0] == "realize_env" and progress[1].isdigit()
        waiter = site.run(F5TTS_LEASE_WAIT_MAX_S="0.5")
        assert waiter.returncode == 17
        assert f"waiting for env lease held by host {site_host()} pid {builder.process.pid}" in (
            waiter.stderr
        )
        assert "; it is at realize_env, " in waiter.stderr
    finally:
        builder.kill_container()


def site_host() -> str:
    return Path("/proc/sys/kernel/hostname").read_text().strip()
