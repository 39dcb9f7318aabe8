"""Cold concurrency: N workers cold-starting together on one fresh volume vs one worker alone.

Uses the real entrypoint with the local conda channel and the micromamba test double
(tests/support), with ballast packages so that one realization takes several seconds.
First one worker alone on a fresh volume (`single_worker_s`), then --workers workers
started at once on another fresh volume (`wall_s`: until the last one exec'd its
handler). The lease should make that one realization (`realizations`, counted in the
double's log) and `ratio` = wall_s / single_worker_s close to 1.
Last line: {"workers", "realizations", "wall_s", "single_worker_s", "ratio", "realize_s"}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.provisioning.deployment import Site, make_site
from tests.support.conda_channel import BallastSpec, build_channel
from tests.support.lockfiles import DEFAULT_SPECS, LockBundle, write_lock
from tests.support.micromamba_double import MicromambaDouble, install_launcher
from tests.support.wheels import Wheelhouse, build_wheelhouse


def start_all(site: Site, workers: int) -> tuple[float, list[str]]:
    """Starts `workers` entrypoints at once; returns the wall time and their stderr."""
    start = time.perf_counter()
    running = [site.start("--worker", str(i)) for i in range(workers)]
    results = [w.result(timeout=900) for w in running]
    wall = time.perf_counter() - start
    for result in results:
        if result.returncode != 0 or result.probe is None:
            sys.exit(f"cold-concurrency: a worker failed ({result.returncode}):\n{result.stderr}")
    return wall, [r.stderr for r in results]


def realize_seconds(stderr: str) -> float:
    match = re.search(r"^\[bootstrap\] realize_env (\d+\.\d+)s$", stderr, re.M)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--ballast-packages", type=int, default=80)
    parser.add_argument("--ballast-mb", type=int, default=20, help="size of each ballast package")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        root = Path(tmp)
        total_mb = args.ballast_packages * args.ballast_mb
        print(
            f"cold-concurrency: building a channel with {total_mb} MB of ballast", file=sys.stderr
        )
        ballast = BallastSpec(count=args.ballast_packages, size_bytes=args.ballast_mb << 20)
        channel = build_channel(root / "channel", ballast=ballast)
        os.sync()
        specs = DEFAULT_SPECS + tuple(f"ballast-{i}" for i in range(args.ballast_packages))
        lock = write_lock(channel, root / "lock", specs=specs)
        double = install_launcher(root / "double")
        wheels = build_wheelhouse(root / "wheels")

        def fresh_site(
            name: str,
            lock: LockBundle = lock,
            double: MicromambaDouble = double,
            wheels: Wheelhouse = wheels,
        ) -> Site:
            site = make_site(root / name, lock, double, wheels)
            # Realistic lease timing, except a quicker poll so waiters notice the
            # release promptly (the default caps the backoff at 5 s).
            site.env.update(
                F5TTS_LEASE_STALE_S="120",
                F5TTS_LEASE_HEARTBEAT_S="5",
                F5TTS_LEASE_WAIT_MAX_S="900",
                F5TTS_LEASE_POLL_MAX_S="1",
            )
            return site

        print("cold-concurrency: one worker alone", file=sys.stderr)
        single_site = fresh_site("single")
        single_s, single_err = start_all(single_site, 1)
        print(f"cold-concurrency: {single_s:.2f} s; now {args.workers} at once", file=sys.stderr)
        # The first run's GBs must not still be written back while the second runs.
        shutil.rmtree(single_site.root)
        os.sync()
        many_site = fresh_site("many")
        wall_s, many_err = start_all(many_site, args.workers)
        for stderr in many_err:
            summary = [line for line in stderr.splitlines() if " ready: " in line]
            print(
                f"cold-concurrency: {summary[-1]} realize_env={realize_seconds(stderr)}s",
                file=sys.stderr,
            )
        realizations = many_site.realizations()

    print(
        json.dumps(
            {
                "workers": args.workers,
                "realizations": realizations,
                "wall_s": round(wall_s, 2),
                "single_worker_s": round(single_s, 2),
                "ratio": round(wall_s / single_s, 2),
                "realize_s": realize_seconds(single_err[0]),
            }
        )
    )


if __name__ == "__main__":
    main()
