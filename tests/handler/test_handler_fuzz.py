"""Any job input: never an uncaught exception, every failure a non-empty sentence."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runpod.serverless.modules.rp_job import run_job

from handler.jobs import JobRunner
from handler.schema import OPS
from handler.settings import Settings
from handler.worker import Worker
from tests.handler.doubles import double_models

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
KEYS = [
    "op",
    "endpoint",
    "text",
    "voice",
    "ref_audio",
    "ref_audio_base64",
    "ref_text",
    "speed",
    "nfe_step",
    "seed",
    "format",
    "sample_rate",
    "subtitles",
    "words",
    "words_per_cue",
    "karaoke",
    "delivery",
    "voice_id",
    "limit",
    "cursor",
    "local_voice",
    "timing_format",
    "return_word_timings",
    "voice_name",
    "voice_file_url",
    "timing_method",
    "overwrite",
    "segments",
    "pause_s",
    "language",
    "normalize",
    "loudness_lufs",
    "input",
    "response_format",
    "model",
    "instructions",
    "openai_route",
    "openai_input",
]
job_inputs = st.one_of(
    values,
    st.dictionaries(
        st.sampled_from(KEYS),
        st.one_of(
            values,
            st.sampled_from(
                [
                    *OPS,
                    "upload",
                    "list_voices",
                    "download",
                    "srt",
                    "https://10.0.0.1/a.wav",
                    "s3://b/k",
                    "data:,x",
                    "[anna] hi [bob] ho",
                    "/v1/audio/speech",
                    "pcm",
                    "aac",
                ]
            ),
        ),
        max_size=8,
    ),
)


@pytest.fixture(scope="module")
def worker(tmp_path_factory, ffmpeg_bin_dir):
    volume = tmp_path_factory.mktemp("fuzz-volume")
    s = Settings(volume=volume, warmup=False, fetch_timeout_s=0.5)
    return Worker(JobRunner(s, double_models(), None))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(job_inputs)
def test_any_input_is_output_or_one_sentence(worker, job_input):
    result = asyncio.run(run_job(worker.handle, {"id": "fuzz", "input": job_input}))
    if "error" in result:
        error = result["error"]
        assert isinstance(error, str) and error.strip() and "\n" not in error
        assert not error.startswith("Internal error"), error
        assert "Traceback" not in error
    else:
        assert isinstance(result.get("output"), dict)
