"""``datagen build``: plan, render (resuming what is done), then write manifests, card and checksums.

Output layout (the contract lives in :mod:`manifests`)::

    OUT/{train,valid,test}/NAME-SPLIT-000000.tar   KEY.input.flac, KEY.target.flac, KEY.json
    OUT/manifest/{split}.parquet                   one row per example
    OUT/dataset.json                               config, seed, versions, counts, shard checksums
    OUT/README.md                                  dataset card (Hugging Face front matter)
    OUT/SHA256SUMS                                 sha256sum -c compatible
    OUT/.build/                                    lock, config, one journal entry per finished shard

What a build may delete is exactly what the previous build's own records (dataset.json, SHA256SUMS, the
journal) list: anything else in OUT is the user's, and a build refuses to touch a folder holding such files
where the dataset goes. ``--overwrite`` writes the new build beside the old one (in OUT/.build/next) and
swaps them only when the new one is complete, so a mistake or a crash leaves the old build whole. A build
that fails before finishing its first shard leaves nothing behind; one that fails later keeps its finished
shards, and rerunning the same command resumes. Shards are reused only when their spec and their sources'
content (size, mtime and a sampled hash) are unchanged, and a rebuild removes every shard it no longer lists.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import platform
import re
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

import manifests
from effects import get_effect
from manifests import SPLITS, ManifestError, config_hash, read_json, read_sha256sums, sha256_file, storage, write_json
from manifests.paths import path_problem, require_path

from .bounds import check_plan_size
from .config import CODECS, BuildConfig, source_kind
from .executors import make_runner
from .plan import ShardSpec, check_planned_splits, check_rendered_splits, plan
from .render import ShardResult
from .sources import SourceFile, discover, screen_sources

_BUILD_DIR = ".build"
#: What a build writes at the top of OUT (an object-store --out holding anything else is refused).
_OUTPUTS = (*SPLITS, "manifest", manifests.DATASET_JSON, "README.md", "SHA256SUMS", _BUILD_DIR)
_NEXT = "next"  # OUT/.build/next: a replacement build (--overwrite), written beside the old one
_SWAP = "swap.json"  # OUT/.build/swap.json: the replacement's file moves, finished by the next run if cut
_RECORDS = (manifests.DATASET_JSON, "README.md", "SHA256SUMS")  # SHA256SUMS last: it marks a build complete
_DATASET_DIRS = (*SPLITS, "manifest")
_SHARD_FILE = re.compile(r"(?:train|valid|test)/[a-z0-9-]+\.tar")
_MANIFEST_FILE = re.compile(r"manifest/(?:train|valid|test)\.parquet")
_JOURNAL_FILE = re.compile(r"(?:train|valid|test)-\d{6}\.json")
#: Say "compiling kernels" once preparing them has used this much CPU time: loading them from numba's cache
#: takes about 1 s of CPU, compiling them 15-60 s. CPU time, not wall time: a busy machine must not make a
#: cached load look like a compile.
_COMPILE_NOTICE_SECONDS = 3.0
#: Bytes read from the start, middle and end of a source for its content fingerprint.
_FINGERPRINT_BLOCK = 64 * 1024


class BuildError(RuntimeError):
    """A build that cannot proceed: locked output, config clash, a strict failure."""


@dataclass
class BuildReport:
    out_dir: Path
    examples: int
    shards: int
    seconds_in: float
    seconds_out: float
    wall_seconds: float
    rendered_shards: int
    reused_shards: int
    skipped: list[dict] = field(default_factory=list)
    silent_segments: int = 0
    split_hours: dict = field(default_factory=dict)

    def summary(self) -> str:
        rate = self.seconds_out / max(self.wall_seconds, 1e-9)
        line = (f"{self.seconds_in / 3600:.2f} h in, {self.seconds_out / 3600:.2f} h out, {self.examples} examples, "
                f"{self.shards} shards ({self.reused_shards} reused) in {self.wall_seconds:.1f} s: "
                f"{rate:,.0f}x real time")
        if self.silent_segments:
            line += f"; {self.silent_segments} near-silent segments dropped"
        if self.skipped:
            line += f"; {len(self.skipped)} files skipped (see dataset.json)"
        return line


def library_versions() -> dict[str, str]:
    """Versions that decide the bytes, recorded in dataset.json (FLAC members come from our own encoder)."""
    import numpy
    import pyarrow
    import soundfile
    import soxr

    from effects.overdrive import KERNEL_VERSION
    from manifests.flac import ENCODER_VERSION

    from .plan import KEY_SCHEME

    try:
        from importlib.metadata import version

        toolkit = version("dedistort")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        toolkit = "unknown"
    return {"dedistort": toolkit, "flac_encoder": ENCODER_VERSION, "overdrive_kernel": KERNEL_VERSION,
            "example_keys": KEY_SCHEME,
            "numpy": numpy.__version__, "soundfile": soundfile.__version__,
            "libsndfile": soundfile.__libsndfile_version__,
            "soxr": soxr.__version__, "pyarrow": pyarrow.__version__, "python": platform.python_version()}


class _Lock:
    """An exclusive flock on OUT/.build/lock: a second build on the same OUT fails at once."""

    def __init__(self, out_dir: Path) -> None:
        (out_dir / _BUILD_DIR).mkdir(parents=True, exist_ok=True)
        self.path = out_dir / _BUILD_DIR / "lock"
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise BuildError(f"{out_dir} is being written by another build ({holder}); wait for it to finish") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {platform.node()}\n")
        self.handle.flush()

    def release(self) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


# ---------------------------------------------------------------------------------------------------------
# Where the build goes, and what in it is ours
# ---------------------------------------------------------------------------------------------------------


def resolve_out(out_dir: str | os.PathLike) -> Path:
    """The output folder of ``--out``, checked before anything is read or written.

    This is the one place an output location is interpreted: it must be a folder or a path that can
    become one (a file, or a file above it, is refused with a one-line BuildError).
    """
    path = Path(out_dir)
    problem = path_problem(path, "folder")
    if problem is None:
        return path
    if not os.path.lexists(path):
        for parent in path.parents:  # the nearest existing folder above must be a folder
            if os.path.lexists(parent):
                above = path_problem(parent, "folder")
                if above is not None:
                    raise BuildError(f"--out {path}: cannot be created: {parent} {above}")
                return path
        return path
    raise BuildError(f"--out {path}: {problem}")


def _source_root(spec: str | None) -> Path | None:
    """The root folder of a --source spec (checked: it must be a readable folder), None for the demo."""
    if spec is None or spec.strip() in ("", "demo"):
        return None
    layout, _, location = spec.partition(":")
    if layout not in ("folder", "signaltrain", "idmt"):
        location = spec
    root = Path(location).expanduser()
    require_path(root, "folder", "--source")
    return Path(os.path.abspath(root))


def _release_path(text: str, root: Path | None) -> str:
    """``text`` with the source root left out, so that what a release records does not depend on where the
    sources lie on the machine that built it (an absolute path becomes relative to the source root)."""
    if root is None:
        return text
    prefix = str(root).rstrip("/") + "/"
    return text.replace(prefix, "")


@dataclass
class _Records:
    """What a folder's own records say was written there by datagen build."""

    config_hash: str | None = None
    name: str | None = None
    files: set[str] = field(default_factory=set)  # relpaths (shards, manifests, records) the records list
    in_progress: bool = False  # OUT/.build/config.json exists: a build (finished or not) used this folder
    complete: bool = False  # SHA256SUMS exists


def _is_ours(relpath: str) -> bool:
    """Whether ``relpath`` has the form of a file datagen build writes (records never name anything else)."""
    return relpath in _RECORDS or bool(_SHARD_FILE.fullmatch(relpath) or _MANIFEST_FILE.fullmatch(relpath))


def _is_temporary(name: str) -> bool:
    """The temporary files of manifests' atomic writers (``.NAME.XXXX.partial``): left only by a kill."""
    return name.startswith(".") and name.endswith(".partial")


def _read_records(root: Path) -> _Records:
    records = _Records()
    listed: set[str] = set()
    state = root / _BUILD_DIR / "config.json"
    dataset_path = root / manifests.DATASET_JSON
    for path in (dataset_path, state):  # the state last: an unfinished build's config is the current one
        if not path.is_file():
            continue
        try:
            data = read_json(path)
        except ManifestError:
            continue
        records.config_hash = data.get("config_hash") or records.config_hash
        records.name = (data.get("config") or {}).get("name") or records.name
        if path == dataset_path:
            listed |= {manifests.DATASET_JSON, "README.md"} | set(data.get("shards") or {})
            listed |= {f"manifest/{split}.parquet" for split in data.get("splits") or {}}
    records.in_progress = state.is_file()
    if (root / "SHA256SUMS").is_file():
        records.complete = True
        listed.add("SHA256SUMS")
        try:
            listed |= set(read_sha256sums(root))
        except ManifestError:
            pass
    journal = root / _BUILD_DIR / "journal"
    if journal.is_dir():
        for entry in journal.glob("*.json"):
            try:
                listed.add(str(read_json(entry)["result"]["relpath"]))
            except (ManifestError, KeyError, TypeError):
                continue
    records.files = {relpath for relpath in listed if _is_ours(relpath)}
    return records


def _walk_files(root: Path) -> list[str]:
    """Every non-folder entry under ``root`` (symlinks not followed), relative, ``.build`` left out."""
    found = []
    for directory, folders, names in os.walk(root):
        here = Path(directory)
        if here == root:
            folders[:] = [f for f in folders if f != _BUILD_DIR]
        for folder in list(folders):
            if os.path.islink(here / folder):  # a symlink to a folder is an entry of its own, not ours
                names.append(folder)
                folders.remove(folder)
        found += [(here / name).relative_to(root).as_posix() for name in names]
    return sorted(found)


def _foreign_files(root: Path, records: _Records) -> list[str]:
    """Files in ``root`` that no record of a datagen build accounts for: the user's, never to be deleted."""
    foreign = []
    for relpath in _walk_files(root):
        if relpath in records.files or _is_temporary(Path(relpath).name):
            continue
        # A folder a build is using (its .build/config.json exists) may hold what a killed run wrote but
        # had not yet recorded: records and manifests, and shards with this dataset's name.
        if records.in_progress and _is_ours(relpath) and (
                not relpath.endswith(".tar") or Path(relpath).name.startswith(f"{records.name}-")):
            continue
        foreign.append(relpath)
    return foreign


def _names(relpaths: list[str], limit: int = 5) -> str:
    shown = ", ".join(relpaths[:limit])
    return shown + (f" and {len(relpaths) - limit} more" if len(relpaths) > limit else "")


def _remove_temporaries(out_dir: Path) -> int:
    """Remove the ``.partial`` files a killed build left in the folders datagen writes; returns how many."""
    removed = 0
    for directory, _, names in os.walk(out_dir):
        relative = Path(directory).relative_to(out_dir).parts
        if relative and relative[0] not in (*_DATASET_DIRS, _BUILD_DIR):
            continue
        for name in names:
            if _is_temporary(name):
                (Path(directory) / name).unlink(missing_ok=True)
                removed += 1
    return removed


def _prune_empty_folders(root: Path) -> None:
    for name in _DATASET_DIRS:
        folder = root / name
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _prepare(out_dir: Path, digest: str, overwrite: bool, log: Callable[[str], None]) -> tuple[Path, _Records]:
    """Decide where this build writes (OUT itself, or OUT/.build/next beside an old build it replaces).

    Returns the work folder and OUT's records. Refuses, naming the files, a folder holding files no build
    record lists (where the dataset goes; anywhere at all with --overwrite), and a different config's build
    without --overwrite. Called with OUT locked, after the new build is fully validated and planned.
    """
    if (out_dir / _BUILD_DIR / _SWAP).is_file():
        _complete_swap(out_dir)
        log("finished replacing the previous build (the last run was cut off while swapping)")
    records = _read_records(out_dir)
    foreign = _foreign_files(out_dir, records)
    if records.config_hash is None:
        if foreign:
            raise BuildError(f"{out_dir} is not empty and was not written by datagen build (it holds "
                             f"{_names(foreign)}); --overwrite never deletes files a build did not write: "
                             "choose an empty or new --out")
        return out_dir, records
    if records.config_hash == digest:
        inside = [f for f in foreign if f.split("/")[0] in _DATASET_DIRS]
        if inside:
            raise BuildError(f"{out_dir} holds files that no build record lists where the dataset's files go "
                             f"({_names(inside)}); they would be read as part of the dataset: move them away")
        return out_dir, records
    what = "a finished build" if records.complete else "an unfinished build"
    if not overwrite:
        raise BuildError(f"{out_dir} holds {what} with a different config; rerun with its config to "
                         f"{'reuse' if records.complete else 'resume'} it, use --overwrite to replace it, "
                         "or choose another --out")
    if foreign:
        raise BuildError(f"--overwrite deletes only what the previous build's records list, and {out_dir} also "
                         f"holds {_names(foreign)}: move those away first")
    staged = out_dir / _BUILD_DIR / _NEXT
    if staged.exists() and _read_records(staged).config_hash not in (None, digest):
        shutil.rmtree(staged)  # an abandoned replacement with yet another config (ours: it lies in .build)
    return staged, records


def _swap(out_dir: Path, staged: Path) -> None:
    """Replace OUT's old build by the complete one in ``staged``: the old build's files (all of them ours:
    _prepare refused any other) are deleted, the new ones moved in, SHA256SUMS last. The plan is recorded
    first, so a run cut off here is finished by the next one."""
    old = [relpath for relpath in _walk_files(out_dir)]
    old += [f"{_BUILD_DIR}/{p.relative_to(out_dir / _BUILD_DIR).as_posix()}"
            for p in [out_dir / _BUILD_DIR / "config.json", *sorted((out_dir / _BUILD_DIR / "journal").glob("*"))]
            if p.is_file()]
    new = [relpath for relpath in _walk_files(staged)]
    new += [f"{_BUILD_DIR}/{p.relative_to(staged / _BUILD_DIR).as_posix()}"
            for p in [staged / _BUILD_DIR / "config.json", *sorted((staged / _BUILD_DIR / "journal").glob("*"))]
            if p.is_file()]
    # SHA256SUMS goes first and comes back last: a reader never sees a complete-looking mixture.
    order = {"SHA256SUMS": 0}
    write_json(out_dir / _BUILD_DIR / _SWAP, {"delete": sorted(old, key=lambda p: (order.get(p, 1), p)),
                                              "move": sorted(new, key=lambda p: (-order.get(p, 1), p))})
    _complete_swap(out_dir)


def _complete_swap(out_dir: Path) -> None:
    plan_path = out_dir / _BUILD_DIR / _SWAP
    swap = read_json(plan_path)
    staged = out_dir / _BUILD_DIR / _NEXT

    def safe(relpath: str) -> bool:  # a damaged swap.json must not reach outside OUT or past our own files
        parts = Path(relpath).parts
        return ".." not in parts and not Path(relpath).is_absolute() and (
            _is_ours(relpath) or relpath == f"{_BUILD_DIR}/config.json"
            or (len(parts) == 3 and parts[:2] == (_BUILD_DIR, "journal")))

    for relpath in swap.get("delete", []):
        if safe(relpath):
            (out_dir / relpath).unlink(missing_ok=True)
    for relpath in swap.get("move", []):
        source = staged / relpath
        if safe(relpath) and source.is_file():
            (out_dir / relpath).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, out_dir / relpath)
    _prune_empty_folders(out_dir)
    shutil.rmtree(staged, ignore_errors=True)
    plan_path.unlink()


# ---------------------------------------------------------------------------------------------------------
# Reuse
# ---------------------------------------------------------------------------------------------------------


def source_fingerprint(source: SourceFile) -> str:
    """A cheap fingerprint of a source's content: size, mtime and a hash of its first, middle and last
    64 KiB (the whole file when it is smaller). An edit in place changes it even when length and mtime do not,
    as long as it touches a sampled block; a file that cannot be read gets a fingerprint that matches nothing."""
    if source.is_demo:
        return "demo"
    digest = hashlib.blake2b(digest_size=16)
    try:
        status = os.stat(source.path)
        digest.update(f"{status.st_size} {status.st_mtime_ns}".encode())
        with open(source.path, "rb") as handle:
            for offset in sorted({0, max(0, status.st_size // 2 - _FINGERPRINT_BLOCK // 2),
                                  max(0, status.st_size - _FINGERPRINT_BLOCK)}):
                handle.seek(offset)
                digest.update(handle.read(_FINGERPRINT_BLOCK))
    except OSError as error:
        return f"unreadable: {error.errno}"
    return digest.hexdigest()


def _journal_path(work: Path, spec: ShardSpec) -> Path:
    return work / _BUILD_DIR / "journal" / f"{spec.split}-{spec.index:06d}.json"


def _spec_sources(spec: ShardSpec, fingerprints: dict[str, str]) -> dict[str, str]:
    return {s.source_id: fingerprints[s.source_id] for s in spec.sources}


def _reusable(work: Path, spec: ShardSpec, fingerprints: dict[str, str]) -> ShardResult | None:
    """A finished shard from an earlier run, if its journal matches the spec and the sources' content,
    and its bytes check out."""
    journal, shard = _journal_path(work, spec), work / spec.relpath
    if not (journal.exists() and shard.exists()):
        return None
    try:
        entry = read_json(journal)
    except ManifestError:
        return None
    if entry.get("spec_digest") != spec.digest() or entry.get("sources") != _spec_sources(spec, fingerprints):
        return None
    if sha256_file(shard) != entry["result"]["sha256"]:
        return None
    return ShardResult(**entry["result"])


def _stale_files(work: Path, records: _Records, specs: list[ShardSpec]) -> list[Path]:
    """Shards, manifests and journal entries of ``work`` that this plan no longer lists (sources removed,
    fewer shards): all written by datagen (foreign files were refused before)."""
    planned = {spec.relpath for spec in specs}
    splits = {spec.split for spec in specs}
    stale = {relpath for relpath in records.files if _SHARD_FILE.fullmatch(relpath) and relpath not in planned}
    stale |= {relpath for relpath in _walk_files(work) if _SHARD_FILE.fullmatch(relpath) and relpath not in planned}
    stale |= {f"manifest/{split}.parquet" for split in SPLITS if split not in splits}
    paths = [work / relpath for relpath in sorted(stale)]
    journal_names = {_journal_path(work, spec).name for spec in specs}
    journal = work / _BUILD_DIR / "journal"
    if journal.is_dir():
        paths += [p for p in sorted(journal.iterdir()) if _JOURNAL_FILE.fullmatch(p.name)
                  and p.name not in journal_names]
    return [p for p in paths if p.is_file()]


# ---------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------


def _warm_kernels(spec: ShardSpec, log: Callable[[str], None]) -> None:
    """Render one tiny example in this process, so numba compiles (first run on a machine) or loads from its
    cache the kernels the shards need, before the progress bar starts; say so when it takes a while.

    Worker processes then load the compiled kernels from the cache instead of each compiling them.
    """
    import numpy as np

    from .render import _render_example, _Segment

    settings = spec.settings
    example = spec.examples[0]
    source = next(s for s in spec.sources if s.source_id == example.source_id)
    frames = max(256, min(4096, round(settings.segment_seconds * settings.sample_rate)))
    channels = source.channels if settings.keep_channels else 1
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(frames) / settings.sample_rate)
    clean = np.repeat(tone[None, :], channels, axis=0).astype(np.float32)
    done = threading.Event()
    cpu_started = time.process_time()

    def notice() -> None:
        while True:
            if time.process_time() - cpu_started >= _COMPILE_NOTICE_SECONDS:
                log("compiling kernels, first run only (up to a minute; cached for later builds) ...")
                return
            if done.wait(0.2):
                return

    watcher = threading.Thread(target=notice, name="compile-notice", daemon=True)
    watcher.start()
    try:
        _render_example(spec, example, source, _Segment(clean, settings))
    finally:
        done.set()
        watcher.join()


# ---------------------------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------------------------


def _human_bytes(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _os_error_message(error: OSError, out_dir: Path) -> str:
    """One line for an operating-system failure while writing, naming the path (and the free space when full)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = _human_bytes(shutil.disk_usage(out_dir).free)
        except OSError:
            free = "unknown"
        return (f"{out_dir}: no space left on device ({free} free on its filesystem); finished shards are kept: "
                "free some space and rerun the same command to resume")
    where = error.filename or out_dir
    return f"{where}: {error.strerror or error}"


class _Session:
    """What one run changed in its work folder, to undo on failure what must not be left behind."""

    def __init__(self, out_dir: Path, work: Path, created_out: bool, created_state: bool) -> None:
        self.out_dir, self.work = out_dir, work
        self.created_out, self.created_state = created_out, created_state
        self.had_config = (work / _BUILD_DIR / "config.json").is_file()
        self.stash: dict[str, bytes] = {}
        self.changed = False  # a shard written or a stale file deleted in this run

    def invalidate(self) -> None:
        """Take the records out before the first change, so a cut-off run never looks complete."""
        if self.stash or self.changed:
            return
        for name in reversed(_RECORDS):  # SHA256SUMS first
            path = self.work / name
            if path.is_file():
                self.stash[name] = path.read_bytes()
                path.unlink()

    def fail(self) -> None:
        """After a failure or an interrupt: no temporary file stays; a run that changed nothing puts the records
        back; a folder holding no finished shard is removed with everything this run created in it."""
        if (self.out_dir / _BUILD_DIR / _SWAP).is_file():
            return  # the next run finishes the swap
        _remove_temporaries(self.out_dir)
        if not self.changed:
            for name in _RECORDS:  # SHA256SUMS last
                if name in self.stash:
                    try:
                        manifests.dataset_info.atomic_write_bytes(self.work / name, self.stash[name])
                    except OSError:
                        break
        else:
            for name in reversed(_RECORDS):  # whatever a failing finish wrote is not a complete build
                (self.work / name).unlink(missing_ok=True)
        journal = self.work / _BUILD_DIR / "journal"
        if journal.is_dir() and any(journal.iterdir()):
            return  # finished shards: kept for the next run to resume
        if self.work != self.out_dir:
            shutil.rmtree(self.work, ignore_errors=True)
            return
        if not self.had_config:
            (self.work / _BUILD_DIR / "config.json").unlink(missing_ok=True)
        if journal.is_dir():
            journal.rmdir()
        if self.created_state:
            shutil.rmtree(self.out_dir / _BUILD_DIR, ignore_errors=True)
        if self.created_out:
            _prune_empty_folders(self.out_dir)
            with suppress(OSError):
                self.out_dir.rmdir()


def build(config: BuildConfig, out_dir: str | os.PathLike, workers: int = 1, dask: str | None = None,
          overwrite: bool = False, strict: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, allow_large: bool = False) -> BuildReport:
    """Build the corpus described by ``config`` into ``out_dir``; see the module docstring for the layout.

    Everything that can be checked is checked before OUT is touched: the config, ``--out``, the sources
    (discovered and planned) and the plan's size (``allow_large`` lifts the bound, see
    :func:`datagen.bounds.check_plan_size`). OS failures (a full disk) become one-line BuildErrors.

    ``out_dir`` and the source may be object-storage URLs (s3://, gs://, az://; see manifests.storage):
    the build then runs in a local staging folder, published to the URL as it goes and when it is done.
    """
    out_dir = storage.as_path(out_dir)  # an unsupported or mistyped URL is refused, never made a folder
    if isinstance(out_dir, storage.RemotePath) or "://" in (config.source or ""):
        with storage.staged_output(out_dir, _OUTPUTS, overwrite=overwrite, progress=progress, log=log) as local, \
                storage.local_source(config.source, progress=progress) as source:
            report = build(replace(config, source=source), local, workers, dask, overwrite, strict, progress, log,
                           allow_large)
        report.out_dir = out_dir
        return report
    started = time.perf_counter()
    config.validate()
    if workers < 1:
        raise BuildError(f"--workers must be at least 1, got {workers}")
    out_dir = resolve_out(out_dir)
    source_root = _source_root(config.source)
    config_dict = config.to_dict()
    digest = config_hash(config_dict)

    sources, skipped_files = discover(config.source, config.group_by, sample_rate=config.sample_rate)
    # Each file wholly in or wholly out, decided here (every file read once) before anything is rendered.
    sources, screened = screen_sources(sources, config.segment_seconds, config.keep_channels, progress=progress)
    skipped = [{"path": s.path, "reason": s.reason}
               for s in sorted([*skipped_files, *screened], key=lambda s: s.path)]
    if strict and skipped:
        raise BuildError(f"--strict: {len(skipped)} source file{'s' if len(skipped) > 1 else ''} cannot be used; "
                         f"first {skipped[0]['path']}: {skipped[0]['reason']}")
    check_plan_size(config, sources, allow_large=allow_large)
    specs, info = plan(config, sources, strict=strict)
    check_planned_splits(config, info)
    if not specs:
        raise BuildError("nothing to build: no source is long enough for one segment of "
                         f"{config.segment_seconds:g} s")
    fingerprints = {source.source_id: source_fingerprint(source) for source in sources}

    created_out = not os.path.lexists(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        created_state = not (out_dir / _BUILD_DIR).exists()
        lock = _Lock(out_dir)
    except OSError as error:
        raise BuildError(_os_error_message(error, out_dir)) from None
    session = None
    try:
        work, _ = _prepare(out_dir, digest, overwrite, log)
        session = _Session(out_dir, work, created_out, created_state)
        report = _render_and_finish(config, config_dict, digest, out_dir, work, specs, info, skipped, fingerprints,
                                    source_root, workers, dask, progress, log, session)
        if work != out_dir:
            _swap(out_dir, work)
        report.out_dir = out_dir
        report.wall_seconds = time.perf_counter() - started
        return report
    except BaseException as error:
        if session is not None:
            session.fail()
        elif created_state:
            shutil.rmtree(out_dir / _BUILD_DIR, ignore_errors=True)
            if created_out:
                with suppress(OSError):
                    out_dir.rmdir()
        if isinstance(error, OSError):
            raise BuildError(_os_error_message(error, out_dir)) from None
        raise
    finally:
        lock.release()


def _render_and_finish(config: BuildConfig, config_dict: dict, digest: str, out_dir: Path, work: Path,
                       specs: list[ShardSpec], info: dict, skipped: list[dict], fingerprints: dict[str, str],
                       source_root: Path | None, workers: int, dask: str | None, progress: bool,
                       log: Callable[[str], None], session: _Session) -> BuildReport:
    removed = _remove_temporaries(out_dir)
    if removed:
        log(f"removed {removed} temporary files left by an interrupted build")
    write_json(work / _BUILD_DIR / "config.json", {"config": config_dict, "config_hash": digest})
    results: dict[str, ShardResult] = {}
    todo = []
    for spec in specs:
        reused = _reusable(work, spec, fingerprints)
        if reused is not None:
            results[spec.relpath] = reused
        else:
            todo.append(spec)
    reused_count = len(results)
    if reused_count:
        log(f"resuming: {reused_count} of {len(specs)} shards already done")
    stale = _stale_files(work, _read_records(work), specs)
    if todo:
        _warm_kernels(todo[0], log)
    session.invalidate()
    bar = tqdm(total=len(specs), initial=reused_count, unit="shard", desc="rendering", disable=not progress)
    by_relpath = {spec.relpath: spec for spec in specs}
    runner = make_runner(workers, dask)(todo, work)
    try:
        for result in runner:
            session.changed = True
            spec = by_relpath[result.relpath]
            write_json(_journal_path(work, spec), {"spec_digest": spec.digest(),
                                                   "sources": _spec_sources(spec, fingerprints),
                                                   "result": asdict(result)})
            results[result.relpath] = result
            bar.update(1)
    finally:
        runner.close()  # stops the workers at once if the loop was left by an error or an interrupt
        bar.close()
    for path in stale:
        session.changed = True
        path.unlink(missing_ok=True)
    _prune_empty_folders(work)
    examples, silent = dict.fromkeys(SPLITS, 0), dict.fromkeys(SPLITS, 0)
    for spec in specs:
        examples[spec.split] += len(results[spec.relpath].rows)
        silent[spec.split] += results[spec.relpath].silent_segments
    check_rendered_splits(config, examples, silent)

    report = _finish(config, config_dict, digest, work, specs, results, info, skipped, source_root)
    report.reused_shards = reused_count
    report.rendered_shards = len(todo)
    return report


def _finish(config: BuildConfig, config_dict: dict, digest: str, out_dir: Path, specs: list[ShardSpec],
            results: dict[str, ShardResult], info: dict, skipped: list[dict],
            source_root: Path | None = None) -> BuildReport:
    """Manifests, dataset.json, card and SHA256SUMS from the shard results (all in memory: rows are small).

    Paths of skipped files (and in their reasons) are recorded relative to ``source_root``.
    """
    ordered = [results[spec.relpath] for spec in specs]
    for result in ordered:
        skipped.extend(s for s in result.skipped if s not in skipped)
    released = []
    for entry in skipped:
        entry = {**entry, "path": _release_path(entry["path"], source_root),
                 "reason": _release_path(entry["reason"], source_root)}
        if entry not in released:
            released.append(entry)
    skipped[:] = released
    skipped.sort(key=lambda s: s["path"])
    splits: dict[str, dict] = {}
    relpaths: dict[str, str] = {}
    pcm_digests: dict[str, str] = {}
    for split in SPLITS:
        split_results = [r for r, spec in zip(ordered, specs, strict=True) if spec.split == split]
        rows = [row for r in split_results for row in r.rows]
        if not split_results:
            continue
        manifests.write_manifest(manifests.manifest_path(out_dir, split), rows)
        splits[split] = {"examples": len(rows), "shards": len(split_results),
                         "hours_in": round(sum(r.seconds_in for r in split_results) / 3600, 6),
                         "hours_out": round(sum(r.seconds_out for r in split_results) / 3600, 6)}
        for r in split_results:
            relpaths[r.relpath] = r.sha256
            # The decoded audio's checksums too: a rebuild with another FLAC encoder version changes the
            # bytes (it stamps its version) but must not change the samples.
            pcm_digests[r.relpath] = pcm_digest(r.rows)
    total_in = sum(r.seconds_in for r in ordered)
    achieved = {split: (splits.get(split, {}).get("hours_in", 0.0) * 3600 / total_in if total_in else 0.0)
                for split in SPLITS}
    dataset = {
        "name": config.name, "config": config_dict, "config_hash": digest, "seed": config.seed,
        "versions": library_versions(), "splits": splits, "achieved_split_ratios": achieved,
        "split_assignment": info["assignment"],
        "shards": {p: {"sha256": relpaths[p], "pcm_sha256": pcm_digests[p]} for p in sorted(relpaths)},
        "skipped_files": skipped, "silent_segments": sum(r.silent_segments for r in ordered),
        "members": {"input": None if config.online else f"KEY.input.{_ext(config)}",
                    "target": f"KEY.target.{_ext(config)}", "metadata": "KEY.json"},
    }
    if config.online:
        sweep = config.effect_sweep
        dataset["online_effect"] = {"effect": config.effect, "parameter": _primary(config),
                                    "distribution": sweep.kind, "low": sweep.low, "high": sweep.high,
                                    "values": list(sweep.values), "effect_args": dict(config.effect_args),
                                    "dry_gain": config.dry_gain}
    write_json(out_dir / manifests.DATASET_JSON, dataset)
    manifests.write_card(out_dir, {**dataset, "description": _describe(config)})
    listed = dict(relpaths)
    for extra in [f"manifest/{split}.parquet" for split in splits] + [manifests.DATASET_JSON, "README.md"]:
        listed[extra] = sha256_file(out_dir / extra)
    manifests.write_sha256sums(out_dir, sorted(listed), known=listed)
    return BuildReport(out_dir, sum(s["examples"] for s in splits.values()), len(ordered), total_in,
                       sum(r.seconds_out for r in ordered), 0.0, 0, 0, skipped,
                       dataset["silent_segments"], {k: v["hours_in"] for k, v in splits.items()})


def pcm_digest(rows: list[dict]) -> str:
    """One checksum over the decoded-PCM checksums of a shard's examples, in key order."""
    text = "\n".join(f"{r['key']} {r['input_pcm_sha256']} {r['target_pcm_sha256']}" for r in sorted(
        rows, key=lambda r: r["key"]))
    return hashlib.sha256(text.encode()).hexdigest()


def _ext(config: BuildConfig) -> str:
    return CODECS[config.codec][2]


def _primary(config: BuildConfig) -> str:
    return get_effect(config.effect).primary


def _describe(config: BuildConfig) -> str:
    effect = get_effect(config.effect)
    what = f"{effect.summary}, {effect.primary} {config.sweep}"
    if config.online:
        what = f"clean audio only; at training time: {what}"
    if config.dry_gain:
        what += f", clean signal superimposed with weight {config.dry_gain:g}"
    # The kind of source only: where the files lie on this machine must not change the card's bytes.
    kind = source_kind(config.source)
    source = {"demo": "the built-in synthetic guitar demo corpus", "signaltrain": "SignalTrain LA2A v1.1 (its "
              "clean inputs)", "idmt": "IDMT-SMT-Audio-Effects (its NoFX recordings)"}.get(kind, "a folder of audio")
    return (f"Pairs of distorted input and clean target made by datagen from {source}: {what}. "
            f"{config.segment_seconds:g}-second segments at {config.sample_rate} Hz.")
