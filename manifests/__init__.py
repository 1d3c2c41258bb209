"""The on-disk contract between datagen (writer) and training (reader): shards, manifests, cards.

A dataset folder ``OUT`` holds::

    OUT/{train,valid,test}/NAME-SPLIT-000000.tar   WebDataset shards: KEY.input.flac, KEY.target.flac, KEY.json
    OUT/manifest/SPLIT.parquet                     one row per example (MANIFEST_SCHEMA), in key order
    OUT/dataset.json                               config, seed, versions, counts, config hash
    OUT/SHA256SUMS                                 checkable with ``cd OUT && sha256sum -c SHA256SUMS``
    OUT/README.md                                  dataset card with Hugging Face YAML front matter

Every writer here is deterministic (same input, same bytes) and atomic (temporary file, fsync, rename).
This package depends on neither datagen nor training.
"""

from .card import write_card
from .checksums import check_sha256sums, pcm_sha256, read_sha256sums, sha256_file, write_sha256sums
from .dataset_info import DATASET_JSON, config_hash, read_json, write_json
from .keys import KEY_PATTERN, ManifestError, slugify, stable_digest, validate_key
from .shards import (
    SPLITS,
    ShardInfo,
    ShardMember,
    ShardWriter,
    index_shard,
    read_shard,
    shard_name,
    shard_relpath,
    write_shard,
)
from .wds_audio import decode_audio, wds_audio  # after .shards: the name wds_audio is the handler, not the module

# The parquet side (pyarrow, ~60 MB resident) loads on first use: build workers write shards only.
_LAZY = {"MANIFEST_SCHEMA": "schema", "manifest_path": "schema", "read_manifest": "schema",
         "read_manifests": "schema", "write_manifest": "schema", "verify_dataset": "verify"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASET_JSON", "KEY_PATTERN", "MANIFEST_SCHEMA", "SPLITS", "ManifestError", "ShardInfo", "ShardMember",
    "ShardWriter",
    "check_sha256sums", "config_hash", "decode_audio",
    "index_shard", "manifest_path", "pcm_sha256", "read_json", "read_manifest",
    "read_manifests",
    "read_sha256sums", "read_shard", "sha256_file", "shard_name", "shard_relpath", "slugify", "stable_digest",
    "validate_key", "verify_dataset", "wds_audio",
    "write_card", "write_json", "write_manifest", "write_sha256sums", "write_shard",
]
