"""`python -m tests.handler.slow_loading_worker`: `python -m handler`'s wiring (the
module handler/__main__.py, then handler.worker.main) with a model factory that takes
long in native code, as loading real weights does. It prints LOADING MODELS to stderr
when it starts, then holds its thread in OpenSSL for a long while."""

from __future__ import annotations

import hashlib
import sys

import handler.__main__  # noqa: F401  (installs the SIGTERM handler, as `python -m handler`)
from handler.worker import main


def slow_factory(settings):
    print("LOADING MODELS", file=sys.stderr, flush=True)
    # One long C call that does not return to the interpreter for minutes.
    hashlib.pbkdf2_hmac("sha256", b"weights", b"salt", 10**9)
    raise AssertionError("the worker should have stopped long before this")


if __name__ == "__main__":
    main(slow_factory)
