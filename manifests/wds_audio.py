"""Decoding our shards' audio members with soundfile, for loaders that would otherwise need torchcodec.

webdataset's ``.decode()`` leaves ``KEY.input.flac`` and ``KEY.target.flac`` as bytes, and its
``wds.torch_audio``, ``torchaudio.load`` and Hugging Face ``datasets`` ≥ 4 all decode audio through
torchcodec, which does not work with a CPU-only torch. :func:`wds_audio` is a webdataset decode handler
that needs only soundfile (libsndfile, a core dependency)::

    import webdataset as wds
    from manifests import wds_audio

    for sample in wds.WebDataset(shards, shardshuffle=False).decode(wds_audio):
        target, sample_rate = sample["target.flac"]   # float32 (channels, samples), Hz

:func:`decode_audio` decodes one member's bytes, e.g. a ``datasets`` binary column.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

__all__ = ["AUDIO_EXTENSIONS", "decode_audio", "wds_audio"]

#: Member extensions the handler decodes (those libsndfile reads); others are left to the next handler.
AUDIO_EXTENSIONS = frozenset({"flac", "wav", "ogg", "oga", "opus", "aiff", "aif", "mp3"})


def decode_audio(data: bytes | bytearray | memoryview, name: str = "audio member") -> tuple[np.ndarray, int]:
    """Decode one encoded audio file held in memory.

    Args:
        data: the file's bytes (FLAC, WAV, Ogg, AIFF or MP3).
        name: what an error calls it (e.g. the member's key).

    Returns:
        ``(audio, sample_rate)``: audio float32 of shape ``(channels, samples)`` (channels first, as everywhere
        in dedistort; 24-bit FLAC is scaled to [-1, 1)), sample rate in Hz.

    Raises:
        ValueError: one line naming ``name`` when the bytes are not audio libsndfile can read.
    """
    try:
        audio, sample_rate = sf.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(f"{name}: not readable audio ({str(error).splitlines()[0]})") from None
    return np.ascontiguousarray(audio.T), int(sample_rate)


def wds_audio(key: str, data: bytes) -> tuple[np.ndarray, int] | None:
    """webdataset decode handler: ``wds.WebDataset(urls).decode(wds_audio)``.

    webdataset calls it with each member's extension (e.g. ``".target.flac"``) and bytes. Audio members
    become ``(audio, sample_rate)`` with audio float32 ``(channels, samples)``; for any other member it
    returns None, so webdataset's default handlers (``.json`` etc.) still apply when listed after it:
    ``.decode(wds_audio, "rgb")``.
    """
    extension = key.rsplit(".", 1)[-1].lower()
    if extension not in AUDIO_EXTENSIONS:
        return None
    return decode_audio(data, key.lstrip("."))
