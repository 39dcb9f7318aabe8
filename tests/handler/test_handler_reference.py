"""Preparing references: clip at a pause, transcribe once, cache by content."""

from __future__ import annotations

import os

import numpy as np
import pytest

from handler import audio
from handler.errors import UserError
from handler.reference import (
    CACHE_LAYOUT,
    PreparedMeta,
    ReferencePreparer,
    plan_clip,
    plan_prune,
    plan_trim,
    write_json_atomic,
)
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


SAID = "Exactly what I said, every word of it, from the start of the clip to its end."


def test_with_ref_text_the_clip_is_not_clipped_and_not_transcribed(preparer):
    data = wav_bytes(speechlike(14.0, 16000))
    prepared = preparer.prepare(data, f"  {SAID}  ")
    assert prepared.text == SAID and abs(prepared.duration_s - (13.7 + 0.05)) < 0.02
    assert preparer.transcriber.calls == []


def test_silent_ends_are_trimmed_and_50_ms_of_silence_appended(preparer):
    speech = speechlike(3.0, 16000)[: int(2.6 * 16000)]  # ends before its first pause
    silence = np.zeros(16000, np.float32)
    prepared = preparer.prepare(wav_bytes(np.concatenate([silence, speech, silence])), SAID)
    assert abs(prepared.duration_s - (2.6 + 0.05)) < 0.02
    samples = audio.decode(prepared.audio_path.read_bytes(), RATE, 30, what="x")
    assert np.abs(samples[-int(0.05 * RATE) :]).max() == 0.0
    assert np.abs(samples[: int(0.02 * RATE)]).max() > 0.01


def test_trimming_follows_pydubs_leading_silence_rule_in_10_ms_steps():
    rate = 24000
    clip = np.concatenate([np.zeros(1234), 0.3 * np.ones(5000), np.zeros(777)]).astype(np.float32)
    start, end = plan_trim(clip, rate)
    assert start == 1200  # whole 10 ms steps of silence: the partly loud one stays
    assert end == clip.size - 720
    quiet = 0.001 * clip  # -60 dBFS speech is not all silence
    assert plan_trim(quiet, rate) == (start, end)


def test_a_clip_with_its_transcript_longer_than_15_s_is_refused_with_the_fix(preparer):
    with pytest.raises(UserError) as refused:
        preparer.prepare(wav_bytes(speechlike(16.5, 16000)), SAID * 3)
    sentence = refused.value.sentence
    assert "16.5 s" in sentence and "limit is 15 s" in sentence
    assert "leave ref_text out" in sentence
    # without a transcript the same clip is cut at a pause and transcribed
    assert preparer.prepare(wav_bytes(speechlike(16.5, 16000)), None).duration_s <= 12.05


@pytest.mark.parametrize(
    ("text", "says"),
    [("Hi.", "too short for its 12.1 s clip"), ("word " * 300, "too long for its 12.1 s clip")],
)
def test_a_transcript_implausible_for_its_clip_is_refused_naming_the_limit(preparer, text, says):
    clip = speechlike(12.0, 16000)
    clip[-int(0.3 * 16000) :] = 0.2  # no silent end to trim
    with pytest.raises(UserError, match=says) as refused:
        preparer.prepare(wav_bytes(clip), text)
    assert "send ref_text with exactly the words" in refused.value.sentence


def test_a_transcription_implausible_for_its_clip_is_refused_too(make_settings):
    preparer = ReferencePreparer(make_settings(), RATE, FixedTranscriber("Hm."))
    with pytest.raises(UserError, match="as transcribed by the speech recogniser"):
        preparer.prepare(wav_bytes(speechlike(20.0, 16000, pause_every=5.0)), None)


def test_entries_of_the_earlier_cache_layout_are_not_reused(preparer):
    data = wav_bytes(speechlike(3.0, 16000))
    prepared = preparer.prepare(data, SAID)
    assert prepared.audio_path.parent.name.endswith(f"-v{CACHE_LAYOUT}") and CACHE_LAYOUT >= 2


def test_a_cached_reference_is_not_decoded_again(preparer, monkeypatch):
    data = wav_bytes(speechlike(3.0, 16000))
    preparer.prepare(data, "Some text.")

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
        preparer.prepare(wav_bytes(speechlike(seconds, 16000)), "Some text.")
    root = preparer.settings.reference_cache_dir
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) == 2


# -- workers sharing the volume ------------------------------------------------------
# Every worker runs the handler as PID 1 of its own container, so a temp name made of
# the pid is the same in all of them.
def test_two_workers_writing_one_cache_entry_at_once_do_not_clash(tmp_path, monkeypatch):
    meta = PreparedMeta(sha256="a", text="Hi.", duration_s=2.0, sample_rate=RATE, clipped=True)
    other = meta.model_copy(update={"text": "Hello."})
    path = tmp_path / "meta.json"
    real_fsync = os.fsync
    interleaved = []

    def fsync_while_another_worker_writes(fd):
        if not interleaved:  # the other worker writes the same file between our steps
            interleaved.append(True)
            write_json_atomic(path, other)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_while_another_worker_writes)
    write_json_atomic(path, meta)
    assert PreparedMeta.model_validate_json(path.read_text()) == meta
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"], "no temp file left over"
