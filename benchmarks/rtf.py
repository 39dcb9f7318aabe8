"""Real-time factor of F5TTS_v1_Base (random weights) at NFE 7, 16 and 32 for a ~10 s utterance.

RTF = synthesis wall time / seconds of audio produced, through handler.engine's real
synthesis path (chunk planning, batched ODE sampling with EPSS at NFE <= 16, Vocos
decoding). The weights are random but the architecture is the published
F5TTS_v1_Base one with the real Vocos shape, in the dtype and attention backend the
engine's loader picks (fp16 on CUDA, flash-attn when installed on a GPU of compute
capability >= 8.0), so the compute is that of the real model; speech quality is not
measured. `--batch N` synthesizes N requests at once (their chunks in shared
batches) and reports the RTF per request's audio, i.e. throughput.

Without a GPU it says so and exits 0 at once. `--cpu-nfe N` adds a CPU figure for
scale (minutes on 2 cores, hence not by default).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

# Published figures for the same model, the comparison this benchmark reports against.
BASELINE = {
    "paper_rtf_nfe16": 0.15,
    "official_pytorch_offline_rtf_l20_nfe16": 0.147,
    "tensorrt_llm_rtf_l20_nfe16": 0.040,
    "epss_rtf_rtx3090_nfe7": 0.030,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[7, 16, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="target utterance length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, help="requests synthesized together")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks")
    parser.add_argument(
        "--cpu-nfe", type=int, default=0, help="without a GPU, measure at this NFE (0: skip)"
    )
    return parser.parse_args(argv)


def measure(engine, reference, text: str, nfe: int, repeats: int, batch: int, device: str):
    """Median wall time of `batch` requests synthesized together, as RTF per request."""
    from benchmarks._engine import timed
    from handler.contracts import SynthesisParams
    from handler.engine import crossfade
    from handler.engine.scheduler import plan_batches

    jobs = [
        engine.plan(reference, text, SynthesisParams(nfe_step=nfe, seed=i), job=i)
        for i in range(batch)
    ]
    works = [work for job in jobs for work in job]

    def run():
        waves = {}
        for chunk_batch in plan_batches(works, engine.budget):
            for work, wave in zip(chunk_batch, engine.run_batch(chunk_batch), strict=True):
                waves[(work.job, work.index)] = wave
        return [crossfade([waves[(i, w.index)] for w in job], 3600) for i, job in enumerate(jobs)]

    run()  # warm-up: kernels, allocator, caches (and compilation, when on)
    walls, audio_s = [], 0.0
    for _ in range(repeats):
        wall, audio = timed(device, run)
        walls.append(wall)
        audio_s = sum(a.size for a in audio) / engine.sample_rate
    wall = statistics.median(walls)
    batch_sizes = [len(b) for b in plan_batches(works, engine.budget)]
    print(
        f"  NFE {nfe}: {wall:.3f} s for {audio_s:.2f} s of audio ({len(works)} chunks in "
        f"batches of {batch_sizes}) -> RTF {wall / audio_s:.4f}"
    )
    return {
        "nfe": nfe,
        "epss": nfe in (5, 6, 7, 10, 12, 16),
        "rtf": round(wall / audio_s, 4),
        "wall_s": round(wall, 3),
        "audio_s": round(audio_s, 2),
        "chunks": len(works),
        "batch_sizes": batch_sizes,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks._engine import build_engine, reference_clip, text_for
    from handler.engine import pick_device

    device = pick_device(args.device)
    result: dict = {"benchmark": "rtf", "device": device, "baseline": BASELINE}
    result["batch_size"] = args.batch
    with tempfile.TemporaryDirectory() as scratch:
        reference = reference_clip(Path(scratch))
        text = text_for(args.seconds, reference.duration_s)

        if not device.startswith("cuda"):
            result["device_name"] = platform.processor() or platform.machine()
            result["torch_threads"] = torch.get_num_threads()
            result["skipped"] = "no GPU: RTF at NFE 7/16/32 is a GPU figure"
            print("no CUDA GPU here; the NFE 7/16/32 figures need one (run scripts/gpu-check).")
            if args.cpu_nfe > 0:
                print(f"CPU figure at NFE {args.cpu_nfe} (for scale only, random weights):")
                engine, dtype, attention = build_engine(device, Path(scratch))
                result.update(dtype=dtype, attention=attention)
                result["cpu"] = measure(
                    engine, reference, text, args.cpu_nfe, 1, args.batch, device
                )
            print(json.dumps(result))
            return 0

        result["device_name"] = torch.cuda.get_device_name(device)
        print(f"device: {result['device_name']}; text: {len(text)} chars")
        engine, dtype, attention = build_engine(device, Path(scratch), compile_dit=args.compile)
        result.update(dtype=dtype, attention=attention, compile=args.compile)
        result["results"] = [
            measure(engine, reference, text, nfe, args.repeats, args.batch, device)
            for nfe in args.nfe
        ]
    result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
