"""The pip leftovers are installed with --no-deps, so everything they need must come
from environment.yml (conda-forge) or from another leftover. This reads each
leftover's declared requirements from its installed metadata and proves it."""

from __future__ import annotations

import importlib.metadata as md
import re

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def runtime_requirements(dist: md.Distribution) -> set[str]:
    needed = set()
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(LINUX_PY311):
            needed.add(canonicalize_name(requirement.name))
    return needed


@pytest.mark.parametrize("name", sorted(leftovers()))
def test_every_requirement_of_a_leftover_is_in_the_env(name):
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        pytest.skip(f"{name} is not installed in this test tier")
    assert canonicalize_name(dist.version) == canonicalize_name(leftovers()[name]), (
        f"{name} {dist.version} is installed but leftovers pin {leftovers()[name]}"
    )
    provided = conda_names() | set(leftovers())
    missing = {
        req
        for req in runtime_requirements(dist)
        if canonicalize_name(CONDA_NAME.get(req, req)) not in provided and req not in NOT_NEEDED
    }
    assert not missing, f"{name} needs {sorted(missing)}: add them to environment.yml"


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
