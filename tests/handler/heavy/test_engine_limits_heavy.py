"""The model's limits, on the real F5-TTS code: the tiny DiT has the real text
embedding with its 8192-position table, so what fails or fits here fails or fits on
the published model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from handler.contracts import PreparedReference, SynthesisParams
from handler.engine.chunking import (
    CHUNK_BUDGET_FRAMES,
    MAX_REF_TEXT_BYTES_PER_SECOND,
    POSITION_TABLE_FRAMES,
    REFERENCE_MAX_SECONDS,
    REFERENCE_PAD_SECONDS,
    TOKENS_PER_BYTE,
    min_ref_text_bytes,
    utf8_len,
)
from handler.engine.vocoder import wave_length

NFE2 = SynthesisParams(nfe_step=2, seed=3)


def long_reference(tiny_models, tmp_path, seconds: float, text: str) -> PreparedReference:
    import soundfile as sf

    samples, rate = sf.read(tiny_models.reference_wav, dtype="float32")
    reps = int(np.ceil(seconds * rate / samples.size))
    clip = np.tile(samples, reps)[: int(seconds * rate)]
    path = tmp_path / f"ref-{seconds}.wav"
    sf.write(path, clip, rate)
    return PreparedReference(path, text, seconds)


def assert_largest_chunk_runs(engine, reference, text, params):
    works = engine.plan(reference, text, params)
    largest = max(works, key=lambda w: w.frames)
    wave = engine.run_batch([largest])[0]
    asked = largest.duration - largest.conditioning.ref_frames
    bound = largest.frames - largest.conditioning.ref_frames
    assert wave_length(asked) <= wave.size <= wave_length(bound)
    assert np.isfinite(wave).all()
    return largest


@pytest.mark.parametrize(
    ("seconds", "density", "speed", "text"),
    [
        # the longest reference, sparse transcript, slowest speed, no spaces at all
        (REFERENCE_MAX_SECONDS + REFERENCE_PAD_SECONDS, None, 0.3, "你" * 400),
        # the longest reference, densest transcript, fastest speed: CFM's token floor
        (
            REFERENCE_MAX_SECONDS + REFERENCE_PAD_SECONDS,
            MAX_REF_TEXT_BYTES_PER_SECOND,
            3.0,
            "a" * 900,
        ),
        # a short reference and ordinary text
        (2.0, 25.0, 1.0, "Words without any punctuation at all " * 40),
    ],
)
def test_the_real_model_runs_the_largest_chunk_the_planner_can_emit(
    tiny_models, tiny_engine, tmp_path, seconds, density, speed, text
):
    n = int(density * seconds) if density else min_ref_text_bytes("x", seconds)
    reference = long_reference(tiny_models, tmp_path, seconds, "x" * n)
    params = SynthesisParams(nfe_step=2, seed=3, speed=speed)
    largest = assert_largest_chunk_runs(tiny_engine, reference, text, params)
    assert largest.frames <= CHUNK_BUDGET_FRAMES
    if density == 25.0:  # nothing but the budget limits this chunk
        assert largest.frames >= CHUNK_BUDGET_FRAMES - 60


def test_past_the_position_table_the_model_fails_as_users_saw(tiny_models, tiny_engine):
    import torch

    (work,) = tiny_engine.plan(tiny_models.reference(), "Hello.", NFE2)
    mel = work.conditioning.mel[None]
    with pytest.raises(RuntimeError, match="8192"), torch.inference_mode():
        tiny_engine.model.sample(
            cond=mel,
            text=["Some call me nature. Hello."],
            duration=POSITION_TABLE_FRAMES + 10,
            steps=2,
        )


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            list("abc XYZ,.'\":;!?-") + list("你好世界中文") + ["é", "ß", "😀"]
        ),
        max_size=200,
    )
)
def test_f5_tts_text_conversion_never_makes_more_tokens_than_the_planner_counts(text):
    from f5_tts.model.utils import convert_char_to_pinyin

    tokens = len(convert_char_to_pinyin([text])[0])
    assert tokens <= int(TOKENS_PER_BYTE * utf8_len(text)) + 1


@settings(max_examples=50, deadline=None)
@example(lead=0.0, body=0.65625, trail=0.18983222332604505, level=0.0625)
@given(
    lead=st.floats(0.0, 1.0),
    body=st.floats(0.1, 2.0),
    trail=st.floats(0.0, 1.0),
    level=st.floats(0.05, 0.9),
)
def test_trimming_matches_upstreams_remove_silence_edges(lead, body, trail, level):
    from f5_tts.infer.utils_infer import remove_silence_edges
    from pydub import AudioSegment

    from handler.reference import EDGE_BELOW_PEAK_DB, EDGE_SILENCE_DBFS, plan_trim

    rate = 24000
    rng = np.random.default_rng(int(body * 1000))
    parts = [
        np.zeros(int(lead * rate)),
        level * rng.uniform(-1, 1, int(body * rate)),
        np.zeros(int(trail * rate)),
    ]
    pcm = (np.concatenate(parts) * 32767).astype("<i2")
    segment = AudioSegment(data=pcm.tobytes(), sample_width=2, frame_rate=rate, channels=1)
    upstream = len(remove_silence_edges(segment).raw_data) // 2

    samples = pcm.astype(np.float32) / 32767
    start, end = plan_trim(samples, rate)
    # Both cut whole 10 ms steps, and pydub rounds lengths to whole milliseconds. A quiet
    # clip gets a lower threshold here (EDGE_BELOW_PEAK_DB), which may keep the partly
    # silent step at each end that upstream cuts; otherwise a step may flip at most once
    # (pydub measures integer RMS). The old bound, one step, failed on a quiet clip.
    peak_db = 20 * np.log10(np.abs(samples).max())
    quiet = peak_db - EDGE_BELOW_PEAK_DB < EDGE_SILENCE_DBFS
    step, millisecond = rate // 100, rate // 1000
    assert abs((end - start) - upstream) <= (2 if quiet else 1) * step + millisecond
