"""Fault injection for the Python stage, installed as `sitecustomize.py` in a test app.

The entrypoint runs `python -m bootstrap finish` with PYTHONPATH=<app>, so Python
imports this module at start-up. With F5TTS_TEST_PAUSE=<phase> it stops the finish
step at that phase, prints `PAUSED <phase>` to stderr and sleeps, so a test can
SIGKILL the worker exactly there. It hooks only public seams (subprocess, os.replace),
not bootstrap internals:
- leftovers: the `pip install` of the leftovers is about to run;
- verify: the isolated import check (`python -I -c ...`) is about to run;
- marker: the marker's temp file is written and is about to be renamed into place;
- gc: `bootstrap gc` is about to move a prefix into envs/.trash.
`<phase>:<seconds>` pauses that long and then goes on (default: 600 s, for a kill).
"""

import os
import subprocess
import sys
import time

_PHASE, _, _SECONDS = os.environ.get("F5TTS_TEST_PAUSE", "").partition(":")


def _pause(phase: str) -> None:
    print(f"PAUSED {phase}", file=sys.stderr, flush=True)
    time.sleep(float(_SECONDS or 600))


def _phase_of(cmd) -> str:
    args = [str(a) for a in cmd] if isinstance(cmd, (list, tuple)) else str(cmd).split()
    if "pip" in args and "install" in args:
        return "leftovers"
    if "-I" in args and "-c" in args:
        return "verify"
    return ""


if _PHASE in ("leftovers", "verify"):
    _popen_init = subprocess.Popen.__init__

    def _paused_popen_init(self, args, *rest, **kwargs):
        if _phase_of(args) == _PHASE:
            _pause(_PHASE)
        _popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = _paused_popen_init

if _PHASE == "marker":
    _replace = os.replace

    def _paused_replace(src, dst, *rest, **kwargs):
        if str(dst).endswith(os.path.join(".f5tts", "ready.json")):
            _pause("marker")
        _replace(src, dst, *rest, **kwargs)

    os.replace = _paused_replace

if _PHASE == "gc":
    _rename = os.rename

    def _paused_rename(src, dst, *rest, **kwargs):
        if os.sep + ".trash" + os.sep in str(dst):
            _pause("gc")
        _rename(src, dst, *rest, **kwargs)

    os.rename = _paused_rename
