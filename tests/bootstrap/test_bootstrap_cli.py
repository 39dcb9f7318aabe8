"""The command line: usage errors and bad settings are one sentence and a 30-49 code."""

from __future__ import annotations

import subprocess
import sys

from bootstrap.__main__ import main
from bootstrap.errors import ExitCode
from tests.conftest import REPO


def test_an_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("bootstrap: argument command: invalid choice")
    assert err.rstrip().endswith("see `python -m bootstrap --help`.")


def test_finish_without_its_arguments_is_a_usage_error(capsys):
    assert main(["finish"]) == ExitCode.USAGE
    assert "--prefix" in capsys.readouterr().err


def test_a_bad_setting_stops_every_command_with_its_sentence():
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap", "status"],
        cwd=REPO,
        env={"F5TTS_IN_USE_TTL_S": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == ExitCode.SETTINGS
    assert result.stderr == (
        "bootstrap: F5TTS_IN_USE_TTL_S='soon' is not a number >= 1; "
        "fix it or unset it for the default.\n"
    )


def test_exit_codes_stay_in_the_python_stage_range():
    assert all(30 <= code <= 49 for code in ExitCode)
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


def test_every_exit_code_is_documented_in_troubleshooting():
    text = (REPO / "docs/troubleshooting.md").read_text()
    section = text.split("## Python stage (exit codes 30-49)", 1)[1]
    for code in ExitCode:
        assert f"| {int(code)} |" in section, f"exit code {int(code)} is not documented"


def test_gc_on_an_unreachable_volume_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap", "gc"],
        cwd=REPO,
        env={"F5TTS_VOLUME": str(blocker), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == ExitCode.GC_FAILED
    assert "check that the volume is mounted." in result.stderr
