"""`python -m handler` itself (the real model factory) with tiny random F5-TTS weights:
the job layer and H4's engine wired as in production, through the SDK's local API."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.handler.local_api import LocalApi, s3_env, worker_env

pytestmark = pytest.mark.heavy


def test_real_worker_with_tiny_f5tts_serves_info_and_tts_to_s3(
    ffmpeg_bin_dir, tmp_path, s3_endpoint, bucket
):
    pytest.importorskip("f5_tts")
    from tests.support_models.tiny import build_tiny_volume

    tiny = build_tiny_volume(tmp_path / "tiny", with_aligner=False)
    env = worker_env(
        ffmpeg_bin_dir,
        tiny.volume,
        F5TTS_MODEL=tiny.model_name,
        F5TTS_MODEL_CONFIG=str(tiny.arch_config),
        F5TTS_DEVICE="cpu",
        **s3_env(s3_endpoint, bucket),
    )
    server = LocalApi(env, tmp_path / "worker.log", module="handler")
    try:
        info = server.runsync({"op": "info"})["output"]
        assert info["model"] == tiny.model_name and info["versions"]["f5-tts"]
        assert info["gpu"] is not None  # torch is loaded by then: CUDA facts or name None
        # On CPU the engine runs PyTorch's attention; flash_attn needs a GPU (api.md).
        assert (info["device"], info["attention"]) == ("cpu", "torch")
        result = server.runsync(
            {
                "text": "Hello from the tiny model.",
                "ref_text": tiny.reference_text,
                "ref_audio_base64": base64.b64encode(tiny.reference_wav.read_bytes()).decode(),
                "nfe_step": 4,
                "seed": 3,
                "format": "ogg",
            }
        )
        assert result["status"] == "COMPLETED", result
        out = result["output"]
        assert requests.get(out["audio"]["url"], timeout=10).content[:4] == b"OggS"
        assert out["audio"]["duration_s"] > 0.5 and out["seed"] == 3
        # Asking for subtitles without an aligner on the volume is a sentence, not a crash.
        refused = server.runsync(
            {"text": "Hi.", "ref_text": "x", "subtitles": "srt", "ref_audio_base64": "UklGRg=="}
        )
        assert refused["status"] == "FAILED" and "aligner" in refused["error"]
    finally:
        server.stop()
