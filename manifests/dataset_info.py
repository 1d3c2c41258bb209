"""dataset.json and the atomic-write helper every writer of this package uses.

``OUT/dataset.json`` records the full build config, seed, library versions, counts and hours per split,
and the config hash. JSON is written with sorted keys and a trailing newline so the same content always
gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from .keys import ManifestError
from .storage import read_bytes

__all__ = ["DATASET_JSON", "atomic_path", "atomic_writer", "atomic_write_bytes", "config_hash", "read_json",
           "write_json"]

#: The file name of the build record at the top of a dataset folder.
DATASET_JSON = "dataset.json"

#: Every file of a dataset gets these permission bits, less the process umask.
_FILE_MODE = 0o644


def _current_umask() -> int:
    # /proc avoids os.umask's set-and-restore, which races with other threads creating files.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems cannot open or fsync a folder, which is harmless.
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write by name; on a clean exit it replaces ``path``.

    The temporary file is ``.NAME.XXXX.partial`` in the same folder (created if needed). After the block
    it is fsynced, given mode 0o644 less the umask, and renamed onto ``path``. On any exception it is
    removed and an existing file at ``path`` is left untouched, so readers see either the old file or the
    new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        # mkstemp creates 0o600; a dataset is meant to be read by others.
        os.chmod(temporary, _FILE_MODE & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Like :func:`atomic_path`, but yields the temporary file opened for binary writing."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        yield handle


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (sorted keys, indent 2, UTF-8, trailing newline) atomically.

    NaN and infinities are refused (they are not JSON and other readers choke on them).
    """
    try:
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ManifestError(f"{path}: cannot write as JSON: {error}") from None
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON object from ``path``; a missing file, invalid JSON or a non-object is a ManifestError."""
    try:
        data = json.loads(read_bytes(path).decode("utf-8"))  # a local file or an object-store URL
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: invalid JSON: {error}") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot read: {error}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def config_hash(config: dict) -> str:
    """Hex sha256 of the canonical JSON of ``config`` (sorted keys, no spaces): equal configs, equal hashes."""
    try:
        canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ManifestError(f"config cannot be hashed as JSON: {error}") from None
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
