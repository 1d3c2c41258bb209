"""Deterministic WebDataset tar shards: ``OUT/SPLIT/NAME-SPLIT-000000.tar``.

A shard is an uncompressed GNU tar whose members are ``KEY.EXT`` (e.g. ``KEY.input.flac``,
``KEY.target.flac``, ``KEY.json``), grouped by key. Writing the same members gives the same bytes:
members are sorted by key, then extension, and every header carries mtime 0, uid/gid 0, empty owner
names and mode 0o644.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from .dataset_info import atomic_writer
from .keys import ManifestError, validate_key
from .storage import as_path, open_binary

__all__ = ["SPLITS", "ShardInfo", "ShardMember", "ShardWriter", "index_shard", "read_shard", "shard_name",
           "shard_relpath", "write_shard"]

#: Split folder names, in build order. (Hugging Face calls "valid" "validation"; see manifests.card.)
SPLITS = ("train", "valid", "test")

# GNU format stores names over 100 bytes in deterministic ././@LongLink records, so long keys still work.
_TAR_FORMAT = tarfile.GNU_FORMAT
_MEMBER_MODE = 0o644
_BLOCK = tarfile.BLOCKSIZE
_COPY_BYTES = 1 << 20  # tarfile's default 16 KiB copies make 256 MiB shards needlessly slow
# Extensions: dot-separated parts, e.g. "json", "input.flac".
_EXTENSION_PATTERN = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def shard_name(dataset_name: str, split: str, index: int) -> str:
    """``"NAME-SPLIT-000042.tar"``: the file name of shard ``index`` (0-based) of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0 <= index <= 999_999:
        raise ValueError(f"shard index must be in [0, 999999], got {index}")
    return f"{dataset_name}-{split}-{index:06d}.tar"


def shard_relpath(dataset_name: str, split: str, index: int) -> str:
    """``"SPLIT/NAME-SPLIT-000042.tar"``: the shard's path relative to the dataset folder."""
    return f"{split}/{shard_name(dataset_name, split, index)}"


@dataclass(frozen=True)
class ShardMember:
    """One example of a shard: its key and its files, extension -> bytes (e.g. ``{"json": b"{...}"}``)."""

    key: str
    files: dict[str, bytes]


@dataclass(frozen=True)
class ShardInfo:
    """A written shard: its path, hex sha256 and size of the tar file, and its number of examples."""

    path: str
    sha256: str
    size_bytes: int
    count: int


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._handle.flush()


def _check_members(path: Path, members: Sequence[ShardMember]) -> list[ShardMember]:
    """Validate keys and extensions up front; returns the members sorted by key."""
    seen: set[str] = set()
    for member in members:
        if not isinstance(member, ShardMember):
            raise ManifestError(f"{path}: expected ShardMember, got {type(member).__name__}")
        try:
            validate_key(member.key)
        except ManifestError as error:
            raise ManifestError(f"{path}: {error}") from None
        if member.key in seen:
            raise ManifestError(f"{path}: duplicate key {member.key!r}")
        seen.add(member.key)
        if not member.files:
            raise ManifestError(f"{path}: key {member.key!r} has no files")
        for extension in member.files:
            if not isinstance(extension, str) or _EXTENSION_PATTERN.fullmatch(extension) is None:
                raise ManifestError(f"{path}: key {member.key!r}: invalid extension {extension!r} "
                                    "(dot-separated parts of [a-z0-9_-], e.g. 'input.flac')")
    return sorted(members, key=lambda m: m.key)


def _add_member(tar: tarfile.TarFile, path: Path, member: ShardMember) -> None:
    for extension in sorted(member.files):
        data = member.files[extension]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ManifestError(f"{path}: member {member.key}.{extension}: expected bytes, "
                                f"got {type(data).__name__}")
        data = data if isinstance(data, bytes) else bytes(data)
        info = tarfile.TarInfo(f"{member.key}.{extension}")
        info.size = len(data)
        info.mtime = 0
        info.mode = _MEMBER_MODE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, _BytesReader(data))


class ShardWriter:
    """Write a shard one example at a time, in increasing key order, so a shard never sits in memory.

    Use as a context manager; :attr:`info` holds the :class:`ShardInfo` after a clean exit. An exception
    inside the block leaves any existing file at ``path`` untouched (the write is atomic)::

        with ShardWriter(path) as shard:
            for member in members_in_key_order:
                shard.add(member)
        shard.info.sha256
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.info: ShardInfo | None = None
        self._count = 0
        self._last_key: str | None = None

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_writer(self.path)
        self._writer = _HashingWriter(self._atomic.__enter__())
        self._tar = tarfile.open(fileobj=self._writer, mode="w", format=_TAR_FORMAT, encoding="utf-8",
                                 copybufsize=_COPY_BYTES)
        return self

    def add(self, member: ShardMember) -> None:
        """Append one example; its key must sort after the previous one (deterministic, WebDataset-grouped)."""
        _check_members(self.path, [member])
        if self._last_key is not None and member.key <= self._last_key:
            raise ManifestError(f"{self.path}: key {member.key!r} does not follow {self._last_key!r}: "
                                "members must be added in increasing key order")
        _add_member(self._tar, self.path, member)
        self._last_key = member.key
        self._count += 1

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            with suppress(Exception):
                self._tar.close()  # the temporary file is about to be removed anyway
            self._atomic.__exit__(kind, error, traceback)
            return
        try:
            self._tar.close()  # writes the two end-of-archive blocks
        except BaseException as failure:
            self._atomic.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)
        self.info = ShardInfo(str(self.path), self._writer.hash.hexdigest(), self._writer.size, self._count)


def write_shard(path: str | os.PathLike, members: Sequence[ShardMember]) -> ShardInfo:
    """Write ``members`` as a deterministic tar shard at ``path``, atomically; returns its checksum.

    Members are sorted by key and then extension, whatever their input order. Invalid or duplicate keys
    raise :class:`ManifestError` before anything is written; any failure while writing (e.g. a file
    whose content is not bytes) leaves an existing file at ``path`` untouched.
    """
    path = Path(path)
    ordered = _check_members(path, members)
    with ShardWriter(path) as shard:
        for member in ordered:
            shard.add(member)
    return shard.info


class _BytesReader:
    """A minimal readable view of bytes for tarfile.addfile, without BytesIO's extra copy."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        chunk = self._view[self._position:end].tobytes()
        self._position = end
        return chunk


def _split_name(path: Path, name: str) -> tuple[str, str]:
    key, dot, extension = name.partition(".")
    if not dot or not extension:
        raise ManifestError(f"{path}: member {name!r} has no extension (expected KEY.EXT)")
    try:
        validate_key(key)
    except ManifestError as error:
        raise ManifestError(f"{path}: member {name!r}: {error}") from None
    return key, extension


def _check_end_of_archive(path: Path, handle, offset: int, last: str | None) -> None:
    """A complete tar ends with at least two zero blocks; anything else means truncation or corruption.

    tarfile itself stops quietly at a truncated or corrupt header after the first member, so without
    this check a damaged shard would read as a shorter, valid one.
    """
    where = f"after member {last!r}" if last else "at the start"
    handle.seek(offset)
    head = handle.read(2 * _BLOCK)
    if len(head) < 2 * _BLOCK or head.count(0) != len(head):
        raise ManifestError(f"{path}: truncated or corrupt tar: no end-of-archive marker at byte {offset} ({where})")
    while chunk := handle.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise ManifestError(f"{path}: corrupt tar: non-zero data after the end-of-archive marker "
                                f"at byte {offset} ({where})")


def read_shard(path: str | os.PathLike) -> Iterator[ShardMember]:
    """Yield the examples of a shard in file order, one :class:`ShardMember` per key.

    Only one example is held in memory at a time. Raises :class:`ManifestError` naming the shard (and
    member) for a missing file, a truncated or corrupt tar, a member that is not a regular file, a name
    without an extension or with an invalid key, and a key whose members are not contiguous.
    """
    path = as_path(path)  # a local file or an object-store URL (manifests.storage)
    try:
        handle = open_binary(path)  # closed in the finally below: the caller may stop early
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such shard") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot open shard: {error}") from None
    last_name: str | None = None
    try:
        try:
            tar = tarfile.open(fileobj=handle, mode="r:", encoding="utf-8")
        except (tarfile.TarError, EOFError) as error:
            raise ManifestError(f"{path}: not a readable tar file: {error}") from None
        current_key: str | None = None
        files: dict[str, bytes] = {}
        finished: set[str] = set()
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, EOFError, OSError) as error:
                where = f"after member {last_name!r}" if last_name else "at the start"
                raise ManifestError(f"{path}: corrupt tar {where}: {error}") from None
            if info is None:
                break
            name = info.name
            if not info.isreg():
                raise ManifestError(f"{path}: member {name!r} is not a regular file")
            key, extension = _split_name(path, name)
            if key != current_key:
                if current_key is not None:
                    finished.add(current_key)
                    yield ShardMember(current_key, files)
                if key in finished:
                    raise ManifestError(f"{path}: member {name!r}: the members of key {key!r} are not contiguous")
                current_key, files = key, {}
            if extension in files:
                raise ManifestError(f"{path}: member {name!r} appears twice")
            try:
                extracted = tar.extractfile(info)
                data = extracted.read() if extracted is not None else b""
            except (tarfile.TarError, EOFError, OSError) as error:
                raise ManifestError(f"{path}: member {name!r}: truncated or unreadable: {error}") from None
            if len(data) != info.size:
                raise ManifestError(f"{path}: member {name!r}: truncated ({len(data)} of {info.size} bytes)")
            files[extension] = data
            last_name = name
        _check_end_of_archive(path, handle, tar.offset, last_name)
        if current_key is not None:
            yield ShardMember(current_key, files)
    finally:
        handle.close()


def index_shard(path: str | os.PathLike) -> dict[str, dict[str, tuple[int, int]]]:
    """Where every member's bytes lie in a shard: ``{key: {extension: (byte offset, size)}}``, in file order.

    Reads the tar headers only (a few hundred bytes per member), so a reader can then fetch exactly the
    byte ranges it needs with ``os.pread`` (e.g. a 2-s crop of a 10-s member) instead of reading the
    shard through. Raises :class:`ManifestError` naming the shard for a missing file, a corrupt header,
    a member that is not a regular file or has a bad name, a member that runs past the end of the file
    (truncation), and a duplicate member.
    """
    path = as_path(path)  # a local file or an object-store URL, read in 1-MiB range requests
    try:
        handle = open_binary(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such shard") from None
    except OSError as error:
        raise ManifestError(f"{path}: cannot open shard: {error}") from None
    index: dict[str, dict[str, tuple[int, int]]] = {}
    with handle:
        file_size = handle.seek(0, os.SEEK_END)
        handle.seek(0)
        try:
            tar = tarfile.open(fileobj=handle, mode="r:", encoding="utf-8")
            members = iter(tar.next, None)
            for info in members:
                if not info.isreg():
                    raise ManifestError(f"{path}: member {info.name!r} is not a regular file")
                key, extension = _split_name(path, info.name)
                if info.offset_data + info.size > file_size:
                    raise ManifestError(f"{path}: member {info.name!r}: truncated ({file_size - info.offset_data} of "
                                        f"{info.size} bytes)")
                files = index.setdefault(key, {})
                if extension in files:
                    raise ManifestError(f"{path}: member {info.name!r} appears twice")
                files[extension] = (info.offset_data, info.size)
        except (tarfile.TarError, EOFError) as error:
            raise ManifestError(f"{path}: corrupt tar: {error}") from None
    return index
