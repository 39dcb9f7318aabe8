"""Tiny randomly initialised models written into the network-volume layout.

`build_tiny_volume(root)` writes what the provisioning step would put on the volume,
but small enough that the real loaders and the real inference code run in well under a
second on a CPU:

    root/volume/models/f5tts/F5TTS_v1_Base/model_1250000.safetensors   (tiny DiT, EMA keys)
    root/volume/models/f5tts/F5TTS_v1_Base/vocab.txt                   (F5-TTS's own vocab)
    root/volume/models/vocos-mel-24khz/{config.yaml,pytorch_model.bin} (tiny Vocos)
    root/volume/models/wav2vec2-align-en/                              (tiny Wav2Vec2ForCTC)
    root/volume/models/whisper-large-v3-turbo/                         (tiny Whisper, optional)
    root/tiny-config/F5TTS_tiny.yaml     (the architecture, in f5_tts/configs format)
    root/reference.wav                   (a 2 s, 24 kHz mono reference clip)

Random weights produce noise of the right length and sample rate: enough to test the
pipeline, never a claim about speech quality. Nothing here downloads anything.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tests.support_models.architectures import (
    build_cfm,
    build_vocos,
    package_vocab_file,
    vocos_config,
    wake_zero_initialised,
)

TINY_ARCH = {
    "dim": 64,
    "depth": 2,
    "heads": 2,
    "dim_head": 32,
    "ff_mult": 2,
    "text_dim": 32,
    "text_mask_padding": True,
    "qk_norm": None,
    "conv_layers": 1,
    "pe_attn_head": None,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
    "checkpoint_activations": False,
}
MODEL_NAME = "F5TTS_v1_Base"
CKPT_NAME = "model_1250000.safetensors"
REFERENCE_TEXT = "Some call me nature, others call me mother nature."
REFERENCE_SECONDS = 2.0
SAMPLE_RATE = 24000
# Characters a wav2vec2 English CTC head knows; "|" is its word separator.
ALIGN_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "'", *"abcdefghijklmnopqrstuvwxyz"]
WHISPER_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)


@dataclass(frozen=True)
class TinyModels:
    root: Path
    volume: Path
    model_name: str
    arch_config: Path
    ckpt_file: Path
    vocab_file: Path
    vocoder_dir: Path
    align_model_dir: Path | None
    asr_model_dir: Path | None
    reference_wav: Path
    reference_text: str

    def settings(self, **overrides) -> SimpleNamespace:
        """The attributes handler.engine/alignment/asr read from the settings object.

        File paths are left to their defaults (derived from `volume`) so the loaders'
        own layout rules are what get exercised.
        """
        values = {
            "volume": self.volume,
            "ckpt_file": None,
            "vocab_file": None,
            "vocoder_dir": None,
            "model_name": self.model_name,
            "arch_config": str(self.arch_config),
            "device": "cpu",
            "align_model_dir": self.align_model_dir,
            "asr_model_dir": self.asr_model_dir,
            "align_language": "en",
        }
        values.update(overrides)
        return SimpleNamespace(**values)

    def reference(self):
        from handler.contracts import PreparedReference

        return PreparedReference(
            audio_path=self.reference_wav,
            text=self.reference_text,
            duration_s=REFERENCE_SECONDS,
        )


def build_tiny_volume(
    root: Path, *, with_aligner: bool = True, with_asr: bool = False, seed: int = 1234
) -> TinyModels:
    """Write tiny random models under `root` in the volume layout; returns their paths."""
    import torch

    root = Path(root)
    volume = root / "volume"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        arch_config = _write_f5_config(root / "tiny-config" / "F5TTS_tiny.yaml")
        ckpt_file, vocab_file = _write_f5_checkpoint(volume / "models" / "f5tts" / MODEL_NAME)
        vocoder_dir = _write_vocos(volume / "models" / "vocos-mel-24khz")
        align_dir = (
            _write_wav2vec2(volume / "models" / "wav2vec2-align-en") if with_aligner else None
        )
        asr_dir = _write_whisper(volume / "models" / "whisper-large-v3-turbo") if with_asr else None
    reference_wav = _write_reference(root / "reference.wav", seed)
    return TinyModels(
        root=root,
        volume=volume,
        model_name=MODEL_NAME,
        arch_config=arch_config,
        ckpt_file=ckpt_file,
        vocab_file=vocab_file,
        vocoder_dir=vocoder_dir,
        align_model_dir=align_dir,
        asr_model_dir=asr_dir,
        reference_wav=reference_wav,
        reference_text=REFERENCE_TEXT,
    )


def _write_f5_config(path: Path) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "model": {
            "name": "F5TTS_tiny",
            "tokenizer": "custom",
            "backbone": "DiT",
            "arch": TINY_ARCH,
            "mel_spec": {
                "target_sample_rate": SAMPLE_RATE,
                "n_mel_channels": 100,
                "hop_length": 256,
                "win_length": 1024,
                "n_fft": 1024,
                "mel_spec_type": "vocos",
            },
        }
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _write_f5_checkpoint(model_dir: Path) -> tuple[Path, Path]:
    from safetensors.torch import save_file

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = model_dir / "vocab.txt"
    shutil.copyfile(package_vocab_file(), vocab_file)
    cfm = build_cfm(TINY_ARCH, vocab_file)
    wake_zero_initialised(cfm.transformer)
    # The published checkpoint stores the EMA weights under "ema_model."; the loader
    # strips that prefix, so the tiny one does the same to take the same path.
    state = {f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}
    ckpt_file = model_dir / CKPT_NAME
    save_file(state, str(ckpt_file))
    return ckpt_file, vocab_file


def _write_vocos(vocoder_dir: Path) -> Path:
    import torch
    import yaml

    vocoder_dir.mkdir(parents=True, exist_ok=True)
    config_file = vocoder_dir / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(vocos_config(dim=32, intermediate_dim=64, num_layers=1), sort_keys=False)
    )
    vocos = build_vocos(config_file)
    with torch.no_grad():
        # The head's first n_fft/2+1 outputs are log-magnitudes: small random weights
        # around a fixed level give audible noise (about -15 dBFS) that neither clips
        # nor counts as silence.
        n_bins = vocos.head.out.out_features // 2
        vocos.head.out.weight.mul_(0.05)
        vocos.head.out.bias.zero_()
        vocos.head.out.bias[:n_bins] = 3.0
    torch.save(vocos.state_dict(), vocoder_dir / "pytorch_model.bin")
    return vocoder_dir


def _write_wav2vec2(model_dir: Path) -> Path:
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = model_dir / "vocab.json"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(ALIGN_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file),
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
    )
    features = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    )
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(model_dir)
    config = Wav2Vec2Config(
        vocab_size=len(ALIGN_VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        ctc_loss_reduction="mean",
        tokenizer_class="Wav2Vec2CTCTokenizer",
    )
    Wav2Vec2ForCTC(config).save_pretrained(model_dir)
    return model_dir


def _write_whisper(model_dir: Path) -> Path:
    """A Whisper with a byte-level vocabulary and the special tokens generate() needs
    (start of transcript, a language, the tasks, no-timestamps)."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab = {char: i for i, char in enumerate(bytes_to_unicode().values())}
    for token in WHISPER_SPECIALS:
        vocab[token] = len(vocab)
    (model_dir / "vocab.json").write_text(json.dumps(vocab))
    (model_dir / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(
        str(model_dir / "vocab.json"),
        str(model_dir / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(WHISPER_SPECIALS[1:])})
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    processor.save_pretrained(model_dir)
    ids = {token: vocab[token] for token in WHISPER_SPECIALS}
    special_ids = {
        "decoder_start_token_id": ids["<|startoftranscript|>"],
        "pad_token_id": ids[end],
        "bos_token_id": ids[end],
        "eos_token_id": ids[end],
    }
    config = WhisperConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_target_positions=64,
        begin_suppress_tokens=None,
        suppress_tokens=None,
        **special_ids,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        **special_ids,
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=True,
        max_length=24,
        suppress_tokens=[],
        begin_suppress_tokens=[ids[end]],
    )
    model.save_pretrained(model_dir)
    return model_dir


def _write_reference(path: Path, seed: int) -> Path:
    """A voiced-sounding clip: a few harmonics under a syllable-rate envelope."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(REFERENCE_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 140.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))
    audio = 0.2 * voice * envelope + 0.005 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return path
