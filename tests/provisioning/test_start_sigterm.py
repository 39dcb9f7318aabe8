"""SIGTERM at any moment of a start ends the worker within 2 s, as `docker stop` and a
RunPod scale-down need it: no process left, the lease released.

Run under real PID-1 semantics: `unshare --pid --fork --mount-proc` makes the worker
PID 1 of a new PID namespace, as in a container, where the kernel delivers no signal
PID 1 has no handler for, and tears the namespace down when PID 1 exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.provisioning.deployment import HERE, REPO, Site
from tests.provisioning.test_lease import Heartbeat, plant_lease

STOP_WITHIN_S = 2.0


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _unshare_works(),
    reason="PID-1 semantics need `unshare --pid --fork --mount-proc` (root or user namespaces)",
)


@dataclass
class Container:
    """A command running as PID 1 of its own PID namespace (a container, for signals)."""

    unshare: subprocess.Popen
    stderr_path: Path
    marker: str  # a string in the environment of every process it started

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def pid1(self) -> int:
        """The host's pid of the namespace's PID 1 (unshare's only child)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children")
            found = children.read_text().split() if children.exists() else []
            if found:
                return int(found[0])
            time.sleep(0.02)
        raise AssertionError("the namespace's PID 1 did not start")

    def wait_for_stderr(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if self.unshare.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r}:\n{self.stderr()}")
            time.sleep(0.05)

    def stop(self) -> tuple[int, float]:
        """SIGTERM to PID 1, as `docker stop` sends it; the exit code and how long it took."""
        pid1 = self.pid1()
        started = time.monotonic()
        os.kill(pid1, signal.SIGTERM)
        try:
            code = self.unshare.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.unshare.kill()
            raise AssertionError(f"still running 30 s after SIGTERM:\n{self.stderr()}") from None
        return code, time.monotonic() - started

    def leftovers(self) -> list[str]:
        """Processes that carry this container's marker, a moment after it ended."""
        deadline = time.monotonic() + 0.5
        while True:
            found = []
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit() or int(proc.name) == os.getpid():
                    continue
                try:
                    environ = (proc / "environ").read_bytes()
                except OSError:
                    continue
                if self.marker.encode() in environ:
                    found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()!r}")
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def contain(command: list[str], env: dict[str, str], root: Path, name: str) -> Container:
    marker = f"F5TTS_TEST_CONTAINER={root / name}"
    stderr_path = root / f"{name}.err"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", *command],
            env={**env, "F5TTS_TEST_CONTAINER": str(root / name)},
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return Container(process, stderr_path, marker)


def start_worker(site: Site, name: str, **overrides: str) -> Container:
    entrypoint = str(site.app / "bootstrap" / "entrypoint.sh")
    return contain([entrypoint], {**site.env, **overrides}, site.root, name)


def own_leases(site: Site) -> list[str]:
    leases = site.envs / ".leases"
    return sorted(p.name for p in leases.iterdir()) if leases.exists() else []


def assert_stopped_promptly(container: Container) -> None:
    code, took = container.stop()
    assert code == 143, container.stderr()
    assert took <= STOP_WITHIN_S, f"took {took:.2f} s:\n{container.stderr()}"
    assert container.leftovers() == []


def test_sigterm_while_waiting_for_another_workers_lease(site: Site):
    lease = plant_lease(site, token="alive")
    with Heartbeat(lease, "alive"):
        worker = start_worker(site, "waiter", F5TTS_LEASE_POLL_MAX_S="30")
        worker.wait_for_stderr("waiting for env lease held by host other-machine")
        # The pauses between looks double from 0.1 s: 7 s in, it is 0.7 s into one of
        # 6.4 s, which a SIGTERM must cut short.
        time.sleep(7)

        assert_stopped_promptly(worker)

    # The other machine's lease is its own: left as it was.
    assert (lease / "owner").read_text() == "host=other-machine\npid=4242\ntoken=alive\n"
    assert site.realizations() == 0


def test_sigterm_while_micromamba_realizes_the_env(site: Site):
    worker = start_worker(site, "builder", MICROMAMBA_DOUBLE_PAUSE="download:600")
    worker.wait_for_stderr("PAUSED download")

    assert_stopped_promptly(worker)

    assert own_leases(site) == []  # released: the next worker need not wait it out
    assert site.marked_prefixes() == []
    # The next start rebuilds the half-made prefix.
    assert site.run().returncode == 0


def test_sigterm_while_the_python_stage_installs_the_leftovers(site: Site):
    shutil.copy(HERE / "pause_points.py", site.app / "sitecustomize.py")
    worker = start_worker(site, "finisher", F5TTS_TEST_PAUSE="leftovers")
    worker.wait_for_stderr("PAUSED leftovers")

    assert_stopped_promptly(worker)

    assert own_leases(site) == [] and site.marked_prefixes() == []


def test_sigterm_while_the_handler_loads_its_models(tmp_path: Path):
    # After the entrypoint's exec the handler is PID 1; its models take long to load
    # (here: a native call that holds its thread, as torch's loading does).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("F5TTS_", "RUNPOD_", "S3_"))}
    env.update(PYTHONPATH=str(REPO), F5TTS_VOLUME=str(tmp_path), F5TTS_WARMUP="0")
    worker = contain(
        [sys.executable, "-m", "tests.handler.slow_loading_worker"], env, tmp_path, "handler"
    )
    worker.wait_for_stderr("LOADING MODELS")

    assert_stopped_promptly(worker)

    assert "SIGTERM while starting: the worker stops now" in worker.stderr()


class StallingRelease:
    """A release server on 127.0.0.1 that sends the first bytes of the binary, then
    stalls: a download in progress."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 24))
                self.end_headers()
                self.wfile.write(b"\0" * 65536)
                self.wfile.flush()
                time.sleep(60)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/micromamba-linux-64"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_sigterm_while_micromamba_is_downloaded_leaves_no_partial_file(site: Site):
    from tests.provisioning.test_start_micromamba import tools_without

    release = StallingRelease()
    try:
        worker = start_worker(
            site,
            "fetcher",
            PATH=tools_without(site.root, "wget"),
            F5TTS_MICROMAMBA_URL=release.url,
            F5TTS_MICROMAMBA_SHA256="0" * 64,
            no_proxy="127.0.0.1",
        )
        worker.wait_for_stderr("fetching micromamba")
        bin_dir = site.volume / "bin"
        deadline = time.monotonic() + 10
        while not any(bin_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first bytes are on the volume

        assert_stopped_promptly(worker)
    finally:
        release.close()

    assert own_leases(site) == []
    # The half-downloaded binary is deleted on the way out, not left on the volume.
    assert list(bin_dir.iterdir()) == []
