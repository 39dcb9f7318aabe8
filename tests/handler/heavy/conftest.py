"""Every test in this directory loads real models (torch, f5-tts, whisperx), so all of
them carry the `heavy` marker and `./scripts/test --fast` skips them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support_models.fixtures import tiny_engine, tiny_models

__all__ = ["tiny_engine", "tiny_models"]

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.heavy)
