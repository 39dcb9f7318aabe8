"""conda-lock v1 lockfiles solved against the local channel, written by conda-lock itself.

The solve is py-rattler's; the file, its models and its content hash are conda-lock's
own code (4.0.x), so what the bootstrap and the validator read is byte-for-byte the
kind of file `conda-lock lock` writes. The `with_*` helpers derive broken variants.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from conda_lock.content_hash import compute_content_hashes
from conda_lock.lockfile import parse_conda_lock_file, write_conda_lock_file
from conda_lock.lockfile.v1.models import HashModel
from conda_lock.lockfile.v2prelim.models import LockedDependency, Lockfile, LockMeta
from conda_lock.lookup import DEFAULT_MAPPING_URL
from conda_lock.models.channel import Channel as LockChannel
from conda_lock.src_parser import make_lock_spec
from conda_lock.virtual_package import virtual_package_repo_from_specification
from rattler import BuildString, GenericVirtualPackage, PackageName, RepoDataRecord, Version
from rattler import solve as rattler_solve

from tests.support.conda_channel import SUBDIR, BallastSpec, LocalChannel

DEFAULT_SPECS: tuple[str, ...] = (
    "python 3.11.*",
    "pip",
    "pyyaml",
    "huggingface_hub",
    "nltk",
    "pytorch ==2.8.0 cuda*",
    "torchaudio ==2.8.0 cuda*",
    "cuda-version 12.9.*",
    "ffmpeg",
    "prefix-probe",
)

# The virtual-packages.yml a CUDA lock is solved with (conda-lock's own format).
CUDA_VIRTUAL_PACKAGES: dict = {
    "subdirs": {
        SUBDIR: {
            "packages": {
                "__cuda": "12.9",
                "__glibc": "2.28",
                "__unix": "0",
                "__linux": "5.15",
                "__archspec": "1 x86_64",
            }
        }
    }
}


@dataclass(frozen=True)
class PipLock:
    name: str
    version: str
    url: str
    sha256: str


@dataclass(frozen=True)
class LockBundle:
    lockfile: Path
    environment_yml: Path
    virtual_packages_yml: Path
    channel: LocalChannel
    content_hash: str


def virtual_packages_of(specification: dict, platform: str = SUBDIR) -> list[GenericVirtualPackage]:
    """The virtual packages a virtual-packages.yml (conda-lock's format) gives `platform`."""
    packages = specification["subdirs"][platform]["packages"]
    result = []
    for name, spec in packages.items():
        version, _, build = str(spec).partition(" ")
        result.append(
            GenericVirtualPackage(PackageName(name), Version(version), BuildString(build or "0"))
        )
    return result


def solve_urls(
    channel_urls: Sequence[str],
    specs: Sequence[str],
    *,
    platform: str = SUBDIR,
    virtual_packages: Sequence[GenericVirtualPackage] | None = None,
) -> list[RepoDataRecord]:
    """Solve `specs` against channels given by url for `platform` (CUDA 12.9 by default)."""
    return asyncio.run(
        rattler_solve(
            sources=list(channel_urls),
            specs=list(specs),
            platforms=[platform, "noarch"],
            virtual_packages=list(
                virtual_packages
                if virtual_packages is not None
                else virtual_packages_of(CUDA_VIRTUAL_PACKAGES)
            ),
        )
    )


def solve(
    channel: LocalChannel, specs: Sequence[str] = DEFAULT_SPECS, *, platform: str = SUBDIR
) -> list[RepoDataRecord]:
    """Solve `specs` against the channel for `platform`, with CUDA 12.9 virtual packages."""
    return solve_urls([channel.url], specs, platform=platform)


def ballast_specs(ballast: BallastSpec) -> tuple[str, ...]:
    """Specs selecting the ballast packages of a channel built with `ballast`."""
    return tuple(f"ballast-{i}" for i in range(ballast.count))


def _dependencies(record: RepoDataRecord) -> dict[str, str]:
    deps: dict[str, str] = {}
    for dep in record.depends:
        name, _, spec = dep.partition(" ")
        deps[name] = spec.strip() or "*"
    return deps


def _locked(record: RepoDataRecord, platform: str) -> LockedDependency:
    return LockedDependency(
        name=record.name.normalized,
        version=str(record.version),
        manager="conda",
        platform=platform,
        dependencies=_dependencies(record),
        url=record.url,
        hash=HashModel(md5=record.md5.hex(), sha256=record.sha256.hex()),
        build=str(record.build),
        categories={"main"},
    )


def _locked_pip(pip: PipLock, platform: str) -> LockedDependency:
    return LockedDependency(
        name=pip.name,
        version=pip.version,
        manager="pip",
        platform=platform,
        dependencies={},
        url=pip.url,
        hash=HashModel(sha256=pip.sha256),
        categories={"main"},
    )


def content_hash_for(environment_yml: Path, virtual_packages_yml: Path) -> str:
    """The linux-64 content hash exactly as `conda-lock lock -f ENV --virtual-package-spec VP`."""
    spec = make_lock_spec(
        src_files=[environment_yml], platform_overrides=[SUBDIR], mapping_url=DEFAULT_MAPPING_URL
    )
    # Not `with ... as repo`: conda-lock's FakeRepoData.__enter__ returns None, which
    # would hash without the virtual packages (conda-lock itself binds it first).
    repo = virtual_package_repo_from_specification(virtual_packages_yml)
    with repo:
        return compute_content_hashes(spec, repo)[SUBDIR]


def write_environment(
    channel: LocalChannel, dest_dir: Path, specs: Sequence[str] = DEFAULT_SPECS
) -> tuple[Path, Path]:
    """environment.yml (solving `specs` from the channel) and the CUDA virtual-packages.yml."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    environment_yml = dest_dir / "environment.yml"
    environment_yml.write_text(
        yaml.safe_dump(
            {
                "name": "f5tts",
                "channels": [channel.url],
                "platforms": [SUBDIR],
                "dependencies": list(specs),
            },
            sort_keys=False,
        )
    )
    virtual_packages_yml = dest_dir / "virtual-packages.yml"
    virtual_packages_yml.write_text(yaml.safe_dump(CUDA_VIRTUAL_PACKAGES, sort_keys=False))
    return environment_yml, virtual_packages_yml


def write_lockfile(
    lockfile: Path,
    packages: Sequence[LockedDependency],
    *,
    content_hashes: dict[str, str],
    channel_urls: Sequence[str],
    sources: Sequence[str],
) -> Path:
    """A conda-lock v1 file of `packages`, written by conda-lock's own writer."""
    lock = Lockfile(
        package=list(packages),
        metadata=LockMeta(
            content_hash=dict(content_hashes),
            channels=[LockChannel.from_string(url) for url in channel_urls],
            platforms=sorted(content_hashes),
            sources=list(sources),
        ),
    )
    write_conda_lock_file(lock, pathlib.Path(lockfile), metadata_choices=())
    return lockfile


def locked_conda(records: Sequence[RepoDataRecord], platform: str = SUBDIR) -> list:
    """Solved records as conda-lock's LockedDependency entries."""
    return [_locked(r, platform) for r in records]


def write_lock(
    channel: LocalChannel,
    dest_dir: Path,
    *,
    specs: Sequence[str] = DEFAULT_SPECS,
    pip: Sequence[PipLock] = (),
    filename: str = "conda-lock.yml",
) -> LockBundle:
    """Solve `specs` and write environment.yml, virtual-packages.yml and the lockfile.

    `pip` entries go into the lock only (as conda-lock would after solving an
    environment.yml `pip:` section); they are left out of environment.yml because
    parsing one needs conda-lock's PyPI name mapping, i.e. the network.
    """
    if not filename.endswith(("-lock.yml", "-lock.yaml")):
        raise ValueError(f"{filename!r}: micromamba reads a lockfile only if it ends in -lock.yml")
    environment_yml, virtual_packages_yml = write_environment(channel, dest_dir, specs)
    content_hash = content_hash_for(environment_yml, virtual_packages_yml)
    packages = locked_conda(solve(channel, specs)) + [_locked_pip(p, SUBDIR) for p in pip]
    lockfile = write_lockfile(
        dest_dir / filename,
        packages,
        content_hashes={SUBDIR: content_hash},
        channel_urls=[channel.url],
        sources=[environment_yml.name],
    )
    return LockBundle(
        lockfile=lockfile,
        environment_yml=environment_yml,
        virtual_packages_yml=virtual_packages_yml,
        channel=channel,
        content_hash=content_hash,
    )


def lock_packages(path: Path) -> list[dict]:
    """The raw v1 `package:` entries of a lockfile."""
    return yaml.safe_load(path.read_text())["package"]


# ---------------------------------------------------------------- broken variants


def _rewrite(src: Path, dst: Path, edit) -> Path:
    if not dst.name.endswith(("-lock.yml", "-lock.yaml")):
        raise ValueError(f"{dst.name!r} must end in -lock.yml to be read as a lockfile")
    lock = parse_conda_lock_file(pathlib.Path(src))
    edit(lock)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_conda_lock_file(lock, pathlib.Path(dst), metadata_choices=())
    return dst


def _package(lock: Lockfile, name: str) -> LockedDependency:
    for dep in lock.package:
        if dep.name == name:
            return dep
    raise KeyError(f"{name!r} is not in the lockfile")


def with_wrong_sha256(src: Path, dst: Path, package: str = "pytorch") -> Path:
    def edit(lock: Lockfile) -> None:
        _package(lock, package).hash.sha256 = "0" * 64

    return _rewrite(src, dst, edit)


def without_sha256(src: Path, dst: Path, package: str = "pytorch") -> Path:
    def edit(lock: Lockfile) -> None:
        _package(lock, package).hash.sha256 = None

    return _rewrite(src, dst, edit)


def with_foreign_url(
    src: Path, dst: Path, package: str = "pytorch", url_base: str = "https://example.org/chan"
) -> Path:
    def edit(lock: Lockfile) -> None:
        dep = _package(lock, package)
        dep.url = f"{url_base}/{SUBDIR}/{dep.url.rsplit('/', 1)[-1]}"

    return _rewrite(src, dst, edit)


def with_cpu_pytorch(src: Path, dst: Path, channel: LocalChannel) -> Path:
    """pytorch and torchaudio swapped for their cpu builds (real urls and hashes)."""
    cpu = {
        r.name.normalized: r
        for r in solve(channel, ("pytorch ==2.8.0 cpu*", "torchaudio ==2.8.0 cpu*"))
    }

    def edit(lock: Lockfile) -> None:
        for name in ("pytorch", "torchaudio"):
            index = lock.package.index(_package(lock, name))
            lock.package[index] = _locked(cpu[name], SUBDIR)

    return _rewrite(src, dst, edit)


def with_stale_content_hash(src: Path, dst: Path) -> Path:
    def edit(lock: Lockfile) -> None:
        lock.metadata.content_hash = {p: "f" * 64 for p in lock.metadata.content_hash}

    return _rewrite(src, dst, edit)
