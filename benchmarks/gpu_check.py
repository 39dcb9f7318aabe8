"""The GPU check: F5TTS_v1_Base RTF at NFE 7/16/32, batched vs sequential, compile off/on.

Run on a GPU machine through `scripts/gpu-check` (which installs the carried wheels
first); it writes ONE JSON file, `$OUT/gpu-check.json` (or `--out`), and prints it as
its last line. Parts, each timed within this one run (random weights, real shapes):

* `rtf`: a ~10 s utterance (one chunk beside the 5.3 s example reference) at NFE 7,
  16 and 32, compile off;
* `batch`: a 6-chunk text, chunks one model pass each vs one batched pass, NFE 16;
* `compile`: NFE 16 with the DiT blocks compiled, first call (compilation included)
  and steady state over three texts of different lengths (new shapes);
* `memory`: peak GPU memory of the batched pass vs `batch_memory_bytes`' estimate;
* `first_audio`: a ~30 s text through the worker's handler, time to the first
  streamed piece vs the complete result, NFE 16 (benchmarks/first_audio.py);
* `concurrency`: 8 jobs submitted together vs one after another, NFE 16
  (benchmarks/concurrency.py); both write mp3 when an ffmpeg is found, else pcm.

A part that fails records its error and the others still run. `--quick` shrinks
everything (tiny architecture, short texts, NFE 2 and 4) so the flow can be tested
on a CPU: `scripts/gpu-check --device cpu --quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CPU run")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile part")
    parser.add_argument("--out", default=None, help="JSON file (default $OUT/gpu-check.json)")
    return parser.parse_args(argv)


def part(result: dict, name: str, run) -> None:
    started = time.perf_counter()
    try:
        result[name] = run()
    except Exception as exc:  # one failed part must not lose the others' figures
        result[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        traceback.print_exc()
    print(f"[gpu-check] {name} done in {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks import batch as batch_bench
    from benchmarks import concurrency as concurrency_bench
    from benchmarks import first_audio as first_audio_bench
    from benchmarks import rtf as rtf_bench
    from benchmarks._engine import build_engine, ffmpeg_on_path, reference_clip, text_for, timed
    from handler.contracts import SynthesisParams
    from handler.engine import pick_device
    from handler.engine.chunking import FRAMES_PER_SECOND, ChunkBudget
    from handler.engine.scheduler import batch_memory_bytes

    device = pick_device(args.device)
    cuda = device.startswith("cuda")
    quick = args.quick
    arch = vocoder_shape = None
    if quick:
        from tests.support_models.tiny import TINY_ARCH

        arch, vocoder_shape = dict(TINY_ARCH), {"dim": 32, "intermediate_dim": 64, "num_layers": 1}
    nfes = [2, 4] if quick else [7, 16, 32]
    nfe = nfes[-1] if quick else 16
    seconds = 3.0 if quick else 10.0
    result: dict = {
        "check": "gpu-check",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "quick": quick,
    }
    scratch = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    reference = reference_clip(scratch)
    text = text_for(seconds, reference.duration_s)
    engine, dtype, attention = build_engine(device, scratch, arch=arch, vocoder_shape=vocoder_shape)
    result.update(
        dtype=dtype, attention=attention, batch_budget_mb=engine.budget.memory_bytes >> 20
    )

    part(
        result,
        "rtf",
        lambda: [
            rtf_bench.measure(engine, reference, text, n, 1 if quick else 3, 1, device)
            for n in nfes
        ],
    )

    def batched_vs_sequential() -> dict:
        params = SynthesisParams(nfe_step=nfe, seed=0)
        if quick:  # benchmarks/batch.py's six sentences beside a 2 s reference
            ref, chunk_s = reference_clip(scratch, 2.0), 1.7
            story = " ".join(batch_bench.SENTENCES[:6])
        else:  # six ~8 s chunks beside the 5.3 s reference
            ref, chunk_s = reference, 8.0
            story = text_for(4.5 * chunk_s, reference.duration_s)
        ref_frames = int(ref.duration_s * FRAMES_PER_SECOND)
        default_budget = engine.chunk_budget
        engine.chunk_budget = ChunkBudget(ref_frames + int(chunk_s * FRAMES_PER_SECOND))
        works = engine.plan(ref, story, params)
        engine.run_batch(works[:1])
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        sequential_s, _ = timed(device, lambda: [engine.run_batch([w]) for w in works])
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        batched_s, _ = timed(device, lambda: engine.run_batch(works))
        out = {
            "chunks": len(works),
            "chunk_frames": [w.frames for w in works],
            "sequential_s": round(sequential_s, 3),
            "batched_s": round(batched_s, 3),
            "speedup": round(sequential_s / batched_s, 3),
        }
        if cuda and engine.budget.shape is not None:
            out["peak_mem_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20)
            estimate = batch_memory_bytes(
                engine.budget.shape, len(works), max(w.frames for w in works), nfe
            )
            out["estimated_mem_mb"] = round(estimate / 2**20)
        engine.chunk_budget = default_budget
        return out

    part(result, "batch", batched_vs_sequential)

    fmt = "mp3" if ffmpeg_on_path(scratch) else "pcm"
    part(
        result,
        "first_audio",
        lambda: first_audio_bench.measure(
            engine,
            reference,
            text_for(8.0 if quick else 30.0, reference.duration_s),
            nfe=nfe,
            fmt=fmt,
            seed=7,
            scratch=scratch / "first-audio",
        ),
    )
    part(
        result,
        "concurrency",
        lambda: concurrency_bench.measure(
            engine,
            reference,
            concurrency_bench.job_inputs(8, 1 if quick else 3, nfe, fmt),
            scratch / "concurrency",
        ),
    )

    def compiled() -> dict:
        from handler.engine.loading import compile_blocks

        compile_blocks(engine.model)
        params = SynthesisParams(nfe_step=nfe, seed=0)
        first_s, _ = timed(device, lambda: engine.synthesize(reference, text, params))
        lengths = [seconds * f for f in (0.5, 0.8, 1.2)]
        walls = []
        for length in lengths:  # new shapes: recompiles would show here
            variant = text_for(length, reference.duration_s)
            wall, audio = timed(device, lambda v=variant: engine.synthesize(reference, v, params))
            walls.append(
                {
                    "audio_s": round(audio.size / 24000, 2),
                    "wall_s": round(wall, 3),
                    "rtf": round(wall / (audio.size / 24000), 4),
                }
            )
        steady = rtf_bench.measure(engine, reference, text, nfe, 1 if quick else 3, 1, device)
        return {"first_call_s": round(first_s, 2), "new_shapes": walls, "steady": steady}

    if not args.no_compile:
        part(result, "compile", compiled)
    if cuda:
        result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)

    out = Path(args.out or Path(os.environ.get("OUT", ".")) / "gpu-check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
