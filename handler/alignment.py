"""Word timings for generated speech: whisperx's forced alignment of the known text.

The text is known (it is what was synthesized), so no speech recognition runs: the
wav2vec2 alignment model is loaded once and `whisperx.align` places the text's
characters on the audio (resampled to 16 kHz). Around that call this module decides
the segments itself and repairs what alignment leaves out:

* Short audio (up to `MAX_SEGMENT_S`) is one segment. Longer audio is cut into
  sentence groups whose windows are estimated from the text's UTF-8 length: F5-TTS
  gives every chunk a duration proportional to exactly that, so the estimate is close,
  and a margin on each side absorbs the rest (CTC labels the extra audio as blank).
* whisperx re-splits each segment into sentences with NLTK's `punkt_tab`, which it
  downloads on first use. A worker has no business downloading at job time, and the
  segments are already sentence groups, so when punkt_tab is not installed the split
  falls back to "the whole segment is one sentence".
* Words whisperx could not time get times interpolated between their neighbours by
  length; the result is monotonic and inside the audio, one Word per word of the text.

whisperx and torch are imported lazily: without them `load_aligner` returns None and
the job layer serves audio without timings.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handler.contracts import Word

log = logging.getLogger(__name__)

ALIGN_SAMPLE_RATE = 16000
MAX_SEGMENT_S = 25.0
MARGIN_S = 1.0
# Languages whisperx aligns character by character (it has no word spaces for them).
UNSPACED_LANGUAGES = ("ja", "zh")

# (start, end, score) of one word as whisperx reported it; None where it had none.
Timing = tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class AlignmentSegment:
    """Text to align inside the audio window [start, end] (seconds)."""

    text: str
    tokens: tuple[str, ...]
    start: float
    end: float


# Sentence ends, ASCII and the full-width forms used in Chinese and Japanese text.
SENTENCE_END = re.compile(r"(?<=[.!?;:\u3002\uff01\uff1f\uff1b\uff1a])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    parts = SENTENCE_END.split(text)
    return [" ".join(part.split()) for part in parts if part.strip()]


def tokenize(text: str, spaced: bool = True) -> tuple[str, ...]:
    """The words whisperx reports for `text`: space-separated, or characters."""
    if spaced:
        return tuple(text.split())
    return tuple(char for char in text if not char.isspace())


def plan_segments(
    text: str,
    duration_s: float,
    *,
    spaced: bool = True,
    max_segment_s: float = MAX_SEGMENT_S,
    margin_s: float = MARGIN_S,
) -> list[AlignmentSegment]:
    sentences = split_sentences(text)
    if not sentences or duration_s <= 0:
        return []
    whole = " ".join(sentences)
    if duration_s <= max_segment_s:
        return [AlignmentSegment(whole, tokenize(whole, spaced), 0.0, duration_s)]

    seconds_per_byte = duration_s / len(whole.encode("utf-8"))
    max_bytes = max(1, int(max_segment_s / seconds_per_byte))
    pieces = [piece for s in sentences for piece in _split_long(s, max_bytes, spaced)]
    groups: list[list[str]] = [[]]
    for piece in pieces:
        if groups[-1] and _nbytes(" ".join([*groups[-1], piece])) > max_bytes:
            groups.append([])
        groups[-1].append(piece)

    segments = []
    offset = 0
    for group in groups:
        group_text = " ".join(group)
        size = _nbytes(group_text)
        start = max(0.0, offset * seconds_per_byte - margin_s)
        end = min(duration_s, (offset + size) * seconds_per_byte + margin_s)
        segments.append(AlignmentSegment(group_text, tokenize(group_text, spaced), start, end))
        offset += size + 1
    return segments


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _split_long(sentence: str, max_bytes: int, spaced: bool) -> list[str]:
    """Cut a sentence longer than one segment at word boundaries."""
    if _nbytes(sentence) <= max_bytes:
        return [sentence]
    units = sentence.split() if spaced else list(sentence.replace(" ", ""))
    joiner = " " if spaced else ""
    pieces: list[list[str]] = [[]]
    for unit in units:
        if pieces[-1] and _nbytes(joiner.join([*pieces[-1], unit])) > max_bytes:
            pieces.append([])
        pieces[-1].append(unit)
    return [joiner.join(piece) for piece in pieces]


def finalize_words(
    segments: list[AlignmentSegment], timings: list[list[Timing] | None], duration_s: float
) -> list[Word]:
    """One Word per token: whisperx's times where it has them, the gaps filled by
    length, then clamped so that times never go backwards or leave the audio."""
    words: list[Word] = []
    for segment, timing in zip(segments, timings, strict=True):
        if timing is None or len(timing) != len(segment.tokens):
            timing = [(None, None, None)] * len(segment.tokens)
        words.extend(_fill_gaps(segment, timing))

    final: list[Word] = []
    previous_end = 0.0
    for word in words:
        start = min(max(word.start, previous_end), duration_s)
        end = min(max(word.end, start), duration_s)
        final.append(Word(word.text, round(start, 3), round(end, 3), word.score))
        previous_end = end
    return final


def _fill_gaps(segment: AlignmentSegment, timing: list[Timing]) -> list[Word]:
    known = [start is not None and end is not None for start, end, _ in timing]
    words: list[Word] = []
    i = 0
    while i < len(timing):
        if known[i]:
            start, end, score = timing[i]
            words.append(Word(segment.tokens[i], float(start), float(end), score))  # type: ignore[arg-type]
            i += 1
            continue
        run_end = i
        while run_end < len(timing) and not known[run_end]:
            run_end += 1
        left = words[-1].end if words else segment.start
        right = float(timing[run_end][0]) if run_end < len(timing) else segment.end  # type: ignore[arg-type]
        right = max(right, left)
        run = segment.tokens[i:run_end]
        edges = np.concatenate([[0], np.cumsum([len(token) for token in run])])
        edges = left + (right - left) * edges / edges[-1]
        spans = zip(run, edges[:-1], edges[1:], strict=True)
        words.extend(Word(token, float(a), float(b)) for token, a, b in spans)
        i = run_end
    return words


class WhisperxAligner:
    """A loaded whisperx alignment model; one alignment at a time."""

    def __init__(self, model: Any, metadata: dict, device: str, language: str):
        self.model = model
        self.metadata = metadata
        self.device = device
        self.language = language
        self._lock = threading.Lock()

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> list[Word]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration_s = audio.size / sample_rate
        segments = plan_segments(text, duration_s, spaced=self.language not in UNSPACED_LANGUAGES)
        if not segments:
            return []
        audio_16k = _resample(audio, sample_rate)
        with self._lock:
            timings = [self._align_segment(segment, audio_16k) for segment in segments]
        return finalize_words(segments, timings, duration_s)

    def _align_segment(self, segment: AlignmentSegment, audio_16k: np.ndarray) -> list[Timing]:
        import whisperx

        result = whisperx.align(
            [{"text": segment.text, "start": segment.start, "end": segment.end}],
            self.model,
            self.metadata,
            audio_16k,
            self.device,
            return_char_alignments=False,
        )
        return [
            (_number(w.get("start")), _number(w.get("end")), _number(w.get("score")))
            for w in result["word_segments"]
        ]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def _resample(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == ALIGN_SAMPLE_RATE:
        return audio
    import torch
    import torchaudio

    waveform = torch.from_numpy(audio)[None, :]
    return torchaudio.functional.resample(waveform, sample_rate, ALIGN_SAMPLE_RATE)[0].numpy()


class _WholeTextSentences:
    """Stands in for a punkt sentence splitter: the segment is one sentence."""

    def span_tokenize(self, text: str):
        yield 0, len(text)


def _keep_sentence_split_offline(alignment_module: Any) -> None:
    real_load = alignment_module.nltk_load
    if getattr(real_load, "offline_fallback", False):
        return

    def load(resource_url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return real_load(resource_url, *args, **kwargs)
        except LookupError:
            return _WholeTextSentences()

    load.offline_fallback = True  # type: ignore[attr-defined]
    alignment_module.nltk_load = load


def align_model_source(settings: Any, language: str) -> tuple[str | None, str | None]:
    """(model_name, cache_dir) for whisperx.load_align_model in `language`.

    F5TTS_ALIGN_MODEL_DIR (align_model_dir) serves the default language only: either
    a Hugging Face wav2vec2 CTC model directory (has config.json), or a cache directory
    handed to whisperx as its model_dir. Otherwise a folder that `bootstrap
    fetch-models` filled, $F5TTS_VOLUME/models/align/<language>, or whisperx's own
    default for the language (torchaudio's bundles land in TORCH_HOME).
    """
    default = getattr(settings, "align_language", None) or "en"
    model_dir = getattr(settings, "align_model_dir", None)
    if model_dir and language == default:
        if (Path(model_dir) / "config.json").is_file():
            return str(model_dir), None
        return None, str(model_dir)
    volume = getattr(settings, "volume", None)
    fetched = Path(volume) / "models/align" / language if volume else None
    if fetched is not None and (fetched / "config.json").is_file():
        return str(fetched), None
    return None, None


def try_load_aligner(
    settings: Any, language: str | None = None
) -> tuple[WhisperxAligner | None, str | None]:
    """(aligner, None), or (None, a sentence saying why timings are unavailable).

    Reads settings.align_language ("en", the language when none is given),
    align_model_dir, volume and device (see align_model_source).
    """
    try:
        import whisperx
        import whisperx.alignment as whisperx_alignment
    except ImportError as error:
        return None, (
            f"word timings are unavailable because whisperx cannot be imported ({error}); "
            "enable the whisperx feature of the environment to get them."
        )
    from handler.engine import pick_device

    language = language or getattr(settings, "align_language", None) or "en"
    model_name, cache_dir = align_model_source(settings, language)
    device = pick_device(getattr(settings, "device", None))
    _keep_sentence_split_offline(whisperx_alignment)
    try:
        model, metadata = whisperx.load_align_model(
            language, device, model_name=model_name, model_dir=cache_dir
        )
    except Exception as error:  # whisperx raises bare ValueErrors, torch OSErrors
        where = model_name or cache_dir or "the whisperx default"
        return None, (
            f"word timings are unavailable because the {language} alignment model did not "
            f"load from {where} ({str(error)[:200]}); run `python -m bootstrap fetch-models` "
            "with this language in F5TTS_ALIGN_LANGUAGES, or fix F5TTS_ALIGN_MODEL_DIR."
        )
    return WhisperxAligner(model, metadata, device, language), None


def load_aligner(settings: Any) -> WhisperxAligner | None:
    """The default language's aligner, or None (the reason logged) when unavailable."""
    aligner, reason = try_load_aligner(settings)
    if reason:
        log.warning(reason)
    return aligner


def language_loader(settings: Any):
    """Loads the aligner of another language on first use; failures are sentences."""
    from handler.errors import UserError

    def load(language: str) -> WhisperxAligner:
        aligner, reason = try_load_aligner(settings, language)
        if aligner is None:
            raise UserError(str(reason))
        log.info("loaded the %s alignment model", language)
        return aligner

    return load
