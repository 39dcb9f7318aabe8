"""`python -m bootstrap status [--json]`: what is on the volume, for a person or a script.

Read-only apart from the gc probe file, whose mtime gives "now" on the volume's
clock (ages of in-use records and leases are written by other machines).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass

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
class VolumeStatus:
    volume: str
    free_bytes: int
    total_bytes: int
    envs: list[EnvStatus]
    leases: list[LeaseStatus]
    models_ready: bool
    models_created_at: str | None
    models_bytes: int


def _now(settings: Settings) -> float:
    try:
        return volume_now(settings.envs_dir)
    except OSError:  # a read-only volume: the local clock is the best we have
        return time.time()


def gather(settings: Settings) -> VolumeStatus:
    usage = shutil.disk_usage(settings.volume)
    now = _now(settings)
    active = link_target_id(settings.active_link)
    previous = link_target_id(settings.previous_link)
    envs = []
    for path in children(settings.envs_dir):
        match = PREFIX_RE.match(path.name)
        if not match or path.is_symlink():
            continue
        env_id = match.group(1)
        marker = read_env_marker(path, env_id)
        users = [
            f"{record.name} ({age_of(record, now):.0f} s)"
            for record in children(settings.in_use_dir / env_id)
            if age_of(record, now) < settings.in_use_ttl_s
        ]
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
        if not lease.is_dir() or ".takeover." in lease.name:
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
    )


def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GB"


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
