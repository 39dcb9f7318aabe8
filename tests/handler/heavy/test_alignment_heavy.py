"""Word timings (handler.alignment): whisperx's real alignment on a tiny random wav2vec2."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from handler.alignment import (
    AlignmentSegment,
    finalize_words,
    load_aligner,
    plan_segments,
    try_load_aligner,
)
from handler.contracts import SynthesisParams

TEXT = "Good morning, everyone. The train to Lisbon leaves at nine! Don't be late."


@pytest.fixture(scope="module")
def aligner(tiny_models):
    loaded = load_aligner(tiny_models.settings())
    assert loaded is not None
    return loaded


def noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def assert_monotonic_inside(words, duration_s: float) -> None:
    previous_end = 0.0
    for word in words:
        assert previous_end <= word.start <= word.end <= duration_s, word
        previous_end = word.end


def test_generated_speech_gets_one_monotonic_timing_per_word_of_the_known_text(
    tiny_models, tiny_engine, aligner
):
    audio = tiny_engine.synthesize(tiny_models.reference(), TEXT, SynthesisParams(nfe_step=4))
    duration = audio.size / tiny_engine.sample_rate

    words = aligner.align(audio, tiny_engine.sample_rate, TEXT)

    assert [w.text for w in words] == TEXT.split()
    assert_monotonic_inside(words, duration)
    assert words[-1].end > words[0].start
    assert all(w.score is not None for w in words), "every word was timed by whisperx itself"


def test_long_audio_is_aligned_in_sentence_windows_and_stays_inside_it(aligner):
    text = " ".join(f"This is sentence number {i} of a long reading." for i in range(40))
    rate = 24000
    duration = 90.0

    segments = plan_segments(text, duration)
    words = aligner.align(noise(duration, rate), rate, text)

    assert len(segments) >= 3
    assert all(0 <= s.start < s.end <= duration for s in segments)
    assert [w.text for w in words] == text.split()
    assert_monotonic_inside(words, duration)
    assert words[-1].end > duration / 2, "timings spread over the whole reading"


def test_alignment_never_downloads_sentence_splitter_data(aligner, monkeypatch):
    import nltk

    def no_network(*args, **kwargs):
        raise AssertionError("nltk.download was called")

    monkeypatch.setattr(nltk, "download", no_network)
    words = aligner.align(noise(3.0, 16000), 16000, "Short. Two sentences here.")
    assert [w.text for w in words] == ["Short.", "Two", "sentences", "here."]


def test_empty_text_or_empty_audio_gives_no_words(aligner):
    assert aligner.align(noise(1.0, 16000), 16000, "  ") == []
    assert aligner.align(np.zeros(0, np.float32), 16000, "Hello") == []


def test_words_whisperx_could_not_time_are_placed_between_their_neighbours():
    segment = AlignmentSegment("a bb cccc dd e", ("a", "bb", "cccc", "dd", "e"), 0.0, 10.0)
    timings = [
        (1.0, 1.5, 0.9),
        (None, None, None),
        (None, None, None),
        (4.0, 4.5, 0.8),
        (None, None, None),
    ]

    words = finalize_words([segment], [timings], duration_s=10.0)

    assert [w.text for w in words] == ["a", "bb", "cccc", "dd", "e"]
    assert (words[1].start, words[1].end) == (1.5, 2.333)
    assert (words[2].start, words[2].end) == (2.333, 4.0)
    assert (words[4].start, words[4].end) == (4.5, 10.0)
    assert words[1].score is None and words[0].score == 0.9


def test_a_segment_that_failed_to_align_is_spread_over_its_window():
    segment = AlignmentSegment("one two", ("one", "two"), 2.0, 4.0)
    words = finalize_words([segment], [None], duration_s=5.0)
    assert [(w.start, w.end) for w in words] == [(2.0, 3.0), (3.0, 4.0)]


def test_overlapping_windows_never_make_time_go_backwards_or_past_the_end():
    first = AlignmentSegment("x y", ("x", "y"), 0.0, 6.0)
    second = AlignmentSegment("z", ("z",), 4.0, 9.0)
    words = finalize_words(
        [first, second], [[(0.5, 1.0, 1), (5.0, 5.5, 1)], [(4.5, 9.5, 1)]], duration_s=8.0
    )
    assert [(w.start, w.end) for w in words] == [(0.5, 1.0), (5.0, 5.5), (5.5, 8.0)]


def test_short_audio_is_one_segment_over_the_whole_clip():
    segments = plan_segments("One. Two three.", 4.0)
    assert segments == [AlignmentSegment("One. Two three.", ("One.", "Two", "three."), 0.0, 4.0)]


def test_a_run_on_sentence_longer_than_a_window_is_cut_at_word_boundaries():
    text = " ".join(["word"] * 400)
    segments = plan_segments(text, 120.0)
    assert len(segments) >= 5
    assert sum(len(s.tokens) for s in segments) == 400


def test_languages_without_spaces_are_timed_per_character():
    segments = plan_segments("你好世界。", 2.0, spaced=False)
    assert segments[0].tokens == ("你", "好", "世", "界", "。")


def test_without_whisperx_the_aligner_is_none_and_the_reason_is_logged(
    tiny_models, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "whisperx", None)
    with caplog.at_level(logging.WARNING, logger="handler.alignment"):
        assert load_aligner(tiny_models.settings()) is None
    assert "whisperx cannot be imported" in caplog.text


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers, about the broken dir
def test_an_unloadable_model_dir_gives_none_with_a_sentence_naming_it(tiny_models, tmp_path):
    broken = tmp_path / "align"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")

    aligner, reason = try_load_aligner(tiny_models.settings(align_model_dir=broken))

    assert aligner is None
    assert str(broken) in reason and "fetch-models" in reason


def test_another_language_loads_from_the_folder_fetch_models_fills(tiny_models, tmp_path):
    import shutil

    from handler.alignment import language_loader

    volume = tmp_path / "volume"
    shutil.copytree(tiny_models.align_model_dir, volume / "models/align/de")
    load = language_loader(tiny_models.settings(volume=volume, align_model_dir=None))

    german = load("de")

    assert german.language == "de"
    words = german.align(noise(2.0, 24000), 24000, "Guten Morgen zusammen.")
    assert [w.text for w in words] == ["Guten", "Morgen", "zusammen."]


def test_a_language_with_no_model_on_the_volume_is_a_sentence_not_a_download(
    tiny_models, tmp_path, monkeypatch
):
    from handler.alignment import language_loader
    from handler.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load = language_loader(tiny_models.settings(volume=tmp_path, align_model_dir=None))
    with pytest.raises(UserError) as caught:
        load("nl")
    assert (
        "fetch-models" in caught.value.sentence and "F5TTS_ALIGN_LANGUAGES" in caught.value.sentence
    )
