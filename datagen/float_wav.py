"""Streaming reader and writer for 32-bit float WAV files, the format ``datagen apply`` reads and writes.

soundfile (libsndfile) pushes float WAV data through its own small buffers (one write() call per 8 KiB,
and a copy through its conversion buffer on reading), which makes reading and writing a 10-minute 16 kHz
file cost more than running the overdrive effect on it. Float WAV needs no conversion on little-endian
machines, so these classes move each block between the file and the caller's array in one system call.
The writer patches the RIFF sizes at the end; its files are plain WAVE_FORMAT_IEEE_FLOAT files that
soundfile, SoX and librosa read. Anything else (integer WAV, FLAC, RF64, ...) goes through soundfile.
"""

from __future__ import annotations

import os
import struct
import sys

import numpy as np

from manifests.member_audio import float_wav_layout

_WAVE_FORMAT_IEEE_FLOAT = 3
#: RIFF sizes are 32-bit; larger outputs go through soundfile, which writes RF64.
MAX_DATA_BYTES = 0xFFFFFFFF - 64


def _header(sample_rate: int, channels: int, frames: int) -> bytes:
    data_bytes = frames * channels * 4
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_IEEE_FLOAT, channels, sample_rate, sample_rate * channels * 4,
                      channels * 4, 32, 0)  # cbSize = 0: non-PCM formats carry the extension size
    fact = struct.pack("<I", frames)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", data_bytes))
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body


class FloatWavWriter:
    """Write ``(frames, channels)`` float32 blocks to ``path`` as a 32-bit float WAV; use as a context manager.

    Mono and stereo only (more channels need WAVE_FORMAT_EXTENSIBLE; use soundfile for those).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"FloatWavWriter writes mono or stereo, not {channels} channels")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.frames = 0
        self._file = open(path, "wb")
        self._file.write(_header(self.sample_rate, self.channels, 0))

    def write(self, block: np.ndarray) -> None:
        """Append ``block``, shape (frames, channels) or (frames,) for mono, any float dtype."""
        block = np.asarray(block)
        if block.ndim == 1:
            block = block[:, np.newaxis]
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected blocks of shape (frames, {self.channels}), got {block.shape}")
        if (self.frames + block.shape[0]) * self.channels * 4 > MAX_DATA_BYTES:
            raise ValueError("a RIFF WAV file cannot hold more than 4 GiB of samples")
        self._file.write(np.ascontiguousarray(block, dtype="<f4").data)
        self.frames += block.shape[0]

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.seek(0)
        self._file.write(_header(self.sample_rate, self.channels, self.frames))
        self._file.close()

    def __enter__(self) -> FloatWavWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FloatWavReader:
    """Read a little-endian 32-bit float WAV file block by block straight into the caller's array.

    Use :meth:`open` (None for any file that is not plain float WAV, which then goes through soundfile)
    and as a context manager. Attributes ``samplerate``, ``channels`` and ``frames`` mirror soundfile's.
    """

    def __init__(self, handle, data_offset: int, data_bytes: int, sample_rate: int, channels: int) -> None:
        self._file = handle
        self._file.seek(data_offset)
        self.samplerate = sample_rate
        self.channels = channels
        self.frames = data_bytes // (4 * channels)
        self._left = self.frames

    @classmethod
    def open(cls, path: str | os.PathLike) -> FloatWavReader | None:
        """A reader for ``path`` if it is a RIFF float32 WAV this class can stream, else None."""
        if sys.byteorder != "little":
            return None
        handle = open(path, "rb", buffering=0)
        try:
            layout = float_wav_layout(lambda offset, count: os.pread(handle.fileno(), count, offset))
        except OSError:
            layout = None
        if layout is None:
            handle.close()
            return None
        return cls(handle, *layout)

    def read_into(self, buffer: np.ndarray) -> int:
        """Fill ``buffer`` (frames, channels) float32 C-contiguous with the next frames; returns how many.

        Returns 0 at the end. A file shorter than its header says raises OSError naming the shortfall.
        """
        count = min(buffer.shape[0], self._left)
        if count == 0:
            return 0
        wanted = count * self.channels * 4
        view = memoryview(buffer).cast("B")[:wanted]
        got = 0
        while got < wanted:
            step = self._file.readinto(view[got:])
            if not step:
                raise OSError(f"truncated float WAV: {self.frames - self._left + got // (4 * self.channels)} "
                              f"of {self.frames} frames")
            got += step
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FloatWavReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
