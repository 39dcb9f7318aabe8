"""The pip leftovers are installed with --no-deps, so everything they need must come
from environment.yml (conda-forge) or from another leftover, at a version they
accept. This reads each leftover's declared requirements (names and version
specifiers) from its installed metadata and proves both; environment.yml is read
with conda-lock's own parser, as the lock sees it."""

from __future__ import annotations

import importlib.metadata as md
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {
    "torch": "pytorch",
    "soundfile": "pysoundfile",
    "matplotlib": "matplotlib-base",
    "brotli": "brotli-python",
}

# Declared requirements the worker never imports, each with the reason.
NOT_NEEDED = {
    "gradio": "f5-tts's web UI (f5_tts.infer.infer_gradio); the worker has no UI",
    "bitsandbytes": "f5-tts's 8-bit optimizers for training only",
    "transformers-stream-generator": "f5-tts's chat-style text streaming, unused by inference",
    "inquirerpy": "runpod's interactive CLI (runpodctl project), not the serverless worker",
    "ctranslate2": "whisperx's ASR backend; alignment of known text needs no ASR",
    "faster-whisper": "whisperx's ASR; alignment of known text needs no ASR",
    "pyannote-audio": "whisperx's diarization, not used",
    "torchvision": "whisperx pins it but alignment never imports it",
    "triton": "comes with conda-forge's CUDA pytorch as its own dependency",
}
# Modules imported lazily where the env is not the interpreter, each with the reason.
NOT_IN_ENV_IMPORTS = {
    "conda_lock": "only check-lock and bootstrap/lock, on a maintainer's machine",
}
NEVER_IN_ENV = {"gradio", "bitsandbytes", "torch", "torchaudio", "pytorch"}
# Floors our own code needs, which no package metadata declares: conda name -> (spec, why).
OWN_FLOORS = {
    "transformers": (">=4.56", "handler/asr.py calls pipeline(dtype=...), new in 4.56"),
    "setuptools": (
        ">=70.1",
        "builds the declared sdists with --no-build-isolation; bdist_wheel is in setuptools "
        "from 70.1, so no `wheel` package is needed",
    ),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)


def conda_names() -> set[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        assert isinstance(dep, str), "environment.yml must have no pip: section"
        names.add(canonicalize_name(re.split(r"[\s=<>!]", dep, maxsplit=1)[0]))
    return names


def pins(filename: str) -> dict[str, str]:
    text = (REPO / "requirements" / filename).read_text()
    return {canonicalize_name(n): v for n, v in PIN.findall(text)}


def leftovers() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((REPO / "requirements").glob("leftovers*.in")):
        found |= pins(path.name)
    return found


LINUX_PY311 = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "extra": "",
}


def runtime_specifiers(dist: md.Distribution) -> dict[str, SpecifierSet]:
    """What a distribution requires on linux-64, Python 3.11: name -> specifiers."""
    found: dict[str, SpecifierSet] = {}
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(LINUX_PY311):
            name = canonicalize_name(requirement.name)
            found[name] = found.get(name, SpecifierSet()) & requirement.specifier
    return found


def installed(name: str) -> md.Distribution:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        pytest.skip(f"{name} is not installed in this test tier")


@pytest.mark.parametrize("name", sorted(leftovers()))
def test_every_requirement_of_a_leftover_is_in_the_env(name):
    dist = installed(name)
    assert canonicalize_name(dist.version) == canonicalize_name(leftovers()[name]), (
        f"{name} {dist.version} is installed but leftovers pin {leftovers()[name]}"
    )
    provided = conda_names() | set(leftovers())
    missing = {
        req
        for req in runtime_specifiers(dist)
        if canonicalize_name(CONDA_NAME.get(req, req)) not in provided and req not in NOT_NEEDED
    }
    assert not missing, f"{name} needs {sorted(missing)}: add them to environment.yml"


# ---------------------------------------------------------------- version floors


@dataclass
class Range:
    """The versions a specifier set allows, as an interval minus single versions."""

    low: Version | None = None
    low_inclusive: bool = True
    high: Version | None = None
    high_inclusive: bool = True
    excluded: set[Version] = field(default_factory=set)

    def raise_low(self, version: Version, inclusive: bool) -> None:
        if self.low is None or version > self.low or (version == self.low and not inclusive):
            self.low, self.low_inclusive = version, inclusive

    def lower_high(self, version: Version, inclusive: bool) -> None:
        if self.high is None or version < self.high or (version == self.high and not inclusive):
            self.high, self.high_inclusive = version, inclusive

    def allows(self, version: Version) -> bool:
        above = (
            self.low is None or version > self.low or (version == self.low and self.low_inclusive)
        )
        below = (
            self.high is None
            or version < self.high
            or (version == self.high and self.high_inclusive)
        )
        return above and below and version not in self.excluded

    def within(self, other: Range) -> bool:
        """Every version this range allows, `other` allows too."""
        low_ok = other.low is None or (
            self.low is not None
            and (
                self.low > other.low
                or (self.low == other.low and (other.low_inclusive or not self.low_inclusive))
            )
        )
        high_ok = other.high is None or (
            self.high is not None
            and (
                self.high < other.high
                or (self.high == other.high and (other.high_inclusive or not self.high_inclusive))
            )
        )
        return low_ok and high_ok and all(not self.allows(v) for v in other.excluded)


def _next_release(version: str) -> Version:
    """The first version above a `.*` prefix or a `~=` base: 2.8 -> 2.9, 0.4.6 -> 0.4.7."""
    parts = [int(p) for p in version.split(".")]
    return Version(".".join(map(str, [*parts[:-1], parts[-1] + 1])))


def version_range(specifiers: SpecifierSet) -> Range:
    result = Range()
    for spec in specifiers:
        op, raw = spec.operator, spec.version
        if op in ("==", "===") and raw.endswith(".*"):
            result.raise_low(Version(raw[:-2]), True)
            result.lower_high(_next_release(raw[:-2]), False)
        elif op in ("==", "==="):
            result.raise_low(Version(raw), True)
            result.lower_high(Version(raw), True)
        elif op == "~=":
            result.raise_low(Version(raw), True)
            result.lower_high(_next_release(raw.rsplit(".", 1)[0]), False)
        elif op in (">=", ">"):
            result.raise_low(Version(raw), op == ">=")
        elif op in ("<=", "<"):
            result.lower_high(Version(raw), op == "<=")
        elif op == "!=" and not raw.endswith(".*"):
            result.excluded.add(Version(raw))
        else:
            raise AssertionError(f"no range for the specifier {spec}")
    return result


def conda_specifiers(version: str) -> SpecifierSet:
    """A conda version constraint (as conda-lock parses environment.yml) as PEP 440."""
    if "|" in version:
        raise AssertionError(f"environment.yml: `{version}` (an alternative) is not checkable")
    parts = []
    for part in filter(None, (p.strip() for p in version.split(","))):
        if part[0].isdigit():  # conda: `2.8.*`, and a bare `2.8` means 2.8.*
            part = "==" + (part if part.endswith("*") else part + ".*")
        parts.append(str(Specifier(part)))
    return SpecifierSet(",".join(parts))


@cache
def env_constraints(environment: Path = REPO / "environment.yml") -> dict[str, SpecifierSet]:
    from conda_lock.lookup import DEFAULT_MAPPING_URL
    from conda_lock.src_parser import make_lock_spec

    spec = make_lock_spec(
        src_files=[environment], platform_overrides=["linux-64"], mapping_url=DEFAULT_MAPPING_URL
    )
    return {
        canonicalize_name(dep.name): conda_specifiers(dep.version or "")
        for dep in spec.dependencies["linux-64"]
    }


def floor_problems(requirer: str, needs: dict[str, SpecifierSet]) -> list[str]:
    problems = []
    constraints = env_constraints()
    pinned = leftovers()
    for name, wanted in sorted(needs.items()):
        conda = canonicalize_name(CONDA_NAME.get(name, name))
        if name in NOT_NEEDED or not str(wanted):
            continue
        if name in pinned:
            if Version(pinned[name]) not in wanted:
                problems.append(
                    f"{requirer} needs {name}{wanted}, but the leftovers pin {pinned[name]}"
                )
        elif conda in constraints:
            allowed = constraints[conda]
            if not version_range(allowed).within(version_range(wanted)):
                problems.append(
                    f"{requirer} needs {name}{wanted}, but environment.yml allows "
                    f"{conda}{allowed or ' (any version)'}"
                )
    return problems


@pytest.mark.parametrize("name", sorted(leftovers()))
def test_environment_yml_allows_only_versions_each_leftover_accepts(name):
    problems = floor_problems(name, runtime_specifiers(installed(name)))
    assert not problems, "tighten environment.yml (then relock): " + "; ".join(problems)


def test_environment_yml_has_the_floors_our_own_code_needs():
    needs = {name: SpecifierSet(spec) for name, (spec, _why) in OWN_FLOORS.items()}
    for name in needs:
        assert name in env_constraints(), f"{name} is missing from environment.yml"
    assert floor_problems("our code", needs) == []


@pytest.mark.parametrize(
    ("allowed", "wanted", "within"),
    [
        (">=4.56,<5", ">=4.48.0", True),
        (">=4.48,<5", ">=4.56", False),
        ("", ">=3.14.3", False),
        ("2.8.*", "~=2.8.0", True),
        ("2.8.*", ">=2.5", True),
        (">=0.4.6,<0.4.7", "<0.4.7,>=0.4.6", True),
        ("<1", ">=0.8.1,<2.0", False),
        (">=0.8.1,<1", ">=0.8.1,<2.0", True),
        (">=0.6,<0.8", "<0.8.0,>=0.6.0", True),
        (">=2", "!=2.1", False),
        (">=2.2", "!=2.1", True),
    ],
)
def test_a_range_is_within_another_only_when_it_allows_nothing_more(allowed, wanted, within):
    assert (
        version_range(conda_specifiers(allowed)).within(version_range(SpecifierSet(wanted)))
        is within
    )


def test_no_package_is_installed_twice_by_conda_and_pip():
    both = {canonicalize_name(CONDA_NAME.get(n, n)) for n in leftovers()} & conda_names()
    assert not both


def test_the_env_never_gets_a_second_torch_or_training_and_ui_packages():
    assert not set(leftovers()) & NEVER_IN_ENV
    assert not set(NOT_NEEDED) & conda_names() - {"triton"}


def test_each_leftovers_lock_pins_exactly_its_inputs_with_hashes():
    for source in sorted((REPO / "requirements").glob("leftovers*.in")):
        lock = source.with_suffix(".txt")
        assert pins(lock.name) == pins(source.name), f"{lock.name} is not {source.name} alone"
        entries = lock.read_text().split("\n\n")
        assert all("--hash=sha256:" in e for e in entries if "==" in e)


def test_the_conda_spec_pins_cuda_builds_from_conda_forge_only():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert env["platforms"] == ["linux-64"]
    deps = env["dependencies"]
    assert "pytorch=2.8.*=cuda*" in deps and "torchaudio=2.8.*=cuda*" in deps
    assert "cuda-version=12.9.*" in deps and "python=3.11" in deps
    assert {"ffmpeg", "pip", "pyyaml"} <= set(deps)
    assert not any(d.startswith(("flash-attn", "pytorch-cuda", "gradio")) for d in deps)
    vp = yaml.safe_load((REPO / "virtual-packages.yml").read_text())
    assert vp["subdirs"]["linux-64"]["packages"]["__cuda"] == "12.9"


def imported_top_modules(directory) -> set[str]:
    found = set()
    for path in directory.glob("*.py"):
        for match in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", path.read_text(), re.M):
            found.add(match.group(1))
    ours = {"handler", "bootstrap", *NOT_IN_ENV_IMPORTS}
    return found - set(__import__("sys").stdlib_module_names) - ours


@pytest.mark.parametrize("package", ["handler", "bootstrap"])
def test_every_module_the_worker_imports_comes_from_the_env(package):
    providers = md.packages_distributions()
    provided = conda_names() | set(leftovers())
    for module in sorted(imported_top_modules(REPO / package)):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:
            continue  # not installed in this test tier
        assert any(canonicalize_name(CONDA_NAME.get(d, d)) in provided for d in dists), (
            f"{package} imports {module} (from {sorted(dists)}), which the env lacks"
        )
