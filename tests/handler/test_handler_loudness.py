"""`normalize: true` brings the output to a target loudness (EBU R128, ffmpeg's loudnorm
in two passes, true-peak limited), measured here by an independent meter (pyloudnorm,
ITU-R BS.1770-4) on the file as a client decodes it."""

from __future__ import annotations

import base64
import io

import numpy as np
import pyloudnorm
import pytest
import soundfile

from handler import audio
from tests.handler.clips import speechlike
from tests.handler.local_api import LocalApi, worker_env


def loudness_and_peak_db(wav: bytes) -> tuple[float, float]:
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    peak = 20 * np.log10(np.max(np.abs(samples)))
    return pyloudnorm.Meter(rate).integrated_loudness(samples), peak


@pytest.fixture(scope="module")
def api(ffmpeg_bin_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loudness")
    server = LocalApi(worker_env(ffmpeg_bin_dir, tmp / "vol"), tmp / "worker.log")
    yield server
    server.stop()


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_normalized_output_measures_the_target_loudness_with_peaks_below_the_limit(
    api, reference_wav, target
):
    job = {
        "text": "A sentence long enough to measure. And another one after it.",
        "ref_audio_base64": base64.b64encode(reference_wav).decode(),
        "ref_text": "Reference.",
        "normalize": True,
    }
    if target != -16.0:
        job["loudness_lufs"] = target
    result = api.runsync(job)
    assert result["status"] == "COMPLETED", result
    out = result["output"]["audio"]
    lufs, peak = loudness_and_peak_db(base64.b64decode(out["base64"]))
    assert abs(lufs - target) < 1.0, lufs
    assert peak <= audio.LOUDNESS_TRUE_PEAK_DB + 0.1
    assert abs(out["loudness_lufs"] - target) < 1.0


def test_without_normalize_the_level_is_what_the_engine_made(api, reference_wav):
    result = api.runsync(
        {
            "text": "A sentence long enough to measure. And another one after it.",
            "ref_audio_base64": base64.b64encode(reference_wav).decode(),
            "ref_text": "Reference.",
        }
    )
    lufs, _ = loudness_and_peak_db(base64.b64decode(result["output"]["audio"]["base64"]))
    assert abs(lufs - -23.0) > 4 and "loudness_lufs" not in result["output"]["audio"]


def test_normalisation_keeps_the_length_so_word_times_stay_true(ffmpeg_bin_dir):
    quiet = 0.02 * speechlike(3.0, 24000)
    louder, reached = audio.normalize_loudness(quiet, 24000, -16.0)
    assert louder.size == quiet.size and reached is not None
    assert np.max(np.abs(louder)) > 5 * np.max(np.abs(quiet))


def test_silence_is_left_as_it_is(ffmpeg_bin_dir):
    silence = np.zeros(24000, dtype=np.float32)
    same, reached = audio.normalize_loudness(silence, 24000, -16.0)
    assert reached is None and np.array_equal(same, silence)


def test_the_second_pass_runs_only_on_a_finite_measurement():
    assert audio.plan_second_pass({"input_i": "-30.1", "input_tp": "-20.0"})
    assert not audio.plan_second_pass({"input_i": "-inf", "input_tp": "-inf"})
    assert not audio.plan_second_pass({})
