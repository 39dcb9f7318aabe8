# ruff: noqa: RUF001 (the full-width and typographic punctuation below is meant)
"""Chunk planning in mel frames: what one F5-TTS generation may hold, decided up front.

One generation is the reference clip plus one text chunk, generated as a single mel
sequence. F5-TTS sizes it with its own rule (`infer_batch_process`):

    frames = ref_frames + int(ref_frames / ref_text_bytes * chunk_bytes / speed)

where `speed` becomes 0.3 for chunks under 10 UTF-8 bytes (upstream's rule, so short
texts are not rushed), and `CFM.sample` raises it to at least the text's token count
plus one. The DiT's text embedding has a position table of 8192 frames (~87 s) and a
longer sequence fails inside the model; quality holds only within ~30 s. So every
chunk this module plans stays within `CHUNK_BUDGET_FRAMES` (22 s, upstream's own
per-chunk target), whatever the text, speed (0.3..3) or script.

The text is split at sentence ends, then clause punctuation, then whitespace, then
between characters (scripts without spaces: CJK, Thai), packing greedily up to the
budget; the chunks' spans joined give back the text exactly. The split never fails
for a reference within `reference_problem`'s bounds, which are exactly what makes
one character (<= 4 bytes, at the 0.3 local speed) fit next to the reference: at
most `REFERENCE_MAX_SECONDS` of clip, and a transcript long enough that the clip's
frames per byte stay bounded (`min_ref_text_bytes`, ~2 bytes per second for a 15 s
clip, nothing to speak of for a short one). `test_one_character_always_fits_at_the
_bounds` checks the corners.

Pure: no torch, no f5_tts; the engine and the job layer both use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

SAMPLE_RATE = 24000
HOP_LENGTH = 256
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 93.75 mel frames per second
POSITION_TABLE_FRAMES = 8192  # DiT TextEmbedding.precompute_max_pos
CHUNK_BUDGET_SECONDS = 22.0  # reference + chunk; upstream infer_process plans for 22 s
CHUNK_BUDGET_FRAMES = int(CHUNK_BUDGET_SECONDS * FRAMES_PER_SECOND)  # 2062
# Every job's first chunk is short (a few words or a clause) so its first audio comes
# early: a quarter of what a chunk may hold beside the reference (F5-TTS's socket
# server makes its first chunk a quarter of a full one's characters).
FIRST_CHUNK_SHARE = 0.25
LONGEST_WORD_BYTES = 64  # a longer run without spaces is a script written without them
SHORT_CHUNK_BYTES = 10  # upstream: chunks under this are spoken at LOCAL_SPEED
LOCAL_SPEED = 0.3
# Tokens per UTF-8 byte after convert_char_to_pinyin, at most: Latin text gets one
# token per character plus a space before some words; CJK two per 3-byte character.
TOKENS_PER_BYTE = 1.5

# The reference a generation is conditioned on (after trimming its silent ends).
REFERENCE_MAX_SECONDS = 15.0
REFERENCE_PAD_SECONDS = 0.05  # silence appended after trimming, as upstream does
# Transcript density: real speech is roughly 5-40 UTF-8 bytes per second in any script.
MAX_REF_TEXT_BYTES_PER_SECOND = 80.0
WIDEST_CHARACTER_BYTES = 4  # UTF-8


class ChunkPlanError(ValueError):
    """A character does not fit the budget: only possible outside the reference bounds."""


@dataclass(frozen=True)
class Chunk:
    """One generation's text: `text` is what the model reads (`span` stripped)."""

    text: str
    start: int  # span in the job's text: text[start:end].strip() == self.text
    end: int
    frames: int  # upper bound of the generation's length (reference included)


@dataclass(frozen=True)
class ChunkBudget:
    """Frames one generation may use; the first chunk may have a smaller budget, so
    that the first audio of a job comes early (a stream's first piece).

    `first_max_frames` is that budget in frames (reference included); `first_share`
    (which wins when both are set) asks for it relative to the reference instead:
    that share of the frames the budget leaves beside the reference, as F5-TTS's
    socket server does (its first chunk holds a quarter of a full chunk's
    characters). `plan_chunks` resolves a share into frames
    (`with_first_share_resolved`), never below what every prefix of the text's first
    word needs, so a short first chunk never cuts a word."""

    max_frames: int = CHUNK_BUDGET_FRAMES
    first_max_frames: int | None = None
    first_share: float | None = None

    def for_chunk(self, index: int) -> int:
        if index == 0 and self.first_max_frames is not None:
            return min(self.first_max_frames, self.max_frames)
        return self.max_frames

    def with_first_share_resolved(self, ref_frames: int, first_word_frames: int) -> ChunkBudget:
        """This budget with `first_share` turned into `first_max_frames` for a reference
        of `ref_frames` frames and a text whose first word (or, when that does not fit
        a chunk, first character) needs `first_word_frames`."""
        if self.first_share is None:
            return self
        share = ref_frames + int(self.first_share * max(0, self.max_frames - ref_frames))
        first = max(share, first_word_frames)
        return ChunkBudget(self.max_frames, first_max_frames=first)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def ref_frames_of(samples: int) -> int:
    """The reference's length in frames as F5-TTS counts it (`audio.shape[-1] // hop`)."""
    return samples // HOP_LENGTH


def upstream_duration(ref_frames: int, ref_bytes: int, gen_bytes: int, speed: float) -> int:
    """`infer_batch_process`'s duration of one generation, exactly (frames)."""
    local_speed = LOCAL_SPEED if gen_bytes < SHORT_CHUNK_BYTES else speed
    return ref_frames + int(ref_frames / ref_bytes * gen_bytes / local_speed)


def estimate_frames(ref_frames: int, ref_bytes: int, gen_bytes: int, speed: float) -> int:
    """An upper bound of the frames `CFM.sample` will use: upstream's duration, raised
    (as CFM does) to the text's tokens and the reference's mel length plus one."""
    tokens = int(TOKENS_PER_BYTE * (ref_bytes + gen_bytes))
    duration = upstream_duration(ref_frames, ref_bytes, gen_bytes, speed)
    return max(duration, tokens + 1, ref_frames + 2)


def min_ref_text_bytes(ref_text: str, seconds: float) -> int:
    """The fewest UTF-8 bytes a transcript of a `seconds` clip may have (stripped, as
    sent): with fewer, F5-TTS's frames per byte grow so large that one character
    (spoken at the 0.3 local speed) would not fit beside the reference."""
    ref_frames = int(seconds * FRAMES_PER_SECOND) + 1
    added = utf8_len(model_ref_text(ref_text)) - utf8_len(ref_text.strip())
    for sent in range(1, POSITION_TABLE_FRAMES):
        needed = estimate_frames(ref_frames, sent + added, WIDEST_CHARACTER_BYTES, LOCAL_SPEED)
        if needed <= CHUNK_BUDGET_FRAMES:
            return sent
    return POSITION_TABLE_FRAMES


def reference_problem(ref_text: str, seconds: float) -> str | None:
    """Why a (prepared) reference cannot condition generation, or None when it can.

    Returned as a clause naming the limit; callers add the fix that fits their case.
    """
    limit = REFERENCE_MAX_SECONDS + REFERENCE_PAD_SECONDS + 0.01
    if seconds > limit:
        return (
            f"the reference clip is {seconds:.1f} s long and the limit is "
            f"{REFERENCE_MAX_SECONDS:g} s of speech"
        )
    n = utf8_len(ref_text.strip())
    if n > MAX_REF_TEXT_BYTES_PER_SECOND * seconds:
        return (
            f"the transcript is too long for its {seconds:.1f} s clip: {n} UTF-8 bytes, "
            f"and at most {MAX_REF_TEXT_BYTES_PER_SECOND:g} bytes per second of audio "
            f"({int(MAX_REF_TEXT_BYTES_PER_SECOND * seconds)} here) can be what is said"
        )
    fewest = min_ref_text_bytes(ref_text, seconds) if n else 1
    if n < fewest:
        return (
            f"the transcript is too short for its {seconds:.1f} s clip: {n} UTF-8 bytes, "
            f"and a clip this long needs at least {fewest} (F5-TTS paces speech by the "
            "transcript's length per second of the clip)"
        )
    return None


# Where units end, coarse to fine. Each match's end is a cut position; trailing
# whitespace stays with the unit before it.
_CLOSERS = "\"')\\]»’”」』"
_SENTENCE_END = re.compile(rf"[.!?…]+[{_CLOSERS}]*\s+|[。！？]+[{_CLOSERS}]*\s*|\n\s*")
_CLAUSE_END = re.compile(rf"[,;:]+[{_CLOSERS}]*\s+|[，；：、]+\s*|\s[—–-]+\s+|—+\s*")
_WORD_END = re.compile(r"\s+")


def _regex_cuts(pattern: re.Pattern[str]) -> Callable[[str, int, int], list[int]]:
    def cuts(text: str, start: int, end: int) -> list[int]:
        found = [m.end() for m in pattern.finditer(text, start, end) if start < m.end() < end]
        return [*found, end]

    return cuts


def _joins_previous(char: str, previous: str) -> bool:
    """Whether `char` belongs to the character before it (combining marks, Thai and
    Indic vowel signs, emoji modifiers and zero-width-joiner sequences)."""
    if previous == "\u200d" or char == "\u200d":
        return True
    if "\ufe00" <= char <= "\ufe0f" or "\U0001f3fb" <= char <= "\U0001f3ff":
        return True
    return unicodedata.category(char) in ("Mn", "Mc", "Me")


def _cluster_cuts(text: str, start: int, end: int) -> list[int]:
    cuts = [i for i in range(start + 1, end) if not _joins_previous(text[i], text[i - 1])]
    return [*cuts, end]


def _codepoint_cuts(text: str, start: int, end: int) -> list[int]:
    return list(range(start + 1, end + 1))


_LEVELS = (
    _regex_cuts(_SENTENCE_END),
    _regex_cuts(_CLAUSE_END),
    _regex_cuts(_WORD_END),
    _cluster_cuts,
    _codepoint_cuts,
)


def plan_chunks(
    text: str,
    *,
    ref_text: str,
    ref_frames: int,
    speed: float,
    budget: ChunkBudget | None = None,
) -> list[Chunk]:
    """Chunks of `text`, each fitting its budget with the reference `ref_text` (as the
    model reads it, see `normalize_ref_text`) of `ref_frames` frames.

    Raises ChunkPlanError only when a single character cannot fit, which the bounds of
    `reference_problem` rule out.
    """
    budget = budget or ChunkBudget()
    ref_bytes = utf8_len(ref_text)

    def frames(start: int, end: int) -> int:
        return estimate_frames(ref_frames, ref_bytes, utf8_len(text[start:end].strip()), speed)

    # Every prefix of the first word must fit the first chunk, or the planner would cut
    # the word (a shorter text can need more frames: upstream's short-text speed).
    start, end = _first_word(text)
    prefixes = [frames(start, k) for k in range(start + 1, end + 1)]
    first_word = min(budget.max_frames, max(prefixes, default=0))
    budget = budget.with_first_share_resolved(ref_frames, first_word)

    spans: list[tuple[int, int]] = []

    def index() -> int:
        """0 while no chunk is planned yet (blank spans are merged away later), else 1:
        budgets differ only for the first chunk."""
        return int(any(not text[s:e].isspace() for s, e in spans))

    def fits(start: int, end: int) -> bool:
        return frames(start, end) <= budget.for_chunk(index())

    def pack(start: int, end: int, level: int) -> None:
        current: tuple[int, int] | None = None
        unit_start = start
        for cut in _LEVELS[level](text, start, end):
            unit = (unit_start, cut)
            unit_start = cut
            if current is not None and fits(current[0], cut):
                current = (current[0], cut)
                continue
            if current is not None:
                spans.append(current)
                current = None
            if fits(*unit):
                current = unit
                continue
            if level + 1 == len(_LEVELS):
                raise ChunkPlanError(
                    f"the character {text[unit[0] : unit[1]]!r} alone needs "
                    f"{frames(*unit)} frames, over the budget of {budget.for_chunk(index())}"
                )
            pack(*unit, level + 1)
            current = spans.pop()  # the last piece may still take what follows
        if current is not None:
            spans.append(current)

    if text.strip():
        pack(0, len(text), 0)
    return [Chunk(text[s:e].strip(), s, e, frames(s, e)) for s, e in _merge_blank(text, spans)]


def _first_word(text: str) -> tuple[int, int]:
    """The span of the text's first word (up to the whitespace after it), or of its
    first character when the run is longer than any word (a script written without
    spaces, whose chunks end between characters)."""
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return start, start
    found = _WORD_END.search(text, start)
    end = found.start() if found else len(text)
    if utf8_len(text[start:end]) > LONGEST_WORD_BYTES:
        end = _cluster_cuts(text, start, len(text))[0]
    return start, end


def _merge_blank(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Whitespace-only spans join a neighbour (their text adds nothing to speak)."""
    merged: list[tuple[int, int]] = []
    pending_start: int | None = None
    for start, end in spans:
        if not text[start:end].strip():
            if merged:
                merged[-1] = (merged[-1][0], end)
            elif pending_start is None:
                pending_start = start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        merged.append((start, end))
    return merged


def normalize_ref_text(text: str) -> str:
    """End the reference transcript with sentence punctuation and a space, as F5-TTS
    expects (the reference and generated text are read as one utterance)."""
    text = text.strip()
    if text.endswith("。"):
        return text
    if not text.endswith((".", "!", "?")):
        text += "."
    return text + " "


def model_ref_text(text: str) -> str:
    """The transcript exactly as the model reads it before each chunk: normalized, plus
    the space `infer_batch_process` adds after a one-byte last character."""
    text = normalize_ref_text(text)
    return text + " " if utf8_len(text[-1]) == 1 else text
