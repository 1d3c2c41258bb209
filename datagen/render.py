"""Rendering one ShardSpec into one shard file: a pure function of the spec.

Loads each segment once, renders its variants, encodes input and target, measures the input SDR,
and writes the shard atomically. Returns the manifest rows, so the caller never re-reads the audio.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numba
import numpy as np
import soundfile as sf

from effects import get_effect, input_sdrs_db, mix
from manifests import ShardMember, ShardWriter, pcm_sha256
from manifests.flac import encode_flac

from .audio_io import AudioFileError
from .config import CODECS
from .plan import ExampleSpec, RenderSettings, ShardSpec
from .sources import SourceFile, is_near_silent, load_region

#: Integer codecs clip at full scale; pairs louder than this are scaled down together (see _fit_full_scale).
#: A peak of exactly 1 (a hard clipper's ceiling) is left alone: quantising it costs one LSB.
_FULL_SCALE = 1.0


@dataclass
class ShardResult:
    """What rendering one shard produced: its file, manifest rows, and what was dropped or skipped."""

    relpath: str
    sha256: str
    size_bytes: int
    rows: list[dict]
    silent_segments: int = 0
    # Always empty since sources are screened before rendering (datagen.sources.screen_sources); kept so that
    # journal entries of earlier builds still load.
    skipped: list[dict] = field(default_factory=list)
    seconds_in: float = 0.0
    seconds_out: float = 0.0
    wall_seconds: float = 0.0


def encode(audio: np.ndarray, sample_rate: int, codec: str) -> tuple[bytes, np.ndarray]:
    """Encode (channels, samples) float32 audio; returns the bytes and the audio exactly as a decoder reads it.

    For the integer codecs we quantise ourselves (round to nearest, clamp to the integer range) and
    encode the integers with our own FLAC encoder (:mod:`manifests.flac`): the decoded samples are known
    without decoding (q / 2^(bits−1) in float32, as libsndfile and our decoder return them), so the PCM
    checksums need no decoding pass, and the bytes depend on this toolkit's version alone, not on the
    libsndfile a machine happens to have. It is also several times faster than libFLAC through
    libsndfile, which dominated the build (see benchmarks/bench_flac.py).
    """
    container, subtype, _, _ = CODECS[codec]
    if subtype == "FLOAT":
        buffer = io.BytesIO()
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        sf.write(buffer, audio.T, sample_rate, format=container, subtype=subtype)
        return buffer.getvalue(), audio
    bits = 24 if subtype == "PCM_24" else 16
    integers, decoded = _quantise(np.ascontiguousarray(audio), bits)
    return encode_flac(integers, sample_rate, bits), decoded


@numba.njit(cache=True, nogil=True)
def _quantise(audio, bits):  # pragma: no cover - compiled
    # Round to nearest (ties to even, as np.rint), clamp to the integer range; returns the integers and
    # the float32 a decoder will read back.
    full_scale = 2.0 ** (bits - 1)
    integers = np.empty(audio.shape, dtype=np.int32)
    decoded = np.empty(audio.shape, dtype=np.float32)
    for c in range(audio.shape[0]):
        for n in range(audio.shape[1]):
            q = min(max(np.rint(np.float64(audio[c, n]) * full_scale), -full_scale), full_scale - 1.0)
            integers[c, n] = np.int32(q)
            # From the integer, not from q: rint of a tiny negative sample is -0.0, whose sign bit a
            # decoder cannot return (it reads the integer 0), and the PCM checksum would differ.
            decoded[c, n] = integers[c, n] / full_scale
    return integers, decoded


def _fit_full_scale(noisy: np.ndarray, clean: np.ndarray, codec: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale a pair down together when an integer codec would clip it (e.g. wet + dry above 1).

    Both signals get the same factor, so the pair still describes the same distortion; the factor is
    recorded in the manifest's extras as ``level_scale``.
    """
    if CODECS[codec][1] == "FLOAT":
        return noisy, clean, 1.0
    peak = max(float(np.abs(noisy).max(initial=0.0)), float(np.abs(clean).max(initial=0.0)))
    if peak <= _FULL_SCALE:
        return noisy, clean, 1.0
    scale = _FULL_SCALE / peak
    return (noisy * np.float32(scale)).astype(np.float32), (clean * np.float32(scale)).astype(np.float32), scale


def _row(spec: ShardSpec, example: ExampleSpec, source: SourceFile, parameters: dict, extras: dict,
         measured: tuple[float | None, float | None], input_pcm: str | None, target_pcm: str, channels: int) -> dict:
    settings = spec.settings
    return {
        "key": example.key, "split": spec.split, "shard": spec.relpath, "source_id": source.source_id,
        "source_path": source.source_id, "group_id": source.group_id, "segment_index": example.segment_index,
        "start_seconds": example.start_seconds, "duration_seconds": settings.segment_seconds,
        "sample_rate": settings.sample_rate, "channels": channels,
        "effect": "none" if settings.online else settings.effect,
        "parameters": json.dumps(parameters, sort_keys=True), "extras": json.dumps(extras, sort_keys=True),
        "dry_gain": settings.dry_gain, "input_sdr_db": measured[0], "input_si_sdr_db": measured[1],
        "input_pcm_sha256": input_pcm, "target_pcm_sha256": target_pcm, "codec": settings.codec,
    }


def _finite_or_none(value: float) -> float | None:
    # Rounded to 1e-9 dB: far below any meaningful difference, and it keeps the recorded text stable
    # should a future numpy sum in another order.
    return round(value, 9) if np.isfinite(value) else None


class _Segment:
    """One clean segment and, once needed, its encoding (shared by all variants of the segment)."""

    def __init__(self, clean: np.ndarray, settings: RenderSettings) -> None:
        self.clean = clean
        self.settings = settings
        self._encoded: tuple[bytes, np.ndarray] | None = None

    def encoded(self) -> tuple[bytes, np.ndarray]:
        if self._encoded is None:
            self._encoded = encode(self.clean, self.settings.sample_rate, self.settings.codec)
        return self._encoded


def _render_example(spec: ShardSpec, example: ExampleSpec, source: SourceFile, segment: _Segment) -> ShardMember:
    """Effect, encoding and measurements of one example; returns its shard member (row in its json)."""
    settings = spec.settings
    extension = CODECS[settings.codec][2]
    parameters = dict(example.parameters)
    extras: dict = {}
    measured: tuple[float | None, float | None] = (None, None)
    input_pcm = None
    files: dict[str, bytes] = {}
    if settings.online:
        target_bytes, target_decoded = segment.encoded()
    else:
        noisy, extras = get_effect(settings.effect).render(segment.clean, **parameters)
        if settings.dry_gain:
            noisy = mix(noisy, segment.clean, 1.0, settings.dry_gain)
        noisy, target, scale = _fit_full_scale(noisy, segment.clean, settings.codec)
        input_bytes, input_decoded = encode(noisy, settings.sample_rate, settings.codec)
        if scale != 1.0:
            extras = {**extras, "level_scale": scale}
            target_bytes, target_decoded = encode(target, settings.sample_rate, settings.codec)
        else:
            target_bytes, target_decoded = segment.encoded()
        files[f"input.{extension}"] = input_bytes
        measured = tuple(_finite_or_none(v) for v in input_sdrs_db(target_decoded, input_decoded))
        input_pcm = pcm_sha256(input_decoded)
    files[f"target.{extension}"] = target_bytes
    row = _row(spec, example, source, parameters, extras, measured, input_pcm, pcm_sha256(target_decoded),
               segment.clean.shape[0])
    files["json"] = json.dumps(row, sort_keys=True).encode()
    return ShardMember(example.key, files)


def render_shard(spec: ShardSpec, out_dir: str | Path) -> ShardResult:
    """Render ``spec`` into ``out_dir / spec.relpath``; returns its checksum and manifest rows.

    Examples arrive in key order, so a segment's variants are adjacent: each segment is loaded and its
    target encoded once. The shard is streamed to disk example by example. Near-silent segments are dropped
    and counted.

    Sources were checked whole before planning (:func:`datagen.sources.screen_sources`), so a source that
    fails to load here changed or broke since: the AudioFileError propagates and the build stops, rather
    than keep some of the file's segments and not others (the shard being written is discarded).
    """
    started = time.perf_counter()
    settings = spec.settings
    sources = {s.source_id: s for s in spec.sources}
    result = ShardResult(spec.relpath, "", 0, [])
    with ShardWriter(Path(out_dir) / spec.relpath) as shard:
        for (source_id, _), examples in groupby(spec.examples, key=lambda e: (e.source_id, e.segment_index)):
            source = sources[source_id]
            examples = list(examples)
            try:
                clean = load_region(source, examples[0].start_seconds, settings.segment_seconds,
                                    settings.sample_rate, settings.keep_channels)
            except AudioFileError as error:
                raise AudioFileError(f"{error} (it read whole when checked before rendering: has it changed? "
                                     "The build stops rather than keep part of the file)") from None
            if is_near_silent(clean, settings.silence_db):
                result.silent_segments += 1
                continue
            result.seconds_in += settings.segment_seconds
            segment = _Segment(clean, settings)
            for example in examples:
                member = _render_example(spec, example, source, segment)
                shard.add(member)
                result.rows.append(json.loads(member.files["json"]))
                result.seconds_out += settings.segment_seconds
    result.sha256, result.size_bytes = shard.info.sha256, shard.info.size_bytes
    result.wall_seconds = time.perf_counter() - started
    return result
