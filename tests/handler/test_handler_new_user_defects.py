"""The defects a run as a new user found (issue 9), each as the scenario that showed it.

Every test here failed on the code before its fix; the features the same issue asked
for are tested in test_handler_openai_shape.py, test_handler_script.py and
test_handler_loudness.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from runpod.serverless.modules.rp_job import run_job

from handler import audio, script, subtitles
from handler.contracts import PreparedReference, Word
from handler.engine.chunking import (
    FRAMES_PER_SECOND,
    REFERENCE_MAX_SECONDS,
    SAMPLE_RATE,
    model_ref_text,
    plan_chunks,
    ref_frames_of,
    reference_problem,
    upstream_duration,
    utf8_len,
)
from handler.engine.vocoder import wave_length
from handler.errors import StorageError, UserError, sentence
from handler.jobs import ESTIMATE_SHARE, JobRunner, Models
from handler.schema import parse_job
from handler.storage import ObjectStore
from handler.worker import Worker, build_worker
from tests.handler.clips import decoded_pcm16, speechlike
from tests.handler.doubles import EvenAligner, FixedTranscriber, SineEngine, double_models

MAX_ERROR_CHARS = 600


def tts(runner: JobRunner, reference_wav: bytes, **fields) -> dict:
    """A tts job on a base64 reference clip with its transcript."""
    clip = base64.b64encode(reference_wav).decode()
    return runner.run("j", {"ref_audio_base64": clip, "ref_text": "R.", **fields})


def sdk_error(runner: JobRunner, job_input) -> str:
    result = asyncio.run(run_job(Worker(runner).handle, {"id": "j", "input": job_input}))
    assert "error" in result, result
    return result["error"]


# -- 1. plain base64 in ref_audio --------------------------------------------------
def test_plain_base64_in_ref_audio_is_read_as_the_clip(inline_runner, reference_wav):
    out = inline_runner.run(
        "j",
        {"text": "Hi.", "ref_audio": base64.b64encode(reference_wav).decode(), "ref_text": "R."},
    )
    assert out["audio"]["duration_s"] > 0


def test_base64_that_is_not_audio_is_reported_as_not_audio(inline_runner):
    garbage = base64.b64encode(b"this is a text file, not a recording " * 20).decode()
    error = sdk_error(inline_runner, {"text": "Hi.", "ref_audio": garbage, "ref_text": "R."})
    assert "not a readable audio file" in error and "https" not in error


def test_ref_audio_that_is_neither_url_nor_base64_says_what_it_accepts(inline_runner):
    error = sdk_error(inline_runner, {"text": "Hi.", "ref_audio": "my voice.wav", "ref_text": "R."})
    assert "base64" in error and "https://" in error and "must use https" not in error


# -- 2. declared duration is what decoders play -------------------------------------
FRAME_SAMPLES = {"mp3": 1152, "aac": 1024, "ogg": 960 * 24000 // 48000}


def decoded_seconds(data: bytes, fmt: str, rate: int, tmp_path) -> float:
    return decoded_pcm16(data, fmt, rate).size / rate


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "aac", "pcm"])
@pytest.mark.parametrize("rate", [24000, 16000])
def test_every_format_declares_the_duration_ffmpeg_decodes(fmt, rate, tmp_path, ffmpeg_bin_dir):
    tone = speechlike(1.37, 24000)
    encoded = audio.encode(tone, 24000, fmt, rate)
    frame_s = FRAME_SAMPLES.get(fmt, 1) / rate
    played = decoded_seconds(encoded.data, fmt, rate, tmp_path)
    assert abs(played - encoded.duration_s) <= frame_s + 0.001, (fmt, played, encoded.duration_s)


# -- 3. error strings are bounded --------------------------------------------------
@pytest.mark.parametrize(
    "job_input",
    [
        {"text": "Hi", "voice": "anna", "x" * 100_000: 1},
        {"text": "Hi", "voice": "anna", **{f"field{i}": 1 for i in range(2000)}},
        {"text": "Hi", "voice": "anna", "timing_method": "g" * 100_000},
        {"text": "Hi", "ref_audio": "https://" + "h" * 100_000 + ".com/a.wav", "ref_text": "R."},
        {"text": "Hi", "ref_audio": "s3://bucket/" + "k" * 100_000, "ref_text": "R."},
        {"text": "Hi", "voice": "anna", "format": "f" * 100_000},
        {"op": "voice.get", "voice_id": "v" * 100_000},
    ],
)
def test_every_error_is_one_short_sentence_whatever_the_input_echoes(inline_runner, job_input):
    error = sdk_error(inline_runner, job_input)
    assert len(error) <= MAX_ERROR_CHARS, error[:300]
    assert "\n" not in error


def test_a_long_s3_key_in_a_storage_error_is_cut(s3_settings, models):
    runner = JobRunner(s3_settings, models, ObjectStore(s3_settings))
    key = "voices/" + "k" * 5000
    error = sdk_error(
        runner, {"text": "Hi", "ref_audio": f"s3://{s3_settings.s3_bucket}/{key}", "ref_text": "R."}
    )
    assert len(error) <= MAX_ERROR_CHARS


# -- 4. a malformed voice.list cursor is the caller's error -----------------------
def test_a_malformed_voice_list_cursor_is_refused_at_once_not_retried(s3_settings, models):
    settings = s3_settings.model_copy(update={"s3_backoff_s": 0.5, "s3_attempts": 4})
    runner = JobRunner(settings, models, ObjectStore(settings))
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        runner.run("j", {"op": "voice.list", "cursor": "garbage!"})
    assert not isinstance(caught.value, StorageError)
    assert "cursor" in caught.value.sentence and time.monotonic() - started < 1.0


# -- 6. earlier clients get the earlier output fields --------------------------------
def test_an_earlier_tts_request_gets_the_earlier_output_fields(s3_settings, models, reference_wav):
    runner = JobRunner(s3_settings, models, ObjectStore(s3_settings))
    ref = "data:audio/wav;base64," + base64.b64encode(reference_wav).decode()
    runner.run("j", {"endpoint": "upload", "voice_name": "Old", "voice_file_url": ref})
    out = runner.run(
        "job-7",
        {
            "endpoint": "tts",
            "text": "Hello there friend.",
            "local_voice": "Old",
            "return_word_timings": True,
            "timing_format": "vtt",
        },
    )
    assert out["audio_url"] == out["audio"]["url"]
    assert out["duration"] == out["audio"]["duration_s"]
    assert out["text"] == "Hello there friend." and out["job_id"] == "job-7"
    assert out["status"] == "completed"
    assert out["timing_files"] == {"vtt": out["subtitles"]["vtt"]["url"]}
    assert out["word_count"] == 3


def test_an_earlier_list_voices_request_gets_name_size_and_last_modified(
    inline_runner, reference_wav
):
    ref = "data:audio/wav;base64," + base64.b64encode(reference_wav).decode()
    inline_runner.run("j", {"endpoint": "upload", "voice_name": "old", "voice_file_url": ref})
    voice = inline_runner.run("j", {"endpoint": "list_voices"})["voices"][0]
    assert voice["name"] == "old" and voice["size"] == voice["bytes"]
    assert voice["last_modified"] == voice["created_at"]


# -- 7. endpoint and op that disagree ----------------------------------------------
def test_endpoint_and_op_that_disagree_are_refused():
    with pytest.raises(UserError, match="endpoint") as caught:
        parse_job({"endpoint": "list_voices", "op": "tts", "text": "Hi", "voice": "a"})
    assert "op" in caught.value.sentence


# -- 8. subtitle text is escaped; identifiers keep their case ----------------------
TRICKY = [Word("a-->b", 0.0, 0.5), Word("&", 0.5, 0.8), Word("<b>bold</b>", 0.8, 1.2)]


def test_webvtt_cue_text_is_escaped_as_the_spec_asks():
    cues = subtitles.group_cues(TRICKY, 7)
    vtt = subtitles.render("vtt", TRICKY, cues)
    payload = [line for line in vtt.splitlines()[1:] if line and " --> " not in line]
    assert all("-->" not in line and "<b>" not in line for line in payload), vtt
    assert "&amp;" in vtt and "&lt;b&gt;" in vtt


def test_srt_cue_text_cannot_end_the_cue_or_open_a_tag():
    cues = subtitles.group_cues(TRICKY, 7)
    srt = subtitles.render("srt", TRICKY, cues)
    text_lines = [line for line in srt.splitlines() if line and " --> " not in line]
    assert all("-->" not in line and "<b>" not in line for line in text_lines), srt


def test_inline_ass_starts_with_the_bom_the_docs_promise(inline_runner, reference_wav):
    out = tts(inline_runner, reference_wav, text="Hi there.", subtitles=["ass"])
    assert out["subtitles"]["ass"]["text"].startswith("\ufeff[Script Info]")


@pytest.mark.parametrize(
    "raw", ["timing_method 'google' is not available", "s3://bucket/key is too big"]
)
def test_error_sentences_keep_identifiers_and_urls_as_written(raw):
    assert sentence(raw).startswith(raw.split()[0])


# -- 9. an output that cannot fit inline is refused before the work -----------------
def test_an_output_over_the_inline_limit_is_refused_before_synthesis(make_settings, reference_wav):
    engine, aligner = SineEngine(), EvenAligner()
    runner = JobRunner(
        make_settings(max_inline_bytes=50_000), Models(engine, aligner, FixedTranscriber()), None
    )
    with pytest.raises(UserError, match="F5TTS_MAX_INLINE_BYTES"):
        runner.run(
            "j",
            {
                "text": "A long sentence to read aloud. " * 40,
                "ref_audio_base64": base64.b64encode(reference_wav).decode(),
                "ref_text": "Reference words here.",
                "subtitles": ["srt"],
            },
        )
    assert engine.calls == [] and aligner.calls == 0


def test_remove_silence_skips_the_early_refusal_since_it_may_shorten_the_audio_to_fit(
    make_settings, reference_wav
):
    engine = SineEngine()
    runner = JobRunner(make_settings(max_inline_bytes=50_000), Models(engine), None)
    with pytest.raises(UserError, match="F5TTS_MAX_INLINE_BYTES"):  # after encoding, not before
        runner.run(
            "j",
            {
                "text": "A long sentence to read aloud. " * 40,
                "ref_audio_base64": base64.b64encode(reference_wav).decode(),
                "ref_text": "Reference words here.",
                "remove_silence": True,
            },
        )
    assert engine.calls  # it synthesized: only the real size can tell


def made_by_the_engine(ref_text: str, seconds: float, text: str, speed: float) -> float:
    """Seconds of audio the engine makes at least for `text`: its own chunk plan, each
    chunk asked upstream's duration (CFM only ever raises it), the vocoder's length,
    the default cross-fade at every join."""
    ref_frames = ref_frames_of(int(seconds * SAMPLE_RATE))
    model_text = model_ref_text(ref_text)
    lengths = [
        wave_length(
            upstream_duration(ref_frames, utf8_len(model_text), utf8_len(chunk.text), speed)
            - ref_frames
        )
        for chunk in plan_chunks(text, ref_text=model_text, ref_frames=ref_frames, speed=speed)
    ]
    fade, total = int(0.15 * SAMPLE_RATE), 0
    for i, n in enumerate(lengths):
        total += n - (min(fade, total, n) if i else 0)
    return total / SAMPLE_RATE


@settings(max_examples=300, deadline=None)
@given(
    ref_text=st.text(alphabet="abcdefghij .,!?", min_size=1, max_size=80),
    seconds=st.floats(1.0, REFERENCE_MAX_SECONDS),
    text=st.text(alphabet="abcdefghij .,!?\n", min_size=1, max_size=800),
    speed=st.floats(0.3, 3.0),
)
@example(ref_text="Hi", seconds=2.01, text="Hello there. " * 10, speed=1.0)
@example(ref_text="x", seconds=2.0, text="a" + " " * 300 + "b. " + "c" * 200, speed=1.0)
def test_the_estimate_that_refuses_before_the_work_is_never_over_what_the_engine_makes(
    ref_text, seconds, text, speed
):
    """A short transcript used to make the estimate up to 2.5x too long: F5-TTS paces by
    the transcript as the model reads it, with its closing punctuation and spaces."""
    assume(ref_text.strip() and text.strip() and reference_problem(ref_text, seconds) is None)
    reference = PreparedReference(Path("ref.wav"), ref_text, seconds)
    slack = 2 / FRAMES_PER_SECOND  # each chunk's frames are rounded down, ~20 ms in all
    estimate = ESTIMATE_SHARE * script.estimated_seconds(reference, text, speed)
    assert estimate <= made_by_the_engine(ref_text, seconds, text, speed) + slack


SIGNALS = {
    "silence": np.zeros(5 * 24000, dtype=np.float32),
    "quiet speech": 0.01 * speechlike(5.0, 24000),
    "speech": speechlike(5.0, 24000),
}


@pytest.mark.parametrize("fmt", list(audio.ENCODINGS))
@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
@pytest.mark.parametrize("signal", list(SIGNALS))
def test_the_size_estimate_is_a_floor_of_every_formats_file(fmt, rate, signal, ffmpeg_bin_dir):
    """flac, Opus and AAC spend next to nothing on silence and little on quiet speech,
    and mp3 below 16 kHz is 64 kb/s: their old floors refused outputs that would fit
    (a script with long pauses in flac, an mp3 at 8 kHz)."""
    encoded = audio.encode(SIGNALS[signal], 24000, fmt, rate)
    assert audio.estimated_bytes(fmt, 5.0, rate) <= len(encoded.data)


# -- 10. the aligner is warmed up too ----------------------------------------------
def test_warm_up_also_runs_the_aligner_so_the_first_timed_job_is_not_slow(tmp_path, ffmpeg_bin_dir):
    worker = build_worker(lambda s: double_models(), {"F5TTS_VOLUME": str(tmp_path)})
    assert worker.runner.models.aligner.calls == 1


# -- 11. word timings in the job's language ----------------------------------------
def test_a_job_in_another_language_is_aligned_by_that_languages_model(make_settings, reference_wav):
    loaded = {}

    def load(language):
        loaded[language] = EvenAligner()
        return loaded[language]

    english = EvenAligner()
    models = Models(SineEngine(), english, FixedTranscriber(), load_aligner=load)
    runner = JobRunner(make_settings(align_languages="en,fr"), models, None)
    job = {
        "text": "Bonjour tout le monde.",
        "ref_audio_base64": base64.b64encode(reference_wav).decode(),
        "ref_text": "R.",
        "words": True,
        "language": "fr",
    }
    assert len(runner.run("j", job)["words"]) == 4
    assert loaded["fr"].calls == 1 and english.calls == 0
    runner.run("j", job)
    assert list(loaded) == ["fr"], "a language's aligner is loaded once"


def test_a_language_the_worker_was_not_set_up_for_names_the_setting(make_settings, reference_wav):
    runner = JobRunner(make_settings(), Models(SineEngine(), EvenAligner(), None), None)
    with pytest.raises(UserError, match="F5TTS_ALIGN_LANGUAGES"):
        runner.run(
            "j",
            {
                "text": "Hola.",
                "ref_audio_base64": base64.b64encode(reference_wav).decode(),
                "ref_text": "R.",
                "words": True,
                "language": "es",
            },
        )


def test_word_times_are_float_seconds_inside_the_audio(inline_runner, reference_wav):
    out = tts(inline_runner, reference_wav, text="One two.", words=True)
    assert all(isinstance(w["start"], float) for w in out["words"])
    assert np.isclose(out["words"][-1]["end"], out["audio"]["duration_s"], atol=0.01)
