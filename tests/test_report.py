"""dedistort report: what the figures show (methods, names, colours, axes, points, bands), not only that they exist;
results from different corpora or splits are grouped, never pooled."""

import json
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.colors import to_hex  # noqa: E402

from training import report  # noqa: E402
from training.cli import main as dedistort_main  # noqa: E402

LEVELS = (1.0, 5.0, 10.0, 20.0)


def _results(folder: Path, method: str, data: str = "out/ceg-hc", split: str = "test", per_level: int = 6,
             gain_db: float = 5.0, fad: bool = False, speed: float = 37.0, audio_key: str | None = "ex-000") -> Path:
    """A results folder as dedistort evaluate writes it: examples at four nominal input SDRs."""
    rng = np.random.default_rng(zlib.crc32(f"{method} {data} {split}".encode()))
    rows = []
    for level in LEVELS:
        for _ in range(per_level):
            noise = rng.normal(0, 0.5)
            rows.append({"key": f"ex-{len(rows):03d}", "method": method, "nominal_input_sdr_db": level,
                         "input_sdr_db": level, "input_si_sdr_db": level + noise,
                         "output_si_sdr_db": level + gain_db + noise, "output_sdr_db": level + gain_db,
                         "input_rnonlin": 0.5, "output_rnonlin": 0.5 + gain_db / 100 + rng.normal(0, 0.01)})
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "scores.parquet")
    summary = {"method": method, "data": data, "split": split, "examples": len(rows),
               "speed": {"times_real_time": speed, "device": "cpu"}}
    if fad:
        summary["fad"] = {"input": 4.0, "output": 4.0 - gain_db / 10}
    (folder / "summary.json").write_text(json.dumps(summary))
    if audio_key:
        rate, t = 8000, np.arange(8000) / 8000
        clean = 0.8 * np.sin(2 * np.pi * 220 * t)
        (folder / "audio").mkdir()
        sf.write(folder / "audio" / f"{audio_key}.target.wav", clean, rate)
        sf.write(folder / "audio" / f"{audio_key}.input.wav", np.clip(clean * 3, -1, 1), rate)
        sf.write(folder / "audio" / f"{audio_key}.output.wav", clean * 0.9, rate)
    return folder


@pytest.fixture()
def three(tmp_path) -> list[report.Result]:
    return [report.load_result(_results(tmp_path / m, m, gain_db=g, fad=True))
            for m, g in (("demucs-paper", 8.0), ("aspade", 3.0), ("irm", 10.0))]


def test_display_names_and_colours_are_stable():
    assert [report.display_name(m) for m in ("demucs-paper", "aspade", "irm", "input", "openunmix-paper",
                                             "waveunet-original", "my-method")] == [
        "Demucs", "A-SPADE", "IRM", "input", "UMX", "Wave-U-Net (original)", "my-method"]
    assert report.display_name("irm", {"irm": "oracle mask"}) == "oracle mask"
    first = report.method_colours(["input", "demucs-paper", "irm"])
    second = report.method_colours(["input", "irm", "aspade", "demucs-paper"])
    assert first["demucs-paper"] == second["demucs-paper"] and first["irm"] == second["irm"]
    assert len(set(second.values())) == 4


def test_boxplots_show_every_method_in_its_colour(three):
    style = report.Style.for_results(three)
    figure = report.boxplot_figure(three, style, ("out/ceg-hc", "test"))
    axes = figure.axes
    assert [a.get_title() for a in axes] == ["SI-SDR (dB)", "SDR (dB)", r"$R_{\mathrm{nonlin}}$",
                                             "FAD (lower is better)"]
    for axis in axes[:3]:
        labels = [t.get_text() for t in axis.get_xticklabels()]
        assert labels in (["input", "Demucs", "A-SPADE", "IRM"], ["Demucs", "A-SPADE", "IRM"])  # no input SDR
        colours = [to_hex(p.get_facecolor()) for p in axis.patches]
        names = {v: k for k, v in style.names.items()}
        assert colours == [to_hex(style.colours[names[label]]) for label in labels]
    fad_bars = [to_hex(p.get_facecolor()) for p in axes[3].patches]
    assert fad_bars == [to_hex(style.colours[m]) for m in ("input", "demucs-paper", "aspade", "irm")]
    assert "FAD" in figure._suptitle.get_text()
    without_fad = [report.load_result(r.folder) for r in three]
    for r in without_fad:
        r.summary.pop("fad")
    figure = report.boxplot_figure(without_fad, style)
    assert len(figure.axes) == 3 and "FAD" not in figure._suptitle.get_text()


def test_input_sdr_panels_lines_points_and_bands(tmp_path, three):
    style = report.Style.for_results(three)
    notes = []
    figure = report.input_sdr_figure(three, style, ("out/ceg-hc", "test"), notes)
    axes = figure.axes
    assert [a.get_title() for a in axes] == ["mean SI-SDR (dB)", r"mean $R_{\mathrm{nonlin}}$"]
    for axis in axes:
        lines = {line.get_label(): line for line in axis.get_lines()}
        assert set(lines) == {"Demucs", "A-SPADE", "IRM", "input"}
        assert all(list(line.get_xdata()) == list(LEVELS) for line in lines.values())
        assert to_hex(lines["Demucs"].get_color()) == to_hex(style.colours["demucs-paper"])
        assert lines["input"].get_linestyle() == "--"
        assert len(axis.collections) == 3  # one band per method
        assert axis.get_xlabel() == "input SDR (dB)"
    # SI-SDR means: the input level plus each method's gain.
    demucs = next(line for line in axes[0].get_lines() if line.get_label() == "Demucs")
    assert np.allclose(demucs.get_ydata(), np.array(LEVELS) + 8.0, atol=0.5)
    assert notes == []
    # Two examples per input SDR: a band would be ±12.7 standard errors; none is drawn, and it is said.
    sparse = [report.load_result(_results(tmp_path / "sparse", "demucs-paper", per_level=2))]
    notes = []
    figure = report.input_sdr_figure(sparse, report.Style.for_results(sparse), None, notes)
    assert all(len(axis.collections) == 0 for axis in figure.axes)
    assert "fewer than 5 examples" in figure._suptitle.get_text() and "Demucs at 1 dB" in notes[0]


def test_spectrograms_have_colour_bars_and_a_visible_input(three):
    style = report.Style.for_results(three)
    figure = report.spectrogram_figure(three, style)
    plots = [a for a in figure.axes if a.get_label() != "<colorbar>"]
    bars = [a for a in figure.axes if a.get_label() == "<colorbar>"]
    assert [a.get_title() for a in plots[1:]] == ["input", "target", "Demucs", "A-SPADE", "IRM"]
    assert len(bars) == 5 and all(bar.get_ylabel() == "dB" for bar in bars)
    waves = {line.get_label(): line for line in plots[0].get_lines()}
    assert set(waves) == {"target", "input (rescaled)"}
    assert waves["input (rescaled)"].get_zorder() > waves["target"].get_zorder()
    assert to_hex(waves["input (rescaled)"].get_color()) == to_hex(style.colours["input"])


def test_report_files_names_override_and_print_resolution(tmp_path, three, capsys):
    folders = [str(r.folder) for r in three]
    assert dedistort_main(["report", *folders, "-o", str(tmp_path / "report"), "--name", "irm=oracle mask"]) == 0
    out = tmp_path / "report"
    for stem in ("boxplots", "input_sdr", "spectrograms"):
        for suffix in (".png", ".pdf", ".svg"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0
    from matplotlib.image import imread

    width = imread(out / "boxplots.png").shape[1]
    assert width > 8 * 300 * 0.8  # a ~11-inch figure at 300 dpi
    assert "oracle mask" in (out / "boxplots.svg").read_text()
    markdown = (out / "report.md").read_text()
    assert "| irm | oracle mask |" in markdown and "| Demucs | 37.0x | cpu |" in markdown
    assert "| input | input |" in markdown and "no processing" not in markdown
    assert dedistort_main(["report", *folders, "-o", str(out), "--name", "irm"]) == 2
    assert "METHOD=LABEL" in capsys.readouterr().err


def test_results_of_different_corpora_and_splits_are_grouped(tmp_path, capsys):
    folders = [_results(tmp_path / "a", "demucs-paper", data="out/ceg-od", audio_key=None),
               _results(tmp_path / "b", "irm", data="out/ceg-od", audio_key=None),
               _results(tmp_path / "c", "demucs-paper", data="out/ceg-hc", audio_key=None),
               _results(tmp_path / "d", "demucs-paper", data="out/ceg-hc", split="valid", gain_db=2.0,
                        audio_key=None)]
    said = []
    # PNG only, at screen resolution: what is tested here is the grouping (the formats are tested above).
    report.write_report(folders, tmp_path / "r", log=said.append, formats=("png",), dpi=40)
    assert len(said) == 1 and "3 (dataset, split) groups" in said[0] and "ceg-hc, valid split: Demucs" in said[0]
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert markdown.count("Data: `") == 3 and "Data: `out/ceg-hc`, split `valid`" in markdown
    for slug in ("ceg-od-test", "ceg-hc-test", "ceg-hc-valid"):
        assert (tmp_path / "r" / f"boxplots-{slug}.png").exists()
    assert not (tmp_path / "r" / "boxplots.png").exists()
    # Each group's figure holds its own methods only.
    groups = report.group_results([report.load_result(f) for f in folders])
    assert [[r.method for r in rs] for rs in groups.values()] == [["demucs-paper", "irm"], ["demucs-paper"],
                                                                   ["demucs-paper"]]
    # The same method twice on one dataset and split cannot be drawn: refused, naming both folders.
    twice = _results(tmp_path / "e", "demucs-paper", data="out/ceg-od")
    assert dedistort_main(["report", str(folders[0]), str(twice), "-o", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert str(folders[0]) in error and str(twice) in error and error.count("\n") == 1
