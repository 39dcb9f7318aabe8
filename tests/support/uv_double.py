"""A test double of `uv pip compile` (uv 0.13.9) for exact pins, offline.

Implements what bootstrap/relock.py runs: `uv pip compile --no-deps --generate-hashes
--python-version V --python-platform P --no-header --quiet --only-binary :all:
SRC -o OUT`, and `uv --version`. The flags and messages were read from the real uv
0.13.9 (`pip install uv==0.13.9`; `uv pip compile --help`): an unknown argument
exits 2 (`error: unexpected argument '--x' found`), an unsatisfiable pin exits 1.

Each `name==version` line of SRC is looked up in the directory $UV_FIND_LINKS (a
real uv variable): its wheels and sdist give the `--hash=sha256:` lines, as uv
lists every file of the release. `--only-binary :all:` refuses a pin that has no
wheel unless SRC says `--no-binary NAME`, as the real uv does.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.support.pins import pins

FLAGS = {"--no-deps", "--generate-hashes", "--no-header", "--quiet"}
OPTIONS = {"--python-version", "--python-platform", "--only-binary", "-o", "--output-file"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


class UvError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parse(args: Sequence[str]) -> tuple[set[str], dict[str, str], list[str]]:
    flags: set[str] = set()
    options: dict[str, str] = {}
    sources: list[str] = []
    items = iter(args)
    for arg in items:
        if arg in FLAGS:
            flags.add(arg)
        elif arg in OPTIONS:
            value = next(items, None)
            if value is None:
                raise UvError(f"error: a value is required for '{arg}' but none was supplied", 2)
            options["-o" if arg == "--output-file" else arg] = value
        elif arg.startswith("-"):
            raise UvError(f"error: unexpected argument '{arg}' found", 2)
        else:
            sources.append(arg)
    if len(sources) != 1:
        raise UvError("error: the uv double compiles exactly one requirements file", 2)
    return flags, options, sources


def _read_source(path: Path) -> tuple[list[tuple[str, str]], set[str]]:
    pins_found, no_binary = [], set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("--no-binary"):
            no_binary.add(canonicalize_name(line.split(None, 1)[1]))
            continue
        match = PIN.match(line)
        if not match:
            raise UvError(f"error: the uv double reads exact pins only, not `{line}`", 2)
        pins_found.append((match[1], match[2]))
    return pins_found, no_binary


def _files(find_links: Path, name: str, version: str) -> tuple[list[Path], list[Path]]:
    stem = re.sub(r"[-_.]+", "_", name).lower()
    wheels = sorted(find_links.glob(f"{stem}-{version}-*.whl"))
    sdists = [
        p for p in find_links.glob("*.tar.gz") if p.name.lower() in {f"{stem}-{version}.tar.gz"}
    ]
    return wheels, sdists


def _entry(name: str, version: str, files: Sequence[Path], source: str) -> str:
    hashes = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    lines = [f"{name}=={version} \\"]
    lines += [f"    --hash=sha256:{h} \\" for h in hashes[:-1]]
    lines += [f"    --hash=sha256:{hashes[-1]}", f"    # via -r {source}"]
    return "\n".join(lines)


def compile_pins(args: Sequence[str]) -> int:
    flags, options, (source,) = _parse(args)
    if "--no-deps" not in flags or "--generate-hashes" not in flags:
        raise UvError("error: the uv double compiles with --no-deps --generate-hashes only", 2)
    find_links = os.environ.get("UV_FIND_LINKS")
    if not find_links:
        raise UvError("error: the uv double resolves from $UV_FIND_LINKS only (offline)", 2)
    pinned, no_binary = _read_source(Path(source))
    only_binary_all = options.get("--only-binary") == ":all:"
    entries = []
    for name, version in sorted(pinned, key=lambda p: canonicalize_name(p[0])):
        wheels, sdists = _files(Path(find_links), name, version)
        if not wheels and not sdists:
            raise UvError(
                "error: No solution found when resolving dependencies\n"
                f"  cause: Because {name} was not found in the package registry and you "
                f"require {name}=={version}, we can conclude that your requirements are "
                "unsatisfiable.",
                1,
            )
        if only_binary_all and not wheels and canonicalize_name(name) not in no_binary:
            raise UvError(
                "error: No solution found when resolving dependencies\n"
                f"  cause: Because {name}=={version} has no usable wheels and you require "
                f"{name}=={version}, we can conclude that your requirements are unsatisfiable.",
                1,
            )
        entries.append(_entry(name, version, [*wheels, *sdists], source))
    Path(options["-o"]).write_text("\n".join(entries) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str]) -> int:
    try:
        if list(argv) == ["--version"]:
            print(f"uv {pins()['UV_VERSION']} (test double)")
            return 0
        if list(argv[:2]) != ["pip", "compile"]:
            raise UvError(f"error: the uv double implements `pip compile` only, not {argv[:2]}", 2)
        return compile_pins(argv[2:])
    except UvError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
