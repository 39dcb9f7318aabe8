"""The bootstrap tests use the provisioning kit (tests/support/README.md)."""

from __future__ import annotations

import pytest

from tests.support.lockfiles import LockBundle


@pytest.fixture(scope="session")
def lock_bundle(cuda_lock: LockBundle) -> LockBundle:
    """The kit's CUDA lock, its content hash as `conda-lock lock` writes it."""
    return cuda_lock
