"""`python -m bootstrap status [--json]`: what is on the volume, for a person or a script.

Read-only apart from the gc probe file, whose mtime gives "now" on the volume's
clock (ages of in-use records and leases are written by other machines).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

from bootstrap.gc import PREFIX_RE, age_of, children, link_target_id, volume_now
from bootstrap.marker import read_env_marker, read_models_marker
from bootstrap.settings import Settings


@dataclass(frozen=True)
class EnvStatus:
    env_id: str
    path: str
    ready: bool
    role: str  # active | previous | ""
    size_bytes: int | None
    created_at: str | None
    features: dict[str, bool]
    in_use_by: list[str]  # "<host>-<pid> (<age> s)" of live records


@dataclass(frozen=True)
class LeaseStatus:
    name: str
    owner: str
    heartbeat_age_s: float


@dataclass(frozen=True)
class ActiveLink:
    """envs/f5tts: what it points at, and whether that is a ready env."""

    target: str | None  # the link's text; None when there is no symlink
    state: str  # ready | missing | dangling | unfinished | not a symlink


@dataclass(frozen=True)
class VolumeStatus:
    volume: str
    free_bytes: int
    total_bytes: int
    envs: list[EnvStatus]
    leases: list[LeaseStatus]
    models_ready: bool
    models_created_at: str | None
    models_bytes: int
    active_link: ActiveLink = field(default_factory=lambda: ActiveLink(None, "missing"))
    # "<host>-<pid> uses f5tts-<id> (<age> s)" for each live worker whose env is not
    # the one envs/f5tts points at (an older image still running, say).
    workers_elsewhere: list[str] = field(default_factory=list)


def _now(settings: Settings) -> float:
    try:
        return volume_now(settings.envs_dir)
    except OSError:  # a read-only volume: the local clock is the best we have
        return time.time()


def active_link(settings: Settings) -> ActiveLink:
    link = settings.active_link
    if not link.is_symlink():
        return ActiveLink(None, "not a symlink" if link.exists() else "missing")
    target = os.readlink(link)
    if not link.exists():
        return ActiveLink(target, "dangling")
    ready = (link / ".f5tts" / "ready.json").is_file()
    return ActiveLink(target, "ready" if ready else "unfinished")


def gather(settings: Settings) -> VolumeStatus:
    usage = shutil.disk_usage(settings.volume)
    now = _now(settings)
    active = link_target_id(settings.active_link)
    previous = link_target_id(settings.previous_link)
    envs = []
    elsewhere = []
    for path in children(settings.envs_dir):
        match = PREFIX_RE.match(path.name)
        if not match or path.is_symlink():
            continue
        env_id = match.group(1)
        marker = read_env_marker(path, env_id)
        live = [
            (record.name, age_of(record, now))
            for record in children(settings.in_use_dir / env_id)
            if age_of(record, now) < settings.in_use_ttl_s
        ]
        users = [f"{name} ({age:.0f} s)" for name, age in live]
        if env_id != active:
            elsewhere += [f"{name} uses f5tts-{env_id} ({age:.0f} s)" for name, age in live]
        role = "active" if env_id == active else "previous" if env_id == previous else ""
        envs.append(
            EnvStatus(
                env_id=env_id,
                path=str(path),
                ready=marker is not None,
                role=role,
                size_bytes=marker.size_bytes if marker else None,
                created_at=marker.created_at if marker else None,
                features=dict(marker.features) if marker else {},
                in_use_by=users,
            )
        )
    leases = []
    for lease in children(settings.leases_dir):
        # Dot names are leases renamed away (released or dead), their delete interrupted.
        if not lease.is_dir() or ".takeover." in lease.name or lease.name.startswith("."):
            continue
        try:
            owner = (lease / "owner").read_text(encoding="utf-8").strip().replace("\n", " ")
        except OSError:
            owner = "?"
        leases.append(LeaseStatus(lease.name, owner, round(age_of(lease / "heartbeat", now), 1)))
    models = read_models_marker(settings.models_dir)
    return VolumeStatus(
        volume=str(settings.volume),
        free_bytes=usage.free,
        total_bytes=usage.total,
        envs=envs,
        leases=leases,
        models_ready=models is not None,
        models_created_at=models.created_at if models else None,
        models_bytes=sum(models.files.values()) if models else 0,
        active_link=active_link(settings),
        workers_elsewhere=elsewhere,
    )


def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GB"


def _link_line(link: ActiveLink) -> str:
    if link.state == "ready":
        return f"envs/f5tts -> {link.target}"
    if link.state == "missing":
        return "envs/f5tts is missing: the next start of a ready env points it there"
    if link.state == "not a symlink":
        return "envs/f5tts is not a symlink: move it away, then the next start makes the link"
    return (
        f"envs/f5tts -> {link.target}, which is {link.state}: "
        "the next start of a ready env points it there"
    )


def render(status: VolumeStatus) -> str:
    lines = [
        f"volume {status.volume}: {_gb(status.free_bytes)} free of {_gb(status.total_bytes)}",
        "",
        f"{'env':<20} {'role':<9} {'ready':<6} {'size':>9}  {'created':<21} in use by",
    ]
    for env in status.envs:
        lines.append(
            f"f5tts-{env.env_id:<14} {env.role or '-':<9} {'yes' if env.ready else 'no':<6} "
            f"{_gb(env.size_bytes):>9}  {env.created_at or '-':<21} "
            f"{', '.join(env.in_use_by) or '-'}"
        )
    if not status.envs:
        lines.append("(no environments)")
    lines.append(_link_line(status.active_link))
    if status.workers_elsewhere:
        lines.append("workers not on envs/f5tts's env: " + ", ".join(status.workers_elsewhere))
    lines.append("")
    for lease in status.leases:
        lines.append(
            f"lease {lease.name}: {lease.owner} (heartbeat {lease.heartbeat_age_s:.0f} s ago)"
        )
    if not status.leases:
        lines.append("no lease is held")
    models = (
        f"ready since {status.models_created_at} ({_gb(status.models_bytes)})"
        if status.models_ready
        else "not downloaded"
    )
    lines.append(f"models: {models}")
    return "\n".join(lines)


def to_json(status: VolumeStatus) -> str:
    return json.dumps(asdict(status), indent=2, sort_keys=True)
