"""Tiny real wheels and hash-locked requirements, for the pip-leftovers step.

The wheels are pure Python, written with the stdlib (`zipfile`) with a proper
METADATA, WHEEL and RECORD, so `pip install --no-index --find-links DIR --no-deps
--require-hashes -r REQS` installs them exactly as it would a wheel from PyPI.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltWheel:
    name: str
    version: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class Wheelhouse:
    dir: Path
    requirements: Path
    wheels: tuple[BuiltWheel, ...]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    dest_dir: Path, name: str, version: str, modules: dict[str, str] | None = None
) -> BuiltWheel:
    """A py3-none-any wheel; `modules` maps archive paths to source (default: one package)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dist = _normalized(name)
    modules = modules or {f"{dist}/__init__.py": f'__version__ = "{version}"\n'}
    info = f"{dist}-{version}.dist-info"
    files = dict(modules)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: tests.support.wheels\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    record_lines = [
        f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in files.items()
    ]
    record_lines.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record_lines) + "\n"

    path = dest_dir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, text in files.items():
            # Fixed timestamps make the wheel, and so its hash, reproducible.
            entry = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, text)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return BuiltWheel(name=name, version=version, path=path, sha256=sha256)


def write_hashed_requirements(wheels: Iterable[BuiltWheel], path: Path) -> Path:
    """`name==version --hash=sha256:...` lines, as `pip-compile --generate-hashes` writes."""
    lines = [f"{w.name}=={w.version} \\\n    --hash=sha256:{w.sha256}" for w in wheels]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def build_wheelhouse(
    dest_dir: Path,
    specs: Sequence[tuple[str, str]] = (("f5tts-probe", "0.1.0"), ("leftover-probe", "1.2.3")),
) -> Wheelhouse:
    """Wheels under `dest_dir/wheels`, requirements at `dest_dir/leftovers.txt`."""
    wheel_dir = dest_dir / "wheels"
    wheels = tuple(build_wheel(wheel_dir, name, version) for name, version in specs)
    requirements = write_hashed_requirements(wheels, dest_dir / "leftovers.txt")
    return Wheelhouse(dir=wheel_dir, requirements=requirements, wheels=wheels)


def build_sdist(dest_dir: Path, name: str, version: str) -> BuiltWheel:
    """A setup.py-only sdist (no pyproject.toml), shaped like encodec 0.1.1's: pip builds
    it with setuptools, which an isolated build would download (unhashed) first."""
    import io
    import tarfile

    dest_dir.mkdir(parents=True, exist_ok=True)
    dist = _normalized(name)
    base = f"{dist}-{version}"
    files = {
        f"{base}/setup.py": (
            "from setuptools import setup\n\n"
            f"setup(name={name!r}, version={version!r}, packages=[{dist!r}])\n"
        ),
        f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{base}/{dist}/__init__.py": f'__version__ = "{version}"\n',
    }
    path = dest_dir / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for arcname, text in files.items():
            data = text.encode()
            entry = tarfile.TarInfo(arcname)
            entry.size = len(data)
            entry.mtime = 1767225600  # 2026-01-01, as the wheels' fixed timestamps
            archive.addfile(entry, io.BytesIO(data))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return BuiltWheel(name=name, version=version, path=path, sha256=sha256)
