"""The volume's typed state: the env's ready marker and the models' marker.

A marker is written last and atomically (temp file, fsync, rename, fsync of the
directory), so its presence means the work it describes finished. A marker that is
missing, truncated, of another schema or of another env id reads as "not ready":
the caller rebuilds rather than trusting half-written state.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

ENV_MARKER_SCHEMA = 1
MODELS_MARKER_SCHEMA = 1
ENV_MARKER_RELPATH = Path(".f5tts") / "ready.json"
MODELS_MARKER_NAME = ".ready.json"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class EnvMarker:
    env_id: str
    lock_sha256: str
    versions: dict[str, str]
    features: dict[str, bool]
    timings: dict[str, float]
    size_bytes: int
    created_at: str = field(default_factory=utc_now)
    host: str = field(default_factory=socket.gethostname)
    schema_version: int = ENV_MARKER_SCHEMA


@dataclass(frozen=True)
class ModelsMarker:
    # Relative path under models/ (or TORCH_HOME for the alignment model) -> bytes.
    files: dict[str, int]
    sources: dict[str, str]
    # Optional models and whether they are on the volume: alignment, asr.
    features: dict[str, bool]
    created_at: str = field(default_factory=utc_now)
    host: str = field(default_factory=socket.gethostname)
    schema_version: int = MODELS_MARKER_SCHEMA


M = TypeVar("M", EnvMarker, ModelsMarker)

# The JSON type each field must have; a marker failing this is "not ready".
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "env_id": str,
    "lock_sha256": str,
    "versions": dict,
    "features": dict,
    "timings": dict,
    "size_bytes": int,
    "created_at": str,
    "host": str,
    "schema_version": int,
    "files": dict,
    "sources": dict,
}


def env_marker_path(prefix: Path) -> Path:
    return prefix / ENV_MARKER_RELPATH


def models_marker_path(models_dir: Path) -> Path:
    return models_dir / MODELS_MARKER_NAME


def write_atomic(path: Path, text: str) -> None:
    """Replaces `path` with `text` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk before we report success.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_marker(path: Path, marker: EnvMarker | ModelsMarker) -> None:
    write_atomic(path, json.dumps(asdict(marker), indent=2, sort_keys=True) + "\n")


def _from_json(cls: type[M], data: Any, schema: int) -> M | None:
    if not isinstance(data, dict) or data.get("schema_version") != schema:
        return None
    names = {f.name for f in fields(cls)}
    if set(data) != names:
        return None
    for name in names:
        value = data[name]
        expected = _JSON_TYPES[name]
        # bool is an int in Python; a size of `true` is still corrupt.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return None
    return cls(**data)


def _read(path: Path, cls: type[M], schema: int) -> M | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return _from_json(cls, data, schema)


def read_env_marker(prefix: Path, env_id: str | None = None) -> EnvMarker | None:
    """The prefix's marker, or None when it is absent, corrupt or names another env."""
    marker = _read(env_marker_path(prefix), EnvMarker, ENV_MARKER_SCHEMA)
    if marker is not None and env_id is not None and marker.env_id != env_id:
        return None
    return marker


def read_models_marker(models_dir: Path) -> ModelsMarker | None:
    return _read(models_marker_path(models_dir), ModelsMarker, MODELS_MARKER_SCHEMA)
