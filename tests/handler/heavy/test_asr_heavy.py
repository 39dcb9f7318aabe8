"""Reference transcription (handler.asr) through a real transformers ASR pipeline."""

from __future__ import annotations

from handler.asr import load_transcriber, resolve_asr_dir, try_load_transcriber


def test_whisper_in_the_default_volume_dir_transcribes_the_reference_clip(tiny_models):
    settings = tiny_models.settings(asr_model_dir=None)
    assert resolve_asr_dir(settings) == tiny_models.asr_model_dir

    transcriber = load_transcriber(settings)
    assert transcriber is not None and transcriber.pipe.type == "seq2seq_whisper"

    text = transcriber.transcribe(tiny_models.reference_wav)

    # Random weights: the words are noise, the pipeline and its output are real.
    assert isinstance(text, str)
    assert text == text.strip()


def test_no_model_on_the_volume_means_no_transcriber_and_a_sentence_why(tiny_models, tmp_path):
    settings = tiny_models.settings(volume=tmp_path, asr_model_dir=None)

    transcriber, reason = try_load_transcriber(settings)

    assert transcriber is None
    expected_dir = tmp_path / "models" / "whisper-large-v3-turbo"
    assert resolve_asr_dir(settings) == expected_dir
    assert str(expected_dir) in reason and "ref_text" in reason
    assert load_transcriber(settings) is None


def test_a_ctc_model_dir_works_through_the_same_pipeline(tiny_models):
    transcriber = load_transcriber(tiny_models.settings(asr_model_dir=tiny_models.align_model_dir))
    assert transcriber is not None and transcriber.pipe.type == "ctc"
    assert isinstance(transcriber.transcribe(tiny_models.reference_wav), str)
