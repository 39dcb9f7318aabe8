"""README step 1 on a fresh clone: no conda-lock.yml yet. The entrypoint makes it first
with bootstrap/lock (tools env on the volume, under a lease), says where it is and to
commit it, then realizes the env from it. The image never takes this path: its build
makes the lock and writes bootstrap/env-id."""

from __future__ import annotations

import time

import pytest

from bootstrap.lockfile import validate_lock
from tests.provisioning.deployment import Site
from tests.provisioning.test_start_sigterm import (
    assert_stopped_promptly,
    own_leases,
    start_worker,
)
from tests.provisioning.test_start_sigterm import pytestmark as sigterm_needs_pid1
from tests.support.conda_channel import LocalChannel
from tests.support.conda_lock_double import lock_calls
from tests.support.lock_kit import copy_bootstrap
from tests.support.lockfiles import DEFAULT_SPECS, write_environment
from tests.support.micromamba_double import MicromambaDouble, realizations


@pytest.fixture
def clone_site(
    site: Site, local_channel: LocalChannel, pinned_micromamba: MicromambaDouble
) -> Site:
    """The site's app dir as a fresh clone: environment.yml and bootstrap/lock, no lock."""
    (site.app / "conda-lock.yml").unlink()
    write_environment(local_channel, site.app, DEFAULT_SPECS)
    copy_bootstrap(site.app / "bootstrap")
    site.env["PATH"] = f"{pinned_micromamba.bin_dir}:{site.env['PATH']}"
    site.env["CONDA_LOCK_DOUBLE_LOG"] = str(site.root / "conda-lock-calls.jsonl")
    return site


def conda_lock_solves(site: Site) -> int:
    return len(lock_calls(site.root / "conda-lock-calls.jsonl"))


def test_a_fresh_clone_makes_its_lock_says_so_then_realizes_the_env_from_it(clone_site: Site):
    site = clone_site
    result = site.run()

    assert result.returncode == 0, result.stderr
    lockfile = site.app / "conda-lock.yml"
    assert f"[bootstrap] no conda-lock.yml in {site.app} yet: making it with bootstrap/lock" in (
        result.stderr
    )
    assert (
        f"[bootstrap] made the lock {lockfile}: commit it, so every later build and start "
        "installs exactly these packages\n" in result.stderr
    )
    report = validate_lock(
        lockfile,
        allowed_channel=site.env["F5TTS_ALLOWED_CHANNEL"],
        environment=site.app / "environment.yml",
    )
    assert report.ok and not report.notices, report.problems
    creates = realizations(site.double_log)
    assert [("-f" in c["argv"]) for c in creates] == [False, True]  # tools env, then the env
    assert creates[0]["argv"][3].startswith(str(site.volume / "tools") + "/")
    prefix = site.envs / f"f5tts-{site.env_id()}"
    assert result.probe["executable"] == str(prefix / "bin" / "python")

    again = site.run()
    assert again.returncode == 0, again.stderr
    assert "making it with bootstrap/lock" not in again.stderr
    assert conda_lock_solves(site) == 1 and site.realizations() == 2


def test_two_workers_on_a_fresh_clone_lock_once_and_build_once(clone_site: Site):
    site = clone_site
    workers = [site.start(), site.start()]
    results = [w.result() for w in workers]

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert conda_lock_solves(site) == 1
    assert [("-f" in c["argv"]) for c in realizations(site.double_log)] == [False, True]
    assert all(r.probe is not None for r in results)


def test_a_lock_that_cannot_be_made_stops_the_start_with_its_sentence(clone_site: Site):
    site = clone_site
    result = site.run(CONDA_LOCK_DOUBLE_FAIL="solve")

    assert result.returncode == 13
    assert result.error_lines() == [
        f"[bootstrap] error 13: no conda-lock.yml at {site.app / 'conda-lock.yml'}, and "
        "bootstrap/lock could not make it (exit 47, its reason is above): fix that cause and "
        "restart, or make the lock where Docker runs (bootstrap/lock --docker) and commit it; "
        "see docs/lockfile.md."
    ]
    assert not (site.app / "conda-lock.yml").exists()
    assert [("-f" in c["argv"]) for c in realizations(site.double_log)] == [False]
    assert result.probe is None


@sigterm_needs_pid1
@pytest.mark.parametrize(
    "moment", ["tools", "solve"], ids=["while-realizing-the-tools", "while-conda-lock-solves"]
)
def test_sigterm_while_a_fresh_clone_makes_its_lock(clone_site: Site, moment: str):
    site = clone_site
    if moment == "tools":
        pause, seen = {"MICROMAMBA_DOUBLE_PAUSE": "download:600"}, "PAUSED download"
    else:
        pause, seen = {"CONDA_LOCK_DOUBLE_PAUSE": "600"}, "PAUSED lock"
    worker = start_worker(site, "locker", **pause)
    worker.wait_for_stderr(seen)

    assert_stopped_promptly(worker)

    assert not (site.app / "conda-lock.yml").exists()
    assert own_leases(site) == []  # the lock lease is released
    # The next start makes the lock (rebuilding an unfinished tools env) and the env.
    result = site.run()
    assert result.returncode == 0, result.stderr
    assert result.probe is not None


def test_two_workers_on_a_fresh_clone_without_micromamba_fetch_it_once(
    clone_site: Site, micromamba_double: MicromambaDouble
):
    """The fetch happens under the lock lease: the second worker finds the lock made
    (and the verified binary there) once it gets the lease."""
    from tests.provisioning.test_start_micromamba import ReleaseServer, fetch_env

    class SlowRelease(ReleaseServer):
        """Takes a second to answer, so both workers start before either has the binary."""

        def __init__(self, body: bytes) -> None:
            super().__init__(body)
            handle = self.httpd.RequestHandlerClass.do_GET

            def slow_get(handler) -> None:
                time.sleep(1)
                handle(handler)

            self.httpd.RequestHandlerClass.do_GET = slow_get

    release = SlowRelease(micromamba_double.executable.read_bytes())
    try:
        env = fetch_env(clone_site, release)
        workers = [clone_site.start(**env), clone_site.start(**env)]
        results = [w.result() for w in workers]
    finally:
        release.close()

    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert release.downloads == 1
    assert conda_lock_solves(clone_site) == 1
