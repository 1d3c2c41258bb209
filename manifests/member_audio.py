"""Reading sample ranges of one audio member of a shard, by byte offset, without reading the rest.

A training loader wants a 2-s crop of a 10-s member: :func:`open_member` reads the member's header and
returns a reader whose :meth:`~MemberAudio.read` fetches only what the crop needs with ``os.pread``:
the crop's bytes for float WAV; for FLAC the FLAC frames that hold the crop (its seek table says where),
decoded by :mod:`manifests.flac`. Other formats go through libsndfile, from the member's bytes.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import numpy as np
import soundfile as sf

from .flac import FlacSpans, decode_flac_range, read_flac_header
from .keys import ManifestError
from .storage import pread, preadv  # a shard is a local fd or a remote object's RangeReader

_WAVE_FORMAT_IEEE_FLOAT = 3
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
#: The SubFormat GUID of WAVE_FORMAT_EXTENSIBLE files holding IEEE float samples.
_SUBTYPE_IEEE_FLOAT = bytes.fromhex("0300000000001000800000aa00389b71")
#: Bytes read first to parse a FLAC member's metadata: our encoder's (STREAMINFO, then one 18-byte seek
#: point per 4096-frame FLAC frame) fit for members up to about 2 minutes at 16 kHz; longer ones are read
#: once more, whole.
_HEADER_GUESS_BYTES = 8192


class MemberAudio:
    """Sample ranges of one encoded member. Attributes: ``frames``, ``channels``, ``where`` (for errors)."""

    frames: int
    channels: int
    where: str

    def read(self, start: int, frames: int) -> np.ndarray:
        """(channels, frames) float32 from frame ``start``; ManifestError if the member is shorter."""
        raise NotImplementedError

    def _check_range(self, start: int, frames: int) -> None:
        if start < 0 or frames < 0 or start + frames > self.frames:
            raise ManifestError(f"{self.where}: frames {start}..{start + frames} outside the member's {self.frames}")


class ArrayAudio(MemberAudio):
    """An in-memory (channels, frames) float32 array behind the same interface (tests, decoded members)."""

    def __init__(self, audio: np.ndarray, where: str) -> None:
        self._audio = audio
        self.channels, self.frames = audio.shape
        self.where = where

    def read(self, start: int, frames: int) -> np.ndarray:
        self._check_range(start, frames)
        return np.ascontiguousarray(self._audio[:, start:start + frames])


class _FloatWavAudio(MemberAudio):
    def __init__(self, fd: int, data_offset: int, channels: int, frames: int, where: str) -> None:
        self._fd, self._data_offset = fd, data_offset
        self.channels, self.frames, self.where = channels, frames, where

    def read(self, start: int, frames: int) -> np.ndarray:
        self._check_range(start, frames)
        samples = np.empty((frames, self.channels), dtype="<f4")  # read into: writable, no extra copy
        got = preadv(self._fd, [samples], self._data_offset + start * self.channels * 4)
        if got != samples.nbytes:
            raise ManifestError(f"{self.where}: truncated audio ({got} of {samples.nbytes} bytes at frame {start})")
        return np.ascontiguousarray(samples.T)


class _FlacAudio(MemberAudio):
    """A FLAC member: each read fetches only the FLAC frames the range needs (its seek table says which,
    see ``FlacSpans``) and decodes them with our numba decoder, which checks their CRCs."""

    def __init__(self, fd: int, offset: int, spans: FlacSpans, where: str) -> None:
        self._fd, self._offset, self._spans, self.where = fd, offset, spans, where
        self.channels, self.frames = spans.info.channels, spans.info.total_frames

    def read(self, start: int, frames: int) -> np.ndarray:
        self._check_range(start, frames)
        begin, end, header = self._spans.span(start, frames)
        span = pread(self._fd, end - begin, self._offset + begin)
        if len(span) != end - begin:
            raise ManifestError(f"{self.where}: truncated member ({begin + len(span)} of {self._spans.stream_bytes} "
                                "bytes)")
        try:
            return decode_flac_range(header + span, start, frames, dtype=np.float32)
        except ValueError as error:
            raise ManifestError(f"{self.where}: {error}") from None


def _flac_spans(fd: int, offset: int, size: int) -> FlacSpans | None:
    """The member's FLAC metadata, read from its first bytes; None if it is not FLAC or does not state
    its length (libsndfile then reads it whole, counting)."""
    head = pread(fd, min(size, _HEADER_GUESS_BYTES), offset)
    if head[:4] != b"fLaC":
        return None
    try:
        info = read_flac_header(head)
    except ValueError:  # metadata longer than the guess (a big seek table), or broken: read it all
        try:
            info = read_flac_header(pread(fd, size, offset))
        except ValueError:
            return None  # libsndfile names the problem
    return FlacSpans(info, size) if info.total_frames else None


class _SoundfileAudio(MemberAudio):
    """Any format libsndfile reads, from the member's bytes (integer WAV; FLAC that does not state its length)."""

    def __init__(self, data: bytes, where: str) -> None:
        self.where = where
        try:
            self._file = sf.SoundFile(io.BytesIO(data))
        except (sf.LibsndfileError, RuntimeError) as error:
            raise ManifestError(f"{where}: cannot decode ({error})") from None
        self.channels, self.frames = self._file.channels, self._file.frames

    def read(self, start: int, frames: int) -> np.ndarray:
        self._file.seek(start)
        audio = self._file.read(frames, dtype="float32", always_2d=True)
        if audio.shape[0] != frames:
            raise ManifestError(f"{self.where}: truncated audio ({start + audio.shape[0]} of {start + frames} frames)")
        return np.ascontiguousarray(audio.T)


def _layout(fd: int, offset: int, size: int, extension: str) -> tuple | None:
    """Where a member's samples lie, for the formats read without libsndfile: ("wav", data offset,
    channels, frames) for float WAV, ("flac", FlacSpans) for FLAC that states its length; else None."""
    if extension.endswith(".wav"):
        layout = float_wav_layout(lambda at, count: pread(fd, max(0, min(count, size - at)), offset + at))
        if layout is not None:
            data_offset, data_bytes, _, channels = layout
            data_bytes = min(data_bytes, size - data_offset)
            return "wav", offset + data_offset, channels, data_bytes // (4 * channels)
    if extension.endswith(".flac"):
        spans = _flac_spans(fd, offset, size)
        if spans is not None:
            return "flac", spans
    return None


def open_member(fd: int, offset: int, size: int, extension: str, where: str,
                layouts: dict | None = None) -> MemberAudio:
    """A reader for the member at byte ``offset`` (``size`` bytes) of the open shard ``fd``.

    ``extension`` is the member's (e.g. "input.flac"); ``where`` names it in errors. ``layouts``, a dict
    the caller keeps per shard, remembers each member's header (where its samples lie, its length), so
    that a member read again in a later epoch costs no header parsing. Raises :class:`ManifestError` for
    a member that cannot be decoded or is truncated.
    """
    known = layouts.get(offset) if layouts is not None else None
    if known is None:
        known = _layout(fd, offset, size, extension)
        if known is not None and layouts is not None:
            layouts[offset] = known
    if known is not None:
        kind, *details = known
        return _FloatWavAudio(fd, *details, where) if kind == "wav" else _FlacAudio(fd, offset, *details, where)
    data = pread(fd, size, offset)
    if len(data) != size:
        raise ManifestError(f"{where}: truncated member ({len(data)} of {size} bytes)")
    return _SoundfileAudio(data, where)


def float_wav_layout(read_at: Callable[[int, int], bytes]) -> tuple[int, int, int, int] | None:
    """(data offset, data bytes, sample rate, channels) of a RIFF little-endian float32 WAV, else None.

    ``read_at(offset, count)`` returns up to ``count`` bytes from ``offset`` of the file or member; the
    chunks are walked with it, so metadata chunks of any size before the samples cost nothing. Both
    WAVE_FORMAT_IEEE_FLOAT and WAVE_FORMAT_EXTENSIBLE with the float SubFormat are recognised; anything
    else (integer PCM, RF64, not a WAV) is None, for libsndfile to handle.
    """
    head = read_at(0, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position, layout = 12, None
    while True:
        chunk = read_at(position, 8)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"fmt ":
            fmt = read_at(position + 8, min(size, 40))
            if len(fmt) < 16:
                return None
            tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
            if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 40 and fmt[24:40] == _SUBTYPE_IEEE_FLOAT:
                tag = _WAVE_FORMAT_IEEE_FLOAT
            if tag != _WAVE_FORMAT_IEEE_FLOAT or bits != 32 or channels < 1 or block_align != 4 * channels \
                    or rate < 1:
                return None
            layout = (rate, channels)
        elif name == b"data":
            if layout is None:
                return None
            return position + 8, size - size % (4 * layout[1]), *layout
        position += 8 + size + (size & 1)
