"""Subtitle files from word timings: SRT, WebVTT, ASS (optionally karaoke), JSON, CSV.

Alignment can return words slightly out of order or past the end of the audio;
`clean_words` makes the times monotonic and keeps them inside the audio before
any writer sees them, so every file is well-formed by construction.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass

from handler.contracts import Word

CONTENT_TYPES = {
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "ass": "text/x-ssa; charset=utf-8",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}
_SENTENCE_END = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


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
        out.append(Word(text, round(start, 3), round(end, 3), word.score))
        floor = start
    return out


def group_cues(words: list[Word], words_per_cue: int) -> list[Cue]:
    """Up to `words_per_cue` words per cue, ending a cue early at a sentence end."""
    cues: list[Cue] = []
    current: list[Word] = []
    for word in words:
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


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_ass(cues: list[Cue], karaoke: bool) -> str:
    import ass

    doc = ass.Document()
    doc.info.update({"Title": "F5-TTS", "ScriptType": "v4.00+", "PlayResX": 1920, "PlayResY": 1080})
    doc.styles.append(ass.Style(name="Default", fontname="Arial", fontsize=64))
    for cue in cues:
        if karaoke:
            # \k durations are centiseconds from one word's start to the next one's.
            parts = []
            for i, word in enumerate(cue.words):
                nxt = cue.words[i + 1].start if i + 1 < len(cue.words) else cue.end
                cs = max(0, round((nxt - word.start) * 100))
                parts.append(f"{{\\k{cs}}}{_ass_escape(word.text)}")
            # The first word may start after the cue's start only by rounding.
            text = " ".join(parts)
        else:
            text = _ass_escape(cue.text)
        doc.events.append(
            ass.Dialogue(
                layer=0,
                start=dt.timedelta(seconds=round(cue.start, 2)),
                end=dt.timedelta(seconds=round(cue.end, 2)),
                style="Default",
                text=text,
            )
        )
    buf = io.StringIO()
    doc.dump_file(buf)
    return buf.getvalue()


def _ass_escape(text: str) -> str:
    return text.replace("{", "(").replace("}", ")").replace("\\", "/")


def to_json(words: list[Word], cues: list[Cue]) -> str:
    return json.dumps(
        {
            "words": [word_dict(w) for w in words],
            "cues": [{"start": c.start, "end": c.end, "text": c.text} for c in cues],
        },
        ensure_ascii=False,
    )


def to_csv(words: list[Word]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["word", "start", "end", "score"])
    for w in words:
        writer.writerow(
            [w.text, f"{w.start:.3f}", f"{w.end:.3f}", "" if w.score is None else w.score]
        )
    return buf.getvalue()


def word_dict(word: Word) -> dict[str, object]:
    out: dict[str, object] = {"word": word.text, "start": word.start, "end": word.end}
    if word.score is not None:
        out["score"] = round(float(word.score), 3)
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
