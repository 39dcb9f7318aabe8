"""Spec-based `micromamba create` for the micromamba double: what bootstrap/lock runs
to realize its tools env (`create -y -p P -c CHANNEL --override-channels SPEC...`).

micromamba 2.5's CLI (mamba-org/mamba, micromamba/src/common_options.cpp at 2.5.0):
`-c,--channel` takes one value and may be repeated; `--override-channels` is a flag;
the specs are positionals. The real binary solves with libsolv against the channels
(plus those of its rc files unless `--override-channels`; the double reads no rc
files) and the virtual packages it detects on the machine; the double solves with
py-rattler against `file://` channels, then installs exactly as for a lockfile.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from tests.support.micromamba_double import Failure, _LockedConda


def solve_specs(channels: Sequence[str], specs: Sequence[str]) -> list[_LockedConda]:
    """The packages `micromamba create -c CHANNEL... SPEC...` would install."""
    from rattler import MatchSpec, VirtualPackage
    from rattler import solve as rattler_solve
    from rattler.exceptions import SolverError

    if not channels:
        raise Failure(
            "no channel given (-c CHANNEL): the micromamba double reads no rc files, "
            "so it has no default channels"
        )
    for spec in specs:
        try:
            MatchSpec(spec, strict=False)
        except Exception as exc:  # rattler raises its own parse error types
            raise Failure(f"Invalid spec '{spec}': {exc}") from exc
    try:
        records = asyncio.run(
            rattler_solve(
                sources=list(channels),
                specs=list(specs),
                platforms=["linux-64", "noarch"],
                virtual_packages=VirtualPackage.detect(),
            )
        )
    except SolverError as exc:
        print(str(exc), file=sys.stderr)
        raise Failure("Could not solve for environment specs") from exc
    return [
        _LockedConda(
            name=r.name.normalized,
            version=str(r.version),
            build=str(r.build),
            url=r.url,
            file_name=r.file_name,
            sha256=r.sha256.hex() if r.sha256 else None,
            md5=r.md5.hex() if r.md5 else None,
            depends=list(r.depends),
        )
        for r in records
    ]
