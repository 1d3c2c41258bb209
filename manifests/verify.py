"""Verify a dataset folder against its own records: checksums, decodability, manifests, counts.

Every problem is one human-readable line that starts with the file at fault. Shards are read one at a
time and examples one at a time, so memory stays at one example whatever the corpus size.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from .checksums import SHA256SUMS, _check_relpath, _parse, check_sha256sums, not_regular, pcm_sha256
from .dataset_info import DATASET_JSON, read_json
from .flac import decode_flac, pcm_md5, read_flac_header, to_float32
from .keys import ManifestError
from .schema import manifest_path, read_manifest
from .shards import SPLITS, read_shard
from .storage import as_path, dataset_copy, is_remote

__all__ = ["verify_dataset"]

_AUDIO_FORMATS = ("flac", "wav")


def _decode(extension: str, data: bytes) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and the sample rate of one member.

    FLAC goes through our decoder, which checks every frame's CRC-8 and CRC-16 (libsndfile reads past a
    flipped bit in the residual without a word), and the samples' MD5 when STREAMINFO holds one (all zeros
    means "not computed", as in members written before encoder version 2); anything else through libsndfile.
    """
    if extension.endswith(".flac") and data[:4] == b"fLaC":
        samples, sample_rate, bits = decode_flac(data)
        recorded = read_flac_header(data).md5
        if recorded != bytes(16) and pcm_md5(samples, bits) != recorded:
            raise ValueError(f"the decoded samples do not match the MD5 in STREAMINFO ({recorded.hex()})")
        return to_float32(samples, bits), sample_rate
    audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.T, sample_rate


def _check_audio(shard: Path, key: str, extension: str, data: bytes, row: dict | None, problems: list[str]) -> None:
    """Decode one audio member; compare rate, channels, duration and PCM checksum with its manifest row."""
    member = f"member {key}.{extension}"
    try:
        audio, sample_rate = _decode(extension, data)
    except Exception as error:  # libsndfile reports corrupt data with several exception types
        problems.append(f"{shard}: {member}: cannot decode {extension.rpartition('.')[2]}: {error}")
        return
    if row is None:
        return
    frames = audio.shape[1]
    if sample_rate != row["sample_rate"]:
        problems.append(f"{shard}: {member}: sample rate {sample_rate} Hz, manifest says {row['sample_rate']} Hz")
        return
    if audio.shape[0] != row["channels"]:
        problems.append(f"{shard}: {member}: {audio.shape[0]} channels, manifest says {row['channels']}")
    expected_frames = row["duration_seconds"] * sample_rate
    if abs(frames - expected_frames) > 1:
        problems.append(f"{shard}: {member}: {frames / sample_rate:.6f} s long ({frames} samples), manifest says "
                        f"{row['duration_seconds']:.6f} s ({expected_frames:.1f} samples)")
    role = extension.partition(".")[0]
    expected = row.get(f"{role}_pcm_sha256") if role in ("input", "target") else None
    if expected is not None and pcm_sha256(audio) != expected:
        problems.append(f"{shard}: {member}: decoded audio does not match {role}_pcm_sha256 in the manifest")


def _check_shard(out_dir: Path, relpath: str, rows: dict[str, dict], problems: list[str]) -> None:
    """Read one shard; check every member decodes and its keys are exactly the manifest's ``rows``."""
    try:
        _check_relpath(relpath)
    except ManifestError:
        problems.append(f"{out_dir / 'manifest'}: shard {relpath!r} is not a path inside the dataset (refused; "
                        f"only SPLIT/NAME.tar files under {out_dir} are read)")
        return
    shard = out_dir / relpath
    if (refused := not_regular(shard)) is not None:
        problems.append(f"{shard}: {refused}")
        return
    if not shard.exists():
        problems.append(f"{shard}: missing (the manifest lists {len(rows)} examples in it)")
        return
    seen: set[str] = set()
    try:
        for member in read_shard(shard):
            seen.add(member.key)
            row = rows.get(member.key)
            if row is None:
                problems.append(f"{shard}: key {member.key!r} is not in the manifest for this shard")
            for extension, data in sorted(member.files.items()):
                if extension.rpartition(".")[2] in _AUDIO_FORMATS:
                    _check_audio(shard, member.key, extension, data, row, problems)
                elif extension == "json" or extension.endswith(".json"):
                    try:
                        metadata = json.loads(data)
                    except (UnicodeDecodeError, json.JSONDecodeError) as error:
                        problems.append(f"{shard}: member {member.key}.{extension}: invalid JSON: {error}")
                        continue
                    if isinstance(metadata, dict) and metadata.get("key", member.key) != member.key:
                        problems.append(f"{shard}: member {member.key}.{extension}: holds key {metadata['key']!r}")
            if row is not None:
                roles = {extension.partition(".")[0] for extension in member.files}
                needed = ["target"] + (["input"] if row["input_pcm_sha256"] is not None else [])
                problems.extend(f"{shard}: key {member.key!r} has no {role} member (KEY.{role}.*)"
                                for role in needed if role not in roles)
    except ManifestError as error:
        problems.append(str(error))
        return
    problems.extend(f"{shard}: key {key!r} is in the manifest but not in the shard" for key in sorted(set(rows) - seen))


def verify_dataset(out_dir: str | os.PathLike) -> list[str]:
    """Check a dataset folder; returns problems (empty when all is well), each naming the file at fault.

    Checks: (a) SHA256SUMS (missing files, mismatches, tar shards not listed); (b) every shard opens and
    every member decodes (audio with soundfile, JSON with json); (c) each shard holds exactly the
    manifest's keys, with the manifest's sample rate, channels, duration (within one sample) and decoded
    PCM checksums; (d) dataset.json's example and shard counts match the manifests and the folders.
    """
    if is_remote(out_dir):
        # Every byte is read anyway: check a temporary local copy, naming the objects in the problems.
        url = str(as_path(out_dir))
        with dataset_copy(as_path(out_dir)) as local:
            return [problem.replace(str(local), url) for problem in verify_dataset(local)]
    out_dir = as_path(out_dir)
    if not out_dir.is_dir():
        return [f"{out_dir}: no such folder"]
    problems: list[str] = []

    # (a) checksums, and shards on disk that SHA256SUMS does not vouch for.
    problems += check_sha256sums(out_dir)
    listed, _ = _parse(out_dir)
    on_disk = {f"{split}/{p.name}" for split in SPLITS if (out_dir / split).is_dir()
               for p in (out_dir / split).glob("*.tar")}
    if (out_dir / SHA256SUMS).exists():
        unlisted = sorted(on_disk - set(listed))
        problems += [f"{out_dir / relpath}: shard not listed in {SHA256SUMS}" for relpath in unlisted]

    # (b, c) manifests against shards.
    manifests: dict[str, list[dict]] = {}
    for split in SPLITS:
        path = manifest_path(out_dir, split)
        if (refused := not_regular(path)) is not None:
            problems.append(f"{path}: {refused}")
        elif path.exists():
            try:
                manifests[split] = read_manifest(path)
            except ManifestError as error:
                problems.append(str(error))
    if not manifests and not any(manifest_path(out_dir, split).exists() for split in SPLITS):
        problems.append(f"{out_dir / 'manifest'}: no manifests (SPLIT.parquet) found")
    by_shard: dict[str, dict[str, dict]] = defaultdict(dict)
    first_split: dict[str, str] = {}
    for split, rows in manifests.items():
        path = manifest_path(out_dir, split)
        for row in rows:
            if row["split"] != split:
                problems.append(f"{path}: key {row['key']!r} says split {row['split']!r}")
            if row["key"] in first_split:
                problems.append(f"{path}: key {row['key']!r} is also in the {first_split[row['key']]} manifest")
                continue
            first_split[row["key"]] = split
            by_shard[row["shard"]][row["key"]] = row
    # Shards on disk that no row points to (e.g. all of their segments were silent) must be empty.
    for relpath in sorted(set(by_shard) | on_disk):
        _check_shard(out_dir, relpath, by_shard.get(relpath, {}), problems)

    # (d) dataset.json's counts.
    if (refused := not_regular(out_dir / DATASET_JSON)) is not None:
        problems.append(f"{out_dir / DATASET_JSON}: {refused}")
        return problems
    try:
        info = read_json(out_dir / DATASET_JSON)
    except ManifestError as error:
        problems.append(str(error))
        return problems
    dataset_json = out_dir / DATASET_JSON
    splits = info.get("splits")
    if not isinstance(splits, dict):
        problems.append(f"{dataset_json}: no 'splits' object with per-split counts")
        return problems
    for split in [s for s in SPLITS if s in splits or s in manifests]:
        entry = splits.get(split) or {}
        recorded = entry.get("examples", 0)
        actual = len(manifests.get(split, []))
        if split in manifests or not manifest_path(out_dir, split).exists():
            if recorded != actual:
                problems.append(f"{dataset_json}: splits.{split}.examples is {recorded}, "
                                f"{manifest_path(out_dir, split)} has {actual} rows")
        if "shards" in entry:
            tars = sum(1 for relpath in on_disk if relpath.startswith(f"{split}/"))
            if entry["shards"] != tars:
                problems.append(f"{dataset_json}: splits.{split}.shards is {entry['shards']}, "
                                f"{out_dir / split} holds {tars} shards")
    # (e) every split the config promises (a positive share) holds examples: an empty one is a failed build.
    ratios = (info.get("config") or {}).get("split_ratios")
    if isinstance(ratios, list) and len(ratios) == len(SPLITS):
        for split, share in zip(SPLITS, ratios, strict=True):
            if isinstance(share, int | float) and share > 0 and not manifests.get(split):
                problems.append(f"{dataset_json}: split {split} is promised (a {100 * share:.3g}% share in "
                                f"config.split_ratios) but holds no examples")
    return problems
