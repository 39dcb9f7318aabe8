"""The tool versions of bootstrap/pins.env, for the test kit's stand-ins of those tools."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PINS_FILE = Path(__file__).resolve().parents[2] / "bootstrap" / "pins.env"


@cache
def pins() -> dict[str, str]:
    """KEY=VALUE lines of bootstrap/pins.env (comments and blank lines skipped)."""
    found = {}
    for line in PINS_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found
