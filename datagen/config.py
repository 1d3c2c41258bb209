"""What a build is: every setting that decides the bytes of a corpus, and the paper's recipes.

A :class:`BuildConfig` is hashed into ``dataset.json``; the same config, sources and seed give the same
bytes. Runtime choices that cannot change the output (worker count, executor, progress bars) are not
part of it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from effects import get_effect, online_effect_names
from manifests import slugify, stable_digest

CODECS = {  # name -> (soundfile container, subtype, file extension, bytes per sample for shard sizing)
    "flac24": ("FLAC", "PCM_24", "flac", 3),
    "flac16": ("FLAC", "PCM_16", "flac", 2),
    "wav32": ("WAV", "FLOAT", "wav", 4),
}


@dataclass(frozen=True)
class Sweep:
    """How the effect's primary parameter (gain_db or sdr_db) varies across the variants of a segment.

    ``kind`` is "grid" (``count`` values evenly spaced from ``low`` to ``high``, both included),
    "list" (``values`` as given) or "uniform" (``count`` draws from U[low, high] per segment, seeded by
    the segment's key, so adding sources never changes another segment's draws).
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    count: int = 1
    values: tuple[float, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """``"20:50:5"``, ``"uniform:20:50:5"``, ``"1,3,5,7"`` or a single ``"30"``."""
        text = text.strip()
        try:
            if text.startswith("uniform:"):
                low, high, count = text[len("uniform:"):].split(":")
                sweep = cls("uniform", float(low), float(high), int(count))
            elif ":" in text:
                low, high, count = text.split(":")
                sweep = cls("grid", float(low), float(high), int(count))
            else:
                values = tuple(float(v) for v in text.split(",") if v.strip())
                sweep = cls("list", min(values), max(values), len(values), values)
        except ValueError:
            raise ValueError(f"cannot read {text!r}: use LOW:HIGH:COUNT (evenly spaced), uniform:LOW:HIGH:COUNT "
                             "(random per segment) or a list like 1,3,5") from None
        if sweep.kind != "list" and sweep.count < 1:
            raise ValueError(f"{text!r}: COUNT must be at least 1 (LOW:HIGH:COUNT gives COUNT evenly spaced values)")
        if sweep.count < 1 or not all(math.isfinite(v) for v in (sweep.low, sweep.high, *sweep.values)):
            raise ValueError(f"{text!r}: need at least one finite value")
        if sweep.kind != "list" and sweep.low > sweep.high:
            raise ValueError(f"{text!r}: LOW must not exceed HIGH")
        return sweep

    def text(self) -> str:
        if self.kind == "list":
            return ",".join(f"{v:g}" for v in self.values)
        prefix = "uniform:" if self.kind == "uniform" else ""
        return f"{prefix}{self.low:g}:{self.high:g}:{self.count}"

    def values_for(self, segment_key: str, seed: int) -> list[float]:
        """The primary-parameter values of one segment's variants, in variant order."""
        if self.kind == "list":
            return list(self.values)
        if self.kind == "grid":
            return [float(v) for v in np.linspace(self.low, self.high, self.count)]
        # Addressed randomness: the draws depend on (seed, key) only, never on build order.
        rng = np.random.default_rng([seed, int(stable_digest(segment_key, 16), 16)])
        return [float(v) for v in rng.uniform(self.low, self.high, self.count)]


@dataclass(frozen=True)
class BuildConfig:
    """Every setting that decides the bytes of a corpus (see ``datagen build --help`` for units)."""

    name: str = "dedistort"
    source: str = "demo"
    group_by: str = "file"
    resplit: bool = False
    sample_rate: int = 16000
    keep_channels: bool = False
    segment_seconds: float = 10.0
    silence_db: float = -60.0
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_salt: str = "dedistort"
    split_assignment: tuple[tuple[str, str], ...] = ()  # frozen by --split-file: (group, split) pairs
    effect: str = "overdrive"
    sweep: str = "20:50:5"
    effect_args: tuple[tuple[str, float], ...] = ()
    dry_gain: float = 0.0
    online: bool = False
    seed: int = 0
    codec: str = "flac24"
    shard_max_bytes: int = 256 * 1024 * 1024
    shard_max_examples: int = 0  # 0: no cap on the count
    recipe: str = ""

    def validate(self) -> BuildConfig:
        """Check every field; returns self so calls can chain. Errors name the setting."""
        if not self.name or slugify(self.name) != self.name:
            raise ValueError(f"--name must be lowercase letters, digits and '-', got {self.name!r}")
        if self.group_by not in ("file", "parent"):
            raise ValueError(f"--group-by must be 'file' or 'parent', got {self.group_by!r}")
        if not 4000 <= self.sample_rate <= 384000:
            raise ValueError(f"--sample-rate must be in [4000, 384000] Hz, got {self.sample_rate}")
        if not 0.1 <= self.segment_seconds <= 3600:
            raise ValueError(f"--segment-seconds must be in [0.1, 3600] s, got {self.segment_seconds}")
        if self.codec not in CODECS:
            raise ValueError(f"--codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if self.shard_max_bytes < 1024 * 1024:
            raise ValueError(f"--shard-size must be at least 1 MiB, got {self.shard_max_bytes} bytes")
        if self.shard_max_examples < 0:
            raise ValueError("--shard-examples must be >= 0 (0: no cap)")
        if not 0.0 <= self.dry_gain <= 100.0:
            raise ValueError(f"--dry-gain must be a linear weight in [0, 100], got {self.dry_gain}")
        effect = get_effect(self.effect)
        if self.online and not effect.online:
            raise ValueError(f"--online: the training loader cannot render {self.effect} (no torch implementation); "
                             f"online effects: {', '.join(online_effect_names())}")
        if effect.primary in dict(self.effect_args):
            flag = "--gains" if effect.primary == "gain_db" else "--sdr"
            value = dict(self.effect_args)[effect.primary]
            raise ValueError(f"--effect-arg {effect.primary}={value}: {effect.primary} is the parameter that "
                             f"{self.effect} sweeps, set by {flag} (e.g. {flag} {value} for one value)")
        sweep = Sweep.parse(self.sweep)
        for value in {sweep.low, sweep.high, *sweep.values}:
            effect.resolve({**dict(self.effect_args), effect.primary: value})
        return self

    @property
    def effect_sweep(self) -> Sweep:
        return Sweep.parse(self.sweep)

    def to_dict(self) -> dict:
        """The JSON form recorded in dataset.json (and hashed).

        The source is recorded by kind only ("demo", "folder", "signaltrain", "idmt"): where the files lie
        on one machine does not change the corpus, and a rebuild elsewhere must hash the same.
        """
        data = dataclasses.asdict(self)
        data["source"] = source_kind(self.source)
        data["split_ratios"] = list(self.split_ratios)
        data["split_assignment"] = {group: split for group, split in self.split_assignment}
        data["effect_args"] = dict(self.effect_args)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BuildConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["split_ratios"] = tuple(data.get("split_ratios", (0.8, 0.1, 0.1)))
        data["split_assignment"] = tuple(sorted(dict(data.get("split_assignment", {})).items()))
        data["effect_args"] = tuple(sorted(dict(data.get("effect_args", {})).items()))
        return cls(**data)


def default_out_name(config: BuildConfig) -> str:
    """The folder name under ``out/`` of a build given no ``--out``, ``--name`` or recipe: the effect and the
    settings that differ from the defaults, e.g. ``overdrive-20-50-5``, ``hardclip-20-50-5-threshold-0p5``,
    ``clip-sdr-uniform-1-20-1-online``, ``mytakes-softclip-10-30-3-44100hz`` (source folder first when not the
    demo), so builds with different settings do not land in one folder."""
    def number(value: float) -> str:
        return f"{value:g}".replace(".", "p").replace("-", "m")

    defaults = BuildConfig()
    parts = []
    if source_kind(config.source) != "demo":
        parts.append(config.source.rstrip("/").rsplit("/", 1)[-1].rpartition(":")[2] or source_kind(config.source))
    parts += [config.effect, config.sweep.replace(".", "p")]
    parts += [f"{name}-{number(value)}" for name, value in sorted(dict(config.effect_args).items())]
    if config.dry_gain:
        parts.append(f"dry-{number(config.dry_gain)}")
    if config.online:
        parts.append("online")
    if config.sample_rate != defaults.sample_rate:
        parts.append(f"{config.sample_rate}hz")
    if config.segment_seconds != defaults.segment_seconds:
        parts.append(f"{number(config.segment_seconds)}s")
    if config.keep_channels:
        parts.append("all-channels")
    return slugify("-".join(parts))


def source_kind(spec: str) -> str:
    """"demo", "signaltrain", "idmt" or "folder" for a --source spec."""
    if spec in ("", "demo"):
        return "demo"
    kind, sep, _ = spec.partition(":")
    return kind if sep and kind in ("signaltrain", "idmt", "folder", "demo") else "folder"


#: The paper's settings in one word; explicit flags override them.
RECIPES: dict[str, dict] = {
    # CEG-OD: overdrive (Eq. 6, colour 0) at five gains evenly spread over 20..50 dB, 16 kHz.
    "ceg-od": {"effect": "overdrive", "sweep": "20:50:5", "sample_rate": 16000},
    # CEG-HC: hard clipping (Eq. 3, 4) at the same five gains.
    "ceg-hc": {"effect": "hardclip", "sweep": "20:50:5", "sample_rate": 16000},
    # SignalTrain-HC: clean shards; clipping at input SDR ~ U[1, 20] dB is rendered at training time.
    "signaltrain-hc": {"effect": "clip-sdr", "sweep": "uniform:1:20:1", "online": True, "sample_rate": 16000},
    # The side experiment: hard clipping with the clean signal superimposed (g_wet 1, g_dry 0.5, as
    # SoX's overdrive weights its dry path).
    "ceg-hc-dry": {"effect": "hardclip", "sweep": "20:50:5", "dry_gain": 0.5, "sample_rate": 16000},
}
