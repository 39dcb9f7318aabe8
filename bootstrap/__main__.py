"""`python -m bootstrap COMMAND`: the Python stage of provisioning.

Commands: finish, gc, fetch-models, status, check-lock (docs/architecture.md).
A failure prints one sentence to stderr and exits with a code from 30 to 49
(bootstrap/errors.py, docs/troubleshooting.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.settings import Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would exit 2, which the shell stage owns
        raise BootstrapError(ExitCode.USAGE, f"{message}; see `python -m bootstrap --help`.")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bootstrap", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    finish = commands.add_parser("finish", help="leftovers, features, checks, ready marker")
    finish.add_argument("--prefix", type=Path, required=True)
    finish.add_argument("--env-id", required=True)
    finish.add_argument("--lease-dir", type=Path, help="the env lease the caller holds")
    finish.add_argument("--lease-token", help="the caller's token in that lease")

    gc = commands.add_parser("gc", help="delete envs and packages no worker needs")
    gc.add_argument("--dry-run", action="store_true", help="print the plan, delete nothing")
    gc.add_argument("--lease-token", help="the env lease with this token is the caller's own")

    commands.add_parser("fetch-models", help="download the weights to the volume")

    status = commands.add_parser("status", help="envs, leases, models, free space")
    status.add_argument("--json", action="store_true")

    check = commands.add_parser("check-lock", help="validate a conda-lock.yml")
    check.add_argument("lockfile", type=Path)
    check.add_argument("--environment", type=Path, help="compare the content hash with this file")
    check.add_argument(
        "--virtual-packages", type=Path, help="default: virtual-packages.yml beside --environment"
    )
    check.add_argument("--channel", help="allowed channel URL (default: conda-forge)")
    return parser


def _check_lock(args: argparse.Namespace, settings: Settings) -> int:
    from bootstrap.lockfile import validate_lock

    report = validate_lock(
        args.lockfile,
        allowed_channel=args.channel or settings.allowed_channel,
        environment=args.environment,
        virtual_packages=args.virtual_packages,
    )
    for notice in report.notices:
        print(f"check-lock: notice: {notice}", file=sys.stderr)
    for problem in report.problems:
        print(f"check-lock: {problem}", file=sys.stderr)
    if not report.ok:
        print(
            f"check-lock: {args.lockfile} has {len(report.problems)} problem(s).", file=sys.stderr
        )
        return int(ExitCode.LOCKFILE_INVALID)
    print(f"check-lock: {args.lockfile} is valid ({len(report.packages)} packages).")
    return 0


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    if args.command == "finish":
        from bootstrap.finish import finish

        lease = (args.lease_dir, args.lease_token) if args.lease_dir else None
        finish(args.prefix, args.env_id, settings, lease=lease)
    elif args.command == "gc":
        from bootstrap.gc import run_gc

        try:
            run_gc(settings, dry_run=args.dry_run, own_lease_token=args.lease_token)
        except OSError as exc:
            raise BootstrapError(
                ExitCode.GC_FAILED,
                f"gc cannot read {settings.envs_dir} ({exc.strerror}); "
                "check that the volume is mounted.",
            ) from exc
    elif args.command == "fetch-models":
        from bootstrap.models import fetch_models

        fetch_models(settings)
    elif args.command == "status":
        from bootstrap.status import gather, render, to_json

        try:
            status = gather(settings)
        except OSError as exc:
            raise BootstrapError(
                ExitCode.STATUS_FAILED,
                f"cannot read the volume {settings.volume} ({exc.strerror}); "
                "set F5TTS_VOLUME to its mount point.",
            ) from exc
        print(to_json(status) if args.json else render(status))
    elif args.command == "check-lock":
        return _check_lock(args, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except BootstrapError as exc:
        print(f"bootstrap: {exc.message}", file=sys.stderr)
        return int(exc.code)


if __name__ == "__main__":
    sys.exit(main())
