"""Subtitle files from word timings: SRT, WebVTT, ASS (optionally karaoke), JSON, CSV.

Alignment can return words slightly out of order or past the end of the audio;
`clean_words` makes the times monotonic and keeps them inside the audio before
any writer sees them, so every file is well-formed by construction. SRT, WebVTT and
ASS are written by pysubs2; the cue text is escaped here first, because pysubs2
passes it through as it is:

* WebVTT (W3C spec, cue text): `&`, `<` and `>` become `&amp;`, `&lt;`, `&gt;`, which
  also keeps the payload free of `-->`; a speaker is a `<v name>` voice span.
* SRT has no escape syntax: `-->` is written `->`, and a `<` that would open a tag
  (`<b>`, `</i>`, `<font`) gets a zero-width space after it; a speaker is a `[name] `
  prefix.
* ASS: `{` `}` would open override blocks and a backslash starts a tag, so they become
  `(`, `)` and `/`; a speaker goes in the event's Name field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handler.contracts import Word

if TYPE_CHECKING:
    import pysubs2

CONTENT_TYPES = {
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "ass": "text/x-ssa; charset=utf-8",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}
_SENTENCE_END = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")


ZERO_WIDTH_SPACE = "\u200b"
WORD_JOINER = "\u2060"
_SRT_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!])")
# pysubs2 turns \N, \n and \h into line breaks and spaces even in kept text.
_PYSUBS2_WHITESPACE_TAG = re.compile(r"\\(?=[Nnh])")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def speaker(self) -> str | None:
        return self.words[0].speaker if self.words else None


def clean_words(words: list[Word], duration: float) -> list[Word]:
    """Times clamped into [0, duration], starts non-decreasing, end >= start."""
    out: list[Word] = []
    floor = 0.0
    for word in words:
        text = " ".join(word.text.split())
        if not text:
            continue
        start = min(max(word.start, floor, 0.0), duration)
        end = min(max(word.end, start), duration)
        out.append(Word(text, round(start, 3), round(end, 3), word.score, word.speaker))
        floor = start
    return out


def group_cues(words: list[Word], words_per_cue: int) -> list[Cue]:
    """Up to `words_per_cue` words per cue, ending a cue early at a sentence end and at
    a change of speaker."""
    cues: list[Cue] = []
    current: list[Word] = []
    for word in words:
        if current and word.speaker != current[-1].speaker:
            cues.append(Cue(current[0].start, max(w.end for w in current), tuple(current)))
            current = []
        current.append(word)
        if len(current) >= words_per_cue or word.text.endswith(_SENTENCE_END):
            cues.append(Cue(current[0].start, max(w.end for w in current), tuple(current)))
            current = []
    if current:
        cues.append(Cue(current[0].start, max(w.end for w in current), tuple(current)))
    # Cues must not overlap: a cue ends no later than the next one starts.
    fixed: list[Cue] = []
    for i, cue in enumerate(cues):
        end = cue.end
        if i + 1 < len(cues):
            end = min(end, cues[i + 1].start)
        fixed.append(Cue(cue.start, max(end, cue.start), cue.words))
    return fixed


def escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_srt(text: str) -> str:
    return _SRT_TAG_OPEN.sub("<" + ZERO_WIDTH_SPACE, text.replace("-->", "->"))


def escape_ass(text: str) -> str:
    return text.replace("{", "(").replace("}", ")").replace("\\", "/")


def _keep_backslashes(text: str) -> str:
    return _PYSUBS2_WHITESPACE_TAG.sub("\\\\" + WORD_JOINER, text)


def _subs(cues: list[Cue], text_of) -> pysubs2.SSAFile:
    import pysubs2

    subs = pysubs2.SSAFile()
    subs.info.update({"Title": "F5-TTS", "PlayResX": "1920", "PlayResY": "1080"})
    subs.styles["Default"] = pysubs2.SSAStyle(fontname="Arial", fontsize=64)
    for cue in cues:
        subs.append(
            pysubs2.SSAEvent(
                start=round(cue.start * 1000),
                end=round(cue.end * 1000),
                text=text_of(cue),
                name=cue.speaker or "",
            )
        )
    return subs


def to_srt(cues: list[Cue]) -> str:
    def text(cue: Cue) -> str:
        prefix = f"[{cue.speaker}] " if cue.speaker else ""
        return _keep_backslashes(escape_srt(prefix + cue.text))

    return _subs(cues, text).to_string("srt", keep_ssa_tags=True)


def to_vtt(cues: list[Cue]) -> str:
    def text(cue: Cue) -> str:
        voice = f"<v {escape_vtt(cue.speaker)}>" if cue.speaker else ""
        return _keep_backslashes(voice + escape_vtt(cue.text))

    return _subs(cues, text).to_string("vtt", keep_ssa_tags=True)


def to_ass(cues: list[Cue], karaoke: bool) -> str:
    def text(cue: Cue) -> str:
        if not karaoke:
            return escape_ass(cue.text)
        # \k durations are centiseconds from one word's start to the next one's.
        parts = []
        for i, word in enumerate(cue.words):
            nxt = cue.words[i + 1].start if i + 1 < len(cue.words) else cue.end
            cs = max(0, round((nxt - word.start) * 100))
            parts.append(f"{{\\k{cs}}}{escape_ass(word.text)}")
        return " ".join(parts)

    return _subs(cues, text).to_string("ass")


def to_json(words: list[Word], cues: list[Cue]) -> str:
    return json.dumps(
        {
            "words": [word_dict(w) for w in words],
            "cues": [_cue_dict(c) for c in cues],
        },
        ensure_ascii=False,
    )


def _cue_dict(cue: Cue) -> dict[str, object]:
    out: dict[str, object] = {"start": cue.start, "end": cue.end, "text": cue.text}
    if cue.speaker is not None:
        out["speaker"] = cue.speaker
    return out


def to_csv(words: list[Word]) -> str:
    """word,start,end,score; a speaker column too in multi-speaker scripts."""
    with_speaker = any(w.speaker is not None for w in words)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["word", "start", "end", "score"] + (["speaker"] if with_speaker else []))
    for w in words:
        row = [w.text, f"{w.start:.3f}", f"{w.end:.3f}", "" if w.score is None else w.score]
        writer.writerow(row + ([w.speaker or ""] if with_speaker else []))
    return buf.getvalue()


def word_dict(word: Word) -> dict[str, object]:
    out: dict[str, object] = {"word": word.text, "start": word.start, "end": word.end}
    if word.score is not None:
        out["score"] = round(float(word.score), 3)
    if word.speaker is not None:
        out["speaker"] = word.speaker
    return out


def render(fmt: str, words: list[Word], cues: list[Cue], *, karaoke: bool = False) -> str:
    if fmt == "srt":
        return to_srt(cues)
    if fmt == "vtt":
        return to_vtt(cues)
    if fmt == "ass":
        return to_ass(cues, karaoke)
    if fmt == "json":
        return to_json(words, cues)
    if fmt == "csv":
        return to_csv(words)
    raise ValueError(f"unknown subtitle format {fmt!r}")
