"""Reading and atomically writing audio files, with errors that name the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import soundfile as sf

from manifests.dataset_info import atomic_path


class AudioFileError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open ``path`` for reading, refusing unreadable and empty files with an :class:`AudioFileError`."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        handle = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioFileError(f"{path}: not readable as audio ({error})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioFileError(f"{path}: contains no samples")
    return handle


def output_format(path: str | os.PathLike) -> tuple[str, str]:
    """(container, sample format) written for ``path``'s extension: 32-bit float WAV or 24-bit FLAC."""
    suffix = Path(path).suffix.lower()
    if suffix == ".wav":
        return "WAV", "FLOAT"
    if suffix == ".flac":
        return "FLAC", "PCM_24"
    raise AudioFileError(f"{path}: output must end in .wav (32-bit float) or .flac (24-bit)")


#: Write-by-name atomically (temporary file beside the target, fsync, rename); the dataset writers' helper.
atomic_output = atomic_path
