"""The worker's configuration: one object, read from the environment in one place.

Every variable, its default and its meaning is listed in `ENV_VARS` so that the
docs (docs/api.md) and the error messages name the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handler.errors import UserError

DEFAULT_VOLUME = "/runpod-volume"

# env var -> (field name, default shown in the docs, description)
ENV_VARS: dict[str, tuple[str, str, str]] = {
    "F5TTS_VOLUME": ("volume", DEFAULT_VOLUME, "network volume root"),
    "F5TTS_MODEL": ("model_name", "F5TTS_v1_Base", "model name (folder under models/f5tts)"),
    "F5TTS_MODEL_CONFIG": (
        "arch_config",
        "$F5TTS_MODEL",
        "architecture: a name from f5_tts/configs or a YAML path",
    ),
    "F5TTS_MODEL_PATH": (
        "ckpt_file",
        "$F5TTS_VOLUME/models/f5tts/$F5TTS_MODEL_FILE",
        "F5-TTS checkpoint",
    ),
    "F5TTS_VOCAB_PATH": (
        "vocab_file",
        "$F5TTS_VOLUME/models/f5tts/$F5TTS_VOCAB_FILE",
        "F5-TTS vocabulary",
    ),
    "F5TTS_VOCODER_DIR": (
        "vocoder_dir",
        "$F5TTS_VOLUME/models/vocos-mel-24khz",
        "Vocos vocoder directory (config.yaml, pytorch_model.bin)",
    ),
    "F5TTS_DEVICE": ("device", "auto", "auto (CUDA when available), cuda, cuda:N or cpu"),
    "F5TTS_ATTENTION": (
        "attn_backend",
        "auto",
        "auto (flash_attn when installed on a GPU of compute capability >= 8.0), torch "
        "or flash_attn",
    ),
    "F5TTS_COMPILE": ("compile_dit", "0", "torch.compile the DiT's blocks at start (1) or not"),
    "F5TTS_BATCH_MEMORY_MB": (
        "batch_memory_mb",
        "6144",
        "estimated memory one batched model pass may use (docs/performance.md)",
    ),
    "F5TTS_BATCH_MAX_CHUNKS": (
        "batch_max_chunks",
        "8",
        "most text chunks in one batched model pass (1 turns batching off)",
    ),
    "F5TTS_STREAMING": (
        "streaming",
        "0",
        "1: jobs may ask `stream: true` (a generator handler; non-streamed outputs then "
        "come as a one-element list on /runsync, docs/api.md); 0: outputs as always",
    ),
    "F5TTS_MAX_CONCURRENCY": (
        "max_concurrency",
        "1",
        "jobs one worker runs at once; their chunks share model passes (memory arithmetic "
        "in docs/api.md)",
    ),
    "F5TTS_ALIGN_MODEL_DIR": (
        "align_model_dir",
        "(whisperx default)",
        "wav2vec2 alignment model directory for word timings",
    ),
    "F5TTS_ALIGN_LANGUAGE": (
        "align_language",
        "en",
        "language of jobs that name none (`language`), aligned by the model loaded at start",
    ),
    "F5TTS_ALIGN_LANGUAGES": (
        "align_languages",
        "$F5TTS_ALIGN_LANGUAGE",
        "comma-separated languages jobs may ask word timings in; fetch-models fetches "
        "whisperx's default alignment model of each",
    ),
    "F5TTS_ASR_MODEL_DIR": (
        "asr_model_dir",
        "$F5TTS_VOLUME/models/whisper-large-v3-turbo",
        "speech recogniser used when ref_text is missing",
    ),
    "F5TTS_MAX_TEXT_CHARS": (
        "max_text_chars",
        "5000",
        "longest `text` accepted (all segments of a script together)",
    ),
    "F5TTS_MAX_SEGMENTS": ("max_segments", "50", "most segments in one multi-speaker script"),
    "F5TTS_MAX_REF_SECONDS": ("max_ref_seconds", "30", "longest reference clip accepted"),
    "F5TTS_MAX_REF_BYTES": ("max_ref_bytes", "20000000", "largest reference file accepted"),
    "F5TTS_REF_CLIP_SECONDS": (
        "ref_clip_seconds",
        "12",
        "references without ref_text are clipped at a pause to at most this (as F5-TTS "
        "does; at most 15)",
    ),
    "F5TTS_REF_CACHE_ENTRIES": (
        "ref_cache_entries",
        "1000",
        "prepared references kept on the volume (least recently used go first)",
    ),
    "F5TTS_FETCH_TIMEOUT_S": ("fetch_timeout_s", "20", "time limit for fetching a reference"),
    "F5TTS_ALLOW_HTTP": ("allow_http", "0", "accept plain http:// reference URLs"),
    "S3_BUCKET": ("s3_bucket", "(unset)", "bucket for outputs and voices; unset = inline"),
    "F5TTS_S3_REF_BUCKETS": (
        "s3_ref_buckets",
        "(none)",
        "comma-separated buckets besides S3_BUCKET that s3:// references may read",
    ),
    "AWS_ENDPOINT_URL": ("aws_endpoint_url", "(AWS)", "S3-compatible endpoint (B2, R2, MinIO)"),
    "AWS_REGION": ("aws_region", "(boto3 default)", "bucket region (AWS_DEFAULT_REGION too)"),
    "F5TTS_S3_ADDRESSING_STYLE": (
        "s3_addressing_style",
        "auto",
        "auto, path or virtual (path suits most S3-compatible stores)",
    ),
    "F5TTS_S3_ATTEMPTS": ("s3_attempts", "4", "attempts per storage call on 5xx/timeouts"),
    "F5TTS_S3_BACKOFF_S": ("s3_backoff_s", "0.5", "first retry delay, doubled each attempt"),
    "F5TTS_S3_TIMEOUT_S": ("s3_timeout_s", "30", "connect/read timeout of one storage call"),
    "F5TTS_URL_EXPIRY_S": ("url_expiry_s", "3600", "lifetime of presigned output URLs"),
    "F5TTS_MAX_INLINE_BYTES": (
        "max_inline_bytes",
        "8000000",
        "largest output returned as base64 when no bucket is set",
    ),
    "F5TTS_WARMUP": ("warmup", "1", "run one short synthesis at start"),
    "F5TTS_ENV_PREFIX": ("env_prefix", "$CONDA_PREFIX", "conda prefix holding .f5tts/ready.json"),
    "F5TTS_IN_USE_RECORD": (
        "in_use_record",
        "(set by the bootstrap)",
        "file whose mtime shows `bootstrap gc` that this worker still uses its env",
    ),
    "F5TTS_IN_USE_TTL_S": (
        "in_use_ttl_s",
        "900",
        "gc's limit on a record's age; the worker refreshes it every third of this",
    ),
}


class Settings(BaseModel):
    """Validated configuration; build it with `Settings.from_env()`."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    volume: Path = Path(DEFAULT_VOLUME)
    # Field names are the ones handler.engine/alignment/asr read; None = volume layout.
    model_name: str = "F5TTS_v1_Base"
    arch_config: str | None = None
    ckpt_file: Path | None = None
    vocab_file: Path | None = None
    vocoder_dir: Path | None = None
    device: str = "auto"
    attn_backend: Literal["auto", "torch", "flash_attn"] = "auto"
    compile_dit: bool = False
    batch_memory_mb: int = Field(6144, ge=64, le=1_000_000)
    batch_max_chunks: int = Field(8, ge=1, le=64)
    streaming: bool = False
    max_concurrency: int = Field(1, ge=1, le=64)
    align_model_dir: Path | None = None
    align_language: str = Field("en", pattern=r"^[a-z]{2,3}$")
    align_languages: str = ""
    asr_model_dir: Path | None = None
    max_text_chars: int = Field(5000, ge=1, le=100_000)
    max_segments: int = Field(50, ge=1, le=1000)
    max_ref_seconds: float = Field(30.0, gt=0, le=600)
    max_ref_bytes: int = Field(20_000_000, ge=1000)
    ref_clip_seconds: float = Field(12.0, gt=1, le=15)
    ref_cache_entries: int = Field(1000, ge=1)
    fetch_timeout_s: float = Field(20.0, gt=0, le=600)
    allow_http: bool = False
    s3_bucket: str | None = None
    s3_ref_buckets: str = ""
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_attempts: int = Field(4, ge=1, le=20)
    s3_backoff_s: float = Field(0.5, ge=0, le=60)
    s3_timeout_s: float = Field(30.0, gt=0, le=600)
    url_expiry_s: int = Field(3600, ge=1, le=7 * 24 * 3600)
    max_inline_bytes: int = Field(8_000_000, ge=0)
    warmup: bool = True
    env_prefix: Path | None = None
    in_use_record: Path | None = None
    in_use_ttl_s: float = Field(900.0, gt=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for var, (field, _default, _doc) in ENV_VARS.items():
            raw = env.get(var, "").strip()
            if raw:
                values[field] = raw
        if "aws_region" not in values and env.get("AWS_DEFAULT_REGION", "").strip():
            values["aws_region"] = env["AWS_DEFAULT_REGION"].strip()
        _follow_fetched_files(env, values)
        if "env_prefix" not in values and env.get("CONDA_PREFIX", "").strip():
            values["env_prefix"] = env["CONDA_PREFIX"].strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            var = next((v for v, (f, _, _) in ENV_VARS.items() if f == field), field)
            raise UserError(
                f"environment variable {var}={values.get(field, '')!r} is invalid "
                f"({first['msg'].lower()}); fix it in the endpoint's settings"
            ) from None

    @property
    def readable_ref_buckets(self) -> frozenset[str]:
        """Buckets an s3:// reference may name: the worker's credentials can often read
        more than a caller should be able to pull through it."""
        extra = {b.strip() for b in self.s3_ref_buckets.split(",") if b.strip()}
        return frozenset(extra | ({self.s3_bucket} if self.s3_bucket else set()))

    @property
    def align_language_list(self) -> tuple[str, ...]:
        """Languages jobs may ask word timings in; the default language comes first."""
        listed = [x.strip().lower() for x in self.align_languages.split(",") if x.strip()]
        return tuple(dict.fromkeys([self.align_language, *listed]))

    @property
    def align_models_dir(self) -> Path:
        """Where fetch-models puts the Hugging Face alignment models, one folder each."""
        return self.volume / "models/align"

    @property
    def voices_dir(self) -> Path:
        return self.volume / "voices"

    @property
    def reference_cache_dir(self) -> Path:
        return self.volume / "cache/references"

    @property
    def env_marker(self) -> Path | None:
        return self.env_prefix / ".f5tts/ready.json" if self.env_prefix else None


def _follow_fetched_files(env: Mapping[str, str], values: dict[str, str]) -> None:
    """`bootstrap fetch-models` downloads F5TTS_MODEL_FILE / F5TTS_VOCAB_FILE (paths in
    the Hugging Face repo) to $F5TTS_VOLUME/models/f5tts/<that path>; load what it
    fetched unless F5TTS_MODEL_PATH / F5TTS_VOCAB_PATH say otherwise."""
    volume = Path(values.get("volume", DEFAULT_VOLUME))
    model_file = env.get("F5TTS_MODEL_FILE", "").strip()
    if model_file:
        values.setdefault("ckpt_file", str(volume / "models/f5tts" / model_file))
        if "/" in model_file:
            values.setdefault("model_name", model_file.split("/", 1)[0])
    vocab_file = env.get("F5TTS_VOCAB_FILE", "").strip()
    if vocab_file:
        values.setdefault("vocab_file", str(volume / "models/f5tts" / vocab_file))
