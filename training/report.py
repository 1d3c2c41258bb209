"""``dedistort report``: the paper's views of evaluation results (Imort et al. 2022, Sec. VI).

From folders written by ``dedistort evaluate`` (one per method and dataset), grouped by the (dataset, split)
they were computed on — results from different corpora or splits are never pooled — it writes, per group:

- ``boxplots``: one panel per metric, the distribution of every method's output scores, the distorted
  input first, and FAD per method when it was computed (the paper's Figs. 2–4, one figure per dataset);
- ``input_sdr``: one panel per metric (SI-SDR, PEAQ, R_nonlin), the mean output score against the input
  SDR with 95 % confidence bands, one line per method, the input's own score dashed black (Fig. 5);
- ``spectrograms``: input, target and each method's output of one example, each with its colour bar,
  and the input and target waveforms on top (Fig. 6);
- ``report.md``: per group, medians and quartiles per method and metric, FAD, each method's speed, the
  Kendall rank correlations between metrics over all scored outputs (Table I), and the figures.

Each figure is written as PNG at print resolution (300 dpi) with PDF and SVG beside it. Methods keep one
colour and one display name ("Demucs", "A-SPADE", "IRM", "input"; override with ``display_names``) in every
figure. With one group the files are ``boxplots.png`` etc.; with several, ``boxplots-DATASET-SPLIT.png``.
"""

from __future__ import annotations

import json
import math
import os
import re
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

    @property
    def group(self) -> tuple[str, str]:
        """(dataset, split) the scores were computed on: results are only compared within one group."""
        data = self.summary.get("data")
        return (os.path.normpath(str(data)) if data else "unknown data", str(self.summary.get("split", "unknown")))

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


#: Resolution of the PNG figures (the PDF and SVG beside them are vector graphics).
PRINT_DPI = 300
#: Fewer examples than this at one input SDR give no confidence band there (with 2 examples the 95 % band is
#: ±12.7 standard errors: the ±200 dB bands of a sparse sweep); the figure and report.md say where.
MIN_BAND_EXAMPLES = 5
#: How results' method names are shown: built-ins, and checkpoints' MODEL-SIZE names.
DISPLAY_NAMES = {"input": "input", "irm": "IRM", "aspade": "A-SPADE"}
_MODEL_NAMES = {"demucs": "Demucs", "waveunet": "Wave-U-Net", "crafx": "CRAFx", "openunmix": "UMX"}
#: Metric titles in words (the paper's names), for figure panels.
METRIC_TITLES = {"si-sdr": "SI-SDR (dB)", "sdr": "SDR (dB)", "peaq": "PEAQ objective difference grade",
                 "rnonlin": r"$R_{\mathrm{nonlin}}$"}
#: The input's colour in every figure (the paper draws it grey in the box plots, black dashed in Fig. 5).
INPUT_COLOUR = "0.55"
_TARGET_COLOUR = "black"
#: Fixed colours for the paper's methods, so a method keeps its colour across reports; others take the rest.
_METHOD_COLOURS = {"demucs": "#1f77b4", "waveunet": "#ff7f0e", "openunmix": "#2ca02c", "crafx": "#d62728",
                   "aspade": "#9467bd", "irm": "#8c564b"}
_SPARE_COLOURS = ("#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39")


def display_name(method: str, overrides: dict[str, str] | None = None) -> str:
    """How a method is shown in figures and tables: ``overrides`` first, then "Demucs", "A-SPADE", "IRM" ...

    Checkpoint methods are named MODEL-SIZE by evaluate: the paper's size shows as the model's name alone,
    others add the size ("Demucs (original)").
    """
    if overrides and method in overrides:
        return overrides[method]
    if method in DISPLAY_NAMES:
        return DISPLAY_NAMES[method]
    model, _, size = method.partition("-")
    if model in _MODEL_NAMES:
        return _MODEL_NAMES[model] + ("" if size in ("", "paper") else f" ({size})")
    return method


def method_colours(methods: list[str]) -> dict[str, str]:
    """One colour per method, the same in every figure: the paper's methods fixed, others in order given."""
    colours, spare = {}, iter(_SPARE_COLOURS)
    used = set()
    for method in methods:
        if method == "input":
            colours[method] = INPUT_COLOUR
            continue
        fixed = _METHOD_COLOURS.get(method.partition("-")[0])
        if fixed is None or fixed in used:
            fixed = next(spare, "#444444")
        colours[method] = fixed
        used.add(fixed)
    return colours


def group_results(results: list[Result]) -> dict[tuple[str, str], list[Result]]:
    """Results by the (dataset, split) they were computed on, in the order first seen; one result per method
    within a group (two would be drawn as one)."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        members = groups.setdefault(result.group, [])
        clash = next((r for r in members if r.method == result.method), None)
        if clash is not None:
            raise ValueError(f"{clash.folder} and {result.folder} both hold method {result.method!r} on "
                             f"{result.group[0]} ({result.group[1]} split): give one results folder per method "
                             "and dataset")
        members.append(result)
    return groups


def confidence_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its two-sided Student-t confidence interval; the interval is the mean itself for n < 2."""
    from scipy.stats import t

    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = float(t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


@dataclass
class Style:
    """Names and colours of the methods, shared by every figure of a report."""

    names: dict[str, str]
    colours: dict[str, str]

    @classmethod
    def for_results(cls, results: list[Result], overrides: dict[str, str] | None = None) -> Style:
        methods = ["input"] + list(dict.fromkeys(r.method for r in _methods(results)))
        return cls({m: display_name(m, overrides) for m in methods}, method_colours(methods))


def _group_label(group: tuple[str, str]) -> str:
    return f"{Path(group[0]).name or group[0]}, {group[1]} split"


def _slug(group: tuple[str, str]) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{Path(group[0]).name}-{group[1]}".lower()).strip("-") or "results"


FORMATS = ("png", "pdf", "svg")


def write_report(folders: list[str | Path], out_dir: str | Path, example_key: str | None = None,
                 display_names: dict[str, str] | None = None, log=print, formats: tuple[str, ...] = FORMATS,
                 dpi: int = PRINT_DPI) -> list[Path]:
    """Draw the figures and write report.md into ``out_dir``; returns the paths written.

    ``display_names`` maps results' method names to what the figures show (``{"demucs-paper": "Demucs v2"}``).
    Results are grouped by (dataset, split); ``log`` is told how they were grouped when there are several.
    Each figure is written in ``formats`` (PNG first: report.md links it) at ``dpi`` dots per inch.
    """
    if not formats or formats[0] != "png" or not set(formats) <= set(FORMATS):
        raise ValueError(f"formats must start with png and be among {', '.join(FORMATS)}, got {formats}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except ImportError:
        raise ValueError("dedistort report draws with matplotlib: pip install 'dedistort[plot]'") from None
    results = [load_result(folder) for folder in folders]
    groups = group_results(results)
    style = Style.for_results(results, display_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(groups) > 1:
        log(f"results come from {len(groups)} (dataset, split) groups; each gets its own figures and tables: "
            + "; ".join(f"{_group_label(g)}: {', '.join(style.names[r.method] for r in rs)}"
                        for g, rs in groups.items()))
    written, sections = [], []
    for group, members in groups.items():
        suffix = "" if len(groups) == 1 else f"-{_slug(group)}"
        figures = []
        notes: list[str] = []
        figure = boxplot_figure(members, style, group)
        figures += _save(figure, out_dir / f"boxplots{suffix}.png", formats, dpi)
        figure = input_sdr_figure(members, style, group, notes)
        if figure is not None:
            figures += _save(figure, out_dir / f"input_sdr{suffix}.png", formats, dpi)
        figure = spectrogram_figure(members, style, example_key)
        if figure is not None:
            figures += _save(figure, out_dir / f"spectrograms{suffix}.png", formats, dpi)
        written += figures
        sections.append(_markdown_section(group, members, style, [p.name for p in figures if p.suffix == ".png"],
                                          notes, len(groups) > 1))
    written.append(_write_markdown(out_dir / "report.md", groups, sections))
    return written


def _save(figure, path: Path, formats: tuple[str, ...] = FORMATS, dpi: int = PRINT_DPI) -> list[Path]:
    """``path`` (PNG at ``dpi``) with its PDF and SVG twins (those of ``formats``); closes the figure."""
    import matplotlib.pyplot as plt

    paths = []
    for kind in formats:
        target = path.with_suffix(f".{kind}")
        with atomic_path(target) as temporary:
            # No creation dates: the same results give the same files.
            metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(kind)
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format=kind, metadata=metadata)
        paths.append(target)
    plt.close(figure)
    return paths


def boxplot_figure(results: list[Result], style: Style, group: tuple[str, str] | None = None):
    """Figs. 2–4 for one dataset: one panel per metric (and FAD), a box per method, the input first.

    Returns the matplotlib Figure (not yet saved). Boxes span the quartiles, the line is the median.
    """
    import matplotlib.pyplot as plt

    metrics = _metrics_present(results)
    has_fad = _has_fad(results)
    panels = max(len(metrics) + has_fad, 1)
    figure, axes = plt.subplots(1, panels, figsize=(2.6 * panels + 0.6, 3.4), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=False):
        methods = ["input"] + [r.method for r in _methods(results)]
        data = [_input_source(results, metric.column).values(f"input_{metric.column}")]
        data += [r.values(f"output_{metric.column}") for r in _methods(results)]
        kept = [(method, values) for method, values in zip(methods, data, strict=True) if values.size]
        box = axis.boxplot([v for _, v in kept], showfliers=False, patch_artist=True,
                           medianprops={"color": "black"})
        for patch, (method, _) in zip(box["boxes"], kept, strict=True):
            patch.set_facecolor(style.colours[method])
        axis.set_xticks(range(1, len(kept) + 1), [style.names[m] for m, _ in kept], rotation=35, ha="right")
        axis.set_title(METRIC_TITLES.get(metric.name, metric.label), fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    if has_fad:
        axis = axes[0][len(metrics)]
        with_fad = _fad_input_source(results)
        points = [("input", with_fad.summary["fad"]["input"])] if with_fad else []
        points += [(r.method, r.summary["fad"]["output"]) for r in _methods(results) if "fad" in r.summary]
        axis.bar(range(len(points)), [v for _, v in points], color=[style.colours[m] for m, _ in points])
        axis.set_xticks(range(len(points)), [style.names[m] for m, _ in points], rotation=35, ha="right")
        axis.set_title("FAD (lower is better)", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    where = f" on {_group_label(group)}" if group else ""
    better = "higher is better except for FAD" if has_fad else "higher is better"
    figure.suptitle(f"Scores{where}: boxes span the quartiles, lines mark medians; {better}", fontsize=10)
    figure.tight_layout()
    return figure


def input_sdr_figure(results: list[Result], style: Style, group: tuple[str, str] | None = None,
                     notes: list[str] | None = None):
    """Fig. 5 for one dataset: per metric (SDR aside), each method's mean score against input SDR with its
    95 % confidence band, the input's own mean dashed black. None when no example has an input SDR.

    Bands are drawn only at input SDRs with at least MIN_BAND_EXAMPLES examples; where that leaves some
    out, a line is added to ``notes`` (and to the figure's title).
    """
    import matplotlib.pyplot as plt

    metrics = [m for m in _metrics_present(results) if m.name != "sdr"]
    if not any(by_input_sdr(r, f"output_{m.column}") for r in _methods(results) for m in metrics):
        return None
    figure, axes = plt.subplots(1, max(len(metrics), 1), figsize=(3.6 * max(len(metrics), 1), 3.4), squeeze=False)
    sparse: set[tuple[str, float]] = set()
    for axis, metric in zip(axes[0], metrics, strict=False):
        for result in _methods(results):
            groups = by_input_sdr(result, f"output_{metric.column}")
            if not groups:
                continue
            levels = np.array(list(groups))
            stats = np.array([confidence_interval(v) for v in groups.values()])
            colour = style.colours[result.method]
            axis.plot(levels, stats[:, 0], marker="o", markersize=3, color=colour, label=style.names[result.method])
            banded = np.array([v.size >= MIN_BAND_EXAMPLES for v in groups.values()])
            sparse.update((result.method, float(level)) for level in levels[~banded])
            if banded.any():
                axis.fill_between(levels, stats[:, 1], stats[:, 2], where=banded, color=colour, alpha=0.2,
                                  linewidth=0, interpolate=False)
        reference = by_input_sdr(_input_source(results, metric.column), f"input_{metric.column}")
        if reference:
            axis.plot(list(reference), [v.mean() for v in reference.values()], "--", color=_TARGET_COLOUR,
                      label=style.names["input"])
        axis.set_xlabel("input SDR (dB)")
        axis.set_title(f"mean {METRIC_TITLES.get(metric.name, metric.label)}", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    where = f" on {_group_label(group)}" if group else ""
    title = f"Mean score against input SDR{where}, with 95 % confidence bands"
    if sparse:
        note = (f"no band at {len(sparse)} (method, input SDR) points with fewer than {MIN_BAND_EXAMPLES} "
                "examples")
        title += f"\n({note})"
        if notes is not None:
            notes.append(f"Confidence bands: {note} ("
                         + ", ".join(f"{style.names[m]} at {level:g} dB" for m, level in sorted(sparse)[:8])
                         + (", ..." if len(sparse) > 8 else "") + ").")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


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


def spectrogram_figure(results: list[Result], style: Style, wanted: str | None = None):
    """Fig. 6: the waveforms of input (rescaled onto the target) and target, then the spectrograms of input,
    target and each method's output with colour bars (dB). None when no example was saved by every result."""
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    key = _example_key(results, wanted)
    if key is None:
        return None
    audio = results[0].folder / "audio"
    target, rate = sf.read(audio / f"{key}.target.wav", dtype="float64", always_2d=True)
    noisy, _ = sf.read(audio / f"{key}.input.wav", dtype="float64", always_2d=True)
    panels = [(style.names["input"], noisy[:, 0]), ("target", target[:, 0])]
    panels += [(style.names[r.method],
                sf.read(r.folder / "audio" / f"{key}.output.wav", dtype="float64", always_2d=True)[0][:, 0])
               for r in _methods(results)]
    figure, axes = plt.subplots(len(panels) + 1, 1, figsize=(7.5, 1.6 * (len(panels) + 1)), sharex=True)
    seconds = np.arange(target.shape[0]) / rate
    # The input scaled onto the target (least squares), so that the reliable parts overlap as in Fig. 6; the
    # target drawn first and thicker, the input over it, so the clipped plateaus show against the target.
    gain = float(np.dot(noisy[:, 0], target[:, 0]) / max(np.dot(noisy[:, 0], noisy[:, 0]), 1e-30))
    axes[0].plot(seconds, target[:, 0], linewidth=1.0, color=_TARGET_COLOUR, label="target", zorder=1)
    axes[0].plot(seconds, gain * noisy[:, 0], linewidth=0.6, color=style.colours["input"],
                 label=f"{style.names['input']} (rescaled)", zorder=2)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("amplitude")
    axes[0].set_title(f"Example {key}: waveforms, then spectrograms", fontsize=9)
    levels = []
    for label, signal in panels:
        frequencies, times, spectrum = stft(signal, rate, nperseg=1024, noverlap=768)
        levels.append((label, frequencies, times, 20 * np.log10(np.abs(spectrum) + 1e-9)))
    top = max(level.max() for *_, level in levels)  # one scale for all, so the panels compare
    for axis, (label, frequencies, times, level) in zip(axes[1:], levels, strict=True):
        # Rasterised: a PDF or SVG of 100,000 vector quads is slow to write and to open; the axes stay vectors.
        mesh = axis.pcolormesh(times, frequencies / 1000, level, vmin=top - 90, vmax=top, shading="auto",
                               rasterized=True)
        figure.colorbar(mesh, ax=axis, label="dB", pad=0.01)
        axis.set_ylabel("kHz")
        axis.set_title(label, fontsize=9)
    axes[-1].set_xlabel("time (s)")
    figure.tight_layout()
    return figure


def _speed(result: Result) -> str:
    """x real time with sensible precision; the input method does no work."""
    if result.method == "input":
        return "– (no processing)"
    value = result.summary.get("speed", {}).get("times_real_time")
    if value is None or not math.isfinite(value):
        return "–"
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.1f}x" if value >= 1 else f"{value:.2g}x ({1 / value:.1f} s per s of audio)"


def _markdown_section(group: tuple[str, str], results: list[Result], style: Style, figures: list[str],
                      notes: list[str], several: bool) -> list[str]:
    metrics = _metrics_present(results)
    has_fad = _has_fad(results)
    examples = sorted({r.summary.get("examples") for r in results}, key=str)
    lines = [f"## {_group_label(group)}" if several else "## Data", "",
             f"Data: `{group[0]}`, split `{group[1]}`, {', '.join(map(str, examples))} examples per method.", "",
             "### Scores (median [first quartile, third quartile])", "",
             "| method | shown as | " + " | ".join(m.label for m in metrics) + (" | FAD |" if has_fad else " |"),
             "|---" * (len(metrics) + 2 + has_fad) + "|"]
    rows = [("input", results[0], "input")] + [(r.method, r, "output") for r in _methods(results)]
    for method, result, prefix in rows:
        cells = []
        for metric in metrics:
            source = _input_source(results, metric.column) if prefix == "input" else result
            values = source.values(f"{prefix}_{metric.column}")
            cells.append(f"{np.median(values):.2f} [{np.percentile(values, 25):.2f}, {np.percentile(values, 75):.2f}]"
                         if values.size else "–")
        if has_fad:
            source = (_fad_input_source(results) or result) if prefix == "input" else result
            fad = source.summary.get("fad", {}).get(prefix)
            cells.append(f"{fad:.3f}" if fad is not None else "–")
        lines.append(f"| {method} | {style.names[method]} | " + " | ".join(cells) + " |")
    lines += ["", "### Speed of each method", "", "| method | x real time | device |", "|---|---|---|"]
    for result in results:
        lines.append(f"| {style.names[result.method]} | {_speed(result)} | "
                     f"{result.summary.get('speed', {}).get('device', '?')} |")
    names, matrix = kendall_table(results)
    if names:
        lines += ["", "### Kendall rank correlation between metrics (all outputs of all methods)", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in zip(names, matrix, strict=True):
            lines.append(f"| {name} | " + " | ".join("–" if np.isnan(v) else f"{v:.2f}" for v in row) + " |")
    if notes:
        lines += [""] + notes
    lines += ["", "### Figures", "", "PNG, with PDF and SVG of the same name.", ""]
    lines += [f"![{name}]({name})" for name in figures] + [""]
    return lines


def _write_markdown(path: Path, groups: dict, sections: list[list[str]]) -> Path:
    lines = ["# Evaluation report", ""]
    if len(groups) > 1:
        lines += [f"The results come from {len(groups)} different (dataset, split) pairs; each has its own section, "
                  "tables and figures, and no score is compared or pooled across them.", ""]
    for section in sections:
        lines += section
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
