"""Refusing absurd plans before they exhaust memory or disk.

A sweep of a billion gains, a tampered ``--from`` card, or a 200-kB file whose header claims 1 Hz (27.8
hours of audio) all plan builds no one meant. :func:`check_plan_size` estimates, from the sources' headers
and the config alone (nothing is allocated per example), how many examples and bytes the build would
write, and refuses with the estimate and the flag that allows it when that is out of proportion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import CODECS, BuildConfig
from .sources import SourceFile

#: Variants (gain or SDR values) of one segment beyond which a sweep is taken for a typo.
MAX_VARIANTS = 1000
#: Examples of one build beyond which a plan is refused (the paper's largest corpus has a few hundred thousand).
MAX_EXAMPLES = 10_000_000
#: Estimated output bytes per byte of source file beyond which a plan (or one file's share of it) is refused.
#: Normal builds write 3-100x their sources (5 variants, inputs and targets, 24-bit FLAC from compressed files).
MAX_OUTPUT_RATIO = 1000.0
#: The flag that lifts these bounds.
FLAG = "--allow-large"

# As datagen.plan: bytes added to each example's size estimate for tar headers and the JSON member.
_EXAMPLE_OVERHEAD_BYTES = 4096


class PlanTooLarge(ValueError):
    """A plan out of proportion to its sources; the message states the estimate and the flag that allows it."""


@dataclass(frozen=True)
class PlanEstimate:
    """What a build would write: examples, an upper bound of its bytes (uncompressed audio), its source bytes."""

    examples: int
    output_bytes: int
    source_bytes: int


def segment_count(duration_seconds: float, segment_seconds: float) -> int:
    """``len(datagen.sources.segment_starts(duration, segment))``, computed without building the list."""
    tolerance = 1e-9 * segment_seconds
    if duration_seconds < segment_seconds / 2 - tolerance:
        return 0
    if duration_seconds < segment_seconds - tolerance:
        return 1
    whole = int((duration_seconds + tolerance) // segment_seconds)
    return whole + (duration_seconds - whole * segment_seconds >= segment_seconds / 2 - tolerance)


def variants_per_segment(config: BuildConfig) -> int:
    """Examples made from each segment: one for online (clean-only) corpora, else the sweep's count."""
    sweep = config.effect_sweep
    return 1 if config.online else (len(sweep.values) if sweep.kind == "list" else sweep.count)


def _human(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1000
    return f"{size:,.0f} PB"


def estimate(config: BuildConfig, sources: list[SourceFile]) -> tuple[PlanEstimate, list[tuple[SourceFile, int]]]:
    """The whole plan's estimate and each source's estimated output bytes (from headers only)."""
    variants = variants_per_segment(config)
    bytes_per_sample = CODECS[config.codec][3]
    files_per_example = 1 if config.online else 2
    segment_frames = round(config.segment_seconds * config.sample_rate)
    examples = output = source_total = 0
    per_source = []
    for source in sources:
        channels = source.channels if config.keep_channels else 1
        count = segment_count(source.duration_seconds, config.segment_seconds) * variants
        size = count * (files_per_example * segment_frames * channels * bytes_per_sample + _EXAMPLE_OVERHEAD_BYTES)
        examples += count
        output += size
        per_source.append((source, size))
        if not source.is_demo:
            try:
                source_total += os.stat(source.path).st_size
            except OSError:
                pass
    return PlanEstimate(examples, output, source_total), per_source


def check_plan_size(config: BuildConfig, sources: list[SourceFile], allow_large: bool = False) -> PlanEstimate:
    """Refuse (PlanTooLarge) a plan whose size is absurd for its sources, unless ``allow_large``.

    Absurd means: more than MAX_VARIANTS variants per segment, more than MAX_EXAMPLES examples, or an output
    estimate above MAX_OUTPUT_RATIO times the sources' bytes on disk, for the whole corpus or for one file
    (a header claiming a tiny sample rate makes a small file look hours long). The built-in demo corpus has
    no file size and is bounded by the other two rules.
    """
    total, per_source = estimate(config, sources)
    if allow_large:
        return total
    variants = variants_per_segment(config)
    stated = (f"the plan is {total.examples:,} examples, about {_human(total.output_bytes)} of audio"
              + (f" from {_human(total.source_bytes)} of sources" if total.source_bytes else ""))
    if variants > MAX_VARIANTS:
        raise PlanTooLarge(f"{variants:,} variants per segment (more than {MAX_VARIANTS:,}): {stated}; "
                           f"check --gains/--sdr, or add {FLAG} if this is really meant")
    if total.examples > MAX_EXAMPLES:
        raise PlanTooLarge(f"{stated} (more than {MAX_EXAMPLES:,} examples); add {FLAG} if this is really meant")
    for source, size in per_source:
        if source.is_demo:
            continue
        try:
            on_disk = os.stat(source.path).st_size
        except OSError:
            continue
        if size > MAX_OUTPUT_RATIO * max(on_disk, 1):
            raise PlanTooLarge(
                f"{source.path}: a {_human(on_disk)} file whose header says {source.frames:,} frames at "
                f"{source.sample_rate:,} Hz ({source.duration_seconds / 3600:.1f} h) would give about "
                f"{_human(size)} of output ({size / max(on_disk, 1):,.0f}x its size); {stated}; "
                f"remove the file, or add {FLAG} if this is really meant")
    if total.source_bytes and total.output_bytes > MAX_OUTPUT_RATIO * total.source_bytes:
        raise PlanTooLarge(f"{stated} ({total.output_bytes / total.source_bytes:,.0f}x the sources); "
                           f"add {FLAG} if this is really meant")
    return total
