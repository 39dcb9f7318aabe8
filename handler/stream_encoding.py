"""Audio encoded while it is being made: one continuous encoder per streamed job.

A streamed job's pieces, concatenated, are one valid file of its format, so the
encoder must be one continuous stream per job (separately encoded mp3 or opus pieces
would each carry their own encoder delay and padding, audible as gaps). The encoder
is fed the job's samples as they become final and hands back *units*: the smallest
pieces of the bitstream that can be cut apart, each with the number of samples it
decodes to, from which the pieces' start times and durations are counted.

| format | encoder | a unit is |
|---|---|---|
| `pcm` | PCM16 little-endian, in process (ffmpeg when resampling) | a run of samples |
| `wav` | the same, after a 44-byte header with unknown sizes | a run of samples |
| `mp3` | ffmpeg libmp3lame on stdin/stdout, no ID3 or Xing header | one MPEG audio frame |
| `ogg` | ffmpeg libopus in Ogg, 100 ms pages | one Ogg page |

Why these choices:

* A stream's length is unknown when its header is sent: a WAV header then holds
  0xFFFFFFFF in both size fields, as ffmpeg itself writes to a pipe, and decoders
  (ffmpeg, libsndfile, browsers) read such a file to its end.
* The MP3 Xing/LAME header (frame count, encoder delay) can only be written by
  seeking back after the last frame, which a stream cannot do, so the stream has
  none: it decodes with the encoder's delay (1105 samples, 46 ms at 24 kHz) before
  the speech and up to one frame of padding after it, and its units' durations count
  those samples too. The stored file (with a bucket) is encoded whole and has them.
* Ogg Opus signals its pre-skip in its first page and the exact end in the last
  page's granule position, so the stream decodes to exactly the job's samples.
* flac and aac are not streamed: flac's STREAMINFO (total samples, MD5) and the M4A
  index are written after the last frame (`STREAM_REFUSALS`).

A unit's bytes come from ffmpeg asynchronously. `feed` waits until the encoder has
turned all but `LOOKAHEAD_S` of what it was fed into complete units (its own
buffering: the demuxer's packet, the codec's frame and lookahead, one Ogg page), so
a piece holds nearly all the audio fed so far; whatever is still inside the encoder
comes with the next feed, or with `finish`, which closes the input and collects the
rest.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from handler import audio
from handler.errors import UserError

log = logging.getLogger(__name__)

STREAMABLE_FORMATS = ("wav", "pcm", "mp3", "ogg")
STREAM_REFUSALS = {
    "flac": "format flac cannot be streamed, since its header (length, checksum) is written "
    "after the last frame; stream wav or pcm for lossless audio, or drop stream",
    "aac": "format aac cannot be streamed, since it comes as M4A, whose index is written after "
    "the last frame; stream mp3 or ogg, or drop stream",
}
LOOKAHEAD_S = 0.3  # what ffmpeg may hold inside at most (demuxer + codec + one page)
FEED_WAIT_S = 10.0  # longest wait for a feed's units: later ones come with the next
FINISH_TIMEOUT_S = 120.0
PCM_UNIT_SAMPLES = 12000  # a PCM unit is at most 0.5 s at 24 kHz (24 KB)
WAV_HEADER_BYTES = 44
UNKNOWN_SIZE = 0xFFFFFFFF
OGG_PAGE_US = 100_000
OPUS_GRANULE_RATE = 48000


@dataclass(frozen=True)
class Unit:
    """Bytes of the bitstream that can be cut from what follows them."""

    data: bytes
    samples: int  # how many samples (at the output rate) they decode to


class StreamEncoder(Protocol):
    content_type: str
    sample_rate: int  # of the encoded stream

    def feed(self, samples: np.ndarray) -> list[Unit]:
        """Encode final samples (mono float32 in [-1, 1] at the source rate)."""
        ...

    def finish(self) -> list[Unit]:
        """Everything left, after the last samples; the stream is complete."""
        ...

    def close(self) -> None:
        """Stop at once (a failed or cancelled job); safe to call twice."""
        ...


def stream_refusal(fmt: str) -> str | None:
    """Why `fmt` cannot be streamed, or None."""
    return STREAM_REFUSALS.get(fmt)


def wav_stream_header(rate: int) -> bytes:
    """A mono PCM16 WAV header for a stream of unknown length."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", UNKNOWN_SIZE)
    )


def open_encoder(fmt: str, source_rate: int, out_rate: int | None = None) -> StreamEncoder:
    """The continuous encoder of one streamed job."""
    rate = out_rate or source_rate
    if fmt not in STREAMABLE_FORMATS:
        raise UserError(stream_refusal(fmt) or f"format {fmt!r} cannot be streamed")
    content_type = audio.ENCODINGS[fmt].content_type
    header = [Unit(wav_stream_header(rate), 0)] if fmt == "wav" else []
    if fmt in ("wav", "pcm") and rate == source_rate:
        return PcmEncoder(content_type, rate, header)
    if fmt in ("wav", "pcm"):
        output = ["-c:a", "pcm_s16le", "-f", "s16le"]
        framer: Framer = PcmFramer()
    elif fmt == "mp3":
        output = [*audio.ENCODINGS["mp3"].codec, "-write_xing", "0", "-id3v2_version", "0"]
        output += ["-f", "mp3"]
        framer = Mp3Framer()
    else:
        output = [*audio.ENCODINGS["ogg"].codec, "-page_duration", str(OGG_PAGE_US)]
        output += ["-f", "ogg"]
        framer = OggOpusFramer(rate)
    return FfmpegEncoder(fmt, content_type, source_rate, rate, output, framer, header)


class PcmEncoder:
    """PCM16 in process: exactly audio.encode's samples, cut into units."""

    def __init__(self, content_type: str, rate: int, header: list[Unit]) -> None:
        self.content_type = content_type
        self.sample_rate = rate
        self._header = header

    def feed(self, samples: np.ndarray) -> list[Unit]:
        units, self._header = self._header, []
        pcm = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
        for start in range(0, pcm.size, PCM_UNIT_SAMPLES):
            part = pcm[start : start + PCM_UNIT_SAMPLES]
            units.append(Unit(audio.pcm16(part), part.size))
        return units

    def finish(self) -> list[Unit]:
        units, self._header = self._header, []
        return units

    def close(self) -> None:
        return None


# -- framers: where the bitstream can be cut, and what each unit decodes to ------------
class Framer(Protocol):
    def units(self, buffer: bytearray) -> list[Unit]:
        """Complete units from the front of `buffer`, removed from it."""
        ...


class PcmFramer:
    def units(self, buffer: bytearray) -> list[Unit]:
        n = len(buffer) - len(buffer) % 2
        if not n:
            return []
        data = bytes(buffer[:n])
        del buffer[:n]
        return [Unit(data, n // 2)]


# MPEG audio layer III: kbit/s by bitrate index, Hz by sample-rate index.
_MP3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_frame(header: bytes) -> tuple[int, int]:
    """(bytes, samples) of the MPEG-1/2/2.5 layer III frame starting with `header`."""
    b1, b2 = header[1], header[2]
    version = (b1 >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    if header[0] != 0xFF or (b1 & 0xE0) != 0xE0 or version == 1 or (b1 >> 1) & 3 != 1:
        raise ValueError(f"not an MPEG layer III frame header: {bytes(header[:4]).hex()}")
    bitrate = _MP3_BITRATES[1 if version == 3 else 2][b2 >> 4] * 1000
    rate_index = (b2 >> 2) & 3
    if not bitrate or rate_index == 3:
        raise ValueError(f"MPEG frame header with a free or bad rate: {bytes(header[:4]).hex()}")
    rate = _MP3_RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    if version == 3:
        return 144 * bitrate // rate + padding, 1152
    return 72 * bitrate // rate + padding, 576


class Mp3Framer:
    def units(self, buffer: bytearray) -> list[Unit]:
        out = []
        while len(buffer) >= 4:
            size, samples = mp3_frame(bytes(buffer[:4]))
            if len(buffer) < size:
                break
            out.append(Unit(bytes(buffer[:size]), samples))
            del buffer[:size]
        return out


class OggOpusFramer:
    """Ogg pages; a page's samples from its granule position (48 kHz, after the
    pre-skip the OpusHead names), counted at the output rate."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.pre_skip: int | None = None
        self.end = 0  # output samples up to the last page's end

    def units(self, buffer: bytearray) -> list[Unit]:
        out = []
        while len(buffer) >= 27:
            if bytes(buffer[:4]) != b"OggS":
                raise ValueError(f"not an Ogg page: {bytes(buffer[:4]).hex()}")
            segments = buffer[26]
            if len(buffer) < 27 + segments:
                break
            size = 27 + segments + sum(buffer[27 : 27 + segments])
            if len(buffer) < size:
                break
            page = bytes(buffer[:size])
            del buffer[:size]
            out.append(Unit(page, self._samples(page, 27 + segments)))
        return out

    def _samples(self, page: bytes, body: int) -> int:
        if page[body : body + 8] == b"OpusHead":
            self.pre_skip = struct.unpack_from("<H", page, body + 10)[0]
            return 0
        (granule,) = struct.unpack_from("<q", page, 6)
        if granule < 0 or self.pre_skip is None:  # no packet ends on this page
            return 0
        end = round(max(0, granule - self.pre_skip) * self.rate / OPUS_GRANULE_RATE)
        samples, self.end = max(0, end - self.end), max(end, self.end)
        return samples


class EncoderFailed(UserError):
    """ffmpeg stopped or wrote what is not its format while a stream was encoded."""


class FfmpegEncoder:
    """One ffmpeg process for the whole stream: samples in on stdin, bitstream out on
    stdout, read by a thread of its own so ffmpeg never blocks on a full pipe."""

    def __init__(
        self,
        fmt: str,
        content_type: str,
        source_rate: int,
        rate: int,
        output: list[str],
        framer: Framer,
        header: list[Unit],
    ) -> None:
        self.fmt = fmt
        self.content_type = content_type
        self.sample_rate = rate
        self._source_rate = source_rate
        self._framer = framer
        self._header = header
        self._buffer = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._stderr: list[str] = []
        self._fed = 0  # source samples written
        self._covered = 0  # output samples in units handed out or ready
        self._ready: list[Unit] = []
        args = [
            audio.ffmpeg(),
            *("-hide_banner", "-nostdin", "-loglevel", "error"),
            *("-f", "f32le", "-ar", str(source_rate), "-ac", "1", "-i", "pipe:0"),
            *("-ar", str(rate), "-flush_packets", "1", *output, "pipe:1"),
        ]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, name="f5tts-encoder-out", daemon=True),
            threading.Thread(target=self._read_stderr, name="f5tts-encoder-err", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    # -- the readers -------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            try:
                data = stream.read1(1 << 16)
            except (OSError, ValueError):  # closed under it: the stream was stopped
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buffer += data
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        try:
            for line in self._proc.stderr:
                with self._cond:
                    self._stderr = [*self._stderr[-4:], line.decode("utf-8", "replace").strip()]
                    self._cond.notify_all()
        except (OSError, ValueError):  # closed under it: the stream was stopped
            return

    # -- feeding -----------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> list[Unit]:
        pcm = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
        if pcm.size:
            self._write(pcm.astype("<f4").tobytes())
            self._fed += pcm.size
        wanted = self._fed * self.sample_rate // self._source_rate
        wanted -= int(LOOKAHEAD_S * self.sample_rate)
        deadline = time.monotonic() + FEED_WAIT_S
        with self._cond:
            while True:
                self._collect()
                left = deadline - time.monotonic()
                # At -loglevel error a message means trouble: waiting for units would
                # only wait out FEED_WAIT_S (ffmpeg may keep reading its input).
                if self._covered >= wanted or self._eof or self._stderr or left <= 0:
                    break
                self._cond.wait(left)
            if self._eof:
                raise self._failed("stopped while the stream was being encoded")
            return self._take()

    def finish(self) -> list[Unit]:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        with self._cond:
            while not self._eof and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
        try:
            code = self._proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.close()
            raise EncoderFailed(
                f"ffmpeg took over {FINISH_TIMEOUT_S:g} s to finish the {self.fmt} stream; "
                "resubmit the job"
            ) from None
        for reader in self._readers:
            reader.join(5)
        if code != 0:
            raise self._failed(f"exited with status {code}")
        with self._cond:
            self._collect()
            if self._buffer:
                raise self._failed(f"left {len(self._buffer)} bytes that are no whole unit")
            return self._take()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for reader in self._readers:  # they end at the dead process's EOF
            if reader is not threading.current_thread():
                reader.join(5)
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass

    def _write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._proc.wait(5)
            raise self._failed("stopped reading the stream's samples") from None

    def _collect(self) -> None:
        """Parse what the reader gathered (caller holds the lock)."""
        try:
            units = self._framer.units(self._buffer)
        except ValueError as exc:
            raise self._failed(f"wrote something else than {self.fmt} ({exc})") from None
        self._ready += units
        self._covered += sum(u.samples for u in units)

    def _take(self) -> list[Unit]:
        units = [*self._header, *self._ready]
        self._header, self._ready = [], []
        return units

    def _failed(self, what: str) -> EncoderFailed:
        time.sleep(0.05)  # let the stderr reader catch ffmpeg's last words
        detail = " / ".join(self._stderr[-3:])[:240] if self._stderr else "no message"
        self.close()
        return EncoderFailed(
            f"The {self.fmt} stream at {self.sample_rate} Hz could not be encoded: ffmpeg "
            f"{what} ({detail}); choose another format or sample_rate"
        )
