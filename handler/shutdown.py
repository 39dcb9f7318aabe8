"""Ends the worker within moments of a SIGTERM, while it is still loading its models.

Why: after the entrypoint's exec the handler is the container's PID 1, and the kernel
delivers no signal to PID 1 that it has no handler for. runpod's SDK installs its
SIGTERM handler only once `runpod.serverless.start` runs, after the models are loaded
(seconds to minutes), so a `docker stop` or a RunPod scale-down during that time would
wait for the kill timeout. So `python -m handler` installs a handler first thing, and
the models load in a thread while the main thread, where Python runs signal handlers,
waits: a long call into torch or safetensors cannot hold the signal back. Once the SDK
starts it replaces this handler with its own graceful shutdown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
# 128 + SIGTERM, what a shell reports for a process ended by it.
EXIT_ON_SIGTERM = 128 + signal.SIGTERM


def _exit_now(signum: int, _frame: object) -> None:
    # Not through logging: the loading thread may hold its lock right now.
    with contextlib.suppress(OSError):
        os.write(2, b"handler: SIGTERM while starting: the worker stops now\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    # Not sys.exit: the loading thread may be deep in native code, and interpreter
    # shutdown would wait for it.
    os._exit(EXIT_ON_SIGTERM)


def exit_on_sigterm() -> None:
    """From now on a SIGTERM ends the process at once (until the SDK installs its own)."""
    signal.signal(signal.SIGTERM, _exit_now)


def run_interruptibly(work: Callable[..., T], *args: object) -> T:
    """`work(*args)` in a daemon thread; the main thread waits, ready to run the
    SIGTERM handler the moment the signal arrives. Returns or raises what `work` did."""
    done = threading.Event()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work(*args)
        except BaseException as exc:  # handed to the main thread, which raises it
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="load-models", daemon=True).start()
    # A timed wait: each timeout is a point where Python runs pending signal handlers.
    while not done.wait(0.1):
        pass
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
