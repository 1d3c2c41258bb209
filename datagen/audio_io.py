"""Reading and atomically writing audio files, with errors that name the file and the problem."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import soundfile as sf


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


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    A crash or an exception leaves any earlier ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
