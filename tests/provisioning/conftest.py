"""Fixtures of the provisioning scenarios: `site`, a fresh deployment per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.provisioning.deployment import Site, make_site
from tests.support.fixtures import (  # noqa: F401  (fixtures used by this directory)
    cuda_lock,
    local_channel,
    micromamba_double,
    wheelhouse,
)
from tests.support.lockfiles import LockBundle
from tests.support.micromamba_double import MicromambaDouble
from tests.support.wheels import Wheelhouse


@pytest.fixture
def site(
    tmp_path: Path,
    cuda_lock: LockBundle,  # noqa: F811
    micromamba_double: MicromambaDouble,  # noqa: F811
    wheelhouse: Wheelhouse,  # noqa: F811
) -> Site:
    return make_site(tmp_path, cuda_lock, micromamba_double, wheelhouse)
