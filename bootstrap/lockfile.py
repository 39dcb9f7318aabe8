"""The validator of conda-lock.yml: what the worker may realize on a volume.

Checked, each failure one sentence: conda-lock format v1; linux-64 only; every
package downloaded from the allowed channel (conda-forge; tests pass a local one)
with a sha256; the packages of bootstrap/required-packages.txt present (python, pip,
ffmpeg, cuda-version, CUDA builds of pytorch and torchaudio, and what the Python stage
imports), the list the entrypoint's structural check reads too; no pip section (pip
packages are the hash-locked leftovers);
and the content hash equal to the one conda-lock computes for environment.yml and
virtual-packages.yml, so the lock cannot drift from its source unnoticed. That last
check needs conda-lock's library; where it is absent (inside the env) it is skipped
with a notice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bootstrap.errors import BootstrapError, ExitCode

PLATFORM = "linux-64"
REQUIRED_PACKAGES_FILE = Path(__file__).with_name("required-packages.txt")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# conda-lock writes the channel of environment.yml as its short name.
CHANNEL_ALIASES = {"https://conda.anaconda.org/conda-forge": "conda-forge"}


@dataclass(frozen=True)
class RequiredPackage:
    name: str
    build_prefix: str  # "" for any build; "cuda" for the CUDA builds
    modules: tuple[str, ...]  # what the Python stage imports from it


def required_packages(path: Path = REQUIRED_PACKAGES_FILE) -> tuple[RequiredPackage, ...]:
    """bootstrap/required-packages.txt: `package build modules` lines, "-" for none."""
    required = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        name, build, modules = [*fields, "-", "-"][:3]
        required.append(
            RequiredPackage(
                name,
                "" if build == "-" else build,
                () if modules == "-" else tuple(modules.split(",")),
            )
        )
    return tuple(required)


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    build: str
    url: str
    sha256: str


@dataclass
class LockReport:
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    packages: dict[str, LockedPackage] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_lock(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BootstrapError(
            ExitCode.LOCKFILE_MISSING,
            f"cannot read the lockfile {path} ({exc.strerror}); "
            "build the image from a checkout that has conda-lock.yml (docs/lockfile.md).",
        ) from exc
    except yaml.YAMLError as exc:
        raise BootstrapError(
            ExitCode.LOCKFILE_INVALID,
            f"{path} is not valid YAML ({exc.__class__.__name__}); "
            "regenerate it with bootstrap/lock.",
        ) from exc
    if not isinstance(data, dict):
        raise BootstrapError(
            ExitCode.LOCKFILE_INVALID,
            f"{path} is not a conda-lock file; regenerate it with bootstrap/lock.",
        )
    return data


def _build_of(url: str, name: str, version: str) -> str:
    """The build string from the file name, for lockfiles without a `build` field."""
    filename = url.rsplit("/", 1)[-1]
    for suffix in (".conda", ".tar.bz2"):
        if filename.endswith(suffix):
            filename = filename[: -len(suffix)]
    prefix = f"{name}-{version}-"
    return filename[len(prefix) :] if filename.startswith(prefix) else ""


def _check_packages(raw: list[Any], allowed: str, report: LockReport) -> None:
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict) or not entry.get("name"):
            report.problems.append(f"package entry {index} has no name; regenerate the lock.")
            continue
        name = str(entry["name"])
        if entry.get("manager", "conda") != "conda":
            report.problems.append(
                f"{name} is a {entry.get('manager')} package in the lock; pip packages belong in "
                "requirements/leftovers.in, not environment.yml."
            )
            continue
        if entry.get("platform") != PLATFORM:
            report.problems.append(
                f"{name} is locked for {entry.get('platform')!r}; only {PLATFORM} is supported, "
                "lock with `-p linux-64` alone."
            )
        url = str(entry.get("url", ""))
        if not (url.startswith(f"{allowed}/{PLATFORM}/") or url.startswith(f"{allowed}/noarch/")):
            report.problems.append(
                f"{name} comes from {url or 'no url'}, not from {allowed}; "
                "only conda-forge may be used (channels: conda-forge, nodefaults)."
            )
        hashes = entry.get("hash") if isinstance(entry.get("hash"), dict) else {}
        sha256 = str(hashes.get("sha256") or "")
        if not SHA256_RE.match(sha256):
            report.problems.append(
                f"{name} has no valid sha256 in the lock; regenerate it with conda-lock 4."
            )
        version = str(entry.get("version", ""))
        build = str(entry.get("build") or _build_of(url, name, version))
        report.packages[name] = LockedPackage(name, version, build, url, sha256)


def _check_contents(report: LockReport) -> None:
    required = required_packages()
    for need in required:
        if need.name not in report.packages:
            report.problems.append(
                f"the lock has no {need.name}; add it to environment.yml and relock."
            )
    for need in required:
        package = report.packages.get(need.name)
        if need.build_prefix and package and not package.build.startswith(need.build_prefix):
            kind = "CUDA" if need.build_prefix == "cuda" else f"{need.build_prefix}*"
            report.problems.append(
                f"{need.name} is the build {package.build or '?'!r}, not a {kind} build; pin "
                f"`{need.name}=*={need.build_prefix}*` in environment.yml and lock with "
                "virtual-packages.yml."
            )


def expected_content_hashes(environment: Path, virtual_packages: Path) -> set[str]:
    """The hashes conda-lock accepts for this source (its own code computes them)."""
    from conda_lock.content_hash import backwards_compatible_content_hashes
    from conda_lock.lookup import DEFAULT_MAPPING_URL
    from conda_lock.src_parser import make_lock_spec
    from conda_lock.virtual_package import virtual_package_repo_from_specification

    spec = make_lock_spec(
        src_files=[environment], platform_overrides=[PLATFORM], mapping_url=DEFAULT_MAPPING_URL
    )
    # The repo object itself, as `conda-lock lock` passes it. (Its __enter__ returns
    # None: `with ... as repo` would silently hash without the virtual packages.)
    repo = virtual_package_repo_from_specification(virtual_packages)
    return set(backwards_compatible_content_hashes(spec, repo, PLATFORM))


def _check_content_hash(
    meta: dict[str, Any], environment: Path, virtual_packages: Path, report: LockReport
) -> None:
    try:
        import conda_lock  # noqa: F401
    except ImportError:
        report.notices.append(
            "conda-lock is not installed here, so the content hash was not compared "
            "with environment.yml (run `bootstrap/lock --check` on a maintainer machine)."
        )
        return
    for path in (environment, virtual_packages):
        if not path.is_file():
            report.problems.append(f"{path} does not exist; the content hash cannot be checked.")
            return
    recorded = (meta.get("content_hash") or {}).get(PLATFORM)
    if recorded not in expected_content_hashes(environment, virtual_packages):
        report.problems.append(
            f"the lock's content hash does not match {environment.name}: it changed since "
            "the lock was made; regenerate it with bootstrap/lock."
        )


def validate_lock(
    path: Path,
    *,
    allowed_channel: str,
    environment: Path | None = None,
    virtual_packages: Path | None = None,
) -> LockReport:
    """Every problem of the lock at `path`; the content hash only when `environment` is given."""
    allowed = allowed_channel.rstrip("/")
    report = LockReport()
    data = load_lock(path)
    if data.get("version") != 1:
        report.problems.append(
            f"{path.name} is conda-lock format version {data.get('version')!r}, not 1; "
            "regenerate it with conda-lock 4 (bootstrap/lock)."
        )
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    platforms = meta.get("platforms") or []
    if platforms != [PLATFORM]:
        report.problems.append(
            f"the lock covers platforms {platforms}; it must cover only {PLATFORM}."
        )
    accepted = {allowed, f"{allowed}/", CHANNEL_ALIASES.get(allowed, allowed), "nodefaults"}
    for channel in meta.get("channels") or []:
        url = channel.get("url") if isinstance(channel, dict) else channel
        if url not in accepted:
            report.problems.append(
                f"the lock was solved with the channel {url!r}; only conda-forge may be used."
            )
    raw = data.get("package")
    if not isinstance(raw, list) or not raw:
        report.problems.append("the lock lists no packages; regenerate it with bootstrap/lock.")
        raw = []
    _check_packages(raw, allowed, report)
    _check_contents(report)
    if environment is not None:
        vp = virtual_packages or environment.with_name("virtual-packages.yml")
        _check_content_hash(meta, environment, vp, report)
    return report


def require_valid(path: Path, *, allowed_channel: str) -> LockReport:
    """The validator as a gate: raises with every problem in one message."""
    report = validate_lock(path, allowed_channel=allowed_channel)
    if not report.ok:
        raise BootstrapError(
            ExitCode.LOCKFILE_INVALID,
            f"{path} failed validation: " + " ".join(report.problems),
        )
    return report
