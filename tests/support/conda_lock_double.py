"""A test double of `conda-lock lock` (4.0.3) that solves with py-rattler, offline.

Its command line is conda-lock's own: arguments are parsed by the installed conda-lock
package's click command, so an option the pinned conda-lock lacks fails here exactly
as it would there (exit 2). Of that CLI the double implements what bootstrap/lock
uses: `lock --micromamba --conda BIN -f ENV -p PLATFORM --virtual-package-spec VP
--lockfile LOCK` (plus `-c`); anything else set to a non-default value is refused.

The environment is read with conda-lock's parser, solved with rattler against its
channels (`file://` only, as the test kit's local channel) for the virtual packages
of VP, and written with conda-lock's own writer and content hash, its `sources`
relative to the lockfile as conda-lock writes them. The real one asks the conda
binary given by `--conda` to solve; the double only checks that it is executable.

$CONDA_LOCK_DOUBLE_LOG: one JSON line per call (argv, cwd). $CONDA_LOCK_DOUBLE_FAIL=solve
fails the solve; $CONDA_LOCK_DOUBLE_PAUSE=<seconds> sleeps before writing (so a test
can kill it mid-lock), after printing `PAUSED lock` to stderr.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

import click
import yaml

# What bootstrap/lock may pass; every other parameter must keep its default.
SUPPORTED = {
    "micromamba",
    "conda",
    "files",
    "platform",
    "virtual_package_spec",
    "lockfile",
    "channel_overrides",
    "log_level",
}


def _log(argv: Sequence[str]) -> None:
    path = os.environ.get("CONDA_LOCK_DOUBLE_LOG")
    if path:
        record = json.dumps({"argv": list(argv), "cwd": os.getcwd()}) + "\n"
        with open(path, "a", encoding="utf-8") as log:
            log.write(record)


def read_calls(log: pathlib.Path) -> list[dict]:
    """The calls recorded in $CONDA_LOCK_DOUBLE_LOG."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def lock_calls(log: pathlib.Path) -> list[dict]:
    """The `conda-lock lock` calls (solves) in the log."""
    return [call for call in read_calls(log) if call["argv"][:1] == ["lock"]]


def _parse(argv: Sequence[str]) -> dict:
    from conda_lock.conda_lock import main as conda_lock_cli

    command = conda_lock_cli.commands["lock"]
    context = command.make_context("conda-lock lock", list(argv))
    defaults = command.make_context("conda-lock lock", []).params
    unsupported = sorted(
        name
        for name, value in context.params.items()
        if name not in SUPPORTED and value != defaults[name]
    )
    if unsupported:
        raise click.UsageError(f"the conda-lock double does not implement {unsupported}")
    if not context.params["micromamba"] or not context.params["conda"]:
        raise click.UsageError("the conda-lock double expects --micromamba --conda BIN")
    return context.params


def _specs(dependencies) -> list[str]:
    specs = []
    for dep in dependencies:
        if dep.manager != "conda":
            raise click.UsageError(f"the conda-lock double solves conda packages only ({dep.name})")
        specs.append(" ".join(p for p in (dep.name, dep.version, dep.build) if p))
    return specs


def lock(params: dict) -> pathlib.Path:
    from conda_lock.common import relative_path
    from conda_lock.content_hash import compute_content_hashes
    from conda_lock.invoke_conda import is_micromamba
    from conda_lock.lookup import DEFAULT_MAPPING_URL
    from conda_lock.src_parser import make_lock_spec
    from conda_lock.virtual_package import virtual_package_repo_from_specification

    from tests.support.lockfiles import (
        locked_conda,
        solve_urls,
        virtual_packages_of,
        write_lockfile,
    )

    conda = pathlib.Path(params["conda"])
    if not (conda.is_file() and os.access(conda, os.X_OK)):
        raise click.ClickException(f"Could not find conda (or compatible) executable {conda}")
    if not is_micromamba(conda):
        # conda-lock would drive it with conda's flags, which micromamba rejects.
        raise click.ClickException(
            f"{conda} is not named micromamba, so conda-lock would call it as conda"
        )
    files = [pathlib.Path(f) for f in params["files"]]
    lockfile = pathlib.Path(params["lockfile"] or "conda-lock.yml")
    spec = make_lock_spec(
        src_files=files,
        channel_overrides=list(params["channel_overrides"]) or None,
        platform_overrides=list(params["platform"]) or None,
        mapping_url=DEFAULT_MAPPING_URL,
    )
    vp_file = pathlib.Path(params["virtual_package_spec"])
    repo = virtual_package_repo_from_specification(vp_file)
    with repo:
        content_hashes = compute_content_hashes(spec, repo)
    vp_spec = yaml.safe_load(vp_file.read_text(encoding="utf-8"))
    packages = []
    for platform in spec.platforms:
        print(f"Locking dependencies for {[platform]}...", file=sys.stderr)
        if os.environ.get("CONDA_LOCK_DOUBLE_FAIL") == "solve":
            raise click.ClickException(
                f"Could not lock the environment for platform {platform} (CONDA_LOCK_DOUBLE_FAIL)"
            )
        records = solve_urls(
            [c.url for c in spec.channels],
            _specs(spec.dependencies[platform]),
            platform=platform,
            virtual_packages=virtual_packages_of(vp_spec, platform),
        )
        packages += locked_conda(records, platform)
    pause = os.environ.get("CONDA_LOCK_DOUBLE_PAUSE")
    if pause:
        print("PAUSED lock", file=sys.stderr, flush=True)
        time.sleep(float(pause))
    write_lockfile(
        lockfile,
        packages,
        content_hashes=content_hashes,
        channel_urls=[c.url for c in spec.channels],
        sources=[relative_path(lockfile.absolute().parent, s.absolute()) for s in spec.sources],
    )
    print(f" - Install lock using: conda-lock install --name YOURENV {lockfile}", file=sys.stderr)
    return lockfile


def main(argv: Sequence[str]) -> int:
    _log(argv)
    try:
        if list(argv) == ["--version"]:
            from conda_lock import __version__

            print(f"conda-lock, version {__version__}")
            return 0
        if not argv or argv[0] != "lock":
            raise click.UsageError(f"the conda-lock double implements `lock` only, not {argv[:1]}")
        lock(_parse(argv[1:]))
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
