"""Preparing references: clip at a pause, transcribe once, cache by content."""

from __future__ import annotations

import numpy as np
import pytest

from handler import audio
from handler.errors import UserError
from handler.reference import ReferencePreparer, plan_clip, plan_prune
from tests.handler.clips import speechlike, wav_bytes
from tests.handler.doubles import FixedTranscriber

RATE = 24000


def test_short_clips_are_kept_whole():
    samples = speechlike(5.0, RATE)
    assert plan_clip(samples, RATE, 12.0) == samples.size


def test_long_clips_are_cut_in_the_last_pause_before_the_limit():
    samples = speechlike(20.0, RATE, pause_every=5.0)  # pauses at 4.7-5.0, 9.7-10.0, ...
    cut = plan_clip(samples, RATE, 12.0) / RATE
    assert 9.7 <= cut <= 10.0


def test_long_clips_without_a_pause_are_cut_at_the_limit():
    samples = np.full(20 * RATE, 0.3, np.float32)
    assert plan_clip(samples, RATE, 12.0) == 12 * RATE


@pytest.fixture
def preparer(make_settings):
    return ReferencePreparer(make_settings(), RATE, FixedTranscriber("Hello from the clip."))


def test_without_ref_text_the_clip_is_clipped_and_transcribed_once(preparer):
    data = wav_bytes(speechlike(20.0, 16000, pause_every=5.0))
    first = preparer.prepare(data, None)
    second = preparer.prepare(data, None)
    assert first == second
    assert first.text == "Hello from the clip." and 9.5 < first.duration_s <= 12.0
    assert len(preparer.transcriber.calls) == 1
    assert first.audio_path.is_file()


def test_with_ref_text_the_clip_is_not_clipped_and_not_transcribed(preparer):
    data = wav_bytes(speechlike(15.0, 16000))
    prepared = preparer.prepare(data, "  Exactly what I said.  ")
    assert prepared.text == "Exactly what I said." and abs(prepared.duration_s - 15.0) < 0.05
    assert preparer.transcriber.calls == []


def test_a_cached_reference_is_not_decoded_again(preparer, monkeypatch):
    data = wav_bytes(speechlike(3.0, 16000))
    preparer.prepare(data, "Text.")

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded twice")

    monkeypatch.setattr(audio, "decode", no_decode)
    assert preparer.prepare(data, "Other text.").text == "Other text."


def test_missing_ref_text_without_a_recogniser_asks_for_ref_text(make_settings):
    preparer = ReferencePreparer(make_settings(), RATE, None)
    with pytest.raises(UserError, match="send ref_text"):
        preparer.prepare(wav_bytes(speechlike(3.0, 16000)), None)


def test_too_short_and_too_long_references_are_refused(make_settings):
    preparer = ReferencePreparer(make_settings(max_ref_seconds=10), RATE, None)
    with pytest.raises(UserError, match=r"only 0\.3 s"):
        preparer.prepare(wav_bytes(speechlike(0.3, 16000)), "Hi.")
    with pytest.raises(UserError, match="F5TTS_MAX_REF_SECONDS"):
        preparer.prepare(wav_bytes(speechlike(11.0, 16000)), "Hi.")


def test_prune_plan_drops_the_least_recently_used_beyond_the_limit():
    entries = [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 4.0)]
    assert plan_prune(entries, 4, "d") == []
    assert plan_prune(entries, 2, "d") == ["b", "c"]
    assert plan_prune(entries, 1, "b") == ["c", "a", "d"]


def test_the_cache_keeps_at_most_the_configured_entries(make_settings):
    preparer = ReferencePreparer(make_settings(ref_cache_entries=2), RATE, None)
    for seconds in (2.0, 2.5, 3.0):
        preparer.prepare(wav_bytes(speechlike(seconds, 16000)), "Text.")
    root = preparer.settings.reference_cache_dir
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) == 2
