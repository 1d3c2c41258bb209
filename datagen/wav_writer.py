"""A streaming writer for 32-bit float WAV files.

soundfile (libsndfile) pushes float WAV data through its own small buffer, one write() call per 8 KiB,
which makes writing a 10-minute 16 kHz file cost more than running the overdrive effect on it. This
writer hands each block to the operating system in one call and patches the RIFF sizes at the end;
the files it writes are plain WAVE_FORMAT_IEEE_FLOAT files that soundfile, SoX and librosa read.
"""

from __future__ import annotations

import os
import struct

import numpy as np

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
