"""Subtitle files are well-formed, monotonic and inside the audio."""

from __future__ import annotations

import io
import json
import re

import ass
from hypothesis import given
from hypothesis import strategies as st

from handler import subtitles
from handler.contracts import Word

WORDS = [
    Word("Hello", 0.10, 0.50),
    Word("there.", 0.55, 0.90),
    Word("How", 1.20, 1.40),
    Word("are", 1.35, 1.60),  # overlaps the previous word, as alignment can
    Word("you?", 1.70, 9.99),  # past the end of the audio
]
DURATION = 2.0


def clock(text: str) -> float:
    h, m, s = text.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def srt_times(srt: str) -> list[tuple[float, float]]:
    return [
        (clock(a), clock(b))
        for a, b in re.findall(r"(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})", srt)
    ]


def test_clean_words_keeps_times_monotonic_and_inside_the_audio():
    cleaned = subtitles.clean_words(WORDS, DURATION)
    starts = [w.start for w in cleaned]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= DURATION for w in cleaned)


def test_srt_is_numbered_with_sentence_cues():
    words = subtitles.clean_words(WORDS, DURATION)
    srt = subtitles.to_srt(subtitles.group_cues(words, 7))
    blocks = srt.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["1", "2"]
    assert blocks[0].splitlines()[2] == "Hello there."
    times = srt_times(srt)
    assert all(a <= b <= DURATION for a, b in times)
    assert all(times[i][1] <= times[i + 1][0] for i in range(len(times) - 1))


def test_vtt_starts_with_its_header_and_uses_dots():
    words = subtitles.clean_words(WORDS, DURATION)
    vtt = subtitles.to_vtt(subtitles.group_cues(words, 2))
    assert vtt.startswith("WEBVTT\n\n")
    assert re.search(r"00:00:00\.100 --> 00:00:00\.900", vtt)


def test_ass_parses_back_with_karaoke_tags_summing_to_the_cue():
    words = subtitles.clean_words(WORDS, DURATION)
    cues = subtitles.group_cues(words, 7)
    doc = ass.parse_string(subtitles.to_ass(cues, karaoke=True))
    assert len(doc.events) == len(cues)
    for event, cue in zip(doc.events, cues, strict=True):
        ks = [int(k) for k in re.findall(r"\{\\k(\d+)\}", event.text)]
        assert len(ks) == len(cue.words)
        assert abs(sum(ks) / 100 - (cue.end - cue.words[0].start)) < 0.05
        assert event.start.total_seconds() <= event.end.total_seconds() <= DURATION


def test_json_and_csv_carry_every_word():
    words = subtitles.clean_words(WORDS, DURATION)
    data = json.loads(subtitles.to_json(words, subtitles.group_cues(words, 3)))
    assert [w["word"] for w in data["words"]] == [w.text for w in WORDS]
    rows = subtitles.to_csv(words).strip().splitlines()
    assert rows[0] == "word,start,end,score" and len(rows) == len(WORDS) + 1


@given(
    st.lists(
        st.tuples(
            st.text(min_size=0, max_size=8),
            st.floats(-5, 50, allow_nan=False),
            st.floats(-5, 50, allow_nan=False),
        ),
        max_size=30,
    ),
    st.floats(0.1, 30),
    st.integers(1, 10),
)
def test_any_alignment_gives_well_formed_monotonic_srt(raw, duration, per_cue):
    words = subtitles.clean_words([Word(t, a, b) for t, a, b in raw], duration)
    srt = subtitles.to_srt(subtitles.group_cues(words, per_cue))
    times = srt_times(srt)
    assert all(0 <= a <= b <= duration + 0.001 for a, b in times)
    assert all(times[i][1] <= times[i + 1][0] + 0.001 for i in range(len(times) - 1))
    assert ass.parse_string(subtitles.to_ass(subtitles.group_cues(words, per_cue), True))
    io.StringIO(subtitles.to_vtt(subtitles.group_cues(words, per_cue)))
