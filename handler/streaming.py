"""A streamed tts job's audio as pieces, sent while the rest is still being made.

The job layer (handler/jobs.py) makes a streamed job's audio exactly as a whole
job's: the same chunk plan, the same batches, the same join (the engine's
`Crossfader` holds each chunk's fade tail back until the next chunk exists). It
feeds each run of final samples to `PieceStream`, which encodes them with the job's
one continuous encoder (handler/stream_encoding.py) and packs the encoded units into
pieces, emitted at once:

    {"seq": 0, "start_s": 0.0, "duration_s": 1.92, "audio": "<base64>",
     "format": "mp3", "content_type": "audio/mpeg", "sample_rate": 24000}   <- first only
    {"seq": 1, "start_s": 1.92, "duration_s": 4.8, "audio": "<base64>"}
    ...
    {"seq": 7, "start_s": 14.208, "duration_s": 0.0, "audio": "", "final": true,
     "result": {...the job's output; its audio described, not repeated...}}

All audio is sent before the job aligns words or uploads the stored file; the last
piece holds no audio, only the result, and exists only when everything before it
was sent and every later step succeeded (a failure ends the job FAILED instead).
Every piece's JSON is at most MAX_PIECE_BYTES (RunPod streams at most 1 MB per
yield), so a long run of audio is split into several pieces. Times count the
encoded stream's samples (an mp3 stream's include the encoder delay, see
stream_encoding).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from handler.errors import UserError
from handler.schema import TtsJob
from handler.stream_encoding import Unit, open_encoder, stream_refusal

MAX_PIECE_BYTES = 1_000_000
# Room kept for a piece's other fields when its audio is sized (they take ~200 bytes).
PIECE_FIELDS_BYTES = 1024
STREAMING_OFF = (
    "stream: true needs a streaming worker; set F5TTS_STREAMING=1 on the endpoint "
    "(docs/api.md, Streaming), or drop stream"
)

Piece = dict[str, Any]
Emit = Callable[[Piece], None]


def refusal(job: TtsJob) -> str | None:
    """Why this job cannot stream, or None (pure)."""
    why = stream_refusal(job.format)
    if why:
        return why
    if job.normalize:
        return (
            "normalize cannot be streamed: loudness normalisation measures the whole audio "
            "before it changes any of it; drop normalize or stream"
        )
    if job.remove_silence:
        return (
            "remove_silence cannot be streamed: it finds long pauses in each segment's "
            "whole audio; drop remove_silence or stream"
        )
    if job.delivery == "base64":
        return (
            "delivery 'base64' returns the whole file inline, which a stream already sends "
            "in pieces; drop delivery (a bucket still stores the file) or stream"
        )
    return None


class PieceStream:
    """One streamed job's pieces: `feed` final samples, `end_audio` after the last
    ones, then `final(result)` is the last piece (returned: the caller yields it)."""

    def __init__(
        self,
        fmt: str,
        source_rate: int,
        out_rate: int | None,
        emit: Emit,
        *,
        max_bytes: int = MAX_PIECE_BYTES,
    ) -> None:
        self.format = fmt
        self.emit = emit
        self.max_bytes = max_bytes
        self.encoder = open_encoder(fmt, source_rate, out_rate)
        self.sample_rate = self.encoder.sample_rate
        self.seq = 0
        self.samples = 0  # stream samples sent
        self.bytes = 0
        self.first_audio_at: float | None = None  # time.perf_counter() of the first audio
        self._digest = hashlib.sha256()

    def feed(self, samples: np.ndarray) -> None:
        if samples.size:
            self._send(self.encoder.feed(samples))

    def end_audio(self) -> None:
        self._send(self.encoder.finish())

    def close(self) -> None:
        self.encoder.close()

    def info(self) -> dict[str, Any]:
        """What the result says of the stream itself (its pieces with audio)."""
        return {
            "pieces": self.seq,
            "bytes": self.bytes,
            "sha256": self._digest.hexdigest(),
            "duration_s": round(self.samples / self.sample_rate, 6),
        }

    def final(self, result: dict[str, Any]) -> Piece:
        piece = self._piece(b"", 0)
        piece.update(final=True, result=result)
        size = len(json.dumps(piece, ensure_ascii=False).encode())
        if size > self.max_bytes:
            raise UserError(
                f"The stream's last piece (the result, with its word timings and subtitles) "
                f"would be {size} bytes, over RunPod's {self.max_bytes}-byte limit per piece; "
                "set S3_BUCKET so subtitles come as URLs, or ask for fewer of them"
            )
        return piece

    # -- packing -----------------------------------------------------------------
    def _send(self, units: list[Unit]) -> None:
        room = (self.max_bytes - PIECE_FIELDS_BYTES) // 4 * 3  # raw bytes under base64
        batch: list[Unit] = []
        size = 0
        for unit in units:
            if len(unit.data) > room:
                raise AssertionError(f"a {len(unit.data)}-byte unit cannot fit one piece")
            if batch and size + len(unit.data) > room:
                self._emit(batch)
                batch, size = [], 0
            batch.append(unit)
            size += len(unit.data)
        if batch:
            self._emit(batch)

    def _emit(self, units: list[Unit]) -> None:
        data = b"".join(u.data for u in units)
        samples = sum(u.samples for u in units)
        piece = self._piece(data, samples)
        self._digest.update(data)
        self.bytes += len(data)
        self.samples += samples
        if self.first_audio_at is None and samples:
            self.first_audio_at = time.perf_counter()
        self.emit(piece)

    def _piece(self, data: bytes, samples: int) -> Piece:
        piece: Piece = {
            "seq": self.seq,
            "start_s": round(self.samples / self.sample_rate, 6),
            "duration_s": round(samples / self.sample_rate, 6),
            "audio": base64.b64encode(data).decode(),
        }
        if self.seq == 0:
            piece.update(
                format=self.format,
                content_type=self.encoder.content_type,
                sample_rate=self.sample_rate,
            )
        self.seq += 1
        return piece
