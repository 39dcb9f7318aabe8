"""The job input: defaults, limits, one-sentence errors and the earlier system's payloads."""

from __future__ import annotations

import pytest

from handler.errors import UserError
from handler.schema import TtsJob, VoiceCreateJob, VoiceListJob, parse_job


def refused(payload, **kw) -> str:
    with pytest.raises(UserError) as caught:
        parse_job(payload, **kw)
    return caught.value.sentence


def test_minimal_tts_job_gets_the_documented_defaults():
    job = parse_job({"text": "Hello.", "ref_audio": "https://example.com/a.wav"})
    assert isinstance(job, TtsJob)
    assert (job.speed, job.nfe_step, job.cfg_strength, job.format) == (1.0, 32, 2.0, "wav")
    assert job.seed is None and job.subtitles == [] and job.words is False


def test_speed_out_of_range_is_one_sentence_naming_the_field():
    text = refused({"text": "Hi", "ref_audio": "https://x.org/a.wav", "speed": 9})
    assert "speed" in text and "3" in text and "\n" not in text and text.endswith(".")


def test_text_over_the_configured_limit_names_the_variable():
    text = refused({"text": "a" * 11, "ref_audio": "https://x.org/a.wav"}, max_text_chars=10)
    assert "F5TTS_MAX_TEXT_CHARS" in text


def test_reference_must_be_given_exactly_once():
    assert "exactly one" in refused({"text": "Hi"})
    both = {"text": "Hi", "voice": "anna", "ref_audio": "https://x.org/a.wav"}
    assert "exactly one" in refused(both)


def test_unknown_field_is_refused_with_a_hint():
    text = refused({"text": "Hi", "voice": "anna", "sped": 1.2})
    assert "sped" in text and "not a known field" in text


def test_unknown_op_lists_the_operations():
    assert "voice.create" in refused({"op": "sing"})


def test_voice_ids_are_lowercase_slugs():
    assert "voice_id" in refused({"op": "voice.get", "voice_id": "../etc"})
    assert "voice_id" in refused({"op": "voice.get", "voice_id": "A" * 3})
    parse_job({"op": "voice.get", "voice_id": "anna_2-b"})


def test_subtitle_formats_accept_a_comma_separated_string():
    job = parse_job({"text": "Hi", "voice": "anna", "subtitles": "SRT, vtt,srt"})
    assert job.subtitles == ["srt", "vtt"]


def test_ogg_needs_an_opus_sample_rate():
    assert "Opus" in refused({"text": "Hi", "voice": "a", "format": "ogg", "sample_rate": 22050})
    parse_job({"text": "Hi", "voice": "a", "format": "opus", "sample_rate": 48000})


def test_earlier_system_tts_payload_still_works():
    job = parse_job(
        {
            "endpoint": "tts",
            "text": "Hello there.",
            "local_voice": "narrator.wav",
            "return_word_timings": True,
            "timing_format": "vtt",
            "timing_method": "whisperx",
            "seed": 7,
        }
    )
    assert isinstance(job, TtsJob)
    assert (job.voice, job.words, job.subtitles, job.seed) == ("narrator", True, ["vtt"], 7)


def test_earlier_local_voice_key_under_voices_becomes_the_voice_id():
    assert parse_job({"text": "Hi", "local_voice": "voices/Narrator.wav"}).voice == "narrator"


def test_earlier_local_voice_url_becomes_ref_audio():
    job = parse_job({"text": "Hi", "local_voice": "https://example.com/me.wav"})
    assert job.ref_audio == "https://example.com/me.wav" and job.voice is None


def test_earlier_word_timings_without_format_default_to_srt():
    job = parse_job({"text": "Hi", "voice": "a", "return_word_timings": True})
    assert job.subtitles == ["srt"]


def test_earlier_upload_and_list_voices_map_to_voice_ops():
    up = parse_job(
        {"endpoint": "upload", "voice_name": "anna", "voice_file_url": "https://x.org/a.wav"}
    )
    assert isinstance(up, VoiceCreateJob) and up.voice_id == "anna"
    assert up.ref_audio == "https://x.org/a.wav"
    assert isinstance(parse_job({"endpoint": "list_voices"}), VoiceListJob)


def test_earlier_upload_name_matches_the_local_voice_that_uses_it():
    up = parse_job(
        {"endpoint": "upload", "voice_name": "Narrator", "voice_file_url": "https://x.org/a.wav"}
    )
    assert up.voice_id == parse_job({"text": "Hi", "local_voice": "Narrator"}).voice == "narrator"


def test_earlier_timing_format_without_word_timings_asks_for_no_subtitles():
    job = parse_job(
        {"text": "Hi", "voice": "a", "return_word_timings": False, "timing_format": "srt"}
    )
    assert (job.words, job.subtitles) == (False, [])


def test_earlier_word_timing_flags_sent_as_strings_mean_the_same_as_booleans():
    asked = parse_job({"text": "Hi", "voice": "a", "return_word_timings": "true"})
    assert (asked.words, asked.subtitles) == (True, ["srt"])
    declined = parse_job(
        {"text": "Hi", "voice": "a", "return_word_timings": "false", "timing_format": "srt"}
    )
    assert (declined.words, declined.subtitles) == (False, [])


def test_earlier_download_op_explains_what_replaced_it():
    assert "presigned" in refused({"endpoint": "download", "job_id": "x"})


def test_google_timing_method_is_refused_with_the_alternative():
    assert "whisperx" in refused({"text": "Hi", "voice": "a", "timing_method": "google"})


@pytest.mark.parametrize("payload", [None, [], "text", 3])
def test_input_that_is_not_an_object_is_refused(payload):
    assert "JSON object" in refused(payload)
