"""``dedistort report``: the paper's views of evaluation results (Imort et al. 2022, Sec. VI).

From one or more folders written by ``dedistort evaluate`` (one per method, on the same data), it writes:

- ``boxplots.png``: per metric, the distribution of the output scores of every method, the distorted
  input first (Figs. 2–4), and FAD per method when it was computed;
- ``input_sdr.png``: the mean output score against the nominal input SDR with 95 % confidence bands,
  one line per method, the input's own score dashed (Fig. 5);
- ``spectrograms.png``: input, target and each method's output of one example, with the input and target
  waveforms on top (Fig. 6);
- ``report.md``: medians and quartiles per method and metric, FAD, each method's speed, the Kendall rank
  correlations between metrics over all scored outputs (Table I), and the figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from manifests.dataset_info import atomic_path

from .metrics import METRICS


@dataclass
class Result:
    """One ``evaluate`` output folder: its summary and per-example rows."""

    folder: Path
    summary: dict
    rows: list[dict]

    @property
    def method(self) -> str:
        return self.summary["method"]

    def values(self, column: str) -> np.ndarray:
        """The finite values of ``column`` over the examples (empty when the metric was not computed)."""
        return np.array([r[column] for r in self.rows if r.get(column) is not None and math.isfinite(r[column])])


def load_result(folder: str | Path) -> Result:
    """Read ``folder``/summary.json and scores.parquet, with a clear error for anything missing."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    summary_path, scores_path = folder / "summary.json", folder / "scores.parquet"
    for path in (summary_path, scores_path):
        if not path.is_file():
            raise ValueError(f"{folder}: not an evaluate results folder (no {path.name}); run dedistort evaluate")
    try:
        summary = json.loads(summary_path.read_text())
        rows = pq.read_table(scores_path).to_pylist()
    except (json.JSONDecodeError, OSError) as error:
        raise ValueError(f"{folder}: unreadable results ({error})") from None
    except Exception as error:  # pyarrow's own errors for a damaged parquet file
        raise ValueError(f"{folder}: unreadable {scores_path.name} ({error})") from None
    if not rows:
        raise ValueError(f"{scores_path}: no examples")
    return Result(folder, summary, rows)


def _metrics_present(results: list[Result]) -> list:
    """The per-example metrics with output scores in at least one result, in METRICS order."""
    return [m for m in METRICS.values() if any(r.values(f"output_{m.column}").size for r in results)]


def kendall_table(results: list[Result]) -> tuple[list[str], np.ndarray]:
    """Kendall's τ-b between every pair of per-example metrics over all outputs of all results (Table I).

    Returns the metric names and a symmetric matrix; a pair with fewer than three common examples is NaN.
    """
    from scipy.stats import kendalltau

    metrics = [m for m in _metrics_present(results) if m.name != "sdr"]
    matrix = np.full((len(metrics), len(metrics)), np.nan)
    for i, a in enumerate(metrics):
        for j, b in enumerate(metrics):
            pairs = [(r[f"output_{a.column}"], r[f"output_{b.column}"]) for result in _methods(results)
                     for r in result.rows
                     if r.get(f"output_{a.column}") is not None and r.get(f"output_{b.column}") is not None]
            if len(pairs) >= 3:
                x, y = np.array(pairs).T
                matrix[i, j] = kendalltau(x, y).statistic
    return [m.name for m in metrics], matrix


def by_input_sdr(result: Result, column: str) -> dict[float, np.ndarray]:
    """``column`` grouped by nominal input SDR (clip-sdr's target), else by measured input SDR rounded to 1 dB."""
    groups: dict[float, list[float]] = {}
    for row in result.rows:
        value = row.get(column)
        level = row.get("nominal_input_sdr_db")
        if level is None and row.get("input_sdr_db") is not None:
            level = float(round(row["input_sdr_db"]))
        if value is None or level is None or not math.isfinite(value):
            continue
        groups.setdefault(float(level), []).append(value)
    return {level: np.array(values) for level, values in sorted(groups.items())}


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its two-sided Student-t confidence interval; the interval is the mean itself for n < 2."""
    from scipy.stats import t

    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = float(t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def write_report(folders: list[str | Path], out_dir: str | Path, example_key: str | None = None) -> list[Path]:
    """Draw the figures and write report.md into ``out_dir``; returns the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except ImportError:
        raise ValueError("dedistort report draws with matplotlib: pip install 'dedistort[plot]'") from None
    results = [load_result(folder) for folder in folders]
    names = [r.method for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"two results folders hold the same method ({', '.join(names)}): give one per method")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_boxplots(results, out_dir / "boxplots.png"), _input_sdr_plot(results, out_dir / "input_sdr.png")]
    spectrograms = _spectrograms(results, out_dir / "spectrograms.png", example_key)
    written += [p for p in (spectrograms,) if p is not None]
    written.append(_markdown(results, out_dir / "report.md", [p.name for p in written]))
    return written


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def _boxplots(results: list[Result], path: Path) -> Path:
    import matplotlib.pyplot as plt

    metrics = _metrics_present(results)
    has_fad = any("fad" in r.summary for r in results)
    panels = len(metrics) + has_fad
    figure, axes = plt.subplots(1, max(panels, 1), figsize=(3.2 * max(panels, 1), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=False):
        labels = ["input"] + [r.method for r in _methods(results)]
        data = [_input_source(results, metric.column).values(f"input_{metric.column}")]
        data += [r.values(f"output_{metric.column}") for r in _methods(results)]
        kept = [(label, values) for label, values in zip(labels, data, strict=True) if values.size]
        box = axis.boxplot([v for _, v in kept], showfliers=False, patch_artist=True)
        for patch, (label, _) in zip(box["boxes"], kept, strict=True):
            patch.set_facecolor("0.85" if label == "input" else "C0")
        axis.set_xticks(range(1, len(kept) + 1), [label for label, _ in kept], rotation=45, ha="right")
        axis.set_title(metric.label)
        axis.grid(axis="y", alpha=0.3)
    if has_fad:
        axis = axes[0][len(metrics)]
        with_fad = _fad_input_source(results)
        points = [("input", with_fad.summary["fad"]["input"])] if with_fad else []
        points += [(r.method, r.summary["fad"]["output"]) for r in _methods(results) if "fad" in r.summary]
        axis.bar(range(len(points)), [v for _, v in points], color=["0.85"] + ["C0"] * (len(points) - 1))
        axis.set_xticks(range(len(points)), [label for label, _ in points], rotation=45, ha="right")
        axis.set_title("FAD (lower is better)")
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle("Scores per method (boxes: quartiles, line: median; higher is better except FAD)")
    figure.tight_layout()
    return _save(figure, path)


def _input_sdr_plot(results: list[Result], path: Path) -> Path:
    import matplotlib.pyplot as plt

    metrics = [m for m in _metrics_present(results) if m.name != "sdr"]
    figure, axes = plt.subplots(1, max(len(metrics), 1), figsize=(4.0 * max(len(metrics), 1), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=False):
        for index, result in enumerate(_methods(results)):
            groups = by_input_sdr(result, f"output_{metric.column}")
            if not groups:
                continue
            levels = np.array(list(groups))
            stats = np.array([confidence_interval(v) for v in groups.values()])
            axis.plot(levels, stats[:, 0], marker="o", color=f"C{index}", label=result.method)
            axis.fill_between(levels, stats[:, 1], stats[:, 2], color=f"C{index}", alpha=0.2, linewidth=0)
        reference = by_input_sdr(_input_source(results, metric.column), f"input_{metric.column}")
        if reference:
            axis.plot(list(reference), [v.mean() for v in reference.values()], "k--", label="input")
        axis.set_xlabel("input SDR (dB)")
        axis.set_title(f"mean {metric.label}")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Mean score against input SDR, 95 % confidence bands")
    figure.tight_layout()
    return _save(figure, path)


def _example_key(results: list[Result], wanted: str | None) -> str | None:
    def saved(result: Result) -> set[str]:
        return {p.name.split(".")[0] for p in (result.folder / "audio").glob("*.output.wav")}

    common = set.intersection(*(saved(r) for r in results))
    if wanted is not None:
        if wanted not in common:
            raise ValueError(f"example {wanted!r} was not saved by every result (saved by all: "
                             f"{', '.join(sorted(common)) or 'none'})")
        return wanted
    return min(common) if common else None


def _spectrograms(results: list[Result], path: Path, wanted: str | None) -> Path | None:
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    key = _example_key(results, wanted)
    if key is None:
        return None
    audio = results[0].folder / "audio"
    target, rate = sf.read(audio / f"{key}.target.wav", dtype="float64", always_2d=True)
    noisy, _ = sf.read(audio / f"{key}.input.wav", dtype="float64", always_2d=True)
    panels = [("input", noisy[:, 0]), ("target", target[:, 0])]
    panels += [(r.method, sf.read(r.folder / "audio" / f"{key}.output.wav", dtype="float64", always_2d=True)[0][:, 0])
               for r in _methods(results)]
    figure, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 1.7 * (len(panels) + 1)), sharex=True)
    seconds = np.arange(target.shape[0]) / rate
    # The input scaled onto the target (least squares), so that the reliable parts overlap as in Fig. 6.
    gain = float(np.dot(noisy[:, 0], target[:, 0]) / max(np.dot(noisy[:, 0], noisy[:, 0]), 1e-30))
    axes[0].plot(seconds, gain * noisy[:, 0], linewidth=0.5, label="input (rescaled)")
    axes[0].plot(seconds, target[:, 0], linewidth=0.5, label="target")
    axes[0].legend(fontsize=7, loc="upper right")
    axes[0].set_title(f"example {key}", fontsize=9)
    for axis, (label, signal) in zip(axes[1:], panels, strict=True):
        frequencies, times, spectrum = stft(signal, rate, nperseg=1024, noverlap=768)
        level = 20 * np.log10(np.abs(spectrum) + 1e-9)
        axis.pcolormesh(times, frequencies / 1000, level, vmin=level.max() - 90, vmax=level.max(), shading="auto")
        axis.set_ylabel("kHz")
        axis.set_title(label, fontsize=9)
    axes[-1].set_xlabel("time (s)")
    figure.tight_layout()
    return _save(figure, path)


def _markdown(results: list[Result], path: Path, figures: list[str]) -> Path:
    metrics = _metrics_present(results)
    lines = ["# Evaluation report", "", f"Data: `{results[0].summary.get('data')}`, split "
             f"`{results[0].summary.get('split')}`, {results[0].summary.get('examples')} examples per method.", "",
             "## Scores (median [first quartile, third quartile])", "",
             "| method | " + " | ".join(m.label for m in metrics) + (" | FAD |" if _has_fad(results) else " |"),
             "|---" * (len(metrics) + 1 + _has_fad(results)) + "|"]
    rows = [("input", results[0], "input")] + [(r.method, r, "output") for r in _methods(results)]
    for label, result, prefix in rows:
        cells = []
        for metric in metrics:
            source = _input_source(results, metric.column) if prefix == "input" else result
            values = source.values(f"{prefix}_{metric.column}")
            cells.append(f"{np.median(values):.2f} [{np.percentile(values, 25):.2f}, {np.percentile(values, 75):.2f}]"
                         if values.size else "–")
        if _has_fad(results):
            source = (_fad_input_source(results) or result) if prefix == "input" else result
            fad = source.summary.get("fad", {}).get(prefix)
            cells.append(f"{fad:.3f}" if fad is not None else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Speed of each method", "", "| method | x real time | device |", "|---|---|---|"]
    for result in results:
        speed = result.summary.get("speed", {})
        lines.append(f"| {result.method} | {speed.get('times_real_time', float('nan')):,.1f} | "
                     f"{speed.get('device', '?')} |")
    names, matrix = kendall_table(results)
    if names:
        lines += ["", "## Kendall rank correlation between metrics (all outputs of all methods)", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in zip(names, matrix, strict=True):
            lines.append(f"| {name} | " + " | ".join("–" if np.isnan(v) else f"{v:.2f}" for v in row) + " |")
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""]
    with atomic_path(path) as temporary:
        temporary.write_text("\n".join(lines))
    return path


def _input_source(results: list[Result], column: str) -> Result:
    """The first result that scored the input with this metric (all score the same inputs)."""
    return next((r for r in results if r.values(f"input_{column}").size), results[0])


def _fad_input_source(results: list[Result]) -> Result | None:
    """The first result with FAD scores (whose input FAD is every result's: they score the same inputs)."""
    return next((r for r in results if "fad" in r.summary), None)


def _methods(results: list[Result]) -> list[Result]:
    """The results of restoration methods: all but ``input``, whose outputs are the input row already."""
    return [r for r in results if r.method != "input"]


def _has_fad(results: list[Result]) -> bool:
    return any("fad" in r.summary for r in results)
