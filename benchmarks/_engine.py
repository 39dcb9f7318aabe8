"""The engine the speed benchmarks time: real architectures, random weights.

`build_engine` makes an `F5Engine` over a published F5-TTS architecture (default
F5TTS_v1_Base) and the real Vocos shape, in the dtype and with the attention backend
`handler.engine.loading` would pick on the device, so the compute is the real
model's without a 1.3 GB download. Speech quality is not measured. Only benchmarks
and scripts/gpu-check import this.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path

REFERENCE_TEXT = "Some call me nature, others call me mother nature."
STORY = (
    "I don't really care what you call me. I've been a silent spectator, watching species "
    "evolve, empires rise and fall. But always remember, I am mighty and enduring."
)


def build_engine(
    device: str,
    scratch: Path,
    *,
    arch: dict | None = None,
    chunk_frames: int | None = None,
    max_chunks: int | None = None,
    attention: str = "auto",
    compile_dit: bool = False,
    vocoder_shape: dict | None = None,
):
    """(engine, dtype name, attention backend)."""
    import torch
    import yaml

    from handler.engine import F5Engine
    from handler.engine.chunking import ChunkBudget
    from handler.engine.loading import choose_attention, compile_blocks, uses_half_precision
    from handler.engine.scheduler import BatchBudget
    from tests.support_models.architectures import (
        build_cfm,
        build_vocos,
        load_arch,
        package_config,
        package_vocab_file,
        vocos_config,
        wake_zero_initialised,
    )

    torch.manual_seed(0)
    half = uses_half_precision(device)
    arch = dict(arch or load_arch(package_config("F5TTS_v1_Base")))
    arch["attn_backend"] = choose_attention(attention, device, half)
    arch["attn_mask_enabled"] = True
    model = build_cfm(arch, package_vocab_file())
    wake_zero_initialised(model.transformer)  # else the output is silence
    # The loader's dtype rule (utils_infer.load_checkpoint): fp16 on CUDA cc >= 7.
    model = model.to(torch.float16 if half else torch.float32).to(device).eval()
    config_file = scratch / "vocos-config.yaml"
    config_file.write_text(yaml.safe_dump(vocos_config(**(vocoder_shape or {}))))
    vocoder = build_vocos(config_file).eval().to(device)
    if compile_dit:
        compile_blocks(model)
    engine = F5Engine(
        model,
        vocoder,
        device,
        "F5TTS_v1_Base (random weights)",
        chunk_budget=ChunkBudget(max_frames=chunk_frames) if chunk_frames else None,
    )
    if max_chunks is not None:
        engine.budget = BatchBudget(engine.budget.memory_bytes, max_chunks, engine.budget.shape)
    return engine, ("float16" if half else "float32"), arch["attn_backend"]


def reference_clip(scratch: Path, seconds: float | None = None):
    """F5-TTS's example reference (5.3 s), cut to `seconds` when given."""
    import soundfile as sf

    from handler.contracts import PreparedReference

    source = Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")))
    samples, rate = sf.read(source, dtype="float32")
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    path = scratch / "ref.wav"
    sf.write(path, samples, rate)
    return PreparedReference(path, REFERENCE_TEXT, samples.size / rate)


def text_for(seconds: float, ref_seconds: float) -> str:
    """Words of the F5-TTS example story, enough for about `seconds` of speech (F5-TTS
    gives each UTF-8 byte the reference's seconds-per-byte)."""
    ref_bytes = len(REFERENCE_TEXT.encode()) + 2
    want = int(seconds / ref_seconds * ref_bytes)
    words: list[str] = []
    story = STORY.split()
    while len(" ".join(words).encode()) < want:
        words.append(story[len(words) % len(story)])
    return " ".join(words)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def timed(device: str, run) -> tuple[float, object]:
    """Wall time of `run()` with the device's queue drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    out = run()
    synchronize(device)
    return time.perf_counter() - started, out


BENCH_VOICE = "bench"


def bench_worker(engine, volume: Path, reference, **settings):
    """The worker's real handler (handler.worker.Worker, no bucket) over an already
    loaded engine, with `reference` saved as the voice BENCH_VOICE: jobs that name it
    need no ffmpeg to prepare their reference (a GPU machine may have none)."""
    from handler.jobs import JobRunner, Models
    from handler.settings import Settings
    from handler.worker import Worker

    values = {"volume": volume, "warmup": False, **settings}
    runner = JobRunner(Settings.model_validate(values), Models(engine), None)
    runner.voices.create(BENCH_VOICE, reference, overwrite=True)
    return Worker(runner)


def ffmpeg_on_path(scratch: Path) -> bool:
    """Whether the job layer finds an ffmpeg: the one on PATH, else imageio-ffmpeg's
    (put on PATH here) when it is installed."""
    import os
    import shutil

    if shutil.which("ffmpeg"):
        return True
    try:
        import imageio_ffmpeg
    except ImportError:
        return False
    (scratch / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{scratch}{os.pathsep}{os.environ['PATH']}"
    return True


def tiny_cpu_engine(scratch: Path):
    """(engine, reference) of the tests' tiny random F5-TTS (tests/support_models) on the
    CPU: the CPU runs of the job-level benchmarks (first-audio, concurrency)."""
    from handler.engine import load_engine
    from tests.support_models.tiny import build_tiny_volume

    tiny = build_tiny_volume(scratch / "tiny", with_aligner=False)
    return load_engine(tiny.settings()), tiny.reference()


TINY_CPU = {"device": "cpu", "model": "tiny random F5-TTS (tests/support_models)"}
