"""The voice library: prepared reference clips saved under an id, reused by `tts`.

A voice is `voices/<id>/ref.wav` (already clipped, at the engine's rate) plus
`voices/<id>/meta.json` (its transcript and facts, `VoiceMeta`). It lives in the
bucket when S3 is configured, so every worker and region sees it, else on the
volume under $F5TTS_VOLUME/voices. meta.json is written last: a voice without it
does not exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from handler.contracts import PreparedReference
from handler.engine.chunking import reference_problem
from handler.errors import UserError, shown
from handler.reference import private_suffix, write_json_atomic
from handler.schema import VOICE_ID_PATTERN
from handler.settings import Settings
from handler.storage import ObjectMissing, ObjectStore


class VoiceMeta(BaseModel):
    model_config = ConfigDict(extra="ignore")

    voice_id: str
    ref_text: str
    duration_s: float
    sample_rate: int
    sha256: str  # of ref.wav: names the local copy of a bucket voice
    bytes: int
    created_at: str

    def public(self) -> dict[str, object]:
        return self.model_dump()


def _not_found(voice_id: str) -> UserError:
    return UserError(
        f"No voice named {voice_id!r}; create it with op voice.create or list them with "
        "op voice.list"
    )


class VoiceBackend(Protocol):
    def exists(self, voice_id: str) -> bool: ...
    def save(self, meta: VoiceMeta, wav: bytes) -> None: ...
    def meta(self, voice_id: str) -> VoiceMeta | None: ...
    def wav_path(self, meta: VoiceMeta) -> Path: ...
    def ids(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]: ...
    def delete(self, voice_id: str) -> bool: ...


class VolumeVoices:
    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, voice_id: str) -> bool:
        return (self.root / voice_id / "meta.json").is_file()

    def save(self, meta: VoiceMeta, wav: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{meta.voice_id}.", dir=self.root))
        final = self.root / meta.voice_id
        retired = self.root / f".{meta.voice_id}.old.{private_suffix()}"
        try:
            (staging / "ref.wav").write_bytes(wav)
            write_json_atomic(staging / "meta.json", meta)
            if final.exists():
                final.rename(retired)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(retired, ignore_errors=True)

    def meta(self, voice_id: str) -> VoiceMeta | None:
        try:
            return VoiceMeta.model_validate_json((self.root / voice_id / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def wav_path(self, meta: VoiceMeta) -> Path:
        return self.root / meta.voice_id / "ref.wav"

    def ids(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        if not self.root.is_dir():
            return [], None
        names = sorted(
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir()
        )
        if cursor:
            names = [n for n in names if n > cursor]  # the cursor is the last id shown
        page = names[:limit]
        return page, (page[-1] if len(names) > limit else None)

    def delete(self, voice_id: str) -> bool:
        folder = self.root / voice_id
        if not folder.exists():
            return False
        retired = self.root / f".{voice_id}.deleted.{private_suffix()}"
        folder.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
        return True


class BucketVoices:
    PREFIX = "voices/"

    def __init__(self, store: ObjectStore, local_cache: Path) -> None:
        self.store = store
        self.local_cache = local_cache

    def _key(self, voice_id: str, name: str) -> str:
        return f"{self.PREFIX}{voice_id}/{name}"

    def exists(self, voice_id: str) -> bool:
        return self.store.exists(self._key(voice_id, "meta.json"))

    def save(self, meta: VoiceMeta, wav: bytes) -> None:
        self.store.put(self._key(meta.voice_id, "ref.wav"), wav, "audio/wav")
        self.store.put(
            self._key(meta.voice_id, "meta.json"),
            meta.model_dump_json(indent=2).encode(),
            "application/json",
        )

    def meta(self, voice_id: str) -> VoiceMeta | None:
        try:
            raw = self.store.get(self._key(voice_id, "meta.json"), 1_000_000)
        except ObjectMissing:
            return None
        try:
            return VoiceMeta.model_validate_json(raw)
        except ValueError:
            return None

    def wav_path(self, meta: VoiceMeta) -> Path:
        # Keyed by content: a re-created voice gets a new local copy.
        local = self.local_cache / f"{meta.voice_id}-{meta.sha256[:16]}.wav"
        if not local.is_file():
            data = self.store.get(self._key(meta.voice_id, "ref.wav"), 100_000_000)
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.{private_suffix()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, local)
        return local

    def ids(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        return self.store.list_prefixes(self.PREFIX, limit, cursor)

    def delete(self, voice_id: str) -> bool:
        return self.store.delete_prefix(f"{self.PREFIX}{voice_id}/") > 0


class VoiceLibrary:
    def __init__(self, backend: VoiceBackend) -> None:
        self.backend = backend

    @classmethod
    def from_settings(cls, settings: Settings, store: ObjectStore | None) -> VoiceLibrary:
        if store is not None:
            return cls(BucketVoices(store, settings.volume / "cache/voices"))
        return cls(VolumeVoices(settings.voices_dir))

    def create(self, voice_id: str, reference: PreparedReference, *, overwrite: bool) -> VoiceMeta:
        if not overwrite and self.backend.exists(voice_id):
            raise UserError(
                f"A voice named {voice_id!r} already exists; pick another voice_id or set "
                "overwrite to true"
            )
        wav = reference.audio_path.read_bytes()
        meta = VoiceMeta(
            voice_id=voice_id,
            ref_text=reference.text,
            duration_s=reference.duration_s,
            sample_rate=_wav_rate(wav),
            sha256=hashlib.sha256(wav).hexdigest(),
            bytes=len(wav),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        self.backend.save(meta, wav)
        return meta

    def get(self, voice_id: str) -> VoiceMeta:
        meta = self.backend.meta(voice_id)
        if meta is None:
            raise _not_found(voice_id)
        return meta

    def reference(self, voice_id: str) -> PreparedReference:
        meta = self.get(voice_id)
        problem = reference_problem(meta.ref_text, meta.duration_s)
        if problem:  # saved before voice.create checked this
            raise UserError(
                f"Voice {voice_id!r} cannot be used because {problem}; create it again with "
                "op voice.create and overwrite true, from a clip of at most 15 s with the "
                "words spoken in it"
            )
        return PreparedReference(self.backend.wav_path(meta), meta.ref_text, meta.duration_s)

    def list(self, limit: int, cursor: str | None) -> tuple[list[VoiceMeta], str | None]:
        """One page; the cursor is the last voice id of the previous page."""
        if cursor is not None and not re.fullmatch(VOICE_ID_PATTERN, cursor):
            raise UserError(
                f"cursor {shown(cursor, 40)} is not a next_cursor from voice.list; send the "
                "next_cursor of the previous page unchanged, or no cursor for the first page"
            )
        ids, next_cursor = self.backend.ids(limit, cursor)
        metas = [m for m in (self.backend.meta(i) for i in ids) if m is not None]
        return metas, next_cursor

    def delete(self, voice_id: str) -> None:
        if not self.backend.delete(voice_id):
            raise _not_found(voice_id)


def _wav_rate(wav: bytes) -> int:
    if wav[:4] == b"RIFF" and wav[12:16] == b"fmt ":
        return int.from_bytes(wav[24:28], "little")
    return 0
