"""The Python stage's failures: one sentence for a person, one exit code for the shell.

The entrypoint (bootstrap/entrypoint.sh) runs `python -m bootstrap ...` and maps the
exit code to what it does next; codes 30-49 belong to this stage and are listed in
docs/troubleshooting.md ("Python stage"). Every message names the cause and the fix.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    SETTINGS = 30  # an F5TTS_* variable has a value we cannot use
    USAGE = 31  # wrong command line
    LOCKFILE_MISSING = 32  # conda-lock.yml or a leftovers lock cannot be read
    LOCKFILE_INVALID = 33  # the lockfile validator found problems
    PIP_LEFTOVERS = 34  # pip could not install the required leftovers
    IMPORT_FAILED = 35  # a core module does not import inside the env
    VERSION_MISMATCH = 36  # the env's versions differ from the lock
    FFMPEG_BROKEN = 37  # the env's ffmpeg does not run
    GPU_REQUIRED = 38  # F5TTS_REQUIRE_GPU=1 and CUDA is not visible
    MARKER_WRITE = 39  # the ready marker could not be written
    PREFIX_MISSING = 40  # the prefix given to `finish` does not look like an env
    GC_FAILED = 41  # garbage collection could not inspect the volume
    MODELS_OFFLINE = 42  # the model hub cannot be reached
    MODELS_FAILED = 43  # a model download or check failed otherwise
    MODELS_NO_HUB = 44  # huggingface_hub is not importable
    STATUS_FAILED = 45  # the volume cannot be read for `status`
    LOCK_STALE = 46  # bootstrap/lock --check: inputs changed since the lock
    LOCK_TOOL = 47  # bootstrap/lock: a tool it needs is missing or failed
    LEASE_LOST = 48  # finish: the env lease was taken over before the marker
    LEFTOVERS_SDIST = 49  # bootstrap/lock: a declared sdist lacks its build tools in the env


class BootstrapError(Exception):
    """A failure with a one-sentence message and the exit code the entrypoint sees."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
