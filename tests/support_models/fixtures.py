"""pytest fixtures over the tiny models; import them into a conftest.py to use them."""

from __future__ import annotations

import pytest

from tests.support_models.tiny import TinyModels, build_tiny_volume


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, ffmpeg_bin_dir) -> TinyModels:
    """A volume holding tiny F5-TTS, vocoder, alignment and ASR models (built once).

    ffmpeg goes on PATH first, as in the real environment (pydub looks for it on import).
    """
    return build_tiny_volume(tmp_path_factory.mktemp("tiny-models"), with_asr=True)


@pytest.fixture(scope="session")
def tiny_engine(tiny_models: TinyModels):
    """The real handler.engine loaded from the tiny volume."""
    from handler.engine import load_engine

    return load_engine(tiny_models.settings())


def engine_sharing_weights(engine, *, max_chunks: int, chunk_frames: int):
    """Another F5Engine over `engine`'s model and vocoder, with its own batch and chunk
    budgets (short chunks make many of them quickly on a CPU)."""
    from handler.engine import F5Engine
    from handler.engine.chunking import ChunkBudget
    from handler.engine.scheduler import BatchBudget

    return F5Engine(
        engine.model,
        engine.vocoder,
        engine.device,
        engine.model_name,
        budget=BatchBudget(max_chunks=max_chunks),
        chunk_budget=ChunkBudget(max_frames=chunk_frames),
    )
