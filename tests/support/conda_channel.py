"""A local `file://` conda channel of small but real packages, for provisioning tests.

The packages are built with py-rattler-build and indexed with py-rattler, so every
tool that reads a conda channel (rattler, the micromamba double, conda-lock's models)
sees ordinary `.conda`/`.tar.bz2` archives and `repodata.json`. The `python` package
is a venv-style stand-in around the test interpreter, so a realized prefix has a real,
isolated `PREFIX/bin/python` whose site-packages live inside the prefix.
"""

from __future__ import annotations

import asyncio
import bz2
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rattler.index import index_fs
from rattler_build import ArchiveType, assemble_package

from tests.support.pins import pins

PYTHON_VERSION = "{}.{}.{}".format(*sys.version_info[:3])
PY_TAG = "py{}{}".format(*sys.version_info[:2])
SITE_PACKAGES = "lib/python{}.{}/site-packages".format(*sys.version_info[:2])
PREFIX_PROBE_FILE = "share/prefix-probe/prefix.txt"
# Shaped like the long padded build prefixes of conda-forge builds; any string works
# because the placeholder is declared in info/paths.json, as conda-build does.
PREFIX_PLACEHOLDER = (
    "/home/conda/feedstock_root/build_artifacts/prefix-probe_1760000000000/"
    "_h_env_placehold_placehold_placehold_placehold_placehold_placehold"
)
SUBDIR = "linux-64"
# Fixed so that identical inputs give identical archives across builds.
BUILD_TIMESTAMP = datetime(2026, 1, 1, tzinfo=UTC)

_REPO = Path(__file__).resolve().parents[2]
_VENV_SITE_PACKAGES = _REPO / ".venv" / "lib" / "python3.11" / "site-packages"
_MAJOR, _MINOR = sys.version_info[:2]
_PYTHON_DEP = f"python >={_MAJOR}.{_MINOR},<{_MAJOR}.{_MINOR + 1}"


@dataclass(frozen=True)
class BallastSpec:
    """`count` packages `ballast-<i>` of `size_bytes` incompressible bytes each."""

    count: int
    size_bytes: int


@dataclass(frozen=True)
class LocalChannel:
    root: Path
    url: str
    archives: dict[str, Path] = field(default_factory=dict)

    def archive(self, name: str, build_prefix: str = "") -> Path:
        """The archive of package `name` whose build string starts with `build_prefix`."""
        for ident, path in sorted(self.archives.items()):
            pkg_name, _version, build = ident.rsplit("-", 2)
            if pkg_name == name and build.startswith(build_prefix):
                return path
        raise KeyError(f"no package {name!r} with build {build_prefix!r}* in {self.root}")

    def copy_to(self, dest: Path) -> LocalChannel:
        """A full copy at `dest` (which must not exist), e.g. one a test may corrupt."""
        shutil.copytree(self.root, dest, symlinks=True)
        archives = {k: dest / p.relative_to(self.root) for k, p in self.archives.items()}
        return LocalChannel(root=dest, url=dest.resolve().as_uri(), archives=archives)


@dataclass(frozen=True)
class _Recipe:
    name: str
    version: str
    build: str
    stage: Callable[[Path], None]
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    archive_type: ArchiveType = ArchiveType.Conda


# ---------------------------------------------------------------- staging helpers


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _copy_from_venv(stage: Path, names: tuple[str, ...]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in names:
        src = _VENV_SITE_PACKAGES / name
        dest = stage / SITE_PACKAGES / name
        if src.is_dir():
            shutil.copytree(src, dest, ignore=ignore)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


def _dist_info(stage: Path, name: str, version: str) -> None:
    info = stage / SITE_PACKAGES / f"{name}-{version}.dist-info"
    _write(info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    _write(info / "INSTALLER", "conda\n")


def _stage_python(stage: Path) -> None:
    # A venv-style prefix: the interpreter binary is the test interpreter's base
    # binary, pyvenv.cfg next to bin/ makes PREFIX its sys.prefix and keeps the
    # base installation's site-packages out.
    base_bin = Path(sys._base_executable).resolve()  # type: ignore[attr-defined]
    (stage / "bin").mkdir(parents=True)
    (stage / "bin" / "python").symlink_to(base_bin)
    (stage / "bin" / "python3").symlink_to("python")
    (stage / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}").symlink_to("python")
    _write(
        stage / "pyvenv.cfg",
        f"home = {base_bin.parent}\n"
        "include-system-site-packages = false\n"
        f"version = {PYTHON_VERSION}\n",
    )
    _write(stage / SITE_PACKAGES / "README.txt", "site-packages of the python stand-in\n")


def _stage_pip(stage: Path) -> None:
    dist = next(p.name for p in _VENV_SITE_PACKAGES.glob("pip-*.dist-info"))
    _copy_from_venv(stage, ("pip", dist))


def _stage_pyyaml(stage: Path) -> None:
    dist = next(p.name for p in _VENV_SITE_PACKAGES.glob("pyyaml-*.dist-info"))
    _copy_from_venv(stage, ("yaml", "_yaml", dist))


def _stage_offline_stand_in(module: str, version: str, source: str) -> Callable[[Path], None]:
    """A package whose module answers like the real one does without network access
    (tests are offline), e.g. `python -m bootstrap fetch-models` finds the hub unreachable."""

    def stage_it(stage: Path) -> None:
        _write(stage / SITE_PACKAGES / module / "__init__.py", source)
        _dist_info(stage, module, version)

    return stage_it


_HUGGINGFACE_HUB = (
    '"""Stand-in for huggingface_hub: downloads fail as they do offline."""\n\n'
    "class LocalEntryNotFoundError(OSError):\n"
    '    """What huggingface_hub raises when the hub cannot be reached."""\n\n\n'
    "def hf_hub_download(repo_id, filename, **kwargs):\n"
    '    raise LocalEntryNotFoundError(f"cannot reach the hub for {repo_id}/{filename}")\n\n\n'
    "def snapshot_download(repo_id, **kwargs):\n"
    '    raise LocalEntryNotFoundError(f"cannot reach the hub for {repo_id}")\n'
)
_NLTK = (
    '"""Stand-in for nltk: data downloads fail as they do offline."""\n\n\n'
    "def download(package, download_dir=None, quiet=False):\n"
    "    return False\n"
)


def _stage_torch(cuda: str | None) -> Callable[[Path], None]:
    def stage_it(stage: Path) -> None:
        pkg = stage / SITE_PACKAGES / "torch"
        _write(
            pkg / "__init__.py",
            '"""Stand-in for torch: only what provisioning checks look at."""\n'
            "from . import cuda, version\n\n"
            '__version__ = "2.8.0"\n',
        )
        _write(pkg / "version.py", f'__version__ = "2.8.0"\ncuda = {cuda!r}\n')
        _write(pkg / "cuda" / "__init__.py", "def is_available():\n    return False\n")
        _dist_info(stage, "torch", "2.8.0")

    return stage_it


def _stage_torchaudio(stage: Path) -> None:
    _write(
        stage / SITE_PACKAGES / "torchaudio" / "__init__.py",
        'import torch  # noqa: F401\n\n__version__ = "2.8.0"\n',
    )
    _dist_info(stage, "torchaudio", "2.8.0")


def _stage_cuda_version(stage: Path) -> None:
    # The real cuda-version is metadata only; an archive needs at least one file.
    _write(stage / "etc" / "cuda-version" / "version.txt", "12.9\n")


def _stage_ffmpeg(stage: Path) -> None:
    _write(
        stage / "bin" / "ffmpeg",
        "#!/bin/sh\n"
        "# Stand-in for ffmpeg: answers -version like the real one.\n"
        'if [ "${1:-}" = "-version" ]; then\n'
        '  echo "ffmpeg version 7.1 Copyright (c) 2000-2024 the FFmpeg developers"\n'
        "  exit 0\n"
        "fi\n"
        'echo "ffmpeg stand-in: only -version is supported" >&2\n'
        "exit 1\n",
        mode=0o755,
    )


def _stage_prefix_probe(stage: Path) -> None:
    _write(stage / PREFIX_PROBE_FILE, f"prefix={PREFIX_PLACEHOLDER}\n")


def _stage_conda_lock(stage: Path) -> None:
    # The real library (from the test venv, through a .pth file) and an entry point
    # that runs the test double instead of solving with a conda binary.
    _write(
        stage / SITE_PACKAGES / "conda_lock_stand_in.pth",
        f"{_VENV_SITE_PACKAGES}\n{_REPO}\n",
    )
    _write(
        stage / "bin" / "conda-lock",
        "#!/bin/sh\n"
        "# Stand-in for conda-lock's entry point: tests/support/conda_lock_double.py.\n"
        'exec "$(dirname "$0")/python" -m tests.support.conda_lock_double "$@"\n',
        mode=0o755,
    )


def _stage_uv(stage: Path) -> None:
    # uv is a compiled binary with no Python of its own: the stand-in runs the test
    # double with the test interpreter.
    _write(
        stage / "bin" / "uv",
        "#!/bin/sh\n"
        "# Stand-in for uv: tests/support/uv_double.py.\n"
        f'PYTHONPATH={_REPO} exec {sys.executable} -m tests.support.uv_double "$@"\n',
        mode=0o755,
    )


def _stage_ballast(index: int, size_bytes: int) -> Callable[[Path], None]:
    def stage_it(stage: Path) -> None:
        path = stage / "share" / "ballast" / f"{index}.bin"
        path.parent.mkdir(parents=True)
        with path.open("wb") as f:
            remaining = size_bytes
            while remaining:
                chunk = min(remaining, 1 << 20)
                f.write(os.urandom(chunk))
                remaining -= chunk

    return stage_it


def _recipes(ballast: BallastSpec | None) -> list[_Recipe]:
    cuda_torch_deps = (_PYTHON_DEP, "cuda-version >=12.9,<13", "__cuda", "__glibc >=2.17")
    recipes = [
        _Recipe("python", PYTHON_VERSION, "h0000000_0_cpython", _stage_python),
        _Recipe("pip", "23.2.1", "pyh0000000_0", _stage_pip, (_PYTHON_DEP,)),
        _Recipe("pyyaml", "6.0.4", f"{PY_TAG}h0000000_0", _stage_pyyaml, (_PYTHON_DEP,)),
        # The Python stage imports these (bootstrap/required-packages.txt).
        _Recipe(
            "huggingface_hub",
            "0.36.2",
            "pyh0000000_0",
            _stage_offline_stand_in("huggingface_hub", "0.36.2", _HUGGINGFACE_HUB),
            (_PYTHON_DEP,),
        ),
        _Recipe(
            "nltk",
            "3.9.1",
            "pyh0000000_0",
            _stage_offline_stand_in("nltk", "3.9.1", _NLTK),
            (_PYTHON_DEP,),
        ),
        _Recipe(
            "pytorch",
            "2.8.0",
            f"cuda129_{PY_TAG}h0000000_0",
            _stage_torch("12.9"),
            cuda_torch_deps,
        ),
        _Recipe("pytorch", "2.8.0", f"cpu_{PY_TAG}h0000000_0", _stage_torch(None), (_PYTHON_DEP,)),
        _Recipe(
            "torchaudio",
            "2.8.0",
            f"cuda129_{PY_TAG}h0000000_0",
            _stage_torchaudio,
            (_PYTHON_DEP, "pytorch ==2.8.0 cuda*", "cuda-version >=12.9,<13"),
        ),
        _Recipe(
            "torchaudio",
            "2.8.0",
            f"cpu_{PY_TAG}h0000000_0",
            _stage_torchaudio,
            (_PYTHON_DEP, "pytorch ==2.8.0 cpu*"),
        ),
        _Recipe(
            "cuda-version", "12.9", "h0000000_3", _stage_cuda_version, constrains=("__cuda >=12",)
        ),
        _Recipe("ffmpeg", "7.1", "gpl_h0000000_0", _stage_ffmpeg),
        _Recipe(
            "prefix-probe",
            "1.0",
            "h0000000_0",
            _stage_prefix_probe,
            archive_type=ArchiveType.TarBz2,
        ),
    ]
    # The lock tools bootstrap/lock realizes (bootstrap/pins.env), as stand-ins.
    recipes += [
        _Recipe(
            "conda-lock",
            pins()["CONDA_LOCK_VERSION"],
            "pyh0000000_0",
            _stage_conda_lock,
            (_PYTHON_DEP,),
        ),
        _Recipe("uv", pins()["UV_VERSION"], "h0000000_0", _stage_uv),
    ]
    if ballast is not None:
        recipes += [
            _Recipe(f"ballast-{i}", "1.0", "h0000000_0", _stage_ballast(i, ballast.size_bytes))
            for i in range(ballast.count)
        ]
    return recipes


# ---------------------------------------------------------------- building


def _declare_prefix_placeholder(archive: Path, rel_path: str) -> None:
    """Mark `rel_path` in a .tar.bz2 as a text file holding the build-prefix placeholder.

    assemble_package does not detect prefixes in our staged files, so the package
    metadata is written the way conda-build/rattler-build write it for real packages.
    """
    with tarfile.open(archive, "r:bz2") as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for member, data in members:
            if member.name == "info/paths.json" and data is not None:
                paths = json.loads(data)
                for entry in paths["paths"]:
                    if entry["_path"] == rel_path:
                        entry["prefix_placeholder"] = PREFIX_PLACEHOLDER
                        entry["file_mode"] = "text"
                data = json.dumps(paths, indent=2).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
        has_prefix = f"{PREFIX_PLACEHOLDER} text {rel_path}\n".encode()
        info = tarfile.TarInfo("info/has_prefix")
        info.size = len(has_prefix)
        info.mtime = int(BUILD_TIMESTAMP.timestamp())
        dst.addfile(info, io.BytesIO(has_prefix))
    archive.write_bytes(bz2.compress(out.getvalue(), compresslevel=1))


def _build_one(recipe: _Recipe, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix=f"stage-{recipe.name}-") as tmp:
        stage = Path(tmp) / "files"
        stage.mkdir()
        recipe.stage(stage)
        result = assemble_package(
            name=recipe.name,
            version=recipe.version,
            target_platform=SUBDIR,
            build_string=recipe.build,
            output_dir=out_dir,
            files_dir=stage,
            depends=list(recipe.depends),
            constrains=list(recipe.constrains),
            compression_level=1,
            archive_type=recipe.archive_type,
            timestamp=BUILD_TIMESTAMP,
            detect_prefix=False,
        )
    path = Path(result.path)
    if recipe.name == "prefix-probe":
        _declare_prefix_placeholder(path, PREFIX_PROBE_FILE)
    return path


def build_channel(root: Path, *, ballast: BallastSpec | None = None) -> LocalChannel:
    """Build and index the channel under `root` (created; must be empty or absent)."""
    root.mkdir(parents=True, exist_ok=True)
    subdir = root / SUBDIR
    subdir.mkdir(exist_ok=True)
    # A conda channel always has noarch/, even when empty; the indexer requires it.
    (root / "noarch").mkdir(exist_ok=True)
    archives: dict[str, Path] = {}
    for recipe in _recipes(ballast):
        path = _build_one(recipe, subdir)
        archives[f"{recipe.name}-{recipe.version}-{recipe.build}"] = path
    asyncio.run(index_fs(root, write_zst=False, write_shards=False, force=True))
    return LocalChannel(root=root, url=root.resolve().as_uri(), archives=archives)
