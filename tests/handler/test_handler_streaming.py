"""Streaming (`stream: true` on an F5TTS_STREAMING worker), with the model doubles.

The handler as runpod-python calls it (`Worker.runpod_config()["handler"]`, an async
generator on a streaming worker); the real model's equality of streamed and whole
audio is in tests/handler/heavy/test_streaming_heavy.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json

import numpy as np
import pytest
import requests

from handler.engine.scheduler import BatchBudget
from handler.engine.synthesis import Crossfader, crossfade
from handler.stream_encoding import mp3_frame
from handler.streaming import MAX_PIECE_BYTES
from handler.worker import Worker, build_worker
from tests.handler.clips import decoded_pcm16
from tests.handler.doubles import FailingChunkEngine, SlowSineEngine, double_models
from tests.handler.sdk_loop import run_jobs

TEXT = "Hello there. This is the second sentence. A third one follows! And the end."


@pytest.fixture
def env(tmp_path, ffmpeg_bin_dir):
    return {"F5TTS_VOLUME": str(tmp_path / "vol"), "F5TTS_WARMUP": "0"}


@pytest.fixture
def ref(reference_wav) -> str:
    return base64.b64encode(reference_wav).decode()


def worker_with(env, engine=None, **variables) -> Worker:
    models = double_models()
    if engine is not None:
        models.engine = engine
    return build_worker(lambda s: models, {**env, "F5TTS_STREAMING": "1", **variables})


def collect(worker: Worker, job_input: dict, job_id: str = "job-1") -> list[dict]:
    """Every value the handler yields for one job, as the SDK receives them."""
    handler = worker.runpod_config()["handler"]

    async def go():
        return [item async for item in handler({"id": job_id, "input": job_input})]

    return asyncio.run(go())


def joined(pieces: list[dict]) -> bytes:
    return b"".join(base64.b64decode(p["audio"]) for p in pieces)


def job(ref: str, **fields) -> dict:
    return {"text": TEXT, "ref_audio_base64": ref, "ref_text": "Ref.", "seed": 9, **fields}


def test_streamed_pcm_equals_the_whole_file_sample_for_sample(env, ref):
    worker = worker_with(env)
    for fmt in ("wav", "pcm"):
        pieces = collect(worker, job(ref, format=fmt, stream=True))
        (whole,) = collect(worker, job(ref, format=fmt))
        stream, file = joined(pieces), base64.b64decode(whole["audio"]["base64"])
        body = 44 if fmt == "wav" else 0
        assert stream[body:] == file[body:] and len(pieces) > 2
        result = pieces[-1]["result"]
        assert result["audio"]["duration_s"] == whole["audio"]["duration_s"]
        assert result["audio"]["stream"]["sha256"] == hashlib.sha256(stream).hexdigest()


def test_pieces_carry_sequence_start_and_duration_and_the_last_the_result(env, ref):
    pieces = collect(worker_with(env), job(ref, format="pcm", stream=True, words=True))
    assert [p["seq"] for p in pieces] == list(range(len(pieces)))
    assert pieces[0]["format"] == "pcm" and pieces[0]["sample_rate"] == 24000
    audio, last = pieces[:-1], pieces[-1]
    for before, after in itertools.pairwise(audio):
        assert after["start_s"] == pytest.approx(before["start_s"] + before["duration_s"])
    for piece in audio:
        assert len(base64.b64decode(piece["audio"])) == round(piece["duration_s"] * 24000) * 2
        assert "final" not in piece and "result" not in piece
    assert last["final"] is True and last["audio"] == "" and last["duration_s"] == 0
    result = last["result"]
    assert result["seed"] == 9 and result["nfe_step"] == 32 and result["words"]
    assert result["audio"]["stream"]["pieces"] == len(audio)
    assert 0 <= result["timings"]["first_audio_ms"] <= result["timings"]["total_ms"]
    assert "base64" not in result["audio"] and "url" not in result["audio"]


@pytest.mark.parametrize(
    ("fmt", "rate", "frame"),
    [
        ("wav", None, 0),
        ("pcm", None, 0),
        ("wav", 16000, 0),
        ("mp3", None, 576),
        ("mp3", 44100, 1152),
        ("ogg", None, 480),
        ("ogg", 48000, 960),
    ],
)
def test_every_streamable_format_concatenated_decodes_to_its_declared_duration(
    env, ref, fmt, rate, frame
):
    pieces = collect(worker_with(env), job(ref, format=fmt, sample_rate=rate, stream=True))
    out_rate = rate or 24000
    declared = sum(p["duration_s"] for p in pieces)
    samples = decoded_pcm16(joined(pieces), fmt, out_rate)
    assert abs(samples.size - declared * out_rate) <= max(frame, 1)
    speech = pieces[-1]["result"]["audio"]["duration_s"] * out_rate
    if fmt == "mp3":  # no header can tell a stream's decoder the encoder's delay
        assert 0 <= samples.size - speech <= 1105 * out_rate / 24000 + 2 * frame
    else:
        assert abs(samples.size - speech) <= max(frame, 2)


def test_mp3_frames_are_read_from_their_headers():
    assert mp3_frame(bytes([0xFF, 0xF3, 0xC4, 0xC4])) == (72 * 128000 // 24000, 576)
    assert mp3_frame(bytes([0xFF, 0xFB, 0x90, 0x00])) == (144 * 128000 // 44100, 1152)
    with pytest.raises(ValueError, match="not an MPEG"):
        mp3_frame(b"ID3\x04")


def test_a_long_chunk_is_split_into_pieces_of_at_most_one_megabyte(env, ref):
    long_sentence = " ".join(["word"] * 900) + "."  # one chunk of ~225 s: 10.8 MB as wav
    pieces = collect(worker_with(env), job(ref, text=long_sentence, format="wav", stream=True))
    sizes = [len(json.dumps(p).encode()) for p in pieces]
    assert max(sizes) <= MAX_PIECE_BYTES and len(pieces) > 11
    assert sum(p["duration_s"] for p in pieces) == pytest.approx(
        pieces[-1]["result"]["audio"]["duration_s"], abs=1e-3
    )


def test_a_script_streams_segment_after_segment_with_its_pauses(env, ref):
    worker = worker_with(env)
    script = {
        "segments": [
            {"text": "First speaker here. Still first.", "speaker": "A"},
            {"text": "Second one.", "speaker": "B", "pause_s": 0.5},
            {"text": "First again, at the end."},
        ],
        "ref_audio_base64": ref,
        "ref_text": "Ref.",
        "seed": 4,
        "format": "pcm",
    }
    pieces = collect(worker, {**script, "stream": True})
    (whole,) = collect(worker, script)
    assert joined(pieces) == base64.b64decode(whole["audio"]["base64"])
    assert pieces[-1]["result"]["segments"] == whole["segments"]


def test_stream_true_on_a_worker_that_does_not_stream_is_refused_with_the_setting(env, ref):
    worker = build_worker(lambda s: double_models(), env)
    config = worker.runpod_config()
    assert "return_aggregate_stream" not in config
    result = asyncio.run(config["handler"]({"id": "j", "input": job(ref, stream=True)}))
    assert "F5TTS_STREAMING=1" in result["error"]
    assert worker.runner.models.engine.calls == []


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"format": "flac"}, "flac cannot be streamed"),
        ({"format": "aac"}, "aac cannot be streamed"),
        ({"normalize": True}, "normalize cannot be streamed"),
        ({"remove_silence": True}, "remove_silence cannot be streamed"),
        ({"delivery": "base64"}, "delivery 'base64'"),
    ],
)
def test_what_cannot_stream_is_refused_before_any_work(env, ref, fields, says):
    worker = worker_with(env)
    (result,) = collect(worker, job(ref, stream=True, **fields))
    assert says.lower() in result["error"].lower() and "\n" not in result["error"]
    assert worker.runner.models.engine.calls == []


def test_a_job_that_does_not_stream_yields_its_usual_output_once(env, ref):
    streaming = collect(worker_with(env), job(ref, format="pcm"))
    default = asyncio.run(
        build_worker(lambda s: double_models(), env).runpod_config()["handler"](
            {"id": "j", "input": job(ref, format="pcm")}
        )
    )
    assert len(streaming) == 1
    strip = lambda out: {**out, "timings": None}  # noqa: E731 (times differ)
    assert strip(streaming[0]) == strip(default)


def test_a_failure_at_chunk_k_of_n_ends_the_job_failed_after_k_pieces(env, ref):
    engine = FailingChunkEngine("Boom")
    worker = worker_with(env, engine)
    text = "One is fine. Two is fine. Boom goes three. Four never comes."
    records = run_jobs(
        worker.runpod_config(),
        [{"id": "a", "input": job(ref, text=text, format="pcm", stream=True)}],
    )
    record = records["a"]
    assert record.status == "FAILED"
    assert "the model failed on a chunk containing 'Boom'" in record.result["error"]
    assert "Traceback" not in record.result["error"]
    # the pieces made before the failure went out; no last piece says it is complete
    assert record.streamed and all("final" not in p for p in record.streamed)
    sent = sum(p["duration_s"] for p in record.streamed)
    two_chunks = len("One is fine.Two is fine.") * 0.05  # the double's seconds per char
    assert 0 < sent <= two_chunks


def test_a_fatal_gpu_error_while_streaming_asks_runpod_for_a_new_worker(env, ref):
    from tests.handler.doubles import CudaCrashEngine

    worker = worker_with(env, CudaCrashEngine())
    config = worker.runpod_config()
    records = run_jobs(config, [{"id": "a", "input": job(ref, stream=True)}])
    assert "GPU failed" in records["a"].result["error"]
    assert records["a"].result.get("stopPod") is True and config["refresh_worker"] is True


def test_with_a_bucket_the_whole_file_is_stored_and_its_url_is_in_the_last_piece(
    env, ref, s3_endpoint, bucket
):
    from tests.handler.local_api import s3_env

    worker = worker_with(env, **s3_env(s3_endpoint, bucket))
    pieces = collect(worker, job(ref, format="wav", stream=True, subtitles=["srt"]))
    result = pieces[-1]["result"]
    stored = requests.get(result["audio"]["url"], timeout=10).content
    assert stored[44:] == joined(pieces)[44:]  # same samples; the file has true sizes
    assert int.from_bytes(stored[40:44], "little") == len(stored) - 44
    assert result["audio"]["bytes"] == len(stored)
    assert requests.get(result["subtitles"]["srt"]["url"], timeout=10).text.startswith("1\n")


def test_the_incremental_cross_fade_is_the_whole_join_bit_for_bit():
    rng = np.random.default_rng(3)
    for _ in range(300):
        fade = int(rng.integers(0, 50))
        waves = [
            rng.uniform(-1, 1, int(rng.integers(0, 120))).astype(np.float32)
            for _ in range(int(rng.integers(1, 6)))
        ]
        fader = Crossfader(fade)
        parts = []
        for wave in waves:
            parts.append(fader.push(wave))
            assert fader.tail.size <= fade  # only the fade tail waits for the next chunk
        parts.append(fader.finish())
        np.testing.assert_array_equal(np.concatenate(parts), crossfade(waves, fade))


def audio_of(record_output, streamed: bool) -> bytes:
    """The PCM a job delivered: its pieces, or its one output's base64."""
    if streamed:
        return joined(record_output)
    (out,) = record_output  # a streaming worker's non-streamed job: [output]
    return base64.b64decode(out["audio"]["base64"])


def test_concurrent_jobs_share_model_passes_and_each_sounds_as_alone(env, ref):
    engine = SlowSineEngine(0.03)
    worker = worker_with(env, engine, F5TTS_MAX_CONCURRENCY="4")
    inputs = {
        f"job{i}": job(ref, seed=i, format="pcm", stream=i % 2 == 0, text=TEXT * (1 + i % 2))
        for i in range(6)
    }
    records = run_jobs(worker.runpod_config(), [{"id": k, "input": v} for k, v in inputs.items()])
    assert {r.status for r in records.values()} == {"COMPLETED"}
    shared = [b for b in engine.batches if len({w.job for w in b}) > 1]
    assert shared, "chunks of different jobs never met in one pass"
    for job_id, job_input in inputs.items():
        alone = collect(worker_with(env), job_input)
        expected = audio_of(alone, job_input["stream"])
        got = audio_of(records[job_id].result["output"], job_input["stream"])
        assert got == expected, job_id  # the double's chunks do not depend on batch-mates


def test_concurrency_on_a_worker_that_does_not_stream_keeps_each_output_a_dict(env, ref):
    worker = build_worker(lambda s: double_models(), {**env, "F5TTS_MAX_CONCURRENCY": "3"})
    config = worker.runpod_config()
    assert config["concurrency_modifier"](1) == 3
    jobs = [{"id": f"j{i}", "input": job(ref, seed=i, format="pcm")} for i in range(3)]
    records = run_jobs(config, jobs)
    for i in range(3):
        out = records[f"j{i}"].result["output"]
        assert out["seed"] == i and base64.b64decode(out["audio"]["base64"])


def test_stopping_one_job_drops_its_chunks_and_leaves_the_others_intact(env, ref):
    engine = SlowSineEngine(0.1, budget=BatchBudget(max_chunks=2))
    worker = worker_with(env, engine, F5TTS_MAX_CONCURRENCY="3")
    # long enough to outlast the SDK's stop poll (it waits 1 s after an empty one)
    victim_text = " ".join(f"Victim sentence {i}." for i in range(40))
    inputs = {
        "victim": job(ref, text=victim_text, format="pcm", stream=True, seed=1),
        "a": job(ref, format="pcm", stream=True, seed=2),
        "b": job(ref, format="pcm", seed=3),
    }

    def stop(records):
        return ["victim"] if records["victim"].streamed else []

    records = run_jobs(
        worker.runpod_config(), [{"id": k, "input": v} for k, v in inputs.items()], stop=stop
    )
    assert records["victim"].status == "STOPPED" and records["victim"].streamed
    ran = [w.text for batch in engine.batches for w in batch if "Victim" in w.text]
    assert len(ran) < 40  # its pending chunks never reached the model
    assert worker.runner.batcher.pending_jobs() == set()
    for job_id in ("a", "b"):
        assert records[job_id].status == "COMPLETED"
        alone = collect(worker_with(env), inputs[job_id])
        stream = inputs[job_id].get("stream", False)
        assert audio_of(records[job_id].result["output"], stream) == audio_of(alone, stream)


def test_an_encoder_that_stops_fails_the_stream_with_ffmpegs_reason(env, ref):
    worker = worker_with(env)
    (result,) = collect(worker, job(ref, format="mp3", sample_rate=9000, stream=True))
    assert "could not be encoded" in result["error"] and "ffmpeg" in result["error"]
    assert "\n" not in result["error"] and "Traceback" not in result["error"]
