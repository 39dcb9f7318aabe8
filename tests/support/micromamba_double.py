"""A test double of micromamba 2.x that really installs conda packages, with py-rattler.

It mirrors the parts of the real CLI the bootstrap uses (read from mamba's sources, see
/work/shared/notes/conda-micromamba-facts.md) including the sharp edges:
`create -y` deletes an existing prefix before it reads the lockfile, unknown options
exit 109 (CLI11), `shell activate -s sh` exits 105, `run -p P -- cmd` is rejected.
It reports the pinned version (bootstrap/pins.env; MICROMAMBA_DOUBLE_VERSION plays
another one) and lays out its package cache as that version does: libmamba 2.5.0's
flat `pkgs/` (`urls.txt`, `<name>-<version>-<build>.conda|.tar.bz2` and the extracted
`<name>-<version>-<build>/` with `info/repodata_record.json`), or from 2.6.0 the
hierarchical one of mamba PR #4163 (`pkgs/https/<host>/<channel>/<subdir>/...`).
Packages are copied from `file://` urls into that cache, checked against the
lockfile's sha256 (else md5), extracted there, and linked from there by rattler
(prefix placeholders rewritten); conda-meta records name the cache entry they were
linked from, as libmamba's do.

Every call is logged to $MICROMAMBA_DOUBLE_LOG (JSON lines) so tests can count
realizations; $MICROMAMBA_DOUBLE_PAUSE / $MICROMAMBA_DOUBLE_FAIL inject delays and
failures at a phase, so crash tests can kill it mid-download or mid-link.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from tests.support.pins import pins

# The micromamba the bootstrap realizes with, read from bootstrap/pins.env (never a copy).
DOUBLE_VERSION = pins()["MICROMAMBA_VERSION"]
# libmamba 2.6.0 made the package cache hierarchical (mamba PR #4163).
HIERARCHICAL_CACHE_SINCE = (2, 6)
PACKAGE_CACHE_MAGIC_FILE = "urls.txt"
PLATFORM = "linux-64"
SHELLS = ("bash", "cmd.exe", "dash", "fish", "nu", "posix", "powershell", "tcsh", "xonsh", "zsh")
POSIX_SHELLS = ("bash", "dash", "posix", "zsh")
LOGGED_ENV = (
    "MAMBA_ROOT_PREFIX",
    "CONDA_PKGS_DIRS",
    "MAMBA_USE_LOCKFILES",
    "MAMBA_ALWAYS_YES",
    "CONDA_PREFIX",
    "PATH",
)
EXIT_EXTRAS = 109  # CLI11 ExtrasError
EXIT_VALIDATION = 105  # CLI11 ValidationError
_REPO = Path(__file__).resolve().parents[2]


class CliError(Exception):
    """A CLI11 parse error: message and exit code as the real parser gives them."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Failure(Exception):
    """A libmamba 'critical' error: exit 1."""


# ---------------------------------------------------------------- call log


def _log(record: dict) -> None:
    path = os.environ.get("MICROMAMBA_DOUBLE_LOG")
    if not path:
        return
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    # One O_APPEND write per record keeps lines whole with concurrent callers.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_calls(log: Path) -> list[dict]:
    """One dict per call, start and end merged: argv, cwd, pid, env, start, end, rc.

    A call killed before it ended has no `end`/`rc`.
    """
    calls: dict[str, dict] = {}
    if not log.exists():
        return []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        call = calls.setdefault(record["call_id"], {})
        event = record.pop("event")
        call.update(record)
        if event == "end":
            call.setdefault("end", record["time"])
        else:
            call["start"] = record["time"]
        call.pop("time", None)
    return list(calls.values())


def realizations(log: Path) -> list[dict]:
    """The `create` calls in the log."""
    return [c for c in read_calls(log) if c["argv"][:1] == ["create"]]


# ---------------------------------------------------------------- fault injection


def _fault(phase: str) -> None:
    pause = os.environ.get("MICROMAMBA_DOUBLE_PAUSE", "")
    if pause:
        pause_phase, _, seconds = pause.partition(":")
        if pause_phase == phase:
            print(f"PAUSED {phase}", file=sys.stderr, flush=True)
            time.sleep(float(seconds or "3600"))
    if os.environ.get("MICROMAMBA_DOUBLE_FAIL") == phase:
        raise Failure(f"injected failure at phase {phase} (MICROMAMBA_DOUBLE_FAIL)")


# ---------------------------------------------------------------- argument parsing


@dataclass
class _Spec:
    """Options of one subcommand: flags take no value, options take one."""

    flags: dict[str, str]
    options: dict[str, str]
    multi: frozenset[str] = frozenset()
    stop_at_positional: bool = False


@dataclass
class _Parsed:
    values: dict[str, object] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)


def _extras(args: Sequence[str]) -> CliError:
    noun = "argument was" if len(args) == 1 else "arguments were"
    return CliError(
        f"The following {noun} not expected: {' '.join(args)}\n"
        "Run with --help for more information.",
        EXIT_EXTRAS,
    )


def _parse(args: Sequence[str], spec: _Spec) -> _Parsed:
    parsed = _Parsed()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or (spec.stop_at_positional and parsed.positionals):
            if arg == "--":
                raise _extras(args[i:])
            parsed.positionals.extend(args[i:])
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in spec.flags:
            parsed.values[spec.flags[name]] = True
        elif name in spec.options:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise CliError(f"{name} requires an argument", EXIT_EXTRAS)
            key = spec.options[name]
            if key in spec.multi:
                parsed.values.setdefault(key, []).append(value)  # type: ignore[union-attr]
            else:
                parsed.values[key] = value
        elif arg.startswith("-") and arg != "-":
            raise _extras(args[i:] if spec.stop_at_positional else [arg])
        else:
            parsed.positionals.append(arg)
        i += 1
    return parsed


_GLOBAL_FLAGS = {"-y": "yes", "--yes": "yes", "-q": "quiet", "--quiet": "quiet", "--json": "json"}
_GLOBAL_OPTIONS = {"-r": "root_prefix", "--root-prefix": "root_prefix"}


# ---------------------------------------------------------------- shared helpers


def _root_prefix(parsed: _Parsed) -> Path:
    root = parsed.values.get("root_prefix") or os.environ.get("MAMBA_ROOT_PREFIX")
    if not root:
        # The real binary silently picks a default root (even the folder holding
        # bin/micromamba); callers must always set it, so a test should see this.
        raise Failure(
            "MAMBA_ROOT_PREFIX is not set and no -r/--root-prefix was given "
            "(the real micromamba would silently pick a default root prefix)"
        )
    return Path(str(root))


def _pkgs_dir(root: Path) -> Path:
    dirs = os.environ.get("CONDA_PKGS_DIRS", "")
    first = dirs.split(",")[0].strip() if dirs else ""
    return Path(first) if first else root / "pkgs"


def _say(parsed: _Parsed, text: str) -> None:
    if not parsed.values.get("quiet") and not parsed.values.get("json"):
        print(text, flush=True)


def _file_url_path(url: str) -> Path:
    parts = urlparse(url)
    if parts.scheme != "file":
        raise Failure(
            f"cannot download {url}: the micromamba double fetches file:// urls only "
            "(offline tests); point the lockfile at the local test channel"
        )
    return Path(unquote(parts.path))


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- create


@dataclass(frozen=True)
class _LockedConda:
    name: str
    version: str
    build: str
    url: str
    file_name: str
    sha256: str | None
    md5: str | None
    depends: list[str]


@dataclass(frozen=True)
class _LockedPip:
    name: str
    url: str
    sha256: str | None


def _read_lockfile(path: Path) -> tuple[list[_LockedConda], list[_LockedPip]]:
    import yaml

    if not path.is_file():
        raise Failure(f"File not found: '{path}'")
    try:
        data = yaml.safe_load(path.read_text())
        if data.get("version") != 1:
            raise Failure(
                f"Could not parse lockfile '{path}': unsupported lockfile version "
                f"{data.get('version')!r} (only conda-lock v1 is read)"
            )
        packages = data["package"]
    except (yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
        raise Failure(f"Could not parse lockfile '{path}': {exc}") from exc
    conda: list[_LockedConda] = []
    pip: list[_LockedPip] = []
    for pkg in packages:
        if pkg.get("platform") != PLATFORM or pkg.get("category", "main") != "main":
            continue
        hashes = pkg.get("hash") or {}
        if pkg.get("manager") == "pip":
            pip.append(_LockedPip(pkg["name"], pkg["url"], hashes.get("sha256")))
            continue
        file_name = pkg["url"].rsplit("/", 1)[-1]
        stem = file_name.removesuffix(".conda").removesuffix(".tar.bz2")
        _name, _version, build = stem.rsplit("-", 2)
        deps = [
            f"{k} {v}".strip() if v != "*" else k for k, v in pkg.get("dependencies", {}).items()
        ]
        conda.append(
            _LockedConda(
                name=pkg["name"],
                version=str(pkg["version"]),
                build=build,
                url=pkg["url"],
                file_name=file_name,
                sha256=hashes.get("sha256"),
                md5=hashes.get("md5"),
                depends=deps,
            )
        )
    return conda, pip


# ---------------------------------------------------------------- package cache


def double_version() -> str:
    return os.environ.get("MICROMAMBA_DOUBLE_VERSION") or DOUBLE_VERSION


def hierarchical_cache(version: str) -> bool:
    """Whether micromamba `version` keeps packages by channel and subdir (>= 2.6.0)."""
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return numbers >= HIERARCHICAL_CACHE_SINCE


def _without_credentials(url: str) -> str:
    """The url without `user:password@` and `/t/<token>` (libmamba's remove_secrets...)."""
    parts = urlparse(url)
    kept: list[str] = []
    segments = iter(parts.path.split("/"))
    for segment in segments:
        if segment == "t" and kept:
            next(segments, None)  # the token itself
            continue
        kept.append(segment)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], path="/".join(kept)).geturl()


def cache_folder(pkgs_dir: Path, url: str, version: str | None = None) -> Path:
    """The folder of `pkgs_dir` where micromamba `version` keeps the package at `url`.

    <= 2.5: `pkgs_dir` itself. >= 2.6 (libmamba's package_cache_folder_relative_path):
    the url's directory without credentials, "://" turned into "/" and the remaining
    ":" and "\\" into "_", e.g. `pkgs/https/conda.anaconda.org/conda-forge/linux-64`.
    """
    if not hierarchical_cache(version or double_version()):
        return pkgs_dir
    directory = _without_credentials(url).rsplit("/", 1)[0].rstrip("/")
    directory = directory.replace("://", "/").replace(":", "_").replace("\\", "_")
    return pkgs_dir / directory.lstrip("/")


def _digest_matches(path: Path, pkg: _LockedConda, prefer: str) -> bool:
    algorithms = [("md5", pkg.md5), ("sha256", pkg.sha256)]
    if prefer == "sha256":
        algorithms.reverse()
    for algorithm, expected in algorithms:
        if expected:
            return _digest(path, algorithm) == expected
    return True


def _valid_extracted_dir(extracted: Path, pkg: _LockedConda) -> bool:
    """libmamba's has_valid_extracted_dir: the record matches the lock, every file is there."""
    try:
        record = json.loads((extracted / "info" / "repodata_record.json").read_text())
        paths = json.loads((extracted / "info" / "paths.json").read_text())["paths"]
    except (OSError, ValueError, KeyError):
        return False
    if pkg.sha256 and record.get("sha256"):
        same = record["sha256"] == pkg.sha256
    elif pkg.md5 and record.get("md5"):
        same = record["md5"] == pkg.md5
    else:
        same = False
    if not same or record.get("url", "").rstrip("/") != pkg.url.rstrip("/"):
        return False
    return all(os.path.lexists(extracted / entry["_path"]) for entry in paths)


def _download(pkg: _LockedConda, tarball: Path) -> None:
    source = _file_url_path(pkg.url)
    if not source.is_file():
        raise Failure(f"Download error (37) Couldn't read a file:// file for {pkg.url}")
    # libmamba downloads straight to the tarball's name, and deletes it when it fails
    # its checksum (a killed download leaves a short file, caught next time).
    shutil.copyfile(source, tarball)
    if _digest_matches(tarball, pkg, prefer="sha256"):
        return
    algorithm, expected = ("sha256", pkg.sha256) if pkg.sha256 else ("md5", pkg.md5)
    actual = _digest(tarball, algorithm)
    tarball.unlink()
    kind = "SHA256" if pkg.sha256 else "MD5"
    # The real messages: libmamba's PackageFetcher and MTransaction::fetch_extract_packages.
    print(
        f"error    libmamba File not valid: {kind} doesn't match expectation {tarball}\n"
        f"Expected: {expected}\nActual: {actual}\n"
        f"{pkg.file_name} tarball has incorrect {kind}",
        file=sys.stderr,
    )
    raise Failure("Found incorrect downloads. Aborting")


def _repodata_record(pkg: _LockedConda, extracted: Path, tarball: Path) -> dict:
    # PackageInfo's fields, then index.json's for what they lack (write_repodata_record).
    record: dict = {
        "name": pkg.name,
        "version": pkg.version,
        "build": pkg.build,
        "build_string": pkg.build,
        "channel": pkg.url.rsplit("/", 2)[0],
        "url": pkg.url,
        "subdir": pkg.url.rsplit("/", 2)[1],
        "fn": pkg.file_name,
        "md5": pkg.md5 or "",
        "sha256": pkg.sha256 or "",
    }
    index = json.loads((extracted / "info" / "index.json").read_text())
    record.update({k: v for k, v in index.items() if k not in record})
    record["size"] = record.get("size") or tarball.stat().st_size
    return record


def _fetch(pkg: _LockedConda, pkgs_dir: Path) -> Path:
    """The package's extracted dir in the cache, downloaded and extracted if needed, with
    libmamba's checks and bookkeeping (urls.txt, info/repodata_record.json)."""
    from rattler.package_streaming import extract

    folder = cache_folder(pkgs_dir, pkg.url)
    folder.mkdir(parents=True, exist_ok=True)
    stem = pkg.file_name.removesuffix(".conda").removesuffix(".tar.bz2")
    extracted, tarball = folder / stem, folder / pkg.file_name
    if _valid_extracted_dir(extracted, pkg):
        return extracted
    downloaded = ""
    if not (tarball.is_file() and _digest_matches(tarball, pkg, prefer="md5")):
        tarball.unlink(missing_ok=True)
        _download(pkg, tarball)
        downloaded = pkg.url
    if extracted.exists():
        shutil.rmtree(extracted)
    extract(tarball, extracted)
    record = _repodata_record(pkg, extracted, tarball)
    (extracted / "info" / "repodata_record.json").write_text(json.dumps(record, indent=4))
    # One line per extraction: the url when it was downloaded, empty when the tarball
    # was already there (libmamba's update_urls_txt, in the package's cache folder).
    with (folder / PACKAGE_CACHE_MAGIC_FILE).open("a") as urls:
        urls.write(downloaded + "\n")
    return extracted


def _records(packages: Sequence[_LockedConda]) -> list:
    from rattler import PackageRecord, RepoDataRecord

    records = []
    for pkg in packages:
        record = PackageRecord(
            name=pkg.name,
            version=pkg.version,
            build=_build_string(pkg.build),
            build_number=int(pkg.build.rsplit("_", 1)[-1]) if pkg.build[-1:].isdigit() else 0,
            subdir=PLATFORM,
            depends=pkg.depends,
            sha256=bytes.fromhex(pkg.sha256) if pkg.sha256 else None,
            md5=bytes.fromhex(pkg.md5) if pkg.md5 else None,
        )
        channel = pkg.url.rsplit("/", 2)[0] + "/"
        records.append(RepoDataRecord(record, pkg.file_name, pkg.url, channel))
    return records


def _build_string(build: str):
    from rattler import BuildString

    return BuildString(build)


def _link(records: list, extracted: Sequence[Path], prefix: Path) -> None:
    """Link the extracted dirs into `prefix` with rattler, hardlinking from the cache.

    rattler keeps its own bookkeeping (`.cache.lock`, `<pkg>.lock`) in a cache dir
    that micromamba's does not have, so it is given a scratch cache whose entries are
    symlinks to ours: it links through them from our files, and its files go away
    with the scratch dir.
    """
    import asyncio

    from rattler import PackageCache, PackageCacheLayer, ValidationMode, install

    with tempfile.TemporaryDirectory(prefix="micromamba-double-cache-") as scratch:
        for path in extracted:
            (Path(scratch) / path.name).symlink_to(path)
        layer = PackageCacheLayer(scratch).with_validation_mode(ValidationMode.skip())
        cache = PackageCache.from_layers([layer])
        asyncio.run(install(records, prefix, package_cache=cache, show_progress=False))
    sources = {path.name: path for path in extracted}
    for meta in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(meta.read_text())
        source = sources.get(
            str(record.get("fn", "")).removesuffix(".conda").removesuffix(".tar.bz2")
        )
        if source is None:
            continue
        # What libmamba's LinkPackage writes (".tar.bz2" even for a .conda: its quirk).
        record["extracted_package_dir"] = str(source)
        record["package_tarball_full_path"] = f"{source}.tar.bz2"
        record["link"] = {"source": str(source), "type": 1}
        meta.write_text(json.dumps(record, indent=2))


def _install_pip(pip: Sequence[_LockedPip], prefix: Path, lockfile: Path, quiet: bool) -> None:
    python = prefix / "bin" / "python"
    if not python.exists():
        raise Failure("pip packages in the lockfile need python and pip in the environment")
    # As libmamba writes them, sha256 or not.
    lines = [f"{p.name} @ {p.url}#sha256={p.sha256 or ''}" for p in pip]
    # Like the real one, the requirements go into a temp file in the lockfile's
    # directory, which is also the working directory of pip.
    requirements = lockfile.parent / f"mambaf{secrets.token_hex(4)}"
    try:
        requirements.write_text("\n".join(lines) + "\n")
    except OSError as exc:
        raise Failure(f"Could not write pip requirements next to '{lockfile}': {exc}") from exc
    command = [str(python), "-m", "pip", "install", "--no-deps", "-r", str(requirements)]
    command += ["--quiet", "--no-input"] if quiet else ["--no-input"]
    # The real call is wrapped in the environment's activation.
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    exports, _scripts = activation(prefix, base)
    try:
        result = subprocess.run(command, env={**base, **exports}, cwd=lockfile.parent, check=False)
    finally:
        requirements.unlink(missing_ok=True)
    if result.returncode != 0:
        raise Failure("pip failed to install packages")


def _create(args: Sequence[str]) -> int:
    parsed = _parse(
        args,
        _Spec(
            flags={**_GLOBAL_FLAGS, "--override-channels": "override_channels"},
            options={
                **_GLOBAL_OPTIONS,
                "-p": "prefix",
                "--prefix": "prefix",
                "-f": "file",
                "--file": "file",
                "-c": "channel",
                "--channel": "channel",
            },
            multi=frozenset({"channel"}),
        ),
    )
    if parsed.positionals and "file" in parsed.values:
        raise Failure("the micromamba double installs a lockfile or specs, not both")
    root = _root_prefix(parsed)
    if "prefix" not in parsed.values:
        raise Failure("No target prefix specified (use -p/--prefix)")
    prefix = Path(str(parsed.values["prefix"])).absolute()
    yes = bool(parsed.values.get("yes")) or os.environ.get("MAMBA_ALWAYS_YES", "").lower() in (
        "1",
        "true",
        "yes",
    )
    # The checks of libmamba's api/create.cpp, in its order.
    if prefix.exists():
        if prefix.resolve() == root.absolute().resolve():
            raise Failure("Overwriting root prefix is not permitted - aborting.")
        if not prefix.is_dir():
            raise Failure("Target prefix already exists and is not a folder - aborting.")
        if not any(prefix.iterdir()):
            print("warning  libmamba Using existing empty folder as target prefix", file=sys.stderr)
        elif (prefix / "conda-meta").exists():
            if not yes:
                print(f"Found conda-prefix at '{prefix}'. Overwrite?: [y/N] ", flush=True)
                raise Failure("Aborting.")
            # Removed here, before the lockfile is even read, and without any lock.
            # (fs::remove_all on a symlink removes the link, not its target.)
            prefix.unlink() if prefix.is_symlink() else shutil.rmtree(prefix)
        else:
            raise Failure("Non-conda folder exists at prefix - aborting.")

    if parsed.positionals:
        # Spec-based create (bootstrap/lock's tools env): tests/support/micromamba_specs.py.
        from tests.support.micromamba_specs import solve_specs

        channels = [str(c) for c in parsed.values.get("channel", [])]  # type: ignore[union-attr]
        conda, pip = solve_specs(channels, parsed.positionals), []
        lockfile = prefix  # only pip entries use it, and specs have none
    else:
        if "file" not in parsed.values:
            raise Failure("create without -f/--file or specs is not supported by the double")
        lockfile = Path(str(parsed.values["file"])).absolute()
        if not lockfile.name.endswith(("-lock.yml", "-lock.yaml")):
            raise Failure(
                f"'{lockfile.name}' is not a conda-lock file (the name must end in -lock.yml "
                "or -lock.yaml); the real micromamba would solve it as an environment spec, "
                "which the double does not do"
            )
        conda, pip = _read_lockfile(lockfile)

    pkgs_dir = _pkgs_dir(root)
    # libmamba's PackageCacheData::create_directory: the magic file marks a writable cache.
    pkgs_dir.mkdir(parents=True, exist_ok=True)
    (pkgs_dir / PACKAGE_CACHE_MAGIC_FILE).touch()
    # Like libmamba's create_target_directory: the prefix and an empty
    # conda-meta/history exist before any package is fetched, so a crash in any
    # later phase leaves a prefix that the next `create -y` will wipe.
    history = prefix / "conda-meta" / "history"
    history.parent.mkdir(parents=True, exist_ok=True)
    history.touch()
    _say(parsed, f"\nTransaction\n\n  Prefix: {prefix}\n\n  Install: {len(conda)} packages\n")
    extracted = []
    for index, pkg in enumerate(conda):
        extracted.append(_fetch(pkg, pkgs_dir))
        if index == 0:
            _fault("download")
    records = _records(conda)
    half = max(1, len(records) // 2)
    _link(records[:half], extracted[:half], prefix)
    _fault("link")
    _link(records, extracted, prefix)
    # rattler tags the prefix as a cache dir; micromamba does not, so neither do we.
    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    history.write_text(f"==> {stamp} <==\n# cmd: micromamba {shlex.join(['create', *args])}\n")
    if pip:
        _fault("pip")
        quiet = bool(parsed.values.get("quiet") or parsed.values.get("json"))
        _install_pip(pip, prefix, lockfile, quiet)
    if parsed.values.get("json"):
        link = [{"name": p.name, "version": p.version, "build_string": p.build} for p in conda]
        print(json.dumps({"success": True, "prefix": str(prefix), "actions": {"LINK": link}}))
    _say(parsed, "Transaction finished\n")
    return 0


# ---------------------------------------------------------------- shell activate


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def activation(prefix: Path, environ: dict[str, str]) -> tuple[dict[str, str], list[Path]]:
    """The variables `shell activate` exports, and the activate.d scripts it sources."""
    resolved = prefix.resolve()
    path = environ.get("PATH", "")
    old = environ.get("CONDA_PREFIX")
    entries = [p for p in path.split(os.pathsep) if p and not (old and p == f"{old}/bin")]
    shlvl = int(environ.get("CONDA_SHLVL", "0") or "0")
    exports = {
        "PATH": os.pathsep.join([str(resolved / "bin"), *entries]),
        "CONDA_PREFIX": str(resolved),
        "CONDA_SHLVL": str(shlvl + 1),
        "CONDA_DEFAULT_ENV": str(resolved),
        "CONDA_PROMPT_MODIFIER": f"({resolved.name}) ",
    }
    if old:
        exports[f"CONDA_PREFIX_{shlvl}"] = old
    scripts = sorted((resolved / "etc" / "conda" / "activate.d").glob("*.sh"))
    return exports, scripts


def _shell(args: Sequence[str]) -> int:
    if not args or args[0] not in ("activate", "hook"):
        raise _extras(list(args[:1]) or ["<none>"])
    parsed = _parse(
        args[1:],
        _Spec(
            flags=_GLOBAL_FLAGS,
            options={
                **_GLOBAL_OPTIONS,
                "-s": "shell",
                "--shell": "shell",
                "-p": "prefix",
                "--prefix": "prefix",
            },
        ),
    )
    shell = parsed.values.get("shell")
    if shell is not None and shell not in SHELLS:
        raise CliError(
            f"--shell: Check {shell} value in {{{','.join(SHELLS)}}} FAILED\n"
            "Run with --help for more information.",
            EXIT_VALIDATION,
        )
    if shell is None:
        # The real binary guesses from the parent process; from a non-interactive
        # `sh` script that guess fails like this.
        raise Failure("Unknown shell type. Aborting.")
    if shell not in POSIX_SHELLS:
        raise Failure(f"the micromamba double only writes POSIX-like scripts, not {shell}")
    if args[0] == "hook":
        raise Failure("`shell hook` is not implemented by the micromamba double")
    target = parsed.values.get("prefix") or (parsed.positionals[0] if parsed.positionals else None)
    if target is None:
        raise Failure("No prefix given to activate (use -p/--prefix)")
    prefix = Path(str(target)).absolute()
    if not (prefix / "conda-meta").is_dir():
        raise Failure(f"Cannot activate, prefix does not exist at: '{prefix}'")
    exports, scripts = activation(prefix, dict(os.environ))
    lines = [f"export {k}={_quote(v)}" for k, v in exports.items()]
    lines += [f". {_quote(str(s))}" for s in scripts]
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------- run


def _proc_registration() -> Path | None:
    if os.environ.get("MAMBA_USE_LOCKFILES", "").lower() in ("false", "0", "no", "off"):
        return None
    proc = Path(os.path.expanduser("~/.cache/mamba/proc"))
    try:
        proc.mkdir(parents=True, exist_ok=True)
        entry = proc / f"{os.getpid()}.json"
        entry.write_text(json.dumps({"pid": os.getpid()}))
    except OSError as exc:
        raise Failure(
            f"Could not write to '{proc}' (needed unless MAMBA_USE_LOCKFILES=false): {exc}"
        ) from exc
    return entry


def _run(args: Sequence[str]) -> int:
    parsed = _parse(
        args,
        _Spec(
            flags={**_GLOBAL_FLAGS, "--clean-env": "clean_env"},
            options={
                **_GLOBAL_OPTIONS,
                "-p": "prefix",
                "--prefix": "prefix",
                "--cwd": "cwd",
                "-e": "env",
                "--env": "env",
            },
            multi=frozenset({"env"}),
            stop_at_positional=True,
        ),
    )
    if not parsed.positionals:
        raise Failure("Did not receive any command to run inside environment")
    _root_prefix(parsed)
    if "prefix" not in parsed.values:
        raise Failure("No target prefix specified (use -p/--prefix)")
    prefix = Path(str(parsed.values["prefix"])).absolute()
    if not (prefix / "conda-meta").is_dir():
        raise Failure(f"Cannot activate, prefix does not exist at: '{prefix}'")
    base = {} if parsed.values.get("clean_env") else dict(os.environ)
    exports, scripts = activation(prefix, base)
    env = {**base, **exports}
    for item in parsed.values.get("env", []):  # type: ignore[union-attr]
        key, _, value = str(item).partition("=")
        env[key] = value
    command = list(parsed.positionals)
    if scripts:
        sources = "".join(f". {_quote(str(s))}\n" for s in scripts)
        command = ["/bin/sh", "-c", f'{sources}exec "$@"', "micromamba-run", *command]
    entry = _proc_registration()
    try:
        child = subprocess.Popen(command, env=env, cwd=str(parsed.values.get("cwd") or "."))
    except FileNotFoundError as exc:
        raise Failure(f"Could not run {command[0]!r}: {exc}") from exc
    # Like the real one, only SIGTERM is forwarded to the child.
    previous = signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    try:
        rc = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if entry is not None:
            entry.unlink(missing_ok=True)
    return rc if rc >= 0 else 128 - rc


# ---------------------------------------------------------------- entry point

_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "create": _create,
    "shell": _shell,
    "run": _run,
}


def _dispatch(argv: Sequence[str]) -> int:
    if not argv:
        raise CliError(
            "A subcommand is required\nRun with --help for more information.", EXIT_EXTRAS
        )
    if argv[0] == "--version":
        print(double_version())
        return 0
    command = _COMMANDS.get(argv[0])
    if command is None:
        raise _extras([argv[0]])
    return command(argv[1:])


def main(argv: Sequence[str]) -> int:
    call_id = f"{os.getpid()}-{secrets.token_hex(4)}"
    base = {"call_id": call_id, "argv": list(argv), "pid": os.getpid(), "cwd": os.getcwd()}
    env = {k: os.environ[k] for k in LOGGED_ENV if k in os.environ}
    _log({**base, "event": "start", "time": time.time(), "env": env})
    try:
        rc = _dispatch(argv)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        rc = exc.code
    except Failure as exc:
        print(f"critical libmamba {exc}", file=sys.stderr)
        rc = 1
    _log({**base, "event": "end", "time": time.time(), "rc": rc})
    return rc


# ---------------------------------------------------------------- launcher for tests


@dataclass(frozen=True)
class MicromambaDouble:
    bin_dir: Path
    executable: Path

    def env(self, tmp: Path, **extra: str) -> dict[str, str]:
        """os.environ with the double first on PATH and its state under `tmp`."""
        env = dict(os.environ)
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            MAMBA_ROOT_PREFIX=str(tmp / "mamba"),
            CONDA_PKGS_DIRS=str(tmp / "pkgs"),
            MICROMAMBA_DOUBLE_LOG=str(tmp / "micromamba-calls.jsonl"),
        )
        for key in (
            "CONDA_PREFIX",
            "CONDA_SHLVL",
            "MICROMAMBA_DOUBLE_PAUSE",
            "MICROMAMBA_DOUBLE_FAIL",
            "MICROMAMBA_DOUBLE_VERSION",
        ):
            env.pop(key, None)
        env.update(extra)
        return env


def install_launcher(bin_dir: Path) -> MicromambaDouble:
    """Write `bin_dir/micromamba`, an executable running this double with the test venv."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "micromamba"
    launcher.write_text(
        f"#!{sys.executable}\n"
        '"""micromamba test double launcher (tests/support/micromamba_double.py)."""\n'
        "import os, sys\n"
        f"sys.path.insert(0, {str(_REPO)!r})\n"
        "from tests.support.micromamba_double import main\n"
        "rc = main(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        "sys.stderr.flush()\n"
        "# rattler's runtime threads can crash a finalizing interpreter: skip finalization.\n"
        "os._exit(rc)\n"
    )
    launcher.chmod(0o755)
    return MicromambaDouble(bin_dir=bin_dir, executable=launcher)
