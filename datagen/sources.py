"""Finding clean recordings and reading regions of them at the corpus sample rate.

Four layouts are understood (see :func:`discover`): any folder of audio files, the SignalTrain LA2A v1.1
folders (whose own train/valid/test split is kept), the clean ``NoFX`` recordings of IDMT-SMT-Audio-Effects,
and a built-in demo corpus of synthetic guitar that needs no files at all.

Discovery only reads headers, so it is cheap for any corpus size; a file that cannot be used is
returned as a :class:`SkippedFile` with its reason instead of stopping the build. Audio is read later, one
region at a time, by :func:`load_region`, which touches only the frames it needs so that memory stays
bounded however long the file is.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from manifests.paths import path_problem

from .audio_io import AudioFileError, open_audio
from .demo import demo_guitar

#: File name endings read as audio (compared case-insensitively).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")

#: The built-in demo corpus: this many virtual files of DEMO_FILE_SECONDS each (6 minutes in all).
DEMO_FILES = 12
DEMO_FILE_SECONDS = 30.0

#: Values of ``group_by`` accepted by :func:`discover`.
GROUP_BY = ("file", "parent")

# SignalTrain's folder names (lower case) -> our split names.
_SIGNALTRAIN_FOLDERS = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}
_DEMO_ID = re.compile(r"demo/guitar-(\d{3,})")
# Context read on each side of a region so the resampler's filter sees real signal at the region's edges
# rather than the zeros it assumes outside its input. soxr's VHQ filter spans roughly 300 periods of the lower
# of the two rates (about 20 ms at 16 kHz); the margin covers its half-length with room to spare.
_RESAMPLER_MARGIN_SECONDS = 0.05
_RESAMPLER_MARGIN_PERIODS = 400


@dataclass(frozen=True)
class SourceFile:
    """One clean recording, as found by :func:`discover` (header only; no samples are held).

    Attributes:
        source_id: stable id; the path relative to the source root with '/' separators ("songs/a.wav"),
            or "demo/guitar-003" for the demo corpus.
        path: absolute path of the file; "" for a demo file.
        group_id: the unit that never straddles splits (the file itself, or its parent folder).
        native_split: "train", "valid" or "test" where the layout defines a split, else None.
        sample_rate: native sample rate in Hz.
        frames: native length in samples per channel.
        channels: number of channels in the file.
    """

    source_id: str
    path: str
    group_id: str
    native_split: str | None
    sample_rate: int
    frames: int
    channels: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"{self.source_id}: sample_rate must be positive, got {self.sample_rate}")
        if self.frames < 0:
            raise ValueError(f"{self.source_id}: frames must not be negative, got {self.frames}")
        if self.channels < 1:
            raise ValueError(f"{self.source_id}: channels must be at least 1, got {self.channels}")
        if self.native_split not in (None, "train", "valid", "test"):
            raise ValueError(f"{self.source_id}: native_split must be train, valid, test or None, "
                             f"got {self.native_split!r}")

    @property
    def duration_seconds(self) -> float:
        """Length of the recording in seconds (native frames / native sample rate)."""
        return self.frames / self.sample_rate

    @property
    def is_demo(self) -> bool:
        """True for a virtual file of the built-in demo corpus (no path; generated on demand)."""
        return self.path == "" and self.source_id.startswith("demo/")


@dataclass(frozen=True)
class SkippedFile:
    """A file that looked like audio but cannot be used, with the reason (names the problem).

    ``path`` is relative to the source root ('/' separators, like ``SourceFile.source_id``), so that what a
    release records does not depend on where the sources lie.
    """

    path: str
    reason: str


# ---------------------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------------------


def demo_sources(sample_rate: int) -> list[SourceFile]:
    """The built-in demo corpus: DEMO_FILES virtual mono files of DEMO_FILE_SECONDS at ``sample_rate`` Hz.

    The demo is synthesised directly at the corpus rate, so no resampling is involved; each file is
    one group and has no native split.
    """
    if not isinstance(sample_rate, int | np.integer) or sample_rate < 4000:
        raise ValueError(f"the demo corpus needs an integer sample_rate of at least 4000 Hz, got {sample_rate!r}")
    frames = round(DEMO_FILE_SECONDS * sample_rate)
    return [SourceFile(f"demo/guitar-{i:03d}", "", f"demo/guitar-{i:03d}", None, int(sample_rate), frames, 1)
            for i in range(DEMO_FILES)]


def discover(spec: str | None, group_by: str = "file",
             sample_rate: int = 16000) -> tuple[list[SourceFile], list[SkippedFile]]:
    """Find the clean recordings named by ``spec``; returns (usable sources sorted by source_id, skipped files).

    ``spec`` is one of:

    - None, "" or "demo": the built-in demo corpus at ``sample_rate`` Hz (``sample_rate`` is used for
      nothing else; ``group_by`` does not apply, every demo file is its own group).
    - "DIR" or "folder:DIR": every file under DIR, recursively, ending in one of AUDIO_EXTENSIONS.
      (To use a folder literally named "demo", write "folder:demo" or "./demo".)
    - "signaltrain:DIR": SignalTrain LA2A v1.1; the clean ``input_*`` files of DIR/Train, DIR/Val and
      DIR/Test (case-insensitive), with native_split taken from the folder; ``target_*`` files are ignored.
    - "idmt:DIR": IDMT-SMT-Audio-Effects; the files under every folder named "NoFX" (case-insensitive), the
      dataset's unprocessed recordings; the effect folders are ignored.

    Hidden files and folders (names starting with '.') are ignored. Only headers are read. A file that fails
    (unreadable, not audio despite its extension, no samples) is returned as a SkippedFile, never raised.

    ``group_by`` is "file" (each file its own group) or "parent" (files in the same folder form one group,
    "." for files directly in the root), for corpora where files of one folder are takes of the same song.

    Raises:
        ValueError: for an unknown ``group_by``, a DIR that does not exist, a layout whose expected folders
            are missing, or a DIR holding no usable audio file at all.
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}, got {group_by!r}")
    if spec is None or spec.strip() in ("", "demo"):
        return demo_sources(sample_rate), []
    layout, _, location = spec.partition(":")
    if layout not in ("folder", "signaltrain", "idmt"):
        layout, location = "folder", spec
    root = Path(location).expanduser()
    if not location or not root.is_dir():
        raise ValueError(f"{location or spec!r}: source folder does not exist (from source spec {spec!r})")
    root = Path(os.path.abspath(root))

    if layout == "signaltrain":
        candidates = list(_signaltrain_files(root))
    elif layout == "idmt":
        candidates = list(_idmt_files(root))
    else:
        candidates = [(path, None) for path in _audio_files(root)]
    if not candidates:
        raise ValueError(f"{root}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)})")

    sources: list[SourceFile] = []
    skipped: list[SkippedFile] = []
    for path, native_split in candidates:
        source_id = path.relative_to(root).as_posix()
        parent = path.parent.relative_to(root).as_posix()
        group_id = source_id if group_by == "file" else parent
        found = _read_header(path, source_id, group_id, native_split)
        if isinstance(found, SkippedFile):
            skipped.append(found)
        else:
            sources.append(found)
    if not sources:
        first = skipped[0]
        raise ValueError(f"{root}: none of the {len(skipped)} audio files is usable "
                         f"(first: {root / first.path}: {first.reason})")
    sources.sort(key=lambda s: s.source_id)
    skipped.sort(key=lambda s: s.path)
    return sources, skipped


def _is_audio_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def _audio_files(folder: Path) -> Iterator[Path]:
    """Audio files under ``folder``, recursively, hidden files and folders left out, in sorted order."""
    for directory, subfolders, names in os.walk(folder):
        # Pruning in place stops os.walk from descending into hidden folders; sorting makes the walk stable.
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            if _is_audio_name(name):
                yield Path(directory) / name


def _signaltrain_files(root: Path) -> Iterator[tuple[Path, str]]:
    folders: dict[str, list[Path]] = {}
    for child in sorted(root.iterdir()):
        split = _SIGNALTRAIN_FOLDERS.get(child.name.lower())
        if split is not None and child.is_dir():
            folders.setdefault(split, []).append(child)
    missing = [name for name, split in (("Train", "train"), ("Val", "valid"), ("Test", "test"))
               if split not in folders]
    if missing:
        raise ValueError(f"{root}: not a SignalTrain LA2A folder: expected subfolders Train, Val and Test, "
                         f"missing {', '.join(missing)}")
    for split in ("train", "valid", "test"):
        if len(folders[split]) > 1:
            names = ", ".join(f.name for f in folders[split])
            raise ValueError(f"{root}: ambiguous SignalTrain {split} folders: {names}")
        for path in _audio_files(folders[split][0]):
            # input_<id>_.wav is the clean signal; target_<id>_LA2A_....wav the compressed one.
            if path.name.lower().startswith("input_"):
                yield path, split


def _idmt_files(root: Path) -> Iterator[tuple[Path, None]]:
    found_folder = False
    for directory, subfolders, _names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if Path(directory).name.lower() == "nofx":
            found_folder = True
            # Everything below a NoFX folder is clean; no need to descend further from here.
            for path in _audio_files(Path(directory)):
                yield path, None
            subfolders[:] = []
    if not found_folder:
        raise ValueError(f"{root}: not an IDMT-SMT-Audio-Effects folder: no folder named NoFX "
                         f"(the clean recordings) found under it")


def _read_header(path: Path, source_id: str, group_id: str,
                 native_split: str | None) -> SourceFile | SkippedFile:
    # Named before libsndfile opens it: a symlink loop or an unreadable file is otherwise "System error.",
    # and a FIFO would block the open forever.
    problem = path_problem(path, "file")
    if problem is not None:
        return SkippedFile(source_id, problem)
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        # soundfile raises LibsndfileError (a RuntimeError) for corrupt files, OSError for unreadable ones.
        return SkippedFile(source_id, f"not readable as audio ({_one_line(error)})")
    if info.frames <= 0:
        return SkippedFile(source_id, "contains no samples (0 frames)")
    if info.samplerate <= 0 or info.channels < 1:
        return SkippedFile(source_id, f"invalid header ({info.samplerate} Hz, {info.channels} channels)")
    return SourceFile(source_id, str(path), group_id, native_split, int(info.samplerate), int(info.frames),
                      int(info.channels))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------------------------------------------------
# Screening: each file wholly in or wholly out, decided before rendering
# ---------------------------------------------------------------------------------------------------------

#: Native sample rates a header may claim, in Hz. Outside this range the header is taken as corrupt: a claim of
#: 1 Hz makes a 200-kB file look 28 hours long, one of 2 GHz makes a 3-minute take look 0.1 ms long.
SOURCE_RATE_RANGE = (1000, 768000)
#: Frames read per block while screening (bounded memory whatever the file's length).
_SCREEN_BLOCK_FRAMES = 1 << 18


def check_source(source: SourceFile, segment_seconds: float) -> str | None:
    """Why ``source`` cannot be used whole, in a few words, or None when it can.

    A file is used whole or not at all, and that is decided here, before anything is rendered: a file that
    failed half-way through rendering would otherwise leave its earlier segments in the corpus. Checks, in
    order: a sample rate outside SOURCE_RATE_RANGE; a WAV whose header promises more data than the file holds;
    a file too short for one segment (:func:`segment_starts` gives none: under half of ``segment_seconds``);
    then every frame is read (in blocks, float32) and must be readable and finite, and as many as the
    header promises. The demo corpus is generated, never checked.
    """
    if source.is_demo:
        return None
    rate = source.sample_rate
    low, high = SOURCE_RATE_RANGE
    if not low <= rate <= high:
        return f"implausible sample rate in its header: {rate:,} Hz (accepted: {low:,} to {high:,} Hz)"
    promised = _wav_promised_frames(source.path)
    if promised is not None and promised > source.frames:
        return f"truncated: header says {promised / rate:.1f} s, file holds {source.frames / rate:.1f} s"
    if not segment_starts(source.duration_seconds, segment_seconds):
        return (f"shorter than one segment: {source.duration_seconds:.2f} s, segments are {segment_seconds:g} s "
                f"(a file needs at least half a segment, {segment_seconds / 2:g} s; it is then zero-padded)")
    return _read_whole(source)


def _read_whole(source: SourceFile) -> str | None:
    """Read every frame of ``source``; the reason it is unusable, or None."""
    rate, expected = source.sample_rate, source.frames
    read = 0
    bad_first = bad_last = -1
    try:
        with open_audio(source.path) as handle:
            if handle.samplerate != rate or handle.channels != source.channels:
                return (f"changed since discovery (now {handle.samplerate} Hz, {handle.channels} channels; "
                        f"was {rate} Hz, {source.channels} channels)")
            while True:
                block = handle.read(_SCREEN_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                finite = np.isfinite(block).all(axis=1)
                if not finite.all():
                    bad = np.flatnonzero(~finite)
                    bad_first = read + int(bad[0]) if bad_first < 0 else bad_first
                    bad_last = read + int(bad[-1]) + 1
                read += len(block)
                if read > expected:
                    break
    except AudioFileError as error:
        return str(error).removeprefix(f"{source.path}: ")
    except (RuntimeError, OSError, ValueError) as error:
        read = max(read, _readable_frames(source.path))
        return (f"truncated or corrupt: header says {expected / rate:.1f} s, only the first {read / rate:.1f} s "
                f"can be read ({_one_line(error)})")
    if bad_first >= 0:
        return f"non-finite samples (NaN or inf) between {bad_first / rate:.2f} s and {bad_last / rate:.2f} s"
    if read < expected:
        return f"truncated: header says {expected / rate:.1f} s, file holds {read / rate:.1f} s"
    if read > expected:
        return f"holds more frames than its header says ({expected} frames, {expected / rate:.1f} s)"
    return None


def _readable_frames(path: str, block_frames: int = 4096) -> int:
    """How many frames of ``path`` read before libsndfile fails (for the message; small blocks, error path only)."""
    read = 0
    try:
        with sf.SoundFile(path) as handle:
            while len(block := handle.read(block_frames, dtype="float32", always_2d=True)):
                read += len(block)
    except (RuntimeError, OSError, ValueError):
        pass
    return read


def _wav_promised_frames(path: str) -> int | None:
    """Frames a RIFF WAV's header promises (its data chunk's size / block align), or None when not a RIFF WAV
    or the size is a streaming placeholder (0 or 0xFFFFFFFF). libsndfile silently reads what is there."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if name == b"fmt ":
                    body = handle.read(size + (size & 1))
                    if len(body) < 16:
                        return None
                    block_align = int.from_bytes(body[12:14], "little")
                elif name == b"data":
                    if size in (0, 0xFFFFFFFF) or block_align <= 0:
                        return None
                    return size // block_align
                else:
                    handle.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def check_channel_counts(sources: list[SourceFile]) -> None:
    """Refuse sources of mixed channel counts (for ``--channels keep``): a batch stacks examples of one shape.

    Raises ValueError in one line naming each count with (up to three of) its files, and the way out.
    """
    by_count: dict[int, list[str]] = {}
    for source in sources:
        by_count.setdefault(source.channels, []).append(source.source_id)
    if len(by_count) <= 1:
        return
    parts = []
    for count, names in sorted(by_count.items()):
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        parts.append(f"{len(names)} with {count} channel{'s' if count > 1 else ''} ({shown})")
    raise ValueError("--channels keep needs every source to have the same channel count, found "
                     + "; ".join(parts) + ": use --channels mono, or sources of one channel count")


def screen_sources(sources: list[SourceFile], segment_seconds: float, keep_channels: bool = False,
                   progress: bool = False) -> tuple[list[SourceFile], list[SkippedFile]]:
    """Split ``sources`` into those used whole and those left out (with reasons, see :func:`check_source`).

    Reads every source file once. With ``keep_channels`` the kept sources must share one channel count
    (:func:`check_channel_counts`). Raises ValueError when no source is left.
    """
    from tqdm import tqdm

    kept: list[SourceFile] = []
    skipped: list[SkippedFile] = []
    files = [s for s in sources if not s.is_demo]
    bar = tqdm(total=len(files), unit="file", desc="checking sources", disable=not progress or not files)
    # Threads: libsndfile and numpy release the GIL while decoding and checking, so reading is what limits.
    # map() keeps the sources' order, so the result does not depend on the thread count.
    threads = max(1, min(len(files), os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for source, reason in zip(sources, pool.map(lambda s: check_source(s, segment_seconds), sources),
                                  strict=True):
            if reason is None:
                kept.append(source)
            else:
                skipped.append(SkippedFile(source.source_id, reason))
            if not source.is_demo:
                bar.update(1)
    bar.close()
    if not kept:
        first = skipped[0]
        raise ValueError(f"none of the {len(skipped)} source files can be used (first: {first.path}: {first.reason})")
    if keep_channels:
        check_channel_counts(kept)
    return kept, skipped


# ---------------------------------------------------------------------------------------------------------
# Reading regions
# ---------------------------------------------------------------------------------------------------------


def load_region(source: SourceFile, start_seconds: float, duration_seconds: float, sample_rate: int,
                keep_channels: bool = False) -> np.ndarray:
    """The audio of ``source`` from ``start_seconds`` for ``duration_seconds``, at ``sample_rate`` Hz.

    Returns float32, shape (channels, round(duration_seconds * sample_rate)): mono (the mean of the
    channels) unless ``keep_channels``. The region starts at output sample round(start_seconds *
    sample_rate) of the whole file resampled to ``sample_rate`` (soxr, quality "VHQ"); whatever runs past
    the end of the file is zeros.

    Only the native frames the region needs are read, plus a margin of context on each side so that the
    resampler's filter sees the real neighbours of the region's first and last samples. The read is aligned
    to a whole number of output samples, so regions loaded piece by piece agree with one load of the whole
    file (to within the filter's negligible tails) and joining them does not click. At the native rate the
    frames are returned exactly as stored, with no filtering.

    Demo sources are synthesised whole at ``sample_rate`` (the last few are cached) and sliced.

    Raises:
        AudioFileError: naming the file, when it is missing, unreadable, has changed since discovery, or
            holds NaN or inf samples in or near the region.
        ValueError: for a negative start, a non-positive duration or sample rate.
    """
    if not (math.isfinite(start_seconds) and start_seconds >= 0):
        raise ValueError(f"start_seconds must be finite and >= 0, got {start_seconds}")
    if not (math.isfinite(duration_seconds) and duration_seconds > 0):
        raise ValueError(f"duration_seconds must be finite and positive, got {duration_seconds}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate}")
    sample_rate = int(sample_rate)
    frames_out = round(duration_seconds * sample_rate)
    first_out = round(start_seconds * sample_rate)

    if source.is_demo:
        whole = _demo_audio(source.source_id, sample_rate)
        return _fit(whole[:, first_out:first_out + frames_out], frames_out)

    with open_audio(source.path) as handle:
        if handle.samplerate != source.sample_rate or handle.channels != source.channels:
            raise AudioFileError(f"{source.path}: changed since discovery (now {handle.samplerate} Hz, "
                                 f"{handle.channels} channels; was {source.sample_rate} Hz, "
                                 f"{source.channels} channels)")
        native_rate = handle.samplerate
        total = handle.frames
        if native_rate == sample_rate:
            chunk = _read(handle, source.path, first_out, first_out + frames_out)
            out = _mix(chunk, keep_channels)
        else:
            # The read starts on a frame where the two sample grids coincide (a multiple of native/gcd frames,
            # i.e. blocks * output_step output samples), so sample j of the resampled chunk is sample
            # j + blocks * output_step of the whole file resampled: no fractional shift, whatever the region.
            divisor = math.gcd(native_rate, sample_rate)
            native_step, output_step = native_rate // divisor, sample_rate // divisor
            margin = math.ceil(max(_RESAMPLER_MARGIN_SECONDS,
                                   _RESAMPLER_MARGIN_PERIODS / min(native_rate, sample_rate)) * native_rate)
            first_native = first_out * native_rate // sample_rate
            blocks = max(0, (first_native - margin) // native_step)
            begin = blocks * native_step
            end = min(total, -(-(first_out + frames_out) * native_rate // sample_rate) + margin)
            # Output samples that exist: the whole file resampled has round(total * rate / native) of them.
            available = (2 * total * sample_rate + native_rate) // (2 * native_rate)
            offset = first_out - blocks * output_step
            if begin >= end:
                out = np.zeros((handle.channels if keep_channels else 1, 0))
            else:
                chunk = _mix(_read(handle, source.path, begin, end), keep_channels)
                resampled = soxr.resample(chunk.T, native_rate, sample_rate, quality="VHQ").T
                stop = min(offset + frames_out, available - blocks * output_step)
                out = resampled[:, offset:max(offset, stop)]
    out = _fit(out, frames_out)
    if not np.isfinite(out).all():
        raise AudioFileError(f"{source.path}: non-finite samples after resampling between "
                             f"{start_seconds:.2f} s and {start_seconds + duration_seconds:.2f} s")
    return out


def _read(handle: sf.SoundFile, path: str, begin: int, end: int) -> np.ndarray:
    """Native frames [begin, end) as float64 (channels, frames), fewer where the file ends first."""
    begin = min(begin, handle.frames)
    end = min(max(end, begin), handle.frames)
    try:
        handle.seek(begin)
        data = handle.read(end - begin, dtype="float64", always_2d=True)
    except (RuntimeError, OSError, ValueError) as error:
        raise AudioFileError(f"{path}: cannot read frames {begin} to {end} ({_one_line(error)})") from None
    if not np.isfinite(data).all():
        bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
        first, last = (begin + bad[0]) / handle.samplerate, (begin + bad[-1] + 1) / handle.samplerate
        raise AudioFileError(f"{path}: non-finite samples (NaN or inf) between {first:.2f} s and {last:.2f} s")
    return data.T


def _mix(chunk: np.ndarray, keep_channels: bool) -> np.ndarray:
    # Mixing before resampling is equivalent (both are linear) and resamples one channel instead of many.
    if keep_channels or chunk.shape[0] == 1:
        return chunk  # a mono file needs no mixing (numpy's mean over one row still copies it, slowly)
    return chunk.mean(axis=0, keepdims=True)


def _fit(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` (channels, n <= frames) zero-padded at the end to exactly ``frames``, as a new float32 array."""
    out = np.zeros((audio.shape[0], frames), dtype=np.float32)
    out[:, :audio.shape[1]] = audio[:, :frames]
    return out


@functools.lru_cache(maxsize=4)
def _demo_audio(source_id: str, sample_rate: int) -> np.ndarray:
    """The whole virtual demo file ``source_id`` at ``sample_rate``: (1, samples) float32, read-only."""
    match = _DEMO_ID.fullmatch(source_id)
    if match is None:
        raise AudioFileError(f"{source_id}: not a demo source id (expected demo/guitar-NNN)")
    index = int(match.group(1))
    # Loudness varies from file to file (peaks 0.5 to 0.86) so the corpus is not uniformly normalised.
    audio = demo_guitar(DEMO_FILE_SECONDS, sample_rate, seed=1000 + index, peak=0.5 + 0.4 * ((index * 7) % 10) / 10)
    audio.setflags(write=False)  # shared by every caller through the cache
    return audio


# ---------------------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------------------


def segment_starts(duration_seconds: float, segment_seconds: float) -> list[float]:
    """Start times in seconds of the segments cut from a recording of ``duration_seconds``.

    Rules (deterministic, from the two durations alone):

    - consecutive non-overlapping segments of exactly ``segment_seconds``, starting at 0;
    - a remainder after the last whole segment shorter than half a segment is dropped;
    - a remainder of at least half a segment becomes one more segment that ends at the end of the
      recording, i.e. starts at ``duration_seconds - segment_seconds`` and overlaps the previous one;
    - a recording shorter than one segment but at least half of one gives one segment starting at 0
      (:func:`load_region` zero-pads it); shorter than half a segment gives none.

    For example, with 2 s segments: 7 s -> [0, 2, 4, 5]; 6.9 s -> [0, 2, 4]; 1.2 s -> [0]; 0.9 s -> [].
    """
    if not (math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ValueError(f"segment_seconds must be finite and positive, got {segment_seconds}")
    if not (math.isfinite(duration_seconds) and duration_seconds >= 0):
        raise ValueError(f"duration_seconds must be finite and >= 0, got {duration_seconds}")
    # A relative tolerance keeps 6.0 / 2.0-like ratios that floating point lands just below an integer whole.
    tolerance = 1e-9 * segment_seconds
    half = segment_seconds / 2
    if duration_seconds < half - tolerance:
        return []
    if duration_seconds < segment_seconds - tolerance:
        return [0.0]
    whole = int((duration_seconds + tolerance) // segment_seconds)
    starts = [index * segment_seconds for index in range(whole)]
    remainder = duration_seconds - whole * segment_seconds
    if remainder >= half - tolerance:
        starts.append(duration_seconds - segment_seconds)
    return starts


def is_near_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the RMS level of ``audio`` (any shape, e.g. (channels, samples)) over all its samples is below
    ``threshold_db`` dBFS (0 dBFS = RMS 1). An all-zero or empty array is silent."""
    values = np.asarray(audio, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return True
    energy = float(np.dot(values, values))  # one pass; NaN or inf make it non-finite
    if not math.isfinite(energy):
        raise ValueError("is_near_silent: audio contains NaN or inf")
    rms = math.sqrt(energy / values.size)
    if rms == 0.0:
        return True
    return 20.0 * math.log10(rms) < threshold_db
