"""pytest fixtures of the provisioning test kit.

Register with `pytest_plugins = ("tests.support.fixtures",)` in tests/conftest.py, or
import the fixtures into a module. Expensive values are cached process-wide, so
importing the fixtures into several modules still builds the channel once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.conda_channel import LocalChannel, build_channel
from tests.support.lock_kit import LockRun, make_lock_run
from tests.support.lockfiles import LockBundle, write_lock
from tests.support.micromamba_double import MicromambaDouble, install_launcher
from tests.support.wheels import Wheelhouse, build_wheelhouse

_CACHE: dict[str, Any] = {}


def _cached(key: str, make: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


@pytest.fixture(scope="session")
def local_channel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """The shared local channel. Read-only: use `private_channel` to corrupt one."""
    return _cached(
        "channel", lambda: build_channel(tmp_path_factory.mktemp("conda-channel") / "channel")
    )


@pytest.fixture(scope="session")
def cuda_lock(tmp_path_factory: pytest.TempPathFactory, local_channel: LocalChannel) -> LockBundle:
    """conda-lock.yml (CUDA pytorch) of `DEFAULT_SPECS` against the shared channel."""
    return _cached("cuda_lock", lambda: write_lock(local_channel, tmp_path_factory.mktemp("lock")))


@pytest.fixture(scope="session")
def micromamba_double(tmp_path_factory: pytest.TempPathFactory) -> MicromambaDouble:
    return _cached(
        "double", lambda: install_launcher(tmp_path_factory.mktemp("micromamba-double") / "bin")
    )


@pytest.fixture
def micromamba_env(micromamba_double: MicromambaDouble, tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses: the double on PATH, its root, cache and log in tmp_path."""
    return micromamba_double.env(tmp_path)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    return _cached("wheelhouse", lambda: build_wheelhouse(tmp_path_factory.mktemp("wheelhouse")))


@pytest.fixture
def private_channel(local_channel: LocalChannel) -> Callable[[Path], LocalChannel]:
    """Factory: a full copy of the channel at `dest`, free to corrupt."""
    return local_channel.copy_to


@pytest.fixture(scope="session")
def pinned_micromamba(tmp_path_factory: pytest.TempPathFactory) -> MicromambaDouble:
    """The micromamba double answering `--version` with bootstrap/pins.env's version."""
    return _cached(
        "pinned-double",
        lambda: install_launcher(tmp_path_factory.mktemp("pinned-micromamba") / "bin"),
    )


@pytest.fixture
def lock_run(
    tmp_path: Path,
    local_channel: LocalChannel,
    wheelhouse: Wheelhouse,
    pinned_micromamba: MicromambaDouble,
) -> LockRun:
    """A fresh clone without conda-lock.yml, and how to run its bootstrap/lock."""
    return make_lock_run(tmp_path, local_channel, wheelhouse, pinned_micromamba)
