"""Parquet manifests: ``OUT/manifest/SPLIT.parquet``, one row per example, rows in key order.

The manifest is the index of a corpus: where each example lives (shard), where it came from (source,
group, segment, offset), how it was made (effect, parameters, extras, dry gain), what it measures
(input SDR) and what its decoded audio hashes to (PCM checksums, see :func:`manifests.pcm_sha256`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .dataset_info import atomic_write_bytes
from .keys import ManifestError, validate_key
from .shards import SPLITS
from .storage import as_path

__all__ = ["MANIFEST_SCHEMA", "manifest_path", "read_manifest", "read_manifests", "write_manifest"]

#: One row per example. Only the measured SDRs and the input checksum may be null (online corpora store
#: clean targets only, and an SDR can be undefined, e.g. for a silent target).
MANIFEST_SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),  # relative path, e.g. "train/NAME-train-000000.tar"
    pa.field("source_id", pa.string(), nullable=False),
    pa.field("source_path", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("segment_index", pa.int32(), nullable=False),
    pa.field("start_seconds", pa.float64(), nullable=False),
    pa.field("duration_seconds", pa.float64(), nullable=False),
    pa.field("sample_rate", pa.int32(), nullable=False),
    pa.field("channels", pa.int16(), nullable=False),
    pa.field("effect", pa.string(), nullable=False),
    pa.field("parameters", pa.string(), nullable=False),  # JSON object, sorted keys, e.g. {"gain_db": 30.0}
    pa.field("extras", pa.string(), nullable=False),  # JSON object, sorted keys; "{}" when the effect has none
    pa.field("dry_gain", pa.float64(), nullable=False),
    pa.field("input_sdr_db", pa.float64(), nullable=True),
    pa.field("input_si_sdr_db", pa.float64(), nullable=True),
    pa.field("input_pcm_sha256", pa.string(), nullable=True),
    pa.field("target_pcm_sha256", pa.string(), nullable=False),
    pa.field("codec", pa.string(), nullable=False),
])

_COLUMNS = tuple(MANIFEST_SCHEMA.names)
_JSON_COLUMNS = ("parameters", "extras")


def manifest_path(out_dir: str | os.PathLike, split: str):
    """``OUT/manifest/SPLIT.parquet``."""
    return as_path(out_dir) / "manifest" / f"{split}.parquet"  # a Path, or a RemotePath for a URL


def _check_row(path: Path, row: dict, index: int) -> str:
    """Validate one row's columns and the fields other code relies on; returns its key."""
    if not isinstance(row, dict):
        raise ManifestError(f"{path}: row {index} is a {type(row).__name__}, expected a dict")
    name = repr(row["key"]) if "key" in row else f"at index {index}"
    missing = [c for c in _COLUMNS if c not in row]
    extra = sorted(set(row) - set(_COLUMNS))
    if missing or extra:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(map(str, extra))}"] if extra else [])
        raise ManifestError(f"{path}: row {name}: {'; '.join(parts)}")
    try:
        validate_key(row["key"])
    except ManifestError as error:
        raise ManifestError(f"{path}: row {name}: {error}") from None
    for field in MANIFEST_SCHEMA:
        if row[field.name] is None and not field.nullable:
            raise ManifestError(f"{path}: row {name}: column {field.name} must not be null")
    if row["split"] not in SPLITS:
        raise ManifestError(f"{path}: row {name}: split must be one of {', '.join(SPLITS)}, got {row['split']!r}")
    if not (isinstance(row["shard"], str) and row["shard"].startswith(f"{row['split']}/")):
        raise ManifestError(f"{path}: row {name}: shard {row['shard']!r} is not in the {row['split']}/ folder")
    for column in _JSON_COLUMNS:
        try:
            value = json.loads(row[column])
        except (TypeError, json.JSONDecodeError):
            value = None
        if not isinstance(value, dict):
            raise ManifestError(f"{path}: row {name}: column {column} must be a JSON object, got {row[column]!r}")
        if list(value) != sorted(value):
            raise ManifestError(f"{path}: row {name}: column {column} must have sorted keys, got {row[column]!r}")
    return row["key"]


def _table(path: Path, rows: list[dict]) -> pa.Table:
    arrays = []
    for field in MANIFEST_SCHEMA:
        try:
            arrays.append(pa.array([row[field.name] for row in rows], type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError) as error:
            raise ManifestError(f"{path}: column {field.name}: values do not fit {field.type}: {error}") from None
    return pa.Table.from_arrays(arrays, schema=MANIFEST_SCHEMA)


def write_manifest(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write ``rows`` (dicts with exactly the columns of :data:`MANIFEST_SCHEMA`) to parquet at ``path``.

    Rows are sorted by key; duplicate keys are refused. The same rows give the same bytes (for one
    pyarrow version: its version string is the only build-dependent thing in the file). Atomic.
    """
    path = Path(path)
    rows = list(rows)
    keys = [_check_row(path, row, index) for index, row in enumerate(rows)]
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ManifestError(f"{path}: duplicate key {key!r}")
        seen.add(key)
    rows = sorted(rows, key=lambda row: row["key"])
    table = _table(path, rows)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The rows of one manifest as dicts (columns of :data:`MANIFEST_SCHEMA`), in key order."""
    path = as_path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    try:
        # A manifest on object storage is small: one request, then parsed from memory.
        table = pq.read_table(path if isinstance(path, Path) else pa.BufferReader(path.read_bytes()))
    except (pa.ArrowException, OSError) as error:
        raise ManifestError(f"{path}: not a readable parquet file: {error}") from None
    missing = [c for c in _COLUMNS if c not in table.column_names]
    extra = [c for c in table.column_names if c not in _COLUMNS]
    if missing or extra:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(extra)}"] if extra else [])
        raise ManifestError(f"{path}: not a dedistort manifest: {'; '.join(parts)}")
    try:
        table = table.select(list(_COLUMNS)).cast(MANIFEST_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise ManifestError(f"{path}: column types differ from the manifest schema: {error}") from None
    return sorted(table.to_pylist(), key=lambda row: row["key"])


def read_manifests(out_dir: str | os.PathLike) -> dict[str, list[dict]]:
    """``{split: rows}`` for each split whose ``OUT/manifest/SPLIT.parquet`` exists, in SPLITS order."""
    return {split: read_manifest(manifest_path(out_dir, split))
            for split in SPLITS if manifest_path(out_dir, split).exists()}
