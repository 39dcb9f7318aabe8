"""The real F5-TTS engine (handler.engine) on tiny random weights in the volume layout.

Batching, noise and upstream equality: test_engine_batching_heavy.py; the model's
limits: test_engine_limits_heavy.py.
"""

from __future__ import annotations

import base64
import tempfile
import threading
import time

import numpy as np
import pytest

from handler.contracts import SynthesisParams
from handler.engine import (
    EngineFilesMissing,
    crossfade,
    load_engine,
    remove_long_silences,
    resolve_engine_files,
)
from handler.engine.chunking import model_ref_text
from tests.support_models.fixtures import engine_sharing_weights

FAST = SynthesisParams(nfe_step=4, seed=7)
SHORT_TEXT = "The quick brown fox jumps over the lazy dog."
LONG_TEXT = " ".join(
    f"Sentence number {i} tells a small part of a long story, and it keeps going for a while."
    for i in range(12)
)


def expected_seconds(tiny_models, text: str, speed: float = 1.0) -> float:
    """F5-TTS's duration rule: the reference's seconds per UTF-8 byte, times the text."""
    ref_bytes = len(model_ref_text(tiny_models.reference_text).encode())
    return tiny_models.reference().duration_s / ref_bytes * len(text.encode()) / speed


def test_engine_loads_tiny_weights_from_volume_layout_and_speaks_at_24khz(tiny_models):
    started = time.perf_counter()
    engine = load_engine(tiny_models.settings())
    audio = engine.synthesize(tiny_models.reference(), SHORT_TEXT, FAST)
    elapsed = time.perf_counter() - started

    assert engine.sample_rate == 24000
    assert engine.model_name == "F5TTS_v1_Base"
    assert engine.device == "cpu"
    assert next(engine.model.parameters()).dtype.is_floating_point
    assert str(next(engine.model.parameters()).dtype) == "torch.float32"
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 1e-3, "random weights must still produce sound"
    seconds = audio.size / engine.sample_rate
    assert seconds == pytest.approx(expected_seconds(tiny_models, SHORT_TEXT), rel=0.15)
    assert elapsed < 5.0


def test_same_seed_gives_identical_samples_and_another_seed_differs(tiny_models, tiny_engine):
    reference = tiny_models.reference()
    first = tiny_engine.synthesize(reference, SHORT_TEXT, SynthesisParams(nfe_step=4, seed=11))
    again = tiny_engine.synthesize(reference, SHORT_TEXT, SynthesisParams(nfe_step=4, seed=11))
    other = tiny_engine.synthesize(reference, SHORT_TEXT, SynthesisParams(nfe_step=4, seed=12))

    np.testing.assert_array_equal(first, again)
    assert first.shape == other.shape
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("text", ["", "   \n "])
def test_text_with_nothing_to_speak_is_the_callers_error(tiny_models, tiny_engine, text):
    from handler.errors import UserError

    with pytest.raises(UserError, match="nothing to speak"):
        tiny_engine.synthesize(tiny_models.reference(), text, SynthesisParams(nfe_step=2))


def small_chunk_engine(tiny_engine, max_chunks=4):
    """The tiny model with ~4 s chunks, so a long text makes many of them quickly."""
    return engine_sharing_weights(tiny_engine, max_chunks=max_chunks, chunk_frames=400)


def test_long_text_is_spoken_in_chunks_with_a_progress_call_after_each_batch(
    tiny_models, tiny_engine
):
    engine = small_chunk_engine(tiny_engine, max_chunks=4)
    reference = tiny_models.reference()
    chunks = engine.plan(reference, LONG_TEXT, FAST)
    calls: list[tuple[int, int]] = []

    audio = engine.synthesize(
        reference, LONG_TEXT, FAST, on_progress=lambda done, total: calls.append((done, total))
    )

    n = len(chunks)
    assert n >= 9
    assert " ".join(c.text for c in chunks) == LONG_TEXT
    # the first chunk alone (scheduler: a job's first chunk runs without its others)
    assert calls == [(1, n)] + [(min(done, n), n) for done in range(5, n + 4, 4)]
    fades = (n - 1) * FAST.cross_fade_duration
    seconds = audio.size / engine.sample_rate
    assert seconds == pytest.approx(expected_seconds(tiny_models, LONG_TEXT) - fades, rel=0.15)


def test_long_text_with_a_seed_is_reproducible_across_chunks(tiny_models, tiny_engine):
    engine = small_chunk_engine(tiny_engine)
    reference = tiny_models.reference()
    text = LONG_TEXT[:180]  # four chunks, two batches
    first = engine.synthesize(reference, text, FAST)
    again = engine.synthesize(reference, text, FAST)
    assert len(engine.plan(reference, text, FAST)) == 4
    np.testing.assert_array_equal(first, again)


def test_double_speed_halves_the_duration(tiny_models, tiny_engine):
    reference = tiny_models.reference()
    normal = tiny_engine.synthesize(reference, SHORT_TEXT, FAST)
    fast = tiny_engine.synthesize(
        reference, SHORT_TEXT, SynthesisParams(nfe_step=4, seed=7, speed=2.0)
    )
    assert fast.size / normal.size == pytest.approx(0.5, rel=0.1)


def test_jobs_leave_no_temp_files_and_no_growth_of_f5_module_caches(
    tiny_models, tiny_engine, tmp_path, monkeypatch
):
    from f5_tts.infer import utils_infer

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    for seed in range(3):
        tiny_engine.synthesize(
            tiny_models.reference(), SHORT_TEXT, SynthesisParams(nfe_step=2, seed=seed)
        )

    assert list(scratch.iterdir()) == []
    assert utils_infer._ref_audio_cache == {}
    assert utils_infer._ref_text_cache == {}


def test_model_passes_of_jobs_on_two_threads_never_overlap(tiny_models, tiny_engine):
    engine = small_chunk_engine(tiny_engine, max_chunks=2)
    real = engine.model.sample
    active = {"now": 0, "max": 0}
    guard = threading.Lock()

    def counting(*args, **kwargs):
        with guard:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        try:
            time.sleep(0.02)
            return real(*args, **kwargs)
        finally:
            with guard:
                active["now"] -= 1

    engine.model.sample = counting
    try:
        jobs = [
            threading.Thread(
                target=engine.synthesize, args=(tiny_models.reference(), LONG_TEXT[:400], FAST)
            )
            for _ in range(2)
        ]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join()
    finally:
        del engine.model.sample

    assert active["max"] == 1


def test_missing_weights_name_every_path_and_the_fix(tmp_path, tiny_models):
    empty_volume = tmp_path / "volume"
    settings = tiny_models.settings(volume=empty_volume)

    with pytest.raises(EngineFilesMissing) as raised:
        load_engine(settings)

    message = str(raised.value)
    model_dir = empty_volume / "models" / "f5tts" / "F5TTS_v1_Base"
    assert str(model_dir / "model_1250000.safetensors") in message
    assert str(model_dir / "vocab.txt") in message
    assert str(empty_volume / "models" / "vocos-mel-24khz" / "config.yaml") in message
    assert "fetch-models" in message
    assert message.count(".") >= 1 and "\n" not in message


def test_arch_config_defaults_to_the_packaged_yaml_of_the_model_name(tiny_models):
    files = resolve_engine_files(tiny_models.settings(arch_config=None))
    assert files.arch_config.name == "F5TTS_v1_Base.yaml"
    assert files.arch_config.is_file()
    assert files.ckpt_file == tiny_models.ckpt_file
    assert files.vocoder_dir == tiny_models.vocoder_dir


def test_explicit_paths_win_over_the_volume_layout(tmp_path, tiny_models):
    files = resolve_engine_files(
        tiny_models.settings(ckpt_file=str(tmp_path / "x.safetensors"), vocoder_dir=tmp_path)
    )
    assert files.ckpt_file == tmp_path / "x.safetensors"
    assert files.vocoder_dir == tmp_path


def test_crossfade_overlaps_each_join():
    waves = [np.ones(100, np.float32), np.ones(100, np.float32), np.ones(50, np.float32)]
    joined = crossfade(waves, 10)
    assert joined.size == 250 - 2 * 10
    np.testing.assert_allclose(joined, 1.0)
    assert crossfade(waves, 0).size == 250


def test_remove_silence_cuts_long_pauses_down():
    rate = 24000
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate).astype(np.float32)
    wave = np.concatenate([tone, np.zeros(3 * rate, np.float32), tone])

    trimmed = remove_long_silences(wave, rate)

    assert trimmed.size < wave.size - rate
    assert trimmed.size >= 2 * rate


def test_an_inline_output_that_fits_is_not_refused_for_a_short_transcript(
    tiny_models, tiny_engine, tmp_path
):
    """With the transcript "Hi" the size estimate was 2.5x what the engine makes, so an
    output well inside F5TTS_MAX_INLINE_BYTES was refused before any synthesis."""
    from handler.jobs import JobRunner, Models
    from handler.settings import Settings

    job = {
        "text": "Hello there. " * 4,
        "ref_audio_base64": base64.b64encode(tiny_models.reference_wav.read_bytes()).decode(),
        "ref_text": "Hi",
        "nfe_step": 4,
        "seed": 1,
    }

    def runner(limit: int) -> JobRunner:
        settings = Settings(volume=tmp_path, warmup=False, max_inline_bytes=limit)
        return JobRunner(settings, Models(tiny_engine), None)

    size = runner(10**9).run("j", job)["audio"]["bytes"]
    assert runner(size).run("j", job)["audio"]["bytes"] == size
