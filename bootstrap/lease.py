"""The Python side of the lease (bootstrap/lease.sh): who holds a lease directory.

The entrypoint holds the env lease while `finish` and `gc` run and passes them its
token, so they can tell their own lease from another builder's.
"""

from __future__ import annotations

from pathlib import Path


def owner_token(lease_dir: Path) -> str | None:
    """The `token=` line of <lease>/owner; None when the lease is gone or unreadable."""
    try:
        lines = (lease_dir / "owner").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key == "token":
            return value
    return None
