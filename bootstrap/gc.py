"""Collects environments and package files that no worker can need any more.

Decide, then act: `observe` reads the volume into a `VolumeState`, `plan_gc` (pure)
turns it into `Deletion`s with a reason each, `collect` performs them.

Ages are measured on the volume's clock: gc touches a probe file on the volume and
compares every mtime with the probe's, so a worker whose local clock is off (other
machines write the same volume) cannot make a live record look stale.

Rules (docs/architecture.md, "Life of a prefix"):
- keep the active and the previous prefix;
- keep any prefix with a live in-use record (`envs/.in-use/<id>/<host>-<pid>` younger
  than F5TTS_IN_USE_TTL_S; the handler refreshes it while it runs);
- while a build lease is held, keep every prefix younger than F5TTS_GC_GRACE_S: it
  may be the one being built, or one whose marker is written and whose symlink swap
  is about to happen; an unmarked prefix is otherwise a crashed build;
- delete every other `f5tts-<id>` prefix, and the stale in-use records;
- package files in pkgs/: a tarball or extracted dir is kept when a kept prefix's
  conda-meta names it (those prefixes may be rebuilt from it cheaply), deleted
  otherwise; nothing in pkgs/ is touched while a build lease is held, because the
  builder's downloads are not referenced by any conda-meta yet. Prefixes hold
  hardlinks, so deleting a package file never changes an installed env. Both cache
  layouts are read: micromamba <= 2.5 keeps packages flat in pkgs/, >= 2.6 (mamba PR
  #4163) under pkgs/<scheme>/<host>/<channel>/<subdir>/ (docs/operations.md,
  "Package cache"); bookkeeping files (urls.txt, the repodata cache) are kept;
- `*.takeover.*` dirs of the lease older than an hour (their dead holder is long
  replaced) and leftovers of an interrupted gc in envs/.trash.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bootstrap.lease import owner_token
from bootstrap.marker import read_env_marker
from bootstrap.settings import ENV_NAME, Settings

PREFIX_RE = re.compile(rf"^{ENV_NAME}-([0-9a-f]{{6,64}})$")
PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
# pkgs/https/conda.anaconda.org/conda-forge/linux-64/<pkg> is 5 folders deep; a channel
# url with a longer path adds a few.
CACHE_MAX_DEPTH = 12
TAKEOVER_MAX_AGE_S = 3600.0
PROBE_NAME = ".gc-probe"
TRASH_NAME = ".trash"


@dataclass(frozen=True)
class PrefixState:
    env_id: str
    path: Path
    marked: bool
    age_s: float
    # The cache keys (see CacheEntry) of every package its conda-meta lists, in each
    # layout it may have been linked from.
    packages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CacheEntry:
    """A tarball or extracted dir in pkgs/; `key` is its path under pkgs/ without the
    archive suffix: "<name>-<version>-<build>" (flat) or ".../linux-64/<name>-..."."""

    path: Path
    key: str


@dataclass(frozen=True)
class InUseRecord:
    env_id: str
    path: Path
    age_s: float


@dataclass(frozen=True)
class AgedPath:
    path: Path
    age_s: float


@dataclass(frozen=True)
class VolumeState:
    prefixes: tuple[PrefixState, ...]
    active_id: str | None
    previous_id: str | None
    in_use: tuple[InUseRecord, ...] = ()
    build_lease_held: bool = False
    pkgs: tuple[CacheEntry, ...] = ()
    takeovers: tuple[AgedPath, ...] = ()
    trash: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Policy:
    in_use_ttl_s: float
    grace_s: float
    takeover_max_age_s: float = TAKEOVER_MAX_AGE_S


@dataclass(frozen=True)
class Deletion:
    path: Path
    kind: str  # prefix | pkg | in-use | takeover | trash
    reason: str


@dataclass(frozen=True)
class GcPlan:
    deletions: tuple[Deletion, ...]
    kept: dict[str, str] = field(default_factory=dict)  # env id -> why it stays


def package_stem(name: str) -> str | None:
    """ "pytorch-2.8.0-cuda129_x_2.conda" -> "pytorch-2.8.0-cuda129_x_2"; None if not a package."""
    for suffix in PACKAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _keep_reason(prefix: PrefixState, state: VolumeState, live: set[str], policy: Policy) -> str:
    if prefix.env_id == state.active_id:
        return "active"
    if prefix.env_id == state.previous_id:
        return "previous"
    if prefix.env_id in live:
        return "in use"
    # A builder writes the marker before it swaps the symlink: while it holds the
    # lease, a young prefix may be one being built or one about to become active.
    if state.build_lease_held and prefix.age_s < policy.grace_s:
        return "being published" if prefix.marked else "being built"
    return ""


def plan_gc(state: VolumeState, policy: Policy) -> GcPlan:
    deletions: list[Deletion] = []
    live = {r.env_id for r in state.in_use if r.age_s < policy.in_use_ttl_s}
    for record in state.in_use:
        if record.age_s >= policy.in_use_ttl_s:
            deletions.append(
                Deletion(record.path, "in-use", f"not refreshed for {record.age_s:.0f} s")
            )

    kept: dict[str, str] = {}
    for prefix in state.prefixes:
        reason = _keep_reason(prefix, state, live, policy)
        if reason:
            kept[prefix.env_id] = reason
        elif prefix.marked:
            deletions.append(Deletion(prefix.path, "prefix", "not active, previous or in use"))
        else:
            why = "an old unfinished build" if state.build_lease_held else "a crashed build"
            deletions.append(Deletion(prefix.path, "prefix", f"unmarked: {why}"))

    if not state.build_lease_held:
        referenced: set[str] = set()
        for prefix in state.prefixes:
            if prefix.env_id in kept:
                referenced |= prefix.packages
        for entry in state.pkgs:
            if entry.key not in referenced:
                deletions.append(Deletion(entry.path, "pkg", "no kept env uses it"))

    for takeover in state.takeovers:
        if takeover.age_s >= policy.takeover_max_age_s:
            deletions.append(Deletion(takeover.path, "takeover", f"{takeover.age_s:.0f} s old"))
    deletions.extend(Deletion(p, "trash", "left by an interrupted gc") for p in state.trash)
    return GcPlan(tuple(deletions), kept)


# ---------------------------------------------------------------- observation


def link_target_id(link: Path) -> str | None:
    try:
        target = os.readlink(link)
    except OSError:
        return None
    match = PREFIX_RE.match(Path(target).name)
    return match.group(1) if match else None


def volume_now(envs_dir: Path) -> float:
    probe = envs_dir / PROBE_NAME
    probe.touch()
    # touch() keeps an old mtime on some filesystems when the file exists.
    os.utime(probe)
    return probe.stat().st_mtime


def age_of(path: Path, now: float) -> float:
    try:
        return max(0.0, now - path.lstat().st_mtime)
    except OSError:
        return 0.0


def hierarchical_folder(url: str) -> str:
    """The folder under pkgs/ where micromamba >= 2.6 keeps the package at `url`: the
    url's directory without credentials, "://" as "/", other ":" and "\\" as "_"."""
    scheme, sep, rest = url.rpartition("/")[0].partition("://")
    if sep:
        host, _, path = rest.partition("/")
        rest = host.rpartition("@")[2] + "/" + re.sub(r"(^|/)t/[^/]+(?=/|$)", "", path)
        rest = rest.rstrip("/")
    folder = f"{scheme}/{rest}" if sep else scheme
    return re.sub(r"[:\\]", "_", folder).strip("/").replace("//", "/")


def _cache_keys(record: dict, fallback_stem: str, pkgs_dir: Path) -> set[str]:
    fn = record.get("fn")
    stem = package_stem(fn) if isinstance(fn, str) else None
    stem = stem or fallback_stem
    keys = {stem}  # flat (<= 2.5), also read by 2.6 as a fallback
    url = record.get("url")
    if isinstance(url, str) and "/" in url:
        keys.add(f"{hierarchical_folder(url)}/{stem}")
    # Where micromamba says it linked from, when the volume is mounted where it was.
    extracted = record.get("extracted_package_dir")
    if isinstance(extracted, str):
        with contextlib.suppress(ValueError):
            keys.add(Path(extracted).relative_to(pkgs_dir).as_posix())
    return keys


def _conda_meta_packages(prefix: Path, pkgs_dir: Path) -> frozenset[str]:
    keys: set[str] = set()
    for meta in (prefix / "conda-meta").glob("*.json"):
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        keys |= _cache_keys(data if isinstance(data, dict) else {}, meta.stem, pkgs_dir)
    return frozenset(keys)


def cache_entries(pkgs_dir: Path) -> list[CacheEntry]:
    """Every tarball and extracted package dir in pkgs/, in either layout."""
    entries: list[CacheEntry] = []

    def walk(folder: Path, depth: int) -> None:
        for path in children(folder):
            if path.is_symlink():
                continue
            stem = package_stem(path.name)
            key = path.relative_to(pkgs_dir).as_posix()
            if stem and path.is_file():
                entries.append(CacheEntry(path, key[: len(key) - len(path.name)] + stem))
            elif path.is_dir() and (path / "info").is_dir():
                # Extracted (or half-extracted by a killed build: also collectable).
                entries.append(CacheEntry(path, key))
            elif path.is_dir() and depth < CACHE_MAX_DEPTH:
                walk(path, depth + 1)

    walk(pkgs_dir, 0)
    return entries


def _build_lease_held(leases_dir: Path, own_token: str | None = None) -> bool:
    """Whether another worker holds the env lease (the caller's own does not count)."""
    if not leases_dir.is_dir():
        return False
    return any(
        p.is_dir()
        and ".takeover." not in p.name
        and p.name.startswith("env")
        and (own_token is None or owner_token(p) != own_token)
        for p in leases_dir.iterdir()
    )


def children(path: Path) -> list[Path]:
    return sorted(path.iterdir()) if path.is_dir() else []


def observe(settings: Settings, own_lease_token: str | None = None) -> VolumeState:
    envs = settings.envs_dir
    envs.mkdir(parents=True, exist_ok=True)
    now = volume_now(envs)
    prefixes = []
    for path in children(envs):
        match = PREFIX_RE.match(path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        env_id = match.group(1)
        prefixes.append(
            PrefixState(
                env_id=env_id,
                path=path,
                marked=read_env_marker(path, env_id) is not None,
                age_s=age_of(path, now),
                packages=_conda_meta_packages(path, settings.pkgs_dir),
            )
        )
    in_use = [
        InUseRecord(env_dir.name, record, age_of(record, now))
        for env_dir in children(settings.in_use_dir)
        for record in children(env_dir)
    ]
    takeovers = [
        AgedPath(p, age_of(p, now)) for p in children(settings.leases_dir) if ".takeover." in p.name
    ]
    return VolumeState(
        prefixes=tuple(prefixes),
        active_id=link_target_id(settings.active_link),
        previous_id=link_target_id(settings.previous_link),
        in_use=tuple(in_use),
        build_lease_held=_build_lease_held(settings.leases_dir, own_lease_token),
        pkgs=tuple(cache_entries(settings.pkgs_dir)),
        takeovers=tuple(takeovers),
        trash=tuple(children(envs / TRASH_NAME)),
    )


# ---------------------------------------------------------------- action


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _delete_prefix(path: Path, trash: Path) -> None:
    # A rename makes the prefix vanish at once: no worker ever sees a half-deleted
    # env under its real name. The slow rmtree then happens in the trash.
    trash.mkdir(exist_ok=True)
    doomed = trash / f"{path.name}.{uuid.uuid4().hex[:8]}"
    path.rename(doomed)
    shutil.rmtree(doomed)


def collect(deletions: Iterable[Deletion], settings: Settings, log=print) -> list[str]:
    """Performs the deletions; returns one sentence per failure (gc goes on past them)."""
    failures = []
    for deletion in deletions:
        try:
            if deletion.kind == "prefix":
                _delete_prefix(deletion.path, settings.envs_dir / TRASH_NAME)
            else:
                _remove(deletion.path)
        except OSError as exc:
            failures.append(f"could not delete {deletion.path} ({exc.strerror or exc})")
            continue
        log(f"gc: deleted {deletion.kind} {deletion.path}: {deletion.reason}")
    # An in-use dir whose env is gone is noise in `status`. Only those: a worker may be
    # registering in the dir of an env that still exists.
    for env_dir in children(settings.in_use_dir):
        if settings.prefix_for(env_dir.name).exists():
            continue
        if env_dir.is_dir() and not any(env_dir.iterdir()):
            with contextlib.suppress(OSError):
                env_dir.rmdir()
    return failures


def run_gc(settings: Settings, dry_run: bool = False, own_lease_token: str | None = None) -> GcPlan:
    state = observe(settings, own_lease_token)
    policy = Policy(in_use_ttl_s=settings.in_use_ttl_s, grace_s=settings.gc_grace_s)
    plan = plan_gc(state, policy)
    for env_id, why in sorted(plan.kept.items()):
        print(f"gc: keeping {ENV_NAME}-{env_id}: {why}")
    if dry_run:
        for d in plan.deletions:
            print(f"gc: would delete {d.kind} {d.path}: {d.reason}")
        return plan
    for failure in collect(plan.deletions, settings):
        print(f"gc: WARNING {failure}", file=sys.stderr)
    return plan
