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
from .schema import MANIFEST_SCHEMA, manifest_path, read_manifest, read_manifests, write_manifest
from .shards import SPLITS, ShardInfo, ShardMember, read_shard, shard_name, shard_relpath, write_shard
from .verify import verify_dataset

__all__ = [
    "DATASET_JSON", "KEY_PATTERN", "MANIFEST_SCHEMA", "SPLITS", "ManifestError", "ShardInfo", "ShardMember",
    "check_sha256sums", "config_hash", "manifest_path", "pcm_sha256", "read_json", "read_manifest", "read_manifests",
    "read_sha256sums", "read_shard", "sha256_file", "shard_name", "shard_relpath", "slugify", "stable_digest",
    "validate_key", "verify_dataset", "write_card", "write_json", "write_manifest", "write_sha256sums", "write_shard",
]
