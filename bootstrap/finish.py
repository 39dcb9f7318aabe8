"""The last step of a build: pip leftovers, optional features, checks, then the marker.

Runs with the new env's own Python (`P/bin/python -m bootstrap finish`) right after
micromamba has realized the conda part. The marker is written only when everything
the worker needs works, so a crash anywhere before leaves an unmarked prefix that
the next builder deletes and rebuilds (docs/architecture.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootstrap.errors import BootstrapError, ExitCode
from bootstrap.lease import owner_token
from bootstrap.lockfile import LockReport, file_sha256, require_valid, validate_lock
from bootstrap.marker import EnvMarker, env_marker_path, write_marker
from bootstrap.settings import Settings

LEFTOVERS = "leftovers.txt"
FEATURE_GLOB = "leftovers-*.txt"
# The module that proves a feature works, when it differs from the feature's name.
FEATURE_IMPORTS = {"whisperx": "whisperx.alignment"}
# lock package name -> what the probe reports for it.
LOCKED_VERSIONS = {"python": "python", "pytorch": "torch", "torchaudio": "torchaudio"}
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)

# Runs inside the env with -I (isolated: only the env's own site-packages count).
PROBE = r"""
import importlib, importlib.metadata as md, json, platform, sys
modules, dists = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {"python": platform.python_version(), "errors": {}, "dists": {}}
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        out["errors"][name] = f"{type(exc).__name__}: {exc}"
for name in dists:
    try:
        out["dists"][name] = md.version(name)
    except md.PackageNotFoundError:
        pass
torch = sys.modules.get("torch")
if torch is not None:
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["cuda_available"] = bool(torch.cuda.is_available())
    if out["cuda_available"]:
        out["gpu"] = torch.cuda.get_device_name(0)
ta = sys.modules.get("torchaudio")
if ta is not None:
    out["torchaudio"] = ta.__version__
print(json.dumps(out))
"""

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class Probe:
    versions: dict[str, str]
    import_errors: dict[str, str]
    cuda_available: bool
    gpu: str | None


def say(message: str) -> None:
    print(f"finish: {message}", flush=True)


def warn(message: str) -> None:
    print(f"finish: WARNING {message}", file=sys.stderr, flush=True)


def pinned_names(requirements: Path) -> list[str]:
    return PIN_RE.findall(requirements.read_text(encoding="utf-8"))


def pip_command(python: Path, requirements: Path, settings: Settings) -> list[str]:
    return [
        str(python),
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--require-hashes",
        "--disable-pip-version-check",
        "--no-input",
        # The sdists a leftovers lock allows (--no-binary) build against the env's own
        # setuptools: an isolated build would download its build tools unhashed.
        "--no-build-isolation",
        *settings.pip_args,
        "-r",
        str(requirements),
    ]


def pip_install(
    python: Path,
    requirements: Path,
    settings: Settings,
    run: Runner = subprocess.run,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Installs a hash-locked requirements file; None on success, else pip's last words."""
    env = {
        **os.environ,
        "PIP_CACHE_DIR": str(settings.pip_cache_dir),
        "PYTHONNOUSERSITE": "1",
    }
    last_error = ""
    for attempt in range(1, settings.pip_retries + 1):
        result = run(
            pip_command(python, requirements, settings), env=env, capture_output=True, text=True
        )
        if result.returncode == 0:
            return None
        tail = (result.stderr or result.stdout or "").strip().splitlines()
        last_error = tail[-1] if tail else f"pip exited with {result.returncode}"
        if attempt < settings.pip_retries:
            delay = settings.pip_backoff_s * 2 ** (attempt - 1)
            warn(
                f"pip failed on {requirements.name} ({last_error}); retry {attempt} in {delay:g} s"
            )
            sleep(delay)
    return last_error


def probe_env(
    python: Path, modules: Sequence[str], dists: Sequence[str], run: Runner = subprocess.run
) -> Probe:
    result = run(
        [str(python), "-I", "-c", PROBE, json.dumps(list(modules)), json.dumps(list(dists))],
        capture_output=True,
        text=True,
        cwd=str(python.parent),
    )
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        detail = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise BootstrapError(
            ExitCode.IMPORT_FAILED,
            f"the env's Python at {python} could not run the import check ({detail[0]}); "
            "delete the prefix so the next start rebuilds it.",
        ) from exc
    versions = {"python": data["python"], **{f"dist:{k}": v for k, v in data["dists"].items()}}
    for key in ("torch", "torchaudio", "torch_cuda"):
        if data.get(key):
            versions[key] = str(data[key])
    return Probe(versions, data["errors"], bool(data.get("cuda_available")), data.get("gpu"))


def version_mismatches(lock: LockReport, versions: dict[str, str]) -> list[str]:
    problems = []
    for lock_name, probe_name in LOCKED_VERSIONS.items():
        locked = lock.packages.get(lock_name)
        if locked is None:
            continue
        found = versions.get(probe_name)
        # torch reports local labels ("2.8.0+cu129"); the lock has the public version.
        if found is None or found.split("+", 1)[0] != locked.version:
            problems.append(
                f"{probe_name} is {found or 'missing'} but the lock has {locked.version}"
            )
    return problems


def check_ffmpeg(prefix: Path, run: Runner = subprocess.run) -> str:
    ffmpeg = prefix / "bin" / "ffmpeg"
    try:
        result = run([str(ffmpeg), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BootstrapError(
            ExitCode.FFMPEG_BROKEN,
            f"{ffmpeg} does not run ({exc}); check that ffmpeg is in environment.yml and relock.",
        ) from exc
    if result.returncode != 0:
        raise BootstrapError(
            ExitCode.FFMPEG_BROKEN,
            f"`{ffmpeg} -version` exited with {result.returncode}; the env's ffmpeg is broken, "
            "delete the prefix so the next start rebuilds it.",
        )
    return (result.stdout.splitlines() or [""])[0].strip()


def prefix_size(prefix: Path) -> int:
    """Bytes the prefix holds; hardlinked files (shared with pkgs/) count once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(prefix):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def features_of(requirements_dir: Path) -> dict[str, Path]:
    return {
        p.name[len("leftovers-") : -len(".txt")]: p
        for p in sorted(requirements_dir.glob(FEATURE_GLOB))
    }


def finish(
    prefix: Path,
    env_id: str,
    settings: Settings,
    run: Runner = subprocess.run,
    lease: tuple[Path, str | None] | None = None,
) -> EnvMarker:
    python = prefix / "bin" / "python"
    if not python.exists():
        raise BootstrapError(
            ExitCode.PREFIX_MISSING,
            f"{python} does not exist; `micromamba create` did not finish, "
            "so rerun the entrypoint.",
        )
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[phase] = round(now - clock, 3)
        clock = now
        say(f"{phase} done in {timings[phase]:.1f} s")

    lock = validate_lock(settings.lockfile, allowed_channel=settings.allowed_channel)
    leftovers = settings.requirements_dir / LEFTOVERS
    if not leftovers.is_file():
        raise BootstrapError(
            ExitCode.LOCKFILE_MISSING,
            f"{leftovers} is missing; the image must carry requirements/leftovers*.txt "
            "(Dockerfile.runpod).",
        )
    error = pip_install(python, leftovers, settings, run=run)
    if error:
        raise BootstrapError(
            ExitCode.PIP_LEFTOVERS,
            f"pip could not install {leftovers.name} after {settings.pip_retries} tries ({error}); "
            "check the network and free space, then restart the worker.",
        )
    lap("leftovers")

    dists = pinned_names(leftovers)
    features: dict[str, bool] = {}
    feature_modules: dict[str, str] = {}
    for name, requirements in features_of(settings.requirements_dir).items():
        error = pip_install(python, requirements, settings, run=run)
        features[name] = error is None
        if error:
            warn(f"optional feature {name} is unavailable: pip failed ({error})")
        else:
            feature_modules[name] = FEATURE_IMPORTS.get(name, name)
            dists += pinned_names(requirements)
    lap("features")

    modules = list(settings.core_imports) + list(feature_modules.values())
    probe = probe_env(python, modules, dists, run=run)
    core_errors = {m: e for m, e in probe.import_errors.items() if m in settings.core_imports}
    if core_errors:
        first = next(iter(core_errors))
        raise BootstrapError(
            ExitCode.IMPORT_FAILED,
            f"`import {first}` fails in the new env ({core_errors[first]}); "
            "the lock or the leftovers miss a dependency, fix environment.yml and relock.",
        )
    for name, module in feature_modules.items():
        if module in probe.import_errors:
            features[name] = False
            warn(f"optional feature {name} is unavailable: {probe.import_errors[module]}")
    mismatches = version_mismatches(lock, probe.versions)
    if mismatches:
        raise BootstrapError(
            ExitCode.VERSION_MISMATCH,
            "the new env differs from the lock (" + "; ".join(mismatches) + "); "
            "a leftover replaced a conda package, keep --no-deps and relock.",
        )
    probe.versions["ffmpeg"] = check_ffmpeg(prefix, run=run)
    if probe.cuda_available:
        say(f"CUDA is visible: {probe.gpu}")
    elif settings.require_gpu:
        raise BootstrapError(
            ExitCode.GPU_REQUIRED,
            "torch sees no CUDA device and F5TTS_REQUIRE_GPU=1; run on a GPU worker "
            "or unset F5TTS_REQUIRE_GPU.",
        )
    else:
        warn("torch sees no CUDA device; the worker will run on CPU (slow).")
    lap("verify")

    require_valid(settings.lockfile, allowed_channel=settings.allowed_channel)
    lap("validate")

    size = prefix_size(prefix)
    lap("size")
    marker = EnvMarker(
        env_id=env_id,
        lock_sha256=file_sha256(settings.lockfile),
        versions=probe.versions,
        features=features,
        timings=timings,
        size_bytes=size,
    )
    # A builder that stalled past F5TTS_LEASE_STALE_S may have been taken over while
    # this step ran: the new holder is rebuilding this very prefix, which our marker
    # would then declare ready. Checked last, right before the marker.
    if lease is not None and owner_token(lease[0]) != lease[1]:
        raise BootstrapError(
            ExitCode.LEASE_LOST,
            f"the env lease {lease[0]} is no longer this worker's (another worker took it "
            "over while this one stalled), so no marker is written; restart the worker.",
        )
    try:
        write_marker(env_marker_path(prefix), marker)
    except OSError as exc:
        raise BootstrapError(
            ExitCode.MARKER_WRITE,
            f"cannot write {env_marker_path(prefix)} ({exc.strerror}); "
            "free space on the volume and restart.",
        ) from exc
    say(f"env {env_id} is ready ({size / 1e9:.1f} GB)")
    return marker
