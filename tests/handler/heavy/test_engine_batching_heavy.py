"""Batched synthesis is sequential synthesis, faster: the real F5-TTS code on tiny weights.

Tolerance: a chunk's wave batched and alone agree within ATOL (float32 on CPU; the
difference comes from matmuls of other shapes, measured ~2e-6), its mel within
MEL_ATOL. A batch of one is upstream's `infer_batch_process` exactly.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from handler.contracts import SynthesisParams
from handler.engine import crossfade
from handler.engine.chunking import normalize_ref_text, upstream_duration
from handler.engine.noise import NoiseSupplyError, chunk_noise, chunk_seed, per_item_noise
from handler.engine.sampling import sample_mels
from tests.support_models.fixtures import engine_sharing_weights

ATOL = 1e-4
MEL_ATOL = 1e-4
FAST = SynthesisParams(nfe_step=4, seed=11)
# Sentences that each fill most of a 450-frame chunk beside the 2 s tiny reference
# (~74 bytes), so that no two share one: n sentences are n chunks of unequal length.
SENTENCES = [
    "The first sentence is the longest one here, it rambles on a little.",
    "A second one, a bit shorter than the first one was.",
    "Number three takes its time, and then it stops right here.",
    "Four is brief, but not too brief for its own chunk.",
    "Five keeps going with a few more words than four did before.",
    "Six is here now and it also has its say.",
    "Seven, the lucky one, rounds off the whole set nicely indeed.",
    "Eight closes it, a final line of unremarkable words.",
]


def engine_with(tiny_engine, max_chunks=8):
    return engine_sharing_weights(tiny_engine, max_chunks=max_chunks, chunk_frames=450)


@pytest.mark.parametrize("n", range(1, 9))
def test_batched_chunks_equal_sequential_for_1_to_8_chunks_of_unequal_lengths(
    tiny_models, tiny_engine, n
):
    engine = engine_with(tiny_engine)
    works = engine.plan(tiny_models.reference(), " ".join(SENTENCES[:n]), FAST)
    assert len(works) == n
    assert n == 1 or len({w.frames for w in works}) > 1

    alone = [engine.run_batch([work])[0] for work in works]
    together = engine.run_batch(works)

    for one, batched in zip(alone, together, strict=True):
        assert one.shape == batched.shape
        np.testing.assert_allclose(batched, one, rtol=0, atol=ATOL)


def test_a_seed_gives_the_same_audio_at_any_batch_size(tiny_models, tiny_engine):
    text = " ".join(SENTENCES[:5])
    outputs = [
        engine_with(tiny_engine, max_chunks).synthesize(tiny_models.reference(), text, FAST)
        for max_chunks in (1, 2, 5)
    ]
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], rtol=0, atol=ATOL)


def test_padding_is_masked_so_mels_do_not_depend_on_batch_mates(tiny_models, tiny_engine):
    engine = engine_with(tiny_engine)
    works = engine.plan(tiny_models.reference(), " ".join(SENTENCES[:3]), FAST)
    alone = [sample_mels(engine.model, [w])[0] for w in works]
    together = sample_mels(engine.model, works)
    for one, batched in zip(alone, together, strict=True):
        np.testing.assert_allclose(batched.numpy(), one.numpy(), rtol=0, atol=MEL_ATOL)

    # Guard: without upstream's attention mask, padding leaks into the shorter chunks.
    processors = [b.attn.processor for b in engine.model.transformer.transformer_blocks]
    for processor in processors:
        processor.attn_mask_enabled = False
    try:
        leaky = sample_mels(engine.model, works)
    finally:
        for processor in processors:
            processor.attn_mask_enabled = True
    shortest = min(range(len(works)), key=lambda i: works[i].frames)
    assert np.abs(leaky[shortest].numpy() - alone[shortest].numpy()).max() > 10 * MEL_ATOL


def test_chunks_of_two_jobs_with_different_references_share_a_batch_unchanged(
    tiny_models, tiny_engine, tmp_path
):
    import soundfile as sf

    from handler.contracts import PreparedReference

    engine = engine_with(tiny_engine)
    samples, rate = sf.read(tiny_models.reference_wav, dtype="float32")
    short_path = tmp_path / "short.wav"
    sf.write(short_path, samples[: int(1.3 * rate)] * 0.3, rate)  # shorter and quieter
    other = PreparedReference(short_path, "Some call me nature.", 1.3)
    job_a = engine.plan(tiny_models.reference(), SENTENCES[0], FAST, job="a")
    job_b = engine.plan(other, SENTENCES[1], SynthesisParams(nfe_step=4, seed=99), job="b")

    together = engine.run_batch([*job_a, *job_b])

    np.testing.assert_allclose(together[0], engine.run_batch(job_a)[0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(together[1], engine.run_batch(job_b)[0], rtol=0, atol=ATOL)


def test_one_chunk_is_upstreams_infer_batch_process_given_the_same_noise(tiny_models, tiny_engine):
    import soundfile as sf
    import torch
    from f5_tts.infer.utils_infer import infer_batch_process

    engine = engine_with(tiny_engine)
    reference = tiny_models.reference()
    (work,) = engine.plan(reference, SENTENCES[0], FAST)
    ours = engine.run_batch([work])[0]

    samples, rate = sf.read(reference.audio_path, dtype="float32")
    # Upstream draws its noise from the global generator: give it this chunk's seed.
    torch.manual_seed(chunk_seed(FAST.seed, 0))
    upstream, _, _ = next(
        infer_batch_process(
            (torch.from_numpy(samples)[None], rate),
            normalize_ref_text(reference.text),
            [work.text],
            engine.model,
            engine.vocoder,
            progress=None,
            nfe_step=FAST.nfe_step,
            cfg_strength=FAST.cfg_strength,
            sway_sampling_coef=FAST.sway_sampling_coef,
            speed=FAST.speed,
            device="cpu",
        )
    )
    np.testing.assert_allclose(ours, upstream, rtol=0, atol=1e-6)


def test_the_join_is_upstreams_cross_fade(monkeypatch):
    """Upstream's own join, run on waves of known content, equals `crossfade`."""
    import torch
    from f5_tts.infer import utils_infer

    def wave_for(frames: int) -> np.ndarray:
        return np.random.default_rng(frames).uniform(-0.5, 0.5, frames * 256).astype(np.float32)

    class Model:
        def sample(self, cond, text, duration, **kwargs):
            return torch.zeros(1, duration, 100), None

    class Vocoder:
        def decode(self, mel):
            return torch.from_numpy(wave_for(mel.shape[-1]))[None]

    chunks = ["One two three four.", "Five six.", "Seven eight nine ten eleven twelve."]
    audio = torch.full((1, 48000), 0.2)
    joined, _, _ = next(
        utils_infer.infer_batch_process(
            (audio, 24000), "Ref text. ", chunks, Model(), Vocoder(), progress=None, device="cpu"
        )
    )
    ref_frames = 48000 // 256
    ref_bytes = len(b"Ref text.  ")  # with the space upstream adds
    frames = [
        upstream_duration(ref_frames, ref_bytes, len(c.encode()), 1.0) - ref_frames for c in chunks
    ]
    np.testing.assert_array_equal(crossfade([wave_for(f) for f in frames], 3600), joined)


def test_each_chunk_draws_its_own_noise_and_other_threads_are_untouched():
    import torch
    from f5_tts.model import cfm

    seeds = [chunk_seed(5, 0), chunk_seed(5, 1)]
    seen_elsewhere = []
    with per_item_noise(seeds) as supply:
        first = cfm.torch.randn(7, 100, device="cpu", dtype=torch.float32)
        thread = threading.Thread(
            target=lambda: seen_elsewhere.append(cfm.torch.randn(3, 100).shape)
        )
        thread.start()
        thread.join()
        second = cfm.torch.randn(9, 100, device="cpu", dtype=torch.float32)
    assert cfm.torch is torch
    assert supply.frames == [7, 9] and seen_elsewhere == [torch.Size([3, 100])]
    assert torch.equal(first, chunk_noise(seeds[0], 7, 100))
    assert torch.equal(second, chunk_noise(seeds[1], 9, 100))


def test_a_sampler_drawing_noise_differently_fails_loudly():
    import torch
    from f5_tts.model import cfm

    drew_once = "drew noise 1 times for a batch of 2"
    with pytest.raises(NoiseSupplyError, match=drew_once), per_item_noise([1, 2]):
        cfm.torch.randn(4, 100, dtype=torch.float32)
    with pytest.raises(NoiseSupplyError, match="shape"), per_item_noise([1]):
        cfm.torch.randn(2, 4, 100)
    assert cfm.torch is torch


def test_batched_vocoder_matches_each_chunk_decoded_alone_including_its_last_frames(tmp_path):
    """With the real Vocos shape: padding alone changes a shorter chunk's last frames
    (measured up to ~20% of peak in its last ~40 ms, under 1e-6 before its last 8
    frames); re-decoding the tails makes every sample match."""
    import torch
    import yaml

    from handler.engine.vocoder import _decode, decode_batch
    from tests.support_models.architectures import build_vocos, vocos_config

    torch.manual_seed(0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vocos_config()))
    vocoder = build_vocos(tmp_path / "config.yaml").eval()
    mels = [torch.randn(frames, 100) * 2 - 4 for frames in (600, 400, 20, 599)]
    alone = [_decode(vocoder, [mel])[0] for mel in mels]

    padded = _decode(vocoder, mels)
    tail = np.abs(padded[1] - alone[1])
    assert tail[-1000:].max() > 1e-3  # padding reaches into the last frames ...
    assert tail[: -8 * 256].max() < 1e-5  # ... and only those

    for one, batched in zip(alone, decode_batch(vocoder, mels), strict=True):
        assert one.shape == batched.shape
        np.testing.assert_allclose(batched, one, rtol=0, atol=1e-5)
