"""One micromamba for every worker: the pinned version (bootstrap/pins.env), from PATH,
from $MICROMAMBA, or fetched onto the volume from its release and checked against the
published sha256. The release server here is a loopback HTTP server serving the
micromamba double's launcher, with the URL and sha256 overridden through the
documented F5TTS_MICROMAMBA_URL and F5TTS_MICROMAMBA_SHA256."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.provisioning.deployment import Result, Site
from tests.support.lockfiles import DEFAULT_SPECS, LockBundle, write_lock
from tests.support.micromamba_double import MicromambaDouble, read_calls
from tests.support.pins import pins

RELEASE_PATH = f"/mamba-org/micromamba-releases/{pins()['MICROMAMBA_RELEASE']}/micromamba-linux-64"


class ReleaseServer:
    """Serves one file at RELEASE_PATH on 127.0.0.1 and counts the downloads."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.downloads = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != RELEASE_PATH:
                    self.send_error(404)
                    return
                server.downloads += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{RELEASE_PATH}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def release(micromamba_double: MicromambaDouble) -> Iterator[ReleaseServer]:
    server = ReleaseServer(micromamba_double.executable.read_bytes())
    yield server
    server.close()


def tools_without(root: Path, *hidden: str) -> str:
    """A PATH of every system tool except `hidden` (and any micromamba)."""
    tools = root / "-".join(("tools", *hidden))
    tools.mkdir(exist_ok=True)
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(directory).iterdir():
            name = tool.name
            if name in hidden or name == "micromamba" or (tools / name).exists():
                continue
            (tools / name).symlink_to(tool)
    return str(tools)


def fetch_env(site: Site, release: ReleaseServer, sha256: str | None = None, **extra: str):
    """No micromamba anywhere: the bootstrap must fetch it from `release`."""
    body_sha = hashlib.sha256(release.body).hexdigest()
    return {
        "PATH": extra.pop("PATH", None) or tools_without(site.root),
        "F5TTS_MICROMAMBA_URL": release.url,
        "F5TTS_MICROMAMBA_SHA256": sha256 or body_sha,
        "no_proxy": "127.0.0.1",
        **extra,
    }


def fetched_path(site: Site) -> Path:
    return site.volume / "bin" / f"micromamba-{pins()['MICROMAMBA_RELEASE']}"


def assert_refused(site: Site, result: Result, code: int, sentence: str) -> None:
    assert result.returncode == code, result.stderr
    errors = result.error_lines()
    assert len(errors) == 1 and errors[0].startswith(f"[bootstrap] error {code}: {sentence}")
    assert errors[0].endswith("."), errors[0]
    assert result.probe is None and site.marked_prefixes() == []
    leases = site.envs / ".leases"
    assert not leases.exists() or not [p for p in leases.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("tool", ["curl", "wget"])
def test_without_micromamba_the_pinned_binary_is_fetched_verified_and_reused(
    site: Site, release: ReleaseServer, cuda_lock: LockBundle, tool: str
):
    hidden = "wget" if tool == "curl" else "curl"
    env = fetch_env(site, release, PATH=tools_without(site.root, hidden))

    result = site.run(**env)

    assert result.returncode == 0, result.stderr
    binary = fetched_path(site)
    assert f"fetching micromamba {pins()['MICROMAMBA_RELEASE']} from {release.url}" in result.stderr
    assert f"micromamba {pins()['MICROMAMBA_VERSION']} at {binary}" in result.stderr
    assert binary.read_bytes() == release.body and binary.stat().st_mode & stat.S_IXUSR
    assert sorted(p.name for p in binary.parent.iterdir()) == [binary.name]  # no temp file
    assert site.realizations() == 1 and release.downloads == 1

    # A new lock needs micromamba again: the verified copy is used, not downloaded again.
    specs = tuple(s for s in DEFAULT_SPECS if s != "prefix-probe")
    site.use_lock(write_lock(cuda_lock.channel, site.root / "b", specs=specs).lockfile)
    again = site.run(**env)

    assert again.returncode == 0, again.stderr
    assert "fetching micromamba" not in again.stderr
    assert site.realizations() == 2 and release.downloads == 1


def test_a_download_failing_its_sha256_is_deleted_unused_and_refused_with_exit_25(
    site: Site, release: ReleaseServer
):
    crashed = site.envs / f"f5tts-{site.env_id()}"
    (crashed / "conda-meta").mkdir(parents=True)
    result = site.run(**fetch_env(site, release, sha256="0" * 64))

    assert_refused(site, result, 25, f"the micromamba downloaded from {release.url} has sha256 ")
    assert f"not the pinned {'0' * 64}, so it was deleted unused" in result.stderr
    # Nothing that could be run is left, nothing was realized, nothing deleted first.
    assert [p for p in (site.volume / "bin").iterdir()] == []
    assert read_calls(site.double_log) == []
    assert crashed.is_dir()


def test_a_cached_copy_that_no_longer_matches_is_fetched_again(site: Site, release: ReleaseServer):
    binary = fetched_path(site)
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"#!/bin/sh\necho tampered\n")
    binary.chmod(0o755)

    result = site.run(**fetch_env(site, release))

    assert result.returncode == 0, result.stderr
    assert "does not match its sha256; fetching it again" in result.stderr
    assert binary.read_bytes() == release.body and release.downloads == 1


def test_without_curl_or_wget_the_fetch_is_refused_with_exit_24(site: Site, release: ReleaseServer):
    env = fetch_env(site, release, PATH=tools_without(site.root, "curl", "wget"))

    result = site.run(**env)

    assert_refused(
        site,
        result,
        24,
        f"micromamba {pins()['MICROMAMBA_VERSION']} is not installed and neither curl nor wget",
    )
    assert release.downloads == 0


def test_an_unreachable_release_is_refused_with_exit_24(site: Site, release: ReleaseServer):
    env = fetch_env(site, release, F5TTS_MICROMAMBA_URL=release.url + ".missing")

    result = site.run(**env)

    assert_refused(site, result, 24, f"could not download micromamba from {release.url}.missing")
    assert not (site.volume / "bin").exists() or list((site.volume / "bin").iterdir()) == []


def test_an_explicit_micromamba_of_another_version_is_refused_with_exit_23(
    site: Site, micromamba_double: MicromambaDouble
):
    result = site.run(
        MICROMAMBA=str(micromamba_double.executable), MICROMAMBA_DOUBLE_VERSION="2.8.0"
    )

    assert_refused(
        site,
        result,
        23,
        f"MICROMAMBA={micromamba_double.executable} is micromamba 2.8.0, but every worker "
        f"realizes with the pinned {pins()['MICROMAMBA_VERSION']} (bootstrap/pins.env)",
    )
    assert [c["argv"] for c in read_calls(site.double_log)] == [["--version"]]


def test_a_micromamba_of_another_version_on_path_is_passed_over_for_the_pinned_one(
    site: Site, release: ReleaseServer, micromamba_double: MicromambaDouble
):
    other = site.root / "other-bin"
    other.mkdir()
    (other / "micromamba").write_text(
        f'#!/bin/sh\nMICROMAMBA_DOUBLE_VERSION=2.8.0 exec "{micromamba_double.executable}" "$@"\n'
    )
    (other / "micromamba").chmod(0o755)
    env = fetch_env(site, release)
    env["PATH"] = f"{other}{os.pathsep}{env['PATH']}"

    result = site.run(**env)

    assert result.returncode == 0, result.stderr
    assert f"passing over {other / 'micromamba'} (micromamba 2.8.0)" in result.stderr
    assert f"micromamba {pins()['MICROMAMBA_VERSION']} at {fetched_path(site)}" in result.stderr
    # Realized by the pinned one: micromamba 2.5's flat package cache.
    assert not (site.volume / "pkgs" / "file").exists()
    assert any(p.suffix == ".conda" for p in (site.volume / "pkgs").iterdir())


def test_cold_start_log_names_the_micromamba_version_and_path(
    site: Site, micromamba_double: MicromambaDouble
):
    result = site.run()

    assert result.returncode == 0, result.stderr
    line = (
        f"[bootstrap] micromamba {pins()['MICROMAMBA_VERSION']} at {micromamba_double.executable}"
    )
    assert line in result.stderr.splitlines()


def test_warm_start_reads_no_pins_and_calls_no_micromamba(site: Site):
    assert site.run().returncode == 0
    calls = len(read_calls(site.double_log))
    (site.app / "bootstrap" / "pins.env").unlink()  # only a cold start may need it

    warm = site.run()

    assert warm.returncode == 0, warm.stderr
    assert len(read_calls(site.double_log)) == calls


def test_an_app_dir_without_pins_env_is_refused_on_a_cold_start_with_exit_21(site: Site):
    (site.app / "bootstrap" / "pins.env").unlink()

    result = site.run()

    assert_refused(site, result, 21, f"{site.app / 'bootstrap' / 'pins.env'} is missing")
