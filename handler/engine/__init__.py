"""The F5-TTS speech engine, one module per decision (torch and f5_tts load lazily).

| module | decides or does |
|---|---|
| `chunking` | how text splits into chunks that fit the model (pure), reference bounds |
| `presets` | `quality` presets and their NFE (pure) |
| `noise` | each chunk's own noise seed, and how it reaches `CFM.sample` |
| `scheduler` | which pending chunks share a batch, within the memory budget (pure) |
| `sampling` | one batched `CFM.sample` call over a batch of chunks |
| `vocoder` | one batched Vocos call over a batch of mels |
| `synthesis` | `F5Engine`: a job's path (plan, batches, cross-fade) |
| `loading` | files on the volume, device, dtype, attention backend, compile; `load_engine` |
"""

from handler.engine.chunking import normalize_ref_text, plan_chunks
from handler.engine.loading import (
    EngineConfigError,
    EngineFiles,
    EngineFilesMissing,
    load_engine,
    pick_device,
    resolve_engine_files,
)
from handler.engine.synthesis import F5Engine, crossfade, remove_long_silences

__all__ = [
    "EngineConfigError",
    "EngineFiles",
    "EngineFilesMissing",
    "F5Engine",
    "crossfade",
    "load_engine",
    "normalize_ref_text",
    "pick_device",
    "plan_chunks",
    "remove_long_silences",
    "resolve_engine_files",
]
