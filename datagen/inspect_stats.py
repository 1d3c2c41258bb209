"""``datagen stats`` and ``datagen inspect``: reading a finished corpus back."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from manifests import SPLITS, ManifestError, read_manifests, read_shard
from manifests.storage import as_path

#: Keys listed per split by ``datagen stats``, so ``datagen inspect OUT KEY`` needs no ``tar tf``.
EXAMPLE_KEYS = 3


def check_plotting() -> None:
    """Raise a one-line RuntimeError when matplotlib is missing (``datagen stats --plot`` says so first)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'dedistort[plot]'") from None


def _primary_value(row: dict) -> tuple[str, float] | None:
    """The swept parameter of a row: sdr_db for clip-sdr, else gain_db, if the effect has one."""
    parameters = json.loads(row["parameters"])
    for name in ("sdr_db", "gain_db"):
        if name in parameters:
            return name, float(parameters[name])
    return None


def corpus_stats(out_dir: str | Path) -> dict:
    """Hours and examples per split and per swept value, and input-SDR quantiles per split."""
    tables = read_manifests(out_dir)
    if not tables:
        raise ManifestError(f"{out_dir}: no manifests found (manifest/*.parquet); is this a datagen output?")
    stats: dict = {"splits": {}, "by_value": {}, "input_sdr_db": {}, "example_keys": {}}
    for split in SPLITS:
        rows = tables.get(split, [])
        if not rows:
            continue
        seconds = sum(r["duration_seconds"] for r in rows)
        stats["splits"][split] = {"examples": len(rows), "hours": seconds / 3600}
        groups: dict[str, dict] = defaultdict(lambda: {"examples": 0, "hours": 0.0})
        order: dict[str, tuple] = {}
        for row in rows:
            value = _primary_value(row)
            label = f"{value[0]}={value[1]:g}" if value else row["effect"]
            # Numbers sort as numbers (gain_db=5 before gain_db=20), labels without one after them.
            order[label] = (value[0], 0, value[1]) if value else ("", 1, 0.0)
            groups[label]["examples"] += 1
            groups[label]["hours"] += row["duration_seconds"] / 3600
        stats["by_value"][split] = {label: groups[label] for label in sorted(groups, key=lambda k: (order[k], k))}
        stats["example_keys"][split] = sorted(r["key"] for r in rows)[:EXAMPLE_KEYS]
        sdrs = np.array([r["input_sdr_db"] for r in rows if r["input_sdr_db"] is not None], dtype=float)
        if sdrs.size:
            q = np.percentile(sdrs, [0, 10, 25, 50, 75, 90, 100])
            stats["input_sdr_db"][split] = dict(zip(("min", "p10", "p25", "median", "p75", "p90", "max"),
                                                    q.tolist(), strict=True))
    return stats


def format_stats(stats: dict) -> str:
    lines = [f"{'split':8s} {'examples':>9s} {'hours':>8s}"]
    for split, s in stats["splits"].items():
        lines.append(f"{split:8s} {s['examples']:9d} {s['hours']:8.3f}")
    for split, groups in stats["by_value"].items():
        lines.append(f"\n{split}: per swept value")
        lines.extend(f"  {label:20s} {g['examples']:7d} examples {g['hours']:8.3f} h" for label, g in groups.items())
    if stats.get("example_keys"):
        lines.append("\nexample keys (datagen inspect OUT KEY -o DIR):")
        lines.extend(f"  {split:6s} " + " ".join(keys) for split, keys in stats["example_keys"].items())
    if stats["input_sdr_db"]:
        lines.append("\ninput SDR (dB) quantiles: min p10 p25 median p75 p90 max")
        for split, q in stats["input_sdr_db"].items():
            lines.append(f"  {split:6s} " + " ".join(f"{v:7.2f}" for v in q.values()))
    return "\n".join(lines)


def plot_input_sdr(out_dir: str | Path, path: str | Path) -> None:
    """Histogram of the measured input SDR per split, as a PNG."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tables = read_manifests(out_dir)
    figure, axis = plt.subplots(figsize=(7, 4))
    for split, rows in tables.items():
        values = [r["input_sdr_db"] for r in rows if r["input_sdr_db"] is not None]
        if values:
            axis.hist(values, bins=40, alpha=0.6, label=f"{split} ({len(values)})")
    axis.set_xlabel("input SDR of input against target (dB)")
    axis.set_ylabel("examples")
    axis.set_title(f"Input SDR distribution: {as_path(out_dir).name}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def inspect_example(out_dir: str | Path, key: str, write_dir: str | Path | None = None) -> tuple[dict, list[Path]]:
    """The manifest row of ``key`` and, with ``write_dir``, its input and target written as WAV files."""
    out_dir = as_path(out_dir)  # a folder or an object-store URL: the shard is then read by range requests
    for rows in read_manifests(out_dir).values():
        for row in rows:
            if row["key"] == key:
                break
        else:
            continue
        break
    else:
        raise ManifestError(f"{out_dir}: no example with key {key!r} in the manifests")
    written: list[Path] = []
    if write_dir is not None:
        write_dir = Path(write_dir)
        write_dir.mkdir(parents=True, exist_ok=True)
        for member in read_shard(out_dir / row["shard"]):
            if member.key != key:
                continue
            for extension, data in sorted(member.files.items()):
                if extension == "json":
                    continue
                audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
                path = write_dir / f"{key}.{extension.split('.')[0]}.wav"
                sf.write(path, audio, rate, subtype="FLOAT")
                written.append(path)
        if not written:
            raise ManifestError(f"{out_dir / row['shard']}: the manifest lists {key!r} but the shard does not hold it")
    return row, written
