"""Planning: (config, sources) -> an ordered list of ShardSpecs. Pure: no audio is read here.

Everything random is addressed by key (see :class:`datagen.config.Sweep`), shards are filled in a
fixed order (split, source id, segment, variant), and each ShardSpec names its output file, so
rendering any subset of specs, in any order, on any machine, gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from effects import get_effect
from manifests import shard_relpath, slugify, stable_digest, validate_key

from .config import CODECS, BuildConfig
from .sources import SourceFile, segment_starts
from .splits import SPLITS, assign_splits

#: Bytes added to each example's size estimate for tar headers and the JSON member.
_EXAMPLE_OVERHEAD_BYTES = 4096


@dataclass(frozen=True)
class ExampleSpec:
    """One example to render: a segment of a source and the effect parameters of one variant."""

    key: str
    source_id: str
    segment_index: int
    start_seconds: float
    variant: int
    parameters: tuple[tuple[str, float], ...]  # resolved and validated, sorted by name


@dataclass(frozen=True)
class RenderSettings:
    """The part of the config every shard needs to render its examples."""

    sample_rate: int
    keep_channels: bool
    segment_seconds: float
    silence_db: float
    effect: str
    dry_gain: float
    online: bool
    codec: str
    strict: bool = False


@dataclass(frozen=True)
class ShardSpec:
    """One output shard: its relative path and the examples it holds, with their sources."""

    split: str
    index: int
    relpath: str
    sources: tuple[SourceFile, ...]
    examples: tuple[ExampleSpec, ...]
    settings: RenderSettings

    def digest(self) -> str:
        """A content hash of everything that decides this shard's bytes (for resuming)."""
        payload = json.dumps({"relpath": self.relpath, "settings": self.settings.__dict__ | {"strict": False},
                              "sources": [s.__dict__ for s in self.sources],
                              "examples": [e.__dict__ for e in self.examples]}, sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()


class _ShardFiller:
    """Fills one split's shards in order, starting a new one when the count or size cap is reached."""

    def __init__(self, config: BuildConfig, split: str, settings: RenderSettings) -> None:
        self.config, self.split, self.settings = config, split, settings
        self.index = 0
        self.examples: list[ExampleSpec] = []
        self.sources: dict[str, SourceFile] = {}
        self.size_bytes = 0

    def add(self, example: ExampleSpec, source: SourceFile, size_bytes: int, specs: list[ShardSpec]) -> None:
        cap = self.config.shard_max_examples
        if self.examples and ((cap and len(self.examples) >= cap)
                              or self.size_bytes + size_bytes > self.config.shard_max_bytes):
            self.close(specs)
        self.examples.append(example)
        self.sources[source.source_id] = source
        self.size_bytes += size_bytes

    def close(self, specs: list[ShardSpec]) -> None:
        if self.examples:
            relpath = shard_relpath(self.config.name, self.split, self.index)
            specs.append(ShardSpec(self.split, self.index, relpath, tuple(self.sources.values()),
                                   tuple(self.examples), self.settings))
            self.index += 1
        self.examples, self.sources, self.size_bytes = [], {}, 0


class EmptySplitError(ValueError):
    """A split the config promises (a positive share in --splits) would hold no example: says why and what to change."""


def promised_splits(config: BuildConfig) -> list[str]:
    """The splits a build must fill: those with a positive share in ``config.split_ratios``."""
    return [split for split, share in zip(SPLITS, config.split_ratios, strict=True) if share > 0]


def _without(config: BuildConfig, empty: list[str]) -> str:
    """``--splits`` text of the config's ratios (percent) with the ``empty`` splits set to 0."""
    shares = [0.0 if split in empty else share for split, share in zip(SPLITS, config.split_ratios, strict=True)]
    return ":".join(f"{100 * share:.3g}" for share in shares)


def check_planned_splits(config: BuildConfig, info: dict) -> None:
    """Refuse a plan that leaves a promised split without examples (before anything is rendered).

    ``info`` is :func:`plan`'s second result. Raises :class:`EmptySplitError` naming the split, why (no group
    was assigned to it: too few files, or one folder with ``--group-by parent``) and what to change.
    """
    empty = [split for split in promised_splits(config) if info["planned"][split]["examples"] == 0]
    if not empty:
        return
    assignment = info["assignment"]
    groups = len(assignment)
    split = empty[0]
    got = [s for s in empty if any(v == s for v in assignment.values())]
    if split in got:  # groups assigned, but none of their files gave a segment
        why = "its groups' files give no segment"
        change = f"use a shorter --segment-seconds (now {config.segment_seconds:g})"
    else:
        unit = "source folder" if config.group_by == "parent" else "file"
        where = ", ".join(f"{s} {sum(1 for v in assignment.values() if v == s)}" for s in SPLITS
                          if any(v == s for v in assignment.values()))
        why = (f"the {groups} group{'s' if groups != 1 else ''} (one per {unit}, --group-by {config.group_by}) "
               f"all went to other splits ({where})")
        change = ("add recordings" if config.group_by == "file" else
                  "add source folders, use --group-by file (if takes of one song may straddle splits)")
    names = " and ".join(empty)
    raise EmptySplitError(f"split{'s' if len(empty) > 1 else ''} {names} would have no examples: {why}; {change}, "
                          f"or promise no {names} with --splits {_without(config, empty)}")


def check_rendered_splits(config: BuildConfig, examples: dict[str, int], silent_segments: dict[str, int]) -> None:
    """Refuse a build whose rendering left a promised split without examples (every segment near-silent).

    ``examples`` and ``silent_segments`` map each split to its rendered examples and dropped segments.
    """
    empty = [split for split in promised_splits(config) if examples.get(split, 0) == 0]
    if not empty:
        return
    split = empty[0]
    dropped = silent_segments.get(split, 0)
    why = (f"all {dropped} of its segments are near-silent (RMS below --silence-db {config.silence_db:g} dBFS)"
           if dropped else "no example was rendered for it")
    raise EmptySplitError(f"split {split} has no examples: {why}; lower --silence-db (default -60 dBFS) or "
                          f"check the sources' levels, or promise no {split} with --splits {_without(config, empty)}")


#: How example keys are made, recorded in dataset.json's versions ("example_keys"): 1 had 6-hex-digit source
#: digests, 2 has 16. Keys seed the random draws and name every member, so they decide a release's bytes.
KEY_SCHEME = "2"
#: Hex digits of the source id's digest in its key prefix: 64 bits (6 digits, 24 bits, collided among ~25,000
#: names whose slugs end alike). :func:`plan` still refuses, naming both files, two ids with one prefix.
_KEY_DIGEST_HEX = 16


def source_key(source_id: str) -> str:
    """The key prefix of a source: the end of its readable slug plus a 64-bit digest of the whole id."""
    return f"{slugify(source_id)[-40:].strip('-') or 'x'}-{stable_digest(source_id, _KEY_DIGEST_HEX)}"


class KeyCollisionError(ValueError):
    """Two sources whose ids give the same key prefix; the message names both files."""


def _source_prefixes(sources: list[SourceFile]) -> dict[str, str]:
    """source_id -> key prefix, refusing (KeyCollisionError) two ids with one prefix (would merge their examples)."""
    owners: dict[str, str] = {}
    prefixes = {}
    for source in sources:
        prefix = source_key(source.source_id)
        if prefix in owners and owners[prefix] != source.source_id:
            raise KeyCollisionError(f"{owners[prefix]} and {source.source_id} get the same example key prefix "
                                    f"{prefix!r}; rename one of the two files")
        owners[prefix] = source.source_id
        prefixes[source.source_id] = prefix
    return prefixes


def split_groups(config: BuildConfig, sources: list[SourceFile]) -> dict[str, str]:
    """group_id -> split, honouring a frozen assignment and a layout's own split unless --resplit."""
    groups = sorted({s.group_id for s in sources})
    native = None
    if not config.resplit:
        native = {s.group_id: s.native_split for s in sources if s.native_split}
    return assign_splits(groups, config.split_ratios, config.split_salt, native=native or None,
                         frozen=dict(config.split_assignment) or None)


def plan(config: BuildConfig, sources: list[SourceFile], strict: bool = False) -> tuple[list[ShardSpec], dict]:
    """Turn the config and the (sorted) sources into ShardSpecs, and a summary of the plan.

    Returns ``(specs, info)`` where info has the split assignment ({group: split}) and the planned
    segment counts and durations per split.
    """
    effect = get_effect(config.effect)
    sweep = config.effect_sweep
    extra_args = dict(config.effect_args)
    settings = RenderSettings(config.sample_rate, config.keep_channels, config.segment_seconds, config.silence_db,
                              config.effect, config.dry_gain, config.online, config.codec, strict)
    assignment = split_groups(config, sources)
    prefixes = _source_prefixes(sources)
    _, _, _, bytes_per_sample = CODECS[config.codec]
    channels_of = (lambda s: s.channels) if config.keep_channels else (lambda s: 1)
    files_per_example = 1 if config.online else 2
    segment_frames = round(config.segment_seconds * config.sample_rate)

    specs: list[ShardSpec] = []
    summary = {split: {"segments": 0, "examples": 0, "seconds_in": 0.0} for split in SPLITS}
    for split in SPLITS:
        # Examples are put in key order across the whole split: shards can then be written as a stream
        # (no shard held in memory) and the split's manifest is simply the shards' rows in turn. A key
        # starts with its source's prefix and segment, so a segment's variants stay together.
        pending: list[tuple[ExampleSpec, SourceFile, int]] = []
        for source in (s for s in sources if assignment[s.group_id] == split):
            prefix = prefixes[source.source_id]
            example_bytes = files_per_example * segment_frames * channels_of(source) * bytes_per_sample
            example_bytes += _EXAMPLE_OVERHEAD_BYTES
            for segment_index, start in enumerate(segment_starts(source.duration_seconds, config.segment_seconds)):
                segment_key = f"{prefix}-s{segment_index:05d}"
                values = sweep.values_for(segment_key, config.seed)
                if config.online:
                    values = values[:1]  # clean-only: one example per segment
                summary[split]["segments"] += 1
                summary[split]["seconds_in"] += config.segment_seconds
                for variant, value in enumerate(values):
                    # Online datasets hold clean audio only: the effect is drawn at training time.
                    parameters = {} if config.online else effect.resolve({**extra_args, effect.primary: value})
                    key = validate_key(f"{segment_key}-v{variant:02d}")
                    pending.append((ExampleSpec(key, source.source_id, segment_index, float(start), variant,
                                                tuple(sorted(parameters.items()))), source, example_bytes))
        pending.sort(key=lambda item: item[0].key)
        shard = _ShardFiller(config, split, settings)
        for example, source, example_bytes in pending:
            shard.add(example, source, example_bytes, specs)
        shard.close(specs)
        summary[split]["examples"] = len(pending)
    return specs, {"assignment": assignment, "planned": summary}
