"""Warm start: entrypoint.sh on a ready volume until the handler runs, vs `sh -c exec` of it.

Builds a ready volume once with the real entrypoint (local conda channel, micromamba
test double; tests/support), writes bootstrap/env-id as `docker build` does, then
times, interleaved, two commands that both end by exec'ing the same
`PREFIX/bin/python -m probe_handler`:
  warm:  bootstrap/entrypoint.sh               (check volume, env id, marker, envs/f5tts, models,
                                                activation, in-use record, exec)
  floor: sh -c 'exec PREFIX/bin/python -m probe_handler'
Both include the Python start-up, so warm - floor (`overhead_ms`, the median of the
paired differences) is what the bootstrap adds. Last line: {"warm_start_ms",
"floor_ms", "overhead_ms", "runs"} (milliseconds, medians).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.provisioning.deployment import make_site
from tests.support.conda_channel import build_channel
from tests.support.lockfiles import write_lock
from tests.support.micromamba_double import install_launcher
from tests.support.wheels import build_wheelhouse


def timed_ms(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace")
        sys.exit(f"warm-start: {command[0]} failed ({result.returncode}):\n{detail}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed runs of each command")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        root = Path(tmp)
        print("warm-start: building the test channel and a ready volume", file=sys.stderr)
        channel = build_channel(root / "channel")
        site = make_site(
            root / "site",
            write_lock(channel, root / "lock"),
            install_launcher(root / "double"),
            build_wheelhouse(root / "wheels"),
        )
        cold = site.run()
        if cold.returncode != 0:
            sys.exit(f"warm-start: the cold start failed:\n{cold.stderr}")
        env_id = site.env_id()
        (site.app / "bootstrap" / "env-id").write_text(env_id + "\n")
        python = site.envs / f"f5tts-{env_id}" / "bin" / "python"
        # As in the image: Dockerfile.runpod sets F5TTS_APP_DIR; PYTHONPATH lets the
        # floor's python find the same handler module.
        env = {**site.env, "F5TTS_APP_DIR": str(site.app), "PYTHONPATH": str(site.app)}
        warm_cmd = [str(site.app / "bootstrap" / "entrypoint.sh")]
        floor_cmd = ["sh", "-c", 'exec "$0" -m probe_handler', str(python)]

        for _ in range(3):  # page cache, pyc files
            timed_ms(warm_cmd, env, site.root)
            timed_ms(floor_cmd, env, site.root)
        warm, floor = [], []
        for i in range(args.runs):
            warm.append(timed_ms(warm_cmd, env, site.root))
            floor.append(timed_ms(floor_cmd, env, site.root))
            if (i + 1) % 10 == 0:
                print(f"warm-start: {i + 1}/{args.runs} runs", file=sys.stderr)

    # Paired differences: both runs of a pair see the same machine load.
    overhead = statistics.median(w - f for w, f in zip(warm, floor, strict=True))
    print(
        json.dumps(
            {
                "warm_start_ms": round(statistics.median(warm), 2),
                "floor_ms": round(statistics.median(floor), 2),
                "overhead_ms": round(overhead, 2),
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
