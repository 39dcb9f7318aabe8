"""Decoding anything to mono float at a rate, encoding the offered formats (real ffmpeg)."""

from __future__ import annotations

import io
import subprocess
import tempfile
import wave

import numpy as np
import pytest

from handler import audio
from handler.errors import UserError, error_result
from tests.handler.clips import speechlike, wav_bytes


@pytest.fixture(autouse=True)
def _ffmpeg(ffmpeg_bin_dir):
    return ffmpeg_bin_dir


def test_decode_resamples_to_the_rate_asked_for():
    samples = audio.decode(wav_bytes(speechlike(2.0), 16000), 24000, 30)
    assert samples.dtype == np.float32 and abs(samples.size / 24000 - 2.0) < 0.01


def test_decode_refuses_a_clip_over_the_duration_limit():
    with pytest.raises(UserError, match="longer than 5 s"):
        audio.decode(wav_bytes(speechlike(8.0)), 16000, 5)


@pytest.mark.parametrize("data", [b"not audio at all" * 100, b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_decode_refuses_corrupt_input_with_a_sentence(data):
    with pytest.raises(UserError, match="not a readable audio file") as caught:
        audio.decode(data, 24000, 30)
    assert "\n" not in caught.value.sentence


def test_decode_refuses_empty_input():
    with pytest.raises(UserError, match="empty"):
        audio.decode(b"", 24000, 30)


@pytest.mark.parametrize(
    ("fmt", "magic"), [("wav", b"RIFF"), ("flac", b"fLaC"), ("mp3", None), ("ogg", b"OggS")]
)
def test_every_offered_format_encodes_and_decodes_back(fmt, magic):
    tone = speechlike(1.0, 24000)
    encoded = audio.encode(tone, 24000, fmt, 24000 if fmt == "ogg" else 22050)
    if magic:
        assert encoded.data.startswith(magic)
    back = audio.decode(encoded.data, 16000, 30)
    assert abs(back.size / 16000 - 1.0) < 0.1
    assert encoded.content_type.startswith("audio/")


def test_wav_output_has_correct_header_sizes_and_rate():
    encoded = audio.encode(np.zeros(24000, np.float32), 24000, "wav", 16000)
    with wave.open(io.BytesIO(encoded.data)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        assert w.getnframes() == 16000
    assert encoded.duration_s == 1.0


def test_wav_at_the_source_rate_is_written_without_ffmpeg_and_matches_its_output(monkeypatch):
    tone = speechlike(0.5, 24000)
    via_ffmpeg = audio.encode(tone, 24000, "wav", 22050)  # resampling goes through ffmpeg
    assert via_ffmpeg.sample_rate == 22050
    monkeypatch.setattr(audio, "ffmpeg", lambda: "/nonexistent/ffmpeg")
    direct = audio.encode(tone, 24000, "wav")
    with wave.open(io.BytesIO(direct.data)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnframes()) == (24000, 2, tone.size)
        pcm = np.frombuffer(w.readframes(tone.size), "<i2") / 32767
    assert np.max(np.abs(pcm - tone)) < 1e-4


def test_ffmpeg_missing_is_a_sentence_that_keeps_the_programs_name(monkeypatch):
    """It read "Ffmpeg is not on PATH" once the sentence got its capital letter."""
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(UserError) as caught:
        audio.encode(np.zeros(100, np.float32), 24000, "mp3")
    text = error_result(caught.value)["error"]
    assert "ffmpeg" in text and "Ffmpeg" not in text and "PATH" in text


def test_a_reference_that_is_a_playlist_of_other_files_is_not_followed(tmp_path, monkeypatch):
    """An ffconcat script sent as the clip made ffmpeg read another file beside the temp
    input (another job's clip, say): ffmpeg may decode only the bytes it was given."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where decode writes its input
    (tmp_path / "other.wav").write_bytes(wav_bytes(speechlike(2.0)))
    with pytest.raises(UserError, match="not a readable audio file"):
        audio.decode(b"ffconcat version 1.0\nfile other.wav\n", 24000, 30)


@pytest.mark.parametrize(
    ("container", "codec"),
    [
        ("wav", "pcm_s16le"),
        ("flac", "flac"),
        ("mp3", "libmp3lame"),
        ("ogg", "libopus"),
        ("ipod", "aac"),
        ("webm", "libopus"),
        ("mov", "aac"),
        ("adts", "aac"),
        ("aiff", "pcm_s16be"),
    ],
)
def test_the_containers_clients_record_in_still_decode(tmp_path, container, codec):
    clip = tmp_path / "clip"
    rate = "48000" if codec == "libopus" else "24000"
    args = ["-v", "error", "-i", "pipe:0", "-c:a", codec, "-ar", rate, "-f", container]
    subprocess.run(
        [audio.ffmpeg(), *args, str(clip)],
        input=wav_bytes(speechlike(2.0)),
        check=True,
    )
    samples = audio.decode(clip.read_bytes(), 24000, 30)
    assert abs(samples.size / 24000 - 2.0) < 0.1
