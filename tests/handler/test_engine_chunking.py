# ruff: noqa: RUF001 (full-width punctuation is what these tests are about)
"""Chunk planning: every chunk the planner emits fits the model, for any valid input.

Pure code, no torch: these run in the fast tier. The real model runs on the largest
chunk the planner can emit in tests/handler/heavy/test_engine_limits_heavy.py.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from handler.engine.chunking import (
    CHUNK_BUDGET_FRAMES,
    FIRST_CHUNK_SHARE,
    FRAMES_PER_SECOND,
    MAX_REF_TEXT_BYTES_PER_SECOND,
    POSITION_TABLE_FRAMES,
    REFERENCE_MAX_SECONDS,
    REFERENCE_PAD_SECONDS,
    ChunkBudget,
    estimate_frames,
    min_ref_text_bytes,
    model_ref_text,
    normalize_ref_text,
    plan_chunks,
    reference_problem,
    upstream_duration,
    utf8_len,
)

LATIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéüß"
PUNCTUATION = ".,;:!?…—-\"'()「」。，、！？；："
CJK = "你好世界我们说话的时候天气很好日本語のテキスト한국어"
THAI = "สวัสดีครับภาษาไทยไม่มีช่องว่าง"  # base letters with combining vowel/tone marks
EMOJI = ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤️"]
SPACES = [" ", "  ", "\n", "\n\n", "\t"]

pieces = st.one_of(
    st.text(alphabet=LATIN, min_size=1, max_size=30),
    st.sampled_from(list(PUNCTUATION)),
    st.sampled_from(SPACES),
    st.text(alphabet=CJK, min_size=1, max_size=40),
    st.text(alphabet=THAI, min_size=1, max_size=40),
    st.sampled_from(EMOJI),
)
texts = st.one_of(
    st.lists(pieces, max_size=80).map("".join),
    st.text(alphabet=LATIN, min_size=1, max_size=3000),  # no punctuation, no spaces
    st.text(alphabet=CJK, min_size=1, max_size=1500),  # a script without spaces
    st.text(alphabet=THAI, min_size=1, max_size=1500),
    st.lists(st.sampled_from(EMOJI), min_size=1, max_size=300).map("".join),
    st.text(max_size=400),  # anything unicode can spell
)


@st.composite
def references(draw) -> tuple[str, int, float]:
    """(transcript, reference frames, seconds) within `reference_problem`'s bounds."""
    seconds = draw(st.floats(1.0, REFERENCE_MAX_SECONDS + REFERENCE_PAD_SECONDS))
    density = draw(st.floats(0.5, MAX_REF_TEXT_BYTES_PER_SECOND))
    alphabet = draw(st.sampled_from([LATIN + " ", CJK, THAI, LATIN + CJK + " ,."]))
    want = int(density * seconds)
    chars = draw(st.lists(st.sampled_from(alphabet), min_size=1, max_size=want + 1))
    text = "".join(chars)
    while utf8_len(text.strip()) < min_ref_text_bytes(text, seconds):
        text += alphabet[0]
    while utf8_len(text.strip()) > MAX_REF_TEXT_BYTES_PER_SECOND * seconds:
        text = text[:-1]
    assume(text.strip() and reference_problem(text, seconds) is None)
    return text, int(seconds * FRAMES_PER_SECOND), seconds


def assert_plan_is_sound(text, ref_text, ref_frames, speed, budget=None):
    budget = budget or ChunkBudget()
    model_text = model_ref_text(ref_text)
    chunks = plan_chunks(
        text, ref_text=model_text, ref_frames=ref_frames, speed=speed, budget=budget
    )
    if not text.strip():
        assert chunks == []
        return chunks
    assert "".join(text[c.start : c.end] for c in chunks) == text
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]
    for i, chunk in enumerate(chunks):
        assert chunk.text and chunk.text == text[chunk.start : chunk.end].strip()
        frames = estimate_frames(ref_frames, utf8_len(model_text), utf8_len(chunk.text), speed)
        assert chunk.frames == frames <= budget.for_chunk(i) <= POSITION_TABLE_FRAMES
        # What CFM is asked for never exceeds the bound either.
        asked = upstream_duration(ref_frames, utf8_len(model_text), utf8_len(chunk.text), speed)
        assert asked <= chunk.frames
    return chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, reference=references(), speed=st.floats(0.3, 3.0))
@example(text="a" * 3000, reference=("Hi there, this is me.", 1410, 15.05), speed=0.3)
@example(text="你" * 1500, reference=("x" * 1200, 1410, 15.05), speed=3.0)
def test_every_chunk_fits_and_the_chunks_give_back_the_text(text, reference, speed):
    ref_text, ref_frames, _seconds = reference
    assert_plan_is_sound(text, ref_text, ref_frames, speed)


@settings(max_examples=100, deadline=None)
@given(text=texts, reference=references(), speed=st.floats(0.3, 3.0), first=st.integers(0, 600))
@example(text=" AAAAß", reference=("a", 93, 1.0), speed=1.0, first=0)  # leading blank span
def test_a_smaller_first_chunk_budget_holds_for_the_first_chunk_only(text, reference, speed, first):
    ref_text, ref_frames, _ = reference
    # The first chunk's budget still has to leave room for one character.
    room = ref_frames + 2 + estimate_frames(ref_frames, utf8_len(model_ref_text(ref_text)), 4, 0.3)
    budget = ChunkBudget(first_max_frames=min(CHUNK_BUDGET_FRAMES, room + first))
    assert_plan_is_sound(text, ref_text, ref_frames, speed, budget)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, reference=references(), speed=st.floats(0.3, 3.0))
@example(text="你" * 400, reference=("x" * 30, 1410, 15.05), speed=0.3)
@example(text="a" * 900, reference=("x" * 1204, 1410, 15.05), speed=3.0)
def test_the_short_first_chunk_fits_and_never_cuts_its_first_word(text, reference, speed):
    ref_text, ref_frames, _ = reference
    budget = ChunkBudget(first_share=FIRST_CHUNK_SHARE)
    chunks = assert_plan_is_sound(text, ref_text, ref_frames, speed, budget)
    if not chunks:
        return
    share = ref_frames + int(FIRST_CHUNK_SHARE * (CHUNK_BUDGET_FRAMES - ref_frames))
    word = text.split()[0]
    ref_bytes = utf8_len(model_ref_text(ref_text))
    prefixes = [
        estimate_frames(ref_frames, ref_bytes, utf8_len(word[:k].strip()), speed)
        for k in range(1, len(word) + 1)
    ]
    first = chunks[0]
    if utf8_len(word) <= 64 and max(prefixes) <= CHUNK_BUDGET_FRAMES:
        assert first.text.startswith(word)  # the short first chunk ends after a whole word
        assert first.frames <= max(share, *prefixes)


def test_a_long_text_starts_with_a_clause_then_uses_full_chunks():
    text = (
        "Once upon a time, in a land far away, there lived a storyteller who talked "
        "and talked. " * 12
    )
    budget = ChunkBudget(first_share=FIRST_CHUNK_SHARE)
    chunks = assert_plan_is_sound(text, "Some call me nature, others mother nature.", 300, 1.0)
    short = assert_plan_is_sound(
        text, "Some call me nature, others mother nature.", 300, 1.0, budget
    )
    assert short[0].text == "Once upon a time, in a land far away,"  # its first clauses
    assert short[0].frames < chunks[0].frames / 2
    assert max(c.frames for c in short[1:]) > CHUNK_BUDGET_FRAMES * 0.8


@pytest.mark.parametrize("seconds", [1.0, 5.0, 12.0, REFERENCE_MAX_SECONDS + REFERENCE_PAD_SECONDS])
@pytest.mark.parametrize("longest", [False, True])
@pytest.mark.parametrize("speed", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("char", ["a", "é", "你", "😀"])
def test_one_character_always_fits_at_the_bounds(seconds, longest, speed, char):
    fewest = min_ref_text_bytes("x", seconds)
    ref_text = "x" * (int(MAX_REF_TEXT_BYTES_PER_SECOND * seconds) if longest else fewest)
    assert reference_problem(ref_text, seconds) is None
    assert fewest == 1 or reference_problem("x" * (fewest - 1), seconds) is not None
    ref_frames = int(seconds * FRAMES_PER_SECOND)
    chunks = assert_plan_is_sound(char * 400, ref_text, ref_frames, speed)
    assert chunks


def test_sentences_stay_whole_when_they_fit():
    text = " ".join(f"This is sentence number {i}, and it is short." for i in range(40))
    chunks = assert_plan_is_sound(text, "Some call me nature.", 300, 1.0)
    assert len(chunks) > 1
    assert all(c.text.endswith("short.") for c in chunks)


def test_an_overlong_sentence_splits_at_clauses_then_words():
    clause = "and then the story went on and on without a pause"
    text = ", ".join([clause] * 30) + "."
    chunks = assert_plan_is_sound(text, "Some call me nature.", 300, 1.0)
    assert len(chunks) > 1
    assert all(c.text.endswith((",", ".")) for c in chunks)
    no_commas = " ".join(["word"] * 2000)
    chunks = assert_plan_is_sound(no_commas, "Some call me nature.", 300, 1.0)
    assert all(c.text.split(" ") == ["word"] * len(c.text.split(" ")) for c in chunks)


def test_text_without_spaces_splits_between_characters_never_inside_one():
    thai = "สวัสดีครับ" * 300
    chunks = assert_plan_is_sound(thai, "สวัสดีครับ" * 3, 300, 1.0)
    assert len(chunks) > 1
    for chunk in chunks[1:]:
        assert chunk.text[0] not in "ัีิ่้"  # no chunk starts with a combining mark
    family = "👨\u200d👩\u200d👧" * 200
    chunks = assert_plan_is_sound(family, "Some call me nature.", 300, 1.0)
    assert all(c.text.startswith("👨") for c in chunks)


def test_chinese_splits_after_its_own_punctuation():
    text = "我们今天去公园散步，天气很好。" * 60
    chunks = assert_plan_is_sound(text, "你好世界。", 200, 1.0)
    assert len(chunks) > 1
    assert all(c.text.endswith(("。", "，")) for c in chunks)


def test_slow_speed_makes_more_and_shorter_chunks():
    text = "A long story is told here, sentence after sentence. " * 40
    normal = assert_plan_is_sound(text, "Some call me nature.", 300, 1.0)
    slow = assert_plan_is_sound(text, "Some call me nature.", 300, 0.3)
    assert len(slow) > 2 * len(normal)


def test_whitespace_only_text_has_no_chunks():
    assert plan_chunks(" \n\t ", ref_text="Hi.  ", ref_frames=100, speed=1.0) == []


def test_chunk_frames_follow_f5_tts_duration_rule_and_its_short_text_speed():
    # ref 187 frames, 53 bytes: 3.53 frames per byte
    assert upstream_duration(187, 53, 100, 1.0) == 187 + int(187 / 53 * 100 / 1.0)
    assert upstream_duration(187, 53, 100, 2.0) == 187 + int(187 / 53 * 100 / 2.0)
    # under 10 bytes upstream speaks at 0.3 whatever speed was asked
    assert upstream_duration(187, 53, 9, 2.0) == 187 + int(187 / 53 * 9 / 0.3)
    # CFM raises the duration to the text's tokens plus one
    assert estimate_frames(10, 500, 500, 3.0) >= 1.5 * 1000


@pytest.mark.parametrize(
    ("text", "seconds", "says"),
    [
        ("x" * 20, 16.0, "limit is 15 s"),
        ("Hello " * 200, 5.0, "too long for its 5.0 s clip"),
        ("Hi.", 10.0, "too short for its 10.0 s clip"),
    ],
)
def test_references_outside_the_bounds_are_named_with_their_limit(text, seconds, says):
    problem = reference_problem(text, seconds)
    assert problem and says in problem
    assert "\n" not in problem


def test_reference_text_gets_the_closing_punctuation_f5_tts_expects():
    assert normalize_ref_text("Hello there") == "Hello there. "
    assert normalize_ref_text(" Is it you? ") == "Is it you? "
    assert normalize_ref_text("你好。") == "你好。"
    assert model_ref_text("Hello there") == "Hello there.  "  # infer_batch_process's space
    assert model_ref_text("你好。") == "你好。"


def test_the_pure_engine_modules_do_not_import_torch():
    import subprocess

    code = (
        "import sys, handler.engine, handler.engine.chunking, handler.engine.presets, "
        "handler.engine.scheduler, handler.engine.noise, handler.reference, handler.voices; "
        "assert 'torch' not in sys.modules and 'f5_tts' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
