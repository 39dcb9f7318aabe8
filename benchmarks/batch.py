"""Batched vs one-by-one chunk synthesis of F5TTS_v1_Base (random weights), same seed.

A 6-chunk text goes through handler.engine twice: each chunk in its own model pass
(as the engine did before batching), then all chunks in one batched pass (one
`CFM.sample` and one Vocos call). The architecture and vocoder have the published
shapes, so the compute is the real model's; the weights are random (speech quality is
not measured) and the output layers are woken from their zero init so the audio
compared is not silence. Last line: `{"chunks", "sequential_s", "batched_s",
"speedup", "max_abs_diff", ...}`, where max_abs_diff compares the two joined outputs.

On a CPU the chunks are kept short (`--chunk-seconds`, default 1.7 s of speech beside
a 2 s reference) so a run takes minutes, not an hour; on a GPU use real sizes
(`--chunk-seconds 8`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

SENTENCES = [
    "I don't really care what you call me.",
    "I've been a silent spectator, watching.",
    "Species evolve, empires rise and fall.",
    "But always remember, I am mighty.",
    "I am enduring, and I am patient too.",
    "The rivers and the mountains know me well.",
    "Every storm you see begins with me.",
    "And every quiet morning ends in me.",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--nfe", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ref-seconds", type=float, default=2.0)
    parser.add_argument("--chunk-seconds", type=float, default=1.7, help="speech per chunk")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import numpy as np

    from benchmarks._engine import build_engine, reference_clip, timed
    from handler.contracts import SynthesisParams
    from handler.engine import crossfade, pick_device
    from handler.engine.chunking import FRAMES_PER_SECOND

    device = pick_device(args.device)
    params = SynthesisParams(nfe_step=args.nfe, seed=args.seed)
    text = " ".join(SENTENCES[i % len(SENTENCES)] for i in range(args.chunks))
    ref_frames = int(args.ref_seconds * FRAMES_PER_SECOND)
    # Each sentence fills most of a chunk, so the text is `--chunks` chunks.
    chunk_frames = ref_frames + int(args.chunk_seconds * FRAMES_PER_SECOND)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        engine, dtype, attention = build_engine(
            device, scratch, chunk_frames=chunk_frames, max_chunks=args.chunks
        )
        reference = reference_clip(scratch, args.ref_seconds)
        works = engine.plan(reference, text, params)
        print(
            f"device {device} ({dtype}); {len(works)} chunks of {[w.frames for w in works]} "
            f"frames (reference {works[0].conditioning.ref_frames}); NFE {args.nfe}"
        )
        engine.run_batch(works[:1])  # warm-up: allocator, kernels
        sequential_s, alone = timed(device, lambda: [engine.run_batch([w])[0] for w in works])
        print(f"  one by one: {sequential_s:.2f} s")
        batched_s, together = timed(device, lambda: engine.run_batch(works))
        print(f"  one batch:  {batched_s:.2f} s")

    fade = int(params.cross_fade_duration * engine.sample_rate)
    diff = float(np.max(np.abs(crossfade(alone, fade) - crossfade(together, fade))))
    result = {
        "chunks": len(works),
        "sequential_s": round(sequential_s, 3),
        "batched_s": round(batched_s, 3),
        "speedup": round(sequential_s / batched_s, 3),
        "max_abs_diff": float(f"{diff:.3g}"),
        "device": device,
        "dtype": dtype,
        "attention": attention,
        "nfe": args.nfe,
        "chunk_frames": [w.frames for w in works],
        "baseline": "the same chunks one model pass each (the engine before batching)",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
