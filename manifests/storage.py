"""Where a dataset lies: a local folder or an fsspec URL (object storage). All URL handling is here.

Every place that takes a dataset location (``datagen build --out/--source``, ``datagen verify/stats/inspect``,
``dedistort train/evaluate --data``, :class:`training.data.PairStream`) passes it through :func:`as_path`,
which returns a :class:`pathlib.Path` for a local folder (``file://`` URLs included) and a
:class:`RemotePath` for a URL. Supported schemes and the package each needs (the ``s3`` extra installs
s3fs; the others are installed by hand)::

    s3:// (s3fs)   gs:// (gcsfs)   az://, abfs:// (adlfs)   http(s):// (aiohttp; read-only)
    file:// (local)   memory:// (fsspec's in-process store, for tests)

Any other scheme, a missing backend package, or a mistyped URL such as ``s3:/bucket`` is a one-line
:class:`StorageError`, never a local folder with a colon in its name. For S3-compatible servers the
endpoint is taken from ``FSSPEC_S3_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``.

Reading: :class:`RangeReader` serves ``pread``-style byte ranges of one object by HTTP range requests,
in blocks kept in one bounded LRU cache per process (:data:`BLOCK_CACHE`, 64 MiB unless
``DEDISTORT_RANGE_CACHE_MB`` says otherwise), so a 2-s crop of a FLAC member fetches about its own bytes.
:func:`pread` and :func:`preadv` take either a local file descriptor or a RangeReader, which is how
:mod:`manifests.member_audio` reads both.

Writing (:func:`staged_output`): a build writes into a local staging folder with the unchanged local code,
and the staging folder is published to the URL. Objects of an object store appear whole or not at all
(a PUT or a completed multipart upload is atomic), so each file is uploaded under its final name, and
the files that make a dataset look complete go last: shards, then the journal, manifests and card, then
``dataset.json``, then ``SHA256SUMS``. Before the first byte of a new build goes up, the old
``SHA256SUMS`` and ``dataset.json`` are deleted, so a half-replaced dataset never looks complete. A
lock object ``.build/lock``, created with a conditional write (S3 ``If-None-Match: *``), keeps a second
build out; finished shards are uploaded while the build runs, with their journal entries, so a build
interrupted on one machine resumes on another (the journal's shards are downloaded and re-hashed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

from .keys import ManifestError

__all__ = ["BLOCK_CACHE", "BlockCache", "RangeFile", "RangeReader", "RemotePath", "StorageError", "as_path",
           "download_tree", "is_remote", "is_url", "open_binary", "open_ranges", "pread", "preadv", "read_bytes",
           "staged_output", "local_source"]

#: Scheme -> the module its fsspec backend needs (None: built into fsspec).
_BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp", "memory": None}
_PACKAGES = {"s3fs": "s3fs (pip install 'dedistort[s3]')", "gcsfs": "gcsfs (pip install gcsfs)",
             "adlfs": "adlfs (pip install adlfs)", "aiohttp": "aiohttp (pip install aiohttp)"}
_READ_ONLY = frozenset({"http", "https"})
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
#: "s3:/bucket" or "s3:bucket": a URL with its slashes lost (e.g. by pathlib), refused rather than made a folder.
_BROKEN_URL = re.compile(r"(s3|s3a|gs|gcs|az|abfs|abfss|http|https|memory|file):/?(?!/)", re.IGNORECASE)
_SUPPORTED_TEXT = "s3://, gs://, az://, http(s):// (read-only), file:// or memory://"

#: Bytes fetched per range request by crop readers; a 2-s FLAC crop at 16 kHz is about 60 KB.
BLOCK_BYTES = 64 * 1024
#: Bytes per request when reading a shard through (its tar headers, a whole member): few, large requests.
SEQUENTIAL_BLOCK_BYTES = 1 << 20


class StorageError(ManifestError):
    """A location that cannot be used: unsupported scheme, missing backend, read-only, locked, unreachable."""


def is_url(location: object) -> bool:
    """True for a string of the form ``scheme://...`` (``file://`` included); Path objects never are."""
    return isinstance(location, str) and _URL.match(location) is not None


def is_remote(location: object) -> bool:
    """True for a URL that is not ``file://`` (and for a :class:`RemotePath`): it is read through fsspec."""
    if isinstance(location, RemotePath):
        return True
    return is_url(location) and _URL.match(location).group(1).lower() != "file"


def as_path(location: str | os.PathLike | RemotePath) -> Path | RemotePath:
    """A local :class:`Path` for a folder or ``file://`` URL, a :class:`RemotePath` for any other URL.

    Raises :class:`StorageError` for an unsupported scheme, a missing backend package, or a URL with
    its ``//`` lost (``s3:/bucket``), so that a URL is never taken for a local folder.
    """
    if isinstance(location, (Path, RemotePath)):
        return location
    text = os.fspath(location)
    match = _URL.match(text)
    if match is None:
        if _BROKEN_URL.match(text):
            raise StorageError(f"{text}: looks like a URL without its '//' (write e.g. s3://bucket/path)")
        return Path(text)
    scheme = match.group(1).lower()
    if scheme == "file":
        local = match.group(2)
        if not local.startswith("/"):
            raise StorageError(f"{text}: a file:// URL needs an absolute path (file:///folder)")
        return Path(local)
    return RemotePath(text)


def _backend(url: str) -> tuple[str, str]:
    """(scheme, path without scheme) of a supported URL whose backend is importable, else StorageError."""
    match = _URL.match(url)
    if match is None:
        raise StorageError(f"{url}: not a URL")
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in _BACKENDS:
        raise StorageError(f"{url}: unsupported URL scheme {scheme!r}; use a local folder or {_SUPPORTED_TEXT}")
    needed = [m for m in ("fsspec", _BACKENDS[scheme]) if m and importlib.util.find_spec(m) is None]
    if needed:
        package = _PACKAGES.get(needed[-1], f"{needed[-1]} (pip install {needed[-1]})")
        raise StorageError(f"{url}: {scheme}:// needs the {package} package, which is not installed")
    if not rest.strip("/"):
        raise StorageError(f"{url}: no bucket or path after {scheme}://")
    return scheme, rest


def _filesystem(scheme: str):
    """The fsspec filesystem of ``scheme``, configured from the environment (endpoint for S3 servers)."""
    import fsspec

    options: dict = {}
    if scheme in ("s3", "s3a"):
        endpoint = (os.environ.get("FSSPEC_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
                    or os.environ.get("AWS_ENDPOINT_URL"))
        if endpoint:
            options["endpoint_url"] = endpoint
        # Other machines write the same bucket: a cached listing would hide their objects.
        options["use_listings_cache"] = False
        scheme = "s3"
    return fsspec.filesystem(scheme, **options)


class RemotePath:
    """A file or folder named by URL, with the part of pathlib's API that dataset readers use.

    ``remote / "manifest" / "train.parquet"`` joins; ``exists``, ``is_file``, ``is_dir``, ``size``,
    ``read_bytes``, ``open("rb")`` read. Deliberately not ``os.PathLike``: handing one to ``open`` fails
    loudly instead of opening a local file.
    """

    def __init__(self, url: str) -> None:
        self.scheme, rest = _backend(url)
        self.url = f"{self.scheme}://{rest.rstrip('/') or rest}"
        self._fs = None

    @property
    def fs(self):
        # Async backends (s3fs, http) are not fork-safe: a DataLoader worker process makes its own.
        if self._fs is None or getattr(self, "_pid", None) != os.getpid():
            self._fs, self._pid = _filesystem(self.scheme), os.getpid()
        return self._fs

    @property
    def path(self) -> str:
        """The path as the fsspec filesystem names it (memory:// keeps a leading '/')."""
        rest = self.url.split("://", 1)[1]
        if self.scheme in ("http", "https"):
            return self.url
        return "/" + rest.lstrip("/") if self.scheme == "memory" else rest

    @property
    def read_only(self) -> bool:
        return self.scheme in _READ_ONLY

    def __truediv__(self, part: str | os.PathLike) -> RemotePath:
        part = os.fspath(part).strip("/")
        joined = RemotePath.__new__(RemotePath)
        joined.scheme, joined.url, joined._fs = self.scheme, f"{self.url}/{part}" if part else self.url, self._fs
        joined._pid = getattr(self, "_pid", None)
        return joined

    @property
    def name(self) -> str:
        return PurePosixPath(self.url.split("://", 1)[1]).name

    @property
    def parent(self) -> RemotePath:
        head, _, _ = self.url.rpartition("/")
        return self if head.endswith(":/") else RemotePath(head)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __getstate__(self) -> dict:
        return {"scheme": self.scheme, "url": self.url, "_fs": None, "_pid": None}  # filesystems hold event loops

    def _call(self, what: str, function, *args, **kwargs):
        """Run a backend call; its errors become one-line StorageErrors (FileNotFoundError stays itself)."""
        try:
            return function(*args, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RuntimeError) as error:
            raise StorageError(f"{self.url}: cannot {what}: {str(error).splitlines()[0] if str(error) else error!r}") \
                from None

    def exists(self) -> bool:
        return bool(self._call("check", self.fs.exists, self.path))

    def is_file(self) -> bool:
        return bool(self._call("check", self.fs.isfile, self.path))

    def is_dir(self) -> bool:
        return bool(self._call("list", self.fs.isdir, self.path))

    def info(self) -> dict:
        return self._call("read", self.fs.info, self.path)

    def size(self) -> int:
        return int(self.info()["size"])

    def read_bytes(self) -> bytes:
        return self._call("read", self.fs.cat_file, self.path)

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) by one range request."""
        return self._call("read", self.fs.cat_file, self.path, start=start, end=end)

    def open(self, mode: str = "rb") -> RangeFile:
        if mode != "rb":
            raise StorageError(f"{self.url}: open for reading only ('rb'), got {mode!r}")
        return RangeFile(RangeReader(self, SEQUENTIAL_BLOCK_BYTES, BlockCache(4 * SEQUENTIAL_BLOCK_BYTES)))

    def files(self) -> list[str]:
        """Every object under this folder, as relative POSIX paths, sorted (no listing over http)."""
        if self.read_only:
            raise StorageError(f"{self.url}: {self.scheme}:// cannot list folders")
        try:
            found = self._call("list", self.fs.find, self.path)
        except FileNotFoundError:
            return []
        base = self.path.strip("/") + "/"
        return sorted(f.lstrip("/")[len(base):] for f in found if f.lstrip("/").startswith(base))

    def put_file(self, local: Path) -> None:
        """Upload ``local`` to this key. Object stores publish an object whole or not at all, so the final
        name is safe: a reader sees the old object or the new one, never a part."""
        self._call("upload", self.fs.put_file, str(local), self.path)

    def write_bytes(self, data: bytes) -> None:
        self._call("write", self.fs.pipe_file, self.path, data)

    def create_exclusive(self, data: bytes) -> bool:
        """Write ``data`` only if no object is there yet (S3 ``If-None-Match: *``); False if one was."""
        try:
            self.fs.pipe_file(self.path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError):
            # A backend without conditional writes: check, write, read back. Two builds starting within
            # the same second can both pass; such backends say so in the README.
            if self.exists():
                return False
            self.write_bytes(data)
            return self.read_bytes() == data
        except (OSError, ValueError) as error:
            raise StorageError(f"{self.url}: cannot create: {str(error).splitlines()[0]}") from None

    def unlink(self, missing_ok: bool = True) -> None:
        try:
            self._call("delete", self.fs.rm_file, self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise


# ---------------------------------------------------------------------------------------------------------
# Reading by byte range


class BlockCache:
    """A thread-safe LRU of fixed-size blocks of objects, bounded in bytes.

    Keys are (object identity, block size, block index); the identity includes the object's ETag (or size),
    so a replaced object is never served from the old one's blocks.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._blocks: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.fetched_bytes = self.requests = 0

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is None:
                self.misses += 1
                return None
            self._blocks.move_to_end(key)
            self.hits += 1
            return block

    def put(self, key: tuple, block: bytes) -> None:
        with self._lock:
            if key in self._blocks or len(block) > self.max_bytes:
                return
            self._blocks[key] = block
            self._bytes += len(block)
            while self._bytes > self.max_bytes:
                _, dropped = self._blocks.popitem(last=False)
                self._bytes -= len(dropped)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0


#: The crop readers' cache, shared by every RangeReader of the process (reader threads included).
BLOCK_CACHE = BlockCache(int(float(os.environ.get("DEDISTORT_RANGE_CACHE_MB", "64")) * (1 << 20)))


class RangeReader:
    """``pread`` over one remote object: blocks of ``block_bytes`` fetched by range requests, through ``cache``.

    Consecutive missing blocks of one read are fetched in one request. Thread-safe.
    """

    def __init__(self, remote: RemotePath, block_bytes: int = BLOCK_BYTES, cache: BlockCache | None = None) -> None:
        info = remote.info()
        self.remote, self.size = remote, int(info["size"])
        self.block_bytes = int(block_bytes)
        self.cache = BLOCK_CACHE if cache is None else cache
        # What tells a replaced object from the old one: its ETag (S3, GCS, Azure), else its times.
        version = tuple(str(info.get(k)) for k in ("ETag", "etag", "LastModified", "updated", "last_modified",
                                                    "mtime", "created") if info.get(k) is not None)
        self._identity = (remote.url, version, self.size)

    def pread(self, count: int, offset: int) -> bytes:
        """Up to ``count`` bytes from ``offset`` (fewer only at the end of the object), like ``os.pread``."""
        end = min(self.size, offset + max(0, count))
        if offset >= end:
            return b""
        size = self.block_bytes
        first, last = offset // size, (end - 1) // size
        blocks: dict[int, bytes] = {}
        missing = []
        for index in range(first, last + 1):
            block = self.cache.get((*self._identity, size, index))
            if block is None:
                missing.append(index)
            else:
                blocks[index] = block
        for run in _runs(missing):
            start, stop = run[0] * size, min(self.size, (run[-1] + 1) * size)
            data = self.remote.read_range(start, stop)
            if len(data) != stop - start:
                raise StorageError(f"{self.remote}: short read ({len(data)} of {stop - start} bytes at {start}); "
                                   "the object changed while being read")
            with self.cache._lock:
                self.cache.requests += 1
                self.cache.fetched_bytes += len(data)
            for index in run:
                block = data[(index - run[0]) * size:(index - run[0] + 1) * size]
                blocks[index] = block
                self.cache.put((*self._identity, size, index), block)
        joined = b"".join(blocks[i] for i in range(first, last + 1))
        skip = offset - first * size
        return joined[skip:skip + end - offset]


def _runs(indices: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for index in indices:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


class RangeFile(io.RawIOBase):
    """A read-only, seekable binary file over a :class:`RangeReader` (for tarfile and pyarrow)."""

    def __init__(self, reader: RangeReader) -> None:
        super().__init__()
        self.reader, self._position = reader, 0
        self.name = str(reader.remote)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.reader.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        data = self.reader.pread(len(buffer), self._position)
        memoryview(buffer).cast("B")[:len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.reader.size - self._position)
        data = self.reader.pread(size, self._position)
        self._position += len(data)
        return data


def pread(source: int | RangeReader, count: int, offset: int) -> bytes:
    """``os.pread`` for a local file descriptor, a range read for a :class:`RangeReader`."""
    if isinstance(source, int):
        return os.pread(source, count, offset)
    return source.pread(count, offset)


def preadv(source: int | RangeReader, buffers: list, offset: int) -> int:
    """``os.preadv`` for a local file descriptor; the same into ``buffers`` from a :class:`RangeReader`."""
    if isinstance(source, int):
        return os.preadv(source, buffers, offset)
    total = 0
    for buffer in buffers:
        view = memoryview(buffer).cast("B")
        data = source.pread(len(view), offset + total)
        view[:len(data)] = data
        total += len(data)
        if len(data) < len(view):
            break
    return total


@contextmanager
def open_ranges(location: str | os.PathLike | RemotePath) -> Iterator[int | RangeReader]:
    """A source for :func:`pread`: an open file descriptor of a local file, a RangeReader of an object."""
    path = as_path(location)
    if isinstance(path, RemotePath):
        try:
            reader = RangeReader(path)
        except FileNotFoundError:
            raise ManifestError(f"{path}: no such shard") from None
        yield reader
        return
    with open(path, "rb") as handle:
        yield handle.fileno()


def open_binary(location: str | os.PathLike | RemotePath):
    """A readable binary file: ``open(path, "rb")`` locally, a :class:`RangeFile` read in 1-MiB requests remotely.

    Raises FileNotFoundError for a missing file or object, as ``open`` does.
    """
    path = as_path(location)
    return path.open("rb") if isinstance(path, RemotePath) else open(path, "rb")


def read_bytes(location: str | os.PathLike | RemotePath) -> bytes:
    """A whole file or object (FileNotFoundError if there is none)."""
    return as_path(location).read_bytes()


def require_dataset(location: str | os.PathLike | RemotePath) -> None:
    """For a URL: a StorageError unless a dataset (its dataset.json) is there. Local folders are the path
    checks' business; this keeps a mistyped URL from reading as an empty split."""
    path = as_path(location)
    if isinstance(path, RemotePath) and not (path / "dataset.json").exists():
        raise StorageError(f"{path}: no dataset there (no dataset.json; check the URL, and for a private bucket "
                           "the credentials)")


# ---------------------------------------------------------------------------------------------------------
# Downloading


def download_tree(remote: RemotePath, destination: Path, relpaths: Collection[str] | None = None,
                  progress: bool = False) -> list[str]:
    """Copy the objects under ``remote`` (or only ``relpaths``) into ``destination``; returns what was copied.

    Each file is written to a temporary name and renamed, so an interrupted download leaves no half file.
    """
    from tqdm import tqdm

    names = sorted(relpaths) if relpaths is not None else remote.files()
    for relpath in tqdm(names, unit="file", desc=f"downloading {remote}", disable=not progress):
        _check_relpath(remote, relpath)
        target = destination / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.download")
        try:
            remote._call("download", remote.fs.get_file, (remote / relpath).path, str(partial))
        except FileNotFoundError:
            raise StorageError(f"{remote / relpath}: no such object") from None
        modified = _modified_seconds(remote / relpath)
        if modified is not None:  # the object's own time: an unchanged source keeps its fingerprint
            os.utime(partial, (modified, modified))
        os.replace(partial, target)
    return names


def _modified_seconds(remote: RemotePath) -> float | None:
    """The object's last-modified time (seconds since the epoch), where the backend says."""
    try:
        info = remote.info()
    except (OSError, ManifestError):
        return None
    for key in ("LastModified", "mtime", "updated", "last_modified", "created"):
        value = info.get(key)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _check_relpath(remote: RemotePath, relpath: str) -> None:
    parts = PurePosixPath(relpath).parts
    if not relpath or relpath.startswith("/") or ".." in parts:
        raise StorageError(f"{remote}: refusing the object name {relpath!r} (absolute or with '..')")


@contextmanager
def downloaded(location: str | os.PathLike | RemotePath, relpaths: Collection[str] | None = None,
               progress: bool = False) -> Iterator[Path]:
    """A local folder holding ``location``'s files: the folder itself when local, else a temporary copy
    (removed afterwards) of every object under the URL, or of ``relpaths`` only."""
    path = as_path(location)
    if isinstance(path, Path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="dedistort-download-") as folder:
        download_tree(path, Path(folder), relpaths, progress=progress)
        yield Path(folder)


@contextmanager
def dataset_copy(remote: RemotePath, progress: bool = False) -> Iterator[Path]:
    """A temporary local copy of the dataset at ``remote`` (build records under ``.build/`` left out), for
    checks that read every byte anyway (``datagen verify``). Over http(s), which cannot list, the files
    SHA256SUMS names and the dataset's fixed files are fetched; one that is missing stays missing.
    """
    if remote.read_only:
        names = {"SHA256SUMS", "dataset.json", "README.md"} | {f"manifest/{s}.parquet" for s in ("train", "valid",
                                                                                                  "test")}
        with suppress(FileNotFoundError):
            for line in (remote / "SHA256SUMS").read_bytes().decode("utf-8", "replace").splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2:
                    names.add(parts[1].lstrip("*"))
        names = {n for n in names if (remote / n).exists()}
    else:
        names = {n for n in remote.files() if not n.startswith(".build/")}
    if not names:
        raise StorageError(f"{remote}: no dataset there (no objects under this URL)")
    with tempfile.TemporaryDirectory(prefix="dedistort-verify-") as folder:
        download_tree(remote, Path(folder), names, progress=progress)
        yield Path(folder)


@contextmanager
def local_source(spec: str | None, progress: bool = True) -> Iterator[str | None]:
    """A ``--source`` spec whose URL (if any) is replaced by a temporary local copy of its files.

    The layout prefix is kept: ``signaltrain:s3://bucket/st`` -> ``signaltrain:/tmp/.../``. Builds record
    the source by kind only, so the copy's location changes no output byte.
    """
    match = None if spec is None else re.search(r"[A-Za-z][A-Za-z0-9+.-]*://", spec)
    if match is None:
        for candidate in ((spec, spec.partition(":")[2]) if spec else ()):
            if _BROKEN_URL.match(candidate):
                as_path(candidate)  # raises: "s3:/bucket" or "signaltrain:s3:/bucket" lost its '//'
        yield spec
        return
    prefix, url = spec[:match.start()], spec[match.start():]
    path = as_path(url)
    if isinstance(path, Path):
        yield prefix + str(path)
        return
    if not path.read_only and not path.files():
        raise StorageError(f"{path}: no objects under this source URL")
    with downloaded(path, progress=progress) as folder:
        yield prefix + str(folder)


# ---------------------------------------------------------------------------------------------------------
# Publishing a build to object storage

#: Files that make a dataset look complete, uploaded last in this order (and deleted first).
_COMPLETION = ("dataset.json", "SHA256SUMS")
_LOCK = ".build/lock"
_JOURNAL = ".build/journal/"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def staging_folder(remote: RemotePath) -> Path:
    """The local folder a build to ``remote`` is written in: ``$DEDISTORT_STAGING_DIR`` or
    ``~/.cache/dedistort/staging``, then a digest of the URL. Kept after a failed build (resume)."""
    root = Path(os.environ.get("DEDISTORT_STAGING_DIR") or Path.home() / ".cache" / "dedistort" / "staging")
    return root / hashlib.sha256(remote.url.encode()).hexdigest()[:20]


def _published(relpath: str) -> bool:
    """Whether a file of the staging folder goes to the remote: the dataset, the build config and journal
    (for resuming elsewhere); not the local lock, a replacement build in progress or temporary files."""
    name = relpath.rpartition("/")[2]
    if name.startswith(".") and (name.endswith(".partial") or name.endswith(".download")):
        return False
    if relpath.startswith(".build/"):
        return relpath == ".build/config.json" or (relpath.startswith(_JOURNAL) and relpath.count("/") == 2)
    return True


class _Publisher:
    """One build's connection to its remote output: lock, seeding the staging folder, uploads, completion."""

    def __init__(self, remote: RemotePath, entries: Collection[str], overwrite: bool, log) -> None:
        self.remote, self.entries, self.overwrite, self.log = remote, set(entries), overwrite, log
        self.staging = staging_folder(remote)
        self.token = uuid.uuid4().hex
        self.on_remote: dict[str, str] = {}  # relpath -> sha256 of what is (now) on the remote
        self.old_records: set[str] = set()  # what the previous build's records list: all a build may delete
        self.uncompleted = False
        self._upload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- start
    def start(self) -> None:
        if self.remote.read_only:
            raise StorageError(f"{self.remote}: {self.remote.scheme}:// is read-only; write to s3://, gs://, az:// "
                               "or a local folder")
        holder = json.dumps({"owner": self.token, "host": platform.node(), "pid": os.getpid(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, sort_keys=True)
        lock = self.remote / _LOCK
        if not lock.create_exclusive(holder.encode()):
            try:
                who = json.loads(lock.read_bytes())
                text = f"pid {who.get('pid')} on {who.get('host')} since {who.get('since')}"
            except (OSError, ValueError, ManifestError):
                text = "another process"
            raise StorageError(f"{self.remote} is being written by another build ({text}); wait for it to finish, "
                               f"or if that build died, delete {lock}")
        try:
            self._inspect_remote()
            self._seed()
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._watch, name="dedistort-upload", daemon=True)
        self._thread.start()

    def _inspect_remote(self) -> None:
        files = [f for f in self.remote.files() if f != _LOCK]
        tops = {f.split("/", 1)[0] for f in files}
        foreign = sorted(tops - self.entries)
        if foreign:
            raise StorageError(f"{self.remote} is not empty and was not written by datagen build (it holds "
                               f"{', '.join(foreign[:3])}); choose an empty or new --out")
        self.remote_files = set(files)
        if files and ".build/config.json" not in self.remote_files and not self.overwrite:
            raise StorageError(f"{self.remote} holds a dataset without its build record (.build/config.json); "
                               "use --overwrite to replace it, or choose another --out")
        # The previous build's own records: SHA256SUMS, its journal entries, its manifests and card.
        records = set(f for f in files if f.startswith(_JOURNAL) or f.startswith("manifest/")
                      or f in (*_COMPLETION, "README.md", ".build/config.json"))
        if "SHA256SUMS" in self.remote_files:
            for line in (self.remote / "SHA256SUMS").read_bytes().decode("utf-8", "replace").splitlines():
                parts = line.split(None, 1)
                if len(parts) == 2:
                    records.add(parts[1].lstrip("*"))
        self.journal: dict[str, dict] = {}
        self.journal_bytes: dict[str, bytes] = {}
        for name in sorted(f for f in files if f.startswith(_JOURNAL) and f.endswith(".json")):
            try:
                raw = (self.remote / name).read_bytes()
                entry = json.loads(raw)
                self.journal[name] = entry
                self.journal_bytes[name] = raw
                records.add(entry["result"]["relpath"])
            except (ValueError, KeyError, TypeError):
                continue  # an unreadable entry: its shard is rendered again
        self.old_records = {r for r in records if r in self.remote_files}

    def _seed(self) -> None:
        """Give the staging folder the remote's build record and finished shards, so the local build resumes."""
        self.staging.mkdir(parents=True, exist_ok=True)
        config = self.remote / ".build/config.json"
        if ".build/config.json" in self.remote_files:
            target = self.staging / ".build/config.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(config.read_bytes())
            self.on_remote[".build/config.json"] = _sha256(target)
        # The records too (small), so the local build sees a finished build as finished.
        records = sorted(f for f in self.remote_files if f in (*_COMPLETION, "README.md") or f.startswith("manifest/"))
        download_tree(self.remote, self.staging, records)
        for relpath in records:
            self.on_remote[relpath] = _sha256(self.staging / relpath)
        wanted = {}
        for name, entry in self.journal.items():
            relpath, digest = entry["result"]["relpath"], entry["result"].get("sha256")
            if relpath in self.remote_files and isinstance(digest, str):
                wanted[name] = (relpath, digest)
        if wanted:
            self.log(f"{self.remote}: fetching {len(wanted)} finished shards to resume from")
        for name, (relpath, digest) in wanted.items():
            local = self.staging / relpath
            if not (local.exists() and _sha256(local) == digest):
                download_tree(self.remote, self.staging, [relpath])
            if _sha256(local) != digest:  # damaged upload: render it again
                continue
            self.on_remote[relpath] = digest
            entry_path = self.staging / name
            entry_path.parent.mkdir(parents=True, exist_ok=True)
            entry_path.write_bytes(self.journal_bytes[name])
            self.on_remote[name] = _sha256(entry_path)

    # -- during the build
    def _watch(self) -> None:
        """Upload each shard as its journal entry appears (the entry is written after the shard, atomically)."""
        while not self._stop.wait(1.0):
            try:
                self._upload_finished_shards()
            except BaseException as error:  # reported at the end; the final publish retries
                self._error = error
                return

    def _upload_finished_shards(self) -> None:
        journal = self.staging / _JOURNAL
        if not journal.is_dir():
            return
        config = self.staging / ".build/config.json"  # the journal means nothing without the config it is for
        if config.is_file():
            with self._upload_lock:
                digest = _sha256(config)
                if self.on_remote.get(".build/config.json") != digest:
                    self._uncomplete()
                    self._upload(".build/config.json", digest)
        for entry_path in sorted(journal.glob("*.json")):
            name = _JOURNAL + entry_path.name
            try:
                entry = json.loads(entry_path.read_bytes())
                relpath, digest = entry["result"]["relpath"], entry["result"]["sha256"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            with self._upload_lock:
                if self.on_remote.get(name) == _sha256(entry_path) or not (self.staging / relpath).is_file():
                    continue
                self._uncomplete()
                if self.on_remote.get(relpath) != digest:
                    self._upload(relpath, digest)
                self._upload(name, _sha256(entry_path))

    def _uncomplete(self) -> None:
        """Before the remote changes: delete the files that make it look complete (SHA256SUMS first)."""
        if self.uncompleted:
            return
        for name in reversed(_COMPLETION):
            if name in self.remote_files:
                (self.remote / name).unlink()
                self.remote_files.discard(name)
        self.uncompleted = True

    def _upload(self, relpath: str, digest: str) -> None:
        (self.remote / relpath).put_file(self.staging / relpath)
        self.on_remote[relpath] = digest
        self.remote_files.add(relpath)

    # -- end
    def _stop_watching(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def finish(self, progress: bool = True) -> None:
        """Publish the finished build: shards, records, deletions, then dataset.json and SHA256SUMS."""
        from tqdm import tqdm

        self._stop_watching()
        local = sorted(relpath for relpath in (p.relative_to(self.staging).as_posix()
                                               for p in self.staging.rglob("*") if p.is_file())
                       if _published(relpath))
        digests = {relpath: _sha256(self.staging / relpath) for relpath in local}
        changed = []
        for relpath in local:
            if self.on_remote.get(relpath) == digests[relpath]:
                continue
            if relpath in self.remote_files and not relpath.endswith(".tar"):
                # Small records: compare with what is there rather than upload again.
                with suppress(FileNotFoundError):
                    if hashlib.sha256((self.remote / relpath).read_bytes()).hexdigest() == digests[relpath]:
                        self.on_remote[relpath] = digests[relpath]
                        continue
            changed.append(relpath)
        stale = sorted(self.old_records - set(local))
        if changed or stale:
            self._uncomplete()
        last = [name for name in _COMPLETION if name in changed]
        first = [r for r in changed if r not in last]
        # Shards, then the journal, then the manifests and card; the completion files go last.
        first.sort(key=lambda r: (0 if r.endswith(".tar") else 1 if r.startswith(".build/") else 2, r))
        bar = tqdm(total=len(changed) + len(stale), unit="file", desc=f"uploading to {self.remote}",
                   disable=not progress or not (changed or stale))
        for relpath in first:
            self._upload(relpath, digests[relpath])
            bar.update(1)
        for relpath in stale:  # only what the previous build's records listed
            (self.remote / relpath).unlink()
            self.remote_files.discard(relpath)
            bar.update(1)
        for name in _COMPLETION:
            if name in local and (name in last or self.uncompleted):
                self._upload(name, digests[name])
                bar.update(name in last)
        bar.close()
        self._release()
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        """A build that failed or was interrupted: upload the shards it finished with their journal entries
        (so another machine can resume), never the records that make a dataset look complete; unlock."""
        self._stop_watching()
        try:
            self._upload_finished_shards()
        except Exception as error:  # the build's own error is the one to report
            self.log(f"{self.remote}: could not upload the finished shards for resuming: {error}")
        finally:
            self._release()

    def _release(self) -> None:
        lock = self.remote / _LOCK
        with suppress(Exception):
            if json.loads(lock.read_bytes()).get("owner") == self.token:
                lock.unlink()


@contextmanager
def staged_output(location: str | os.PathLike, entries: Collection[str], overwrite: bool = False,
                  progress: bool = True, log=print) -> Iterator[Path]:
    """The local folder to build ``location`` in: itself when local; for a URL, a staging folder published
    to the URL when the block ends without an error (see the module docstring for the order and the lock).

    ``entries`` are the top-level names a build writes; a remote folder holding anything else is refused.
    A failed or interrupted block leaves the shards uploaded so far, their journal entries and the staging
    folder, so the next build to the URL resumes, here or on another machine.
    """
    path = as_path(location)
    if isinstance(path, Path):
        yield path
        return
    publisher = _Publisher(path, entries, overwrite, log)
    publisher.start()
    try:
        yield publisher.staging
    except BaseException as error:
        publisher.abort()
        _name_the_url(error, publisher.staging, path)
        raise
    try:
        publisher.finish(progress=progress)
    except BaseException:
        publisher.abort()
        raise


def _name_the_url(error: BaseException, staging: Path, remote: RemotePath) -> None:
    """Errors of the local build name the staging folder; the user gave the URL, so name that instead."""
    if len(error.args) == 1 and isinstance(error.args[0], str) and str(staging) in error.args[0]:
        error.args = (error.args[0].replace(str(staging), str(remote)),)
