"""Checking a rebuild (``datagen build --from OLD/dataset.json``) against the release it reproduces.

A lab can publish a recipe and checksums instead of audio it may not redistribute; whoever holds the
sources rebuilds and this comparison says whether they got the same corpus.
"""

from __future__ import annotations

from pathlib import Path

from manifests import DATASET_JSON, read_json


def compare_with_card(card_path: str | Path, out_dir: str | Path) -> list[str]:
    """Problems between the published dataset.json and the rebuilt ``out_dir`` (empty when identical).

    Shards must have the same bytes; where they differ only because the FLAC encoder's version
    differs (recorded in both cards), identical decoded-PCM checksums are accepted. Where the overdrive
    kernel's version differs, differing shards are still problems (the samples moved), and the list says
    which versions to compare.
    """
    old = read_json(card_path)
    new = read_json(Path(out_dir) / DATASET_JSON)
    problems = []
    if old.get("config_hash") != new.get("config_hash"):
        problems.append(f"config hash differs: {old.get('config_hash')} published, {new.get('config_hash')} rebuilt")
    old_shards, new_shards = old.get("shards", {}), new.get("shards", {})
    encoder_changed = any(old.get("versions", {}).get(name) != new.get("versions", {}).get(name)
                          for name in ("flac_encoder", "libsndfile"))
    bytes_differ = False
    for relpath in sorted(set(old_shards) | set(new_shards)):
        if relpath not in new_shards:
            problems.append(f"{relpath}: in the release, not rebuilt (missing sources?)")
        elif relpath not in old_shards:
            problems.append(f"{relpath}: rebuilt, but not in the release")
        elif old_shards[relpath]["sha256"] != new_shards[relpath]["sha256"]:
            if encoder_changed and old_shards[relpath]["pcm_sha256"] == new_shards[relpath]["pcm_sha256"]:
                continue  # same samples, coded by another encoder version
            problems.append(f"{relpath}: sha256 {new_shards[relpath]['sha256']} differs from the release's "
                            f"{old_shards[relpath]['sha256']}")
            bytes_differ = True
    old_kernel = old.get("versions", {}).get("overdrive_kernel", "1")  # cards before the key had kernel 1
    new_kernel = new.get("versions", {}).get("overdrive_kernel", "1")
    if old_kernel != new_kernel and bytes_differ:
        problems.append(f"the overdrive kernel differs (version {old_kernel} published, {new_kernel} rebuilt): "
                        f"overdriven samples may differ by ~1e-7 (both versions are within 1e-6 of SoX); "
                        f"identical bytes need a dedistort whose overdrive kernel is version {old_kernel}")
    old_keys = old.get("versions", {}).get("example_keys", "1")  # cards before the key had key scheme 1
    new_keys = new.get("versions", {}).get("example_keys", "1")
    if old_keys != new_keys and bytes_differ:
        problems.append(f"example keys are made differently (scheme {old_keys} published, {new_keys} rebuilt: "
                        "longer source digests), so keys, random draws and bytes differ; identical bytes need a "
                        f"dedistort whose example key scheme is {old_keys}")
    for split, counts in old.get("splits", {}).items():
        rebuilt = new.get("splits", {}).get(split, {}).get("examples")
        if rebuilt != counts.get("examples"):
            problems.append(f"{split}: {rebuilt} examples rebuilt, {counts.get('examples')} in the release")
    return problems
