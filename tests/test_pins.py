"""bootstrap/pins.env is the one place the tool versions are written: every copy of
them (the Dockerfile's default image, the micromamba double, the docs, the lock
tooling) agrees with it, or reads it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.pins import pins

# Where a person or a build reads a version: each mention must be the pinned one.
DOCS = ["README.md", "docs/*.md"]
LOCK_TOOLING = ["bootstrap/lock", "bootstrap/relock.py", "bootstrap/entrypoint.sh"]
IMAGE = re.compile(r"mambaorg/micromamba:([A-Za-z0-9._-]+)")
# "micromamba 2.5.0", "micromamba-2.5.0-2", "micromamba 2.5.x", "micromamba 2.5"; not
# comparisons ("micromamba < 2.6") nor names that merely end in it (find_micromamba).
MICROMAMBA = re.compile(r"(?<![\w/])micromamba[ -]v?(\d+\.\d+(?:\.\d+|\.x)?)\b")
TOOLS = {
    "CONDA_LOCK_VERSION": re.compile(r"(?<![\w/])conda-lock(?: |==)v?(\d+\.\d+\.\d+)\b"),
    "UV_VERSION": re.compile(r"(?<![\w/-])uv(?: |==)v?(\d+\.\d+\.\d+)\b"),
}
# A constant in code that spells a micromamba version instead of reading pins.env.
HARD_CODED = re.compile(
    r"""MICROMAMBA_(?:VERSION|SERIES|RELEASE)\s*[:=]\s*[^\n=]*?["']?(\d+\.\d+[.\d-]*)"""
)


def files(patterns: list[str]) -> list[Path]:
    return sorted(p for pattern in patterns for p in REPO.glob(pattern) if p.is_file())


def agrees(mentioned: str, pinned: str) -> bool:
    """A full version must be the pin; a series ("2.5", "2.5.x") must contain it."""
    if mentioned == pinned:
        return True
    is_series = mentioned.count(".") < 2 or mentioned.endswith((".x", "."))
    return is_series and pinned.startswith(mentioned.removesuffix(".x").rstrip(".") + ".")


def disagreements(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    version, image = pins()["MICROMAMBA_VERSION"], pins()["MICROMAMBA_IMAGE"]
    found = [
        f"{path.name}: image tag {tag} (pinned: {image})"
        for tag in IMAGE.findall(text)
        if tag != image.split(":", 1)[1]
    ]
    found += [
        f"{path.name}: micromamba {mentioned} (pinned: {version})"
        for mentioned in MICROMAMBA.findall(text)
        if not agrees(mentioned, version)
    ]
    for key, pattern in TOOLS.items():
        found += [
            f"{path.name}: {mentioned} where pins.env has {key}={pins()[key]}"
            for mentioned in pattern.findall(text)
            if mentioned != pins()[key]
        ]
    return found


def test_pins_env_is_plain_key_value_lines_the_shell_can_source():
    result = subprocess.run(
        ["sh", "-c", '. "$1" && echo "$MICROMAMBA_VERSION $MICROMAMBA_IMAGE"', "sh",
         str(REPO / "bootstrap" / "pins.env")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.split() == [pins()["MICROMAMBA_VERSION"], pins()["MICROMAMBA_IMAGE"]]
    assert pins()["MICROMAMBA_RELEASE"].startswith(pins()["MICROMAMBA_VERSION"] + "-")
    assert re.fullmatch(r"[0-9a-f]{64}", pins()["MICROMAMBA_LINUX_64_SHA256"])
    # micromamba-docker's tag scheme since its 2.0.2 image: <version>-debian12-slim.
    assert pins()["MICROMAMBA_IMAGE"] == (
        f"mambaorg/micromamba:{pins()['MICROMAMBA_VERSION']}-debian12-slim"
    )


def test_the_dockerfiles_default_micromamba_image_is_the_pinned_one():
    dockerfile = (REPO / "Dockerfile.runpod").read_text()
    [default] = re.findall(r"^ARG MICROMAMBA_IMAGE=(\S+)$", dockerfile, re.M)
    assert default == pins()["MICROMAMBA_IMAGE"]
    assert disagreements(REPO / "Dockerfile.runpod") == []


def test_the_micromamba_double_reports_the_pinned_version(micromamba_double):
    result = subprocess.run(
        [str(micromamba_double.executable), "--version"], capture_output=True, text=True
    )
    assert result.stdout.strip() == pins()["MICROMAMBA_VERSION"]
    # It reads pins.env rather than keeping a copy.
    source = (REPO / "tests" / "support" / "micromamba_double.py").read_text()
    assert 'DOUBLE_VERSION = pins()["MICROMAMBA_VERSION"]' in source


@pytest.mark.parametrize("path", files(DOCS), ids=lambda p: str(p.relative_to(REPO)))
def test_the_docs_name_only_the_pinned_versions(path: Path):
    assert disagreements(path) == []


@pytest.mark.parametrize("path", files(LOCK_TOOLING), ids=lambda p: str(p.relative_to(REPO)))
def test_the_lock_tooling_reads_pins_env_or_agrees_with_it(path: Path):
    text = path.read_text(encoding="utf-8")
    hard_coded = [
        v for v in HARD_CODED.findall(text) if not agrees(v, pins()["MICROMAMBA_VERSION"])
    ]
    assert hard_coded == [], f"{path.name} hard-codes micromamba {hard_coded}; read pins.env"
    assert disagreements(path) == []


def test_a_hard_coded_other_version_is_caught(tmp_path: Path):
    """The checks above are not vacuous: each kind of stale copy is found."""
    stale = tmp_path / "stale.md"
    stale.write_text(
        "FROM mambaorg/micromamba:2.8.0-bookworm-slim\n"
        "realized with micromamba 2.8.0, locked with conda-lock 3.0.1 and uv 0.1.0\n"
    )
    assert len(disagreements(stale)) == 4
    assert HARD_CODED.findall('MICROMAMBA_VERSION = "2.8.0"') == ["2.8.0"]
    assert not agrees("2.8.0", pins()["MICROMAMBA_VERSION"])
    assert agrees("2.5.x", "2.5.0") and agrees("2.5", "2.5.0") and not agrees("2.6", "2.5.0")
