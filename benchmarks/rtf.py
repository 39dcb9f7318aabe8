"""Real-time factor of F5TTS_v1_Base (random weights) at NFE 16 and 32 for a ~10 s utterance.

RTF = synthesis wall time / seconds of audio produced, through handler.engine's real
synthesis path (F5-TTS chunking, ODE sampling, Vocos decoding). The weights are
random but the architecture is the published F5TTS_v1_Base one (f5_tts/configs) with
the real Vocos shape, in fp16 on CUDA as the loader would cast it, so the compute is
that of the real model; speech quality is not measured. Speed does not depend on the
weights' values, so no 1.3 GB download is needed.

Without a GPU it says so and exits 0 at once. `--cpu-nfe N` adds a CPU figure for
scale (NFE 2 on 2 cores: 35-60 s per run, plus a warm-up run, hence not by default).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

# Published figures for the same model, the comparison this benchmark reports against.
BASELINE = {
    "paper_rtf_nfe16": 0.15,
    "official_pytorch_offline_rtf_l20_nfe16": 0.147,
    "tensorrt_llm_rtf_l20_nfe16": 0.040,
}
REFERENCE_TEXT = "Some call me nature, others call me mother nature."
STORY = (
    "I don't really care what you call me. I've been a silent spectator, watching species "
    "evolve, empires rise and fall. But always remember, I am mighty and enduring."
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="target utterance length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--cpu-nfe", type=int, default=0, help="without a GPU, measure at this NFE (0: skip)"
    )
    return parser.parse_args(argv)


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


def build_engine(device: str, scratch: Path):
    import torch
    import yaml

    from handler.engine import F5Engine
    from tests.support_models.architectures import (
        build_cfm,
        build_vocos,
        load_arch,
        package_config,
        package_vocab_file,
        vocos_config,
    )

    model = build_cfm(load_arch(package_config("F5TTS_v1_Base")), package_vocab_file())
    # The loader's dtype rule (utils_infer.load_checkpoint): fp16 on CUDA cc >= 7.
    half = device.startswith("cuda") and torch.cuda.get_device_properties(device).major >= 7
    model = model.to(torch.float16 if half else torch.float32).to(device).eval()
    config_file = scratch / "vocos-config.yaml"
    config_file.write_text(yaml.safe_dump(vocos_config()))
    vocoder = build_vocos(config_file).eval().to(device)
    engine = F5Engine(model, vocoder, device, "F5TTS_v1_Base (random weights)")
    return engine, ("float16" if half else "float32")


def measure(engine, reference, text: str, nfe: int, repeats: int) -> dict:
    from handler.contracts import SynthesisParams

    params = SynthesisParams(nfe_step=nfe, seed=0)
    engine.synthesize(reference, text, params)  # warm-up: kernels, allocator, caches
    walls, audio_s = [], 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        audio = engine.synthesize(reference, text, params)
        walls.append(time.perf_counter() - started)
        audio_s = audio.size / engine.sample_rate
    wall = statistics.median(walls)
    print(f"  NFE {nfe}: {wall:.3f} s for {audio_s:.2f} s of audio -> RTF {wall / audio_s:.4f}")
    return {
        "nfe": nfe,
        "rtf": round(wall / audio_s, 4),
        "wall_s": round(wall, 3),
        "audio_s": round(audio_s, 2),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import soundfile as sf
    import torch

    from handler.contracts import PreparedReference
    from handler.engine import pick_device

    device = pick_device(args.device)
    ref_path = Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")))
    reference = PreparedReference(ref_path, REFERENCE_TEXT, sf.info(str(ref_path)).duration)
    text = text_for(args.seconds, reference.duration_s)
    result: dict = {"benchmark": "rtf", "device": device, "baseline": BASELINE}

    if not device.startswith("cuda"):
        result["device_name"] = platform.processor() or platform.machine()
        result["torch_threads"] = torch.get_num_threads()
        result["skipped"] = "no GPU: RTF at NFE 16/32 is a GPU figure"
        print("no CUDA GPU here; the NFE 16/32 figures need one (run this on the GPU worker).")
        if args.cpu_nfe > 0:
            print(f"CPU figure at NFE {args.cpu_nfe} (for scale only, random weights):")
            with tempfile.TemporaryDirectory() as scratch:
                engine, dtype = build_engine(device, Path(scratch))
            result["dtype"] = dtype
            result["cpu"] = measure(engine, reference, text, args.cpu_nfe, repeats=1)
        print(json.dumps(result))
        return 0

    result["device_name"] = torch.cuda.get_device_name(device)
    print(f"device: {result['device_name']}; text: {len(text)} chars")
    with tempfile.TemporaryDirectory() as scratch:
        engine, dtype = build_engine(device, Path(scratch))
    result["dtype"] = dtype
    result["results"] = [measure(engine, reference, text, nfe, args.repeats) for nfe in args.nfe]
    result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
