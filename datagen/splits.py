"""Assigning groups of recordings to train/valid/test, stably and reproducibly.

A group (a file, or a folder of takes of one song) never straddles two splits, so no recording leaks from
training into evaluation. Each group's split comes from a hash of its id alone, never from list order or
an unseeded random stream: adding recordings to a corpus leaves every existing group where it was, and the
same corpus gives the same split on every machine. A split file written once (:func:`write_split_file`)
can freeze an assignment for good; a layout's own split (SignalTrain's) is kept unless re-splitting.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence

from .audio_io import atomic_output

SPLITS = ("train", "valid", "test")


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Split ratios from "TRAIN:VALID:TEST", normalised to sum to 1: "80:10:10" and "8:1:1" -> (0.8, 0.1, 0.1).

    Each part is a non-negative number (a split may be 0, e.g. "90:10:0"); all three must be given and at
    least one must be positive. Raises ValueError otherwise.
    """
    parts = str(text).split(":")
    if len(parts) != 3:
        raise ValueError(f"split ratios must be three numbers TRAIN:VALID:TEST such as 80:10:10, got {text!r}")
    values = []
    for name, part in zip(SPLITS, parts, strict=True):
        try:
            value = float(part.strip())
        except ValueError:
            raise ValueError(f"split ratios {text!r}: {name} part {part.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"split ratios {text!r}: {name} part must be a finite number >= 0, got {part.strip()}")
        values.append(value)
    return _normalise(values, text)


def _normalise(ratios: Sequence[float], shown: object) -> tuple[float, float, float]:
    if len(ratios) != 3:
        raise ValueError(f"split ratios must have three values (train, valid, test), got {shown!r}")
    values = [float(r) for r in ratios]
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"split ratios must be finite and >= 0, got {shown!r}")
    total = sum(values)
    if total <= 0:
        raise ValueError(f"split ratios must not all be zero, got {shown!r}")
    train, valid, test = (v / total for v in values)
    return train, valid, test


def group_position(group_id: str, salt: str) -> float:
    """Stable position of a group in [0, 1): the first 8 bytes of blake2b(salt NUL group_id), big-endian, / 2**64.

    A cryptographic hash, not Python's ``hash()``, whose value for a str changes from one interpreter to the
    next. Changing ``salt`` reshuffles every group.
    """
    digest = hashlib.blake2b(f"{salt}\0{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split_at(position: float, bounds: Sequence[tuple[float, float]]) -> str:
    """The split whose interval [low, high) holds ``position``."""
    for split, (low, high) in zip(SPLITS, bounds, strict=True):
        if low <= position < high:
            return split
    # Rounding can leave the cumulative sum a hair below 1: the last split with a positive share takes the rest.
    return [split for split, (low, high) in zip(SPLITS, bounds, strict=True) if high > low][-1]


def _distance(position: float, interval: tuple[float, float]) -> float:
    low, high = interval
    if position < low:
        return low - position
    if position >= high:
        return position - high
    return 0.0


def assign_splits(groups: Sequence[str], ratios: Sequence[float] = (0.8, 0.1, 0.1), salt: str = "dedistort",
                  native: Mapping[str, str] | None = None,
                  frozen: Mapping[str, str] | None = None) -> dict[str, str]:
    """Assign each group to "train", "valid" or "test"; returns {group: split} with keys in sorted order.

    Rules, in order of precedence:

    1. a group in ``frozen`` (an earlier assignment, from a split file) keeps that split;
    2. a group in ``native`` (the layout's own split, e.g. SignalTrain's folders) keeps that split;
    3. any other ("free") group goes to the split whose interval of cumulative ``ratios`` (normalised;
       train [0, r_train), valid [r_train, r_train + r_valid), test the rest) holds its
       :func:`group_position`. Its split depends on its id and ``salt`` only, so adding or removing other
       groups never moves it.

    Fix-up for small corpora: hashing can leave a split empty (likely with a handful of groups). When at
    least three groups are free and a split with a positive ratio got no group at all, each such split in
    SPLITS order receives one free group: taken from the split that currently holds the most groups (ties
    broken in SPLITS order; only splits with a free group and at least two groups can give one), the one
    whose position is nearest to the empty split's interval (ties: lower position, then group id). This
    fix-up is the only case where a group's split depends on the other groups.

    Groups in ``native`` or ``frozen`` that are not in ``groups`` are ignored.

    Raises:
        ValueError: for bad ratios, or a split name in ``native`` or ``frozen`` that is not one of SPLITS.
    """
    shares = _normalise(ratios, ratios)
    bounds = []
    low = 0.0
    for share in shares:
        bounds.append((low, low + share))
        low += share
    for name, mapping in (("frozen", frozen), ("native", native)):
        for group, split in (mapping or {}).items():
            if split not in SPLITS:
                raise ValueError(f"{name} split of group {group!r} must be one of {', '.join(SPLITS)}, got {split!r}")

    assignment: dict[str, str] = {}
    free: dict[str, float] = {}  # group -> position, for groups the hash decides
    for group in sorted(set(groups)):
        if frozen and group in frozen:
            assignment[group] = frozen[group]
        elif native and group in native:
            assignment[group] = native[group]
        else:
            free[group] = group_position(group, salt)
            assignment[group] = _split_at(free[group], bounds)

    if len(free) >= 3:
        for target, share, interval in zip(SPLITS, shares, bounds, strict=True):
            counts = {split: 0 for split in SPLITS}
            for split in assignment.values():
                counts[split] += 1
            if share <= 0 or counts[target] > 0:
                continue
            donors = [split for split in SPLITS if counts[split] >= 2
                      and any(assignment[g] == split for g in free)]
            if not donors:
                continue
            donor = max(donors, key=lambda split: (counts[split], -SPLITS.index(split)))
            candidates = [g for g in free if assignment[g] == donor]
            moved = min(candidates, key=lambda g: (_distance(free[g], interval), free[g], g))
            assignment[moved] = target
    return dict(sorted(assignment.items()))


def achieved_ratios(assignment: Mapping[str, str], durations: Mapping[str, float]) -> dict[str, float]:
    """Fraction of the total duration in each split: {"train": f, "valid": f, "test": f}, summing to 1.

    ``durations`` maps each group of ``assignment`` to its length in seconds (extra groups are ignored).
    All fractions are 0 when the total is 0. Raises ValueError for a group without a duration.
    """
    seconds = {split: 0.0 for split in SPLITS}
    for group, split in assignment.items():
        if group not in durations:
            raise ValueError(f"achieved_ratios: no duration given for group {group!r}")
        if split not in SPLITS:
            raise ValueError(f"achieved_ratios: group {group!r} has unknown split {split!r}")
        seconds[split] += float(durations[group])
    total = sum(seconds.values())
    return {split: (seconds[split] / total if total > 0 else 0.0) for split in SPLITS}


def write_split_file(path: str | os.PathLike, assignment: Mapping[str, str]) -> None:
    """Write ``assignment`` as JSON {group: split} (sorted keys, indent 2, trailing newline), atomically.

    A crash leaves either the previous file or the new one, never a partial file.
    """
    for group, split in assignment.items():
        if split not in SPLITS:
            raise ValueError(f"{path}: group {group!r} has split {split!r}, not one of {', '.join(SPLITS)}")
    text = json.dumps(dict(assignment), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def read_split_file(path: str | os.PathLike) -> dict[str, str]:
    """Read a split file written by :func:`write_split_file`: {group: split}, keys in sorted order.

    Raises ValueError naming the file for a missing or unreadable file, invalid JSON, something other than
    an object, or an entry whose split is not one of SPLITS.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: split file does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read split file ({error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: split file is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: split file must hold a JSON object {{group: split}}, got {type(data).__name__}")
    for group, split in data.items():
        if split not in SPLITS:
            raise ValueError(f"{path}: entry {group!r}: {split!r} is not one of {', '.join(SPLITS)}")
    return dict(sorted(data.items()))
