"""Checksums: ``OUT/SHA256SUMS`` (checkable with ``sha256sum -c``) and decoded-PCM checksums.

File checksums prove the bytes; PCM checksums prove the samples. A FLAC file stamps its encoder's
version, so a rebuild with another libsndfile can change the bytes while the decoded audio, and so
:func:`pcm_sha256`, stays the same.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from .dataset_info import atomic_write_bytes
from .keys import ManifestError

__all__ = ["SHA256SUMS", "check_sha256sums", "pcm_sha256", "read_sha256sums", "sha256_file", "write_sha256sums"]

#: The checksum file's name at the top of a dataset folder.
SHA256SUMS = "SHA256SUMS"

_CHUNK_BYTES = 1 << 20
# "<64 hex><two spaces or space-asterisk><path>", as sha256sum writes in text or binary mode.
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def pcm_sha256(audio: np.ndarray) -> str:
    """Hex sha256 of decoded audio: its float32 little-endian bytes, shape (channels, samples), C order.

    Hash the audio as a decoder returns it (``soundfile.read(..., dtype="float32", always_2d=True)``,
    transposed), so a reader can recompute the value from the stored file.
    """
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise ValueError(f"pcm_sha256 expects (channels, samples) audio, got shape {audio.shape}")
    return hashlib.sha256(np.ascontiguousarray(audio, dtype="<f4").tobytes()).hexdigest()


def _check_relpath(relpath: str) -> str:
    # sha256sum escapes names with a backslash or newline; ours never need that, so refuse them.
    pure = PurePosixPath(relpath)
    if (not relpath or pure.is_absolute() or ".." in pure.parts or "\\" in relpath or "\n" in relpath
            or "\r" in relpath or str(pure) != relpath):
        raise ManifestError(f"{relpath!r}: not a plain relative path (no '..', backslash, newline or leading '/')")
    return relpath


def write_sha256sums(out_dir: str | os.PathLike, relpaths: Iterable[str], known: dict[str, str] | None = None) -> None:
    """Write ``OUT/SHA256SUMS``: ``"<sha256>  <relpath>"`` lines sorted by relpath, atomically.

    ``known`` maps relpaths to digests already computed (e.g. while writing shards); the other files
    are hashed now. ``cd OUT && sha256sum -c SHA256SUMS`` then checks every listed file.
    """
    out_dir = Path(out_dir)
    known = known or {}
    lines = []
    for relpath in sorted({_check_relpath(str(p)) for p in relpaths}):
        if relpath in known:
            digest = known[relpath].lower()
            if re.fullmatch(r"[0-9a-f]{64}", digest) is None:
                raise ManifestError(f"{relpath}: known digest {known[relpath]!r} is not a hex sha256")
        else:
            try:
                digest = sha256_file(out_dir / relpath)
            except FileNotFoundError:
                raise ManifestError(f"{out_dir / relpath}: cannot checksum a missing file") from None
        lines.append(f"{digest}  {relpath}\n")
    atomic_write_bytes(out_dir / SHA256SUMS, "".join(lines).encode("utf-8"))


def _parse(out_dir: Path) -> tuple[dict[str, str], list[str]]:
    """The entries of OUT/SHA256SUMS and the problems found reading it."""
    path = out_dir / SHA256SUMS
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}, [f"{path}: missing"]
    except (OSError, UnicodeDecodeError) as error:
        return {}, [f"{path}: cannot read: {error}"]
    entries: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        relpath = match.group(2) if match else ""
        try:
            if match is None:
                raise ManifestError("expected '<sha256>  <path>'")
            _check_relpath(relpath)
        except ManifestError as error:
            problems.append(f"{path}:{number}: malformed line {line[:120]!r}: {error}")
            continue
        if relpath in entries:
            problems.append(f"{path}:{number}: {relpath} is listed twice")
            continue
        entries[relpath] = match.group(1).lower()
    return entries, problems


def read_sha256sums(out_dir: str | os.PathLike) -> dict[str, str]:
    """``{relpath: hex sha256}`` from ``OUT/SHA256SUMS``; a missing file or malformed line is a ManifestError."""
    entries, problems = _parse(Path(out_dir))
    if problems:
        raise ManifestError(problems[0])
    return entries


def not_regular(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file that can be read to its end (a FIFO would block a reader forever, a
    device such as /dev/zero never ends), or None. Only ``stat`` is called (following symlinks): it never blocks.
    A missing path is None: the caller reports it in its own words."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot be read ({os.strerror(error.errno or 0) or error})"
    if stat.S_ISREG(mode):
        return None
    return "is a folder, not a file" if stat.S_ISDIR(mode) else "is not a regular file (a FIFO, socket or device)"


def check_sha256sums(out_dir: str | os.PathLike) -> list[str]:
    """Re-hash every file listed in ``OUT/SHA256SUMS``; returns problems (empty when all match), each naming a file.

    Only regular files are read: an entry that is a FIFO or a device (or a symlink to one) is a problem.
    """
    out_dir = Path(out_dir)
    problems = []
    if (refused := not_regular(out_dir / SHA256SUMS)) is not None:
        return [f"{out_dir / SHA256SUMS}: {refused}"]
    entries, problems = _parse(out_dir)
    for relpath, expected in entries.items():
        path = out_dir / relpath
        if (refused := not_regular(path)) is not None:
            problems.append(f"{path}: {refused}")
            continue
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            problems.append(f"{path}: listed in {SHA256SUMS} but missing")
            continue
        except OSError as error:
            problems.append(f"{path}: cannot read: {error}")
            continue
        if actual != expected:
            problems.append(f"{path}: checksum mismatch ({SHA256SUMS} has {expected}, the file hashes to {actual})")
    return problems
