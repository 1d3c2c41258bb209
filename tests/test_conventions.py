"""Command-line conventions: --version, -v/--verbose beside -q, py.typed shipped, the TensorBoard notice,
datagen stats (numeric order, example keys, matplotlib checked first) and the default output folder."""

import os
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from datagen.cli import main as datagen_main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("program", ["datagen", "dedistort"])
def test_version(program, capsys):
    if program == "datagen":
        main = datagen_main
    else:
        pytest.importorskip("torch")
        from training.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().endswith(version("dedistort"))


def test_py_typed_ships_with_every_package():
    for package in ("effects", "datagen", "manifests", "training"):
        assert (ROOT / package / "py.typed").is_file(), package
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["*"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, write_takes) -> Path:
    """A build without --out, run from a scratch folder: where it lands is part of what is tested."""
    root = tmp_path_factory.mktemp("work")
    clean = write_takes(root / "takes", 5, 1.0, seed=20)
    here = Path.cwd()
    try:
        os.chdir(root)
        assert datagen_main(["build", "--source", str(clean), "--effect", "hardclip", "--gains", "5,10,20",
                             "--segment-seconds", "1", "--workers", "1", "-q"]) == 0
    finally:
        os.chdir(here)
    out = root / "out" / "takes-hardclip-5-10-20-1s"
    assert out.is_dir() and not (root / "out" / "dedistort").exists()
    return out


def test_stats_sorts_values_as_numbers_and_lists_keys(built, capsys):
    assert datagen_main(["stats", str(built)]) == 0
    text = capsys.readouterr().out
    train = text[text.index("train: per swept value"):]
    assert train.index("gain_db=5 ") < train.index("gain_db=10 ") < train.index("gain_db=20 ")
    listed = text[text.index("example keys"):].splitlines()[1].split()
    assert listed[0] == "train" and len(listed) == 4
    assert datagen_main(["inspect", str(built), listed[1]]) == 0


def test_stats_plot_without_matplotlib_says_so_before_printing(built, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert datagen_main(["stats", str(built), "--plot", str(tmp_path / "f.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "needs matplotlib" in captured.err and captured.err.count("\n") == 1


def test_verbose_and_quiet(built, tmp_path, capsys):
    assert datagen_main(["build", "--out", str(tmp_path / "x"), "-q", "-v"]) == 2
    assert "not both" in capsys.readouterr().err
    clean = built.parent.parent / "takes"
    assert datagen_main(["build", "--source", str(clean), "--effect", "softclip", "--gains", "6", "--splits",
                         "60:20:20", "--segment-seconds", "1", "--workers", "1", "--out", str(tmp_path / "v"),
                         "-v"]) == 0
    said = capsys.readouterr().out
    assert f"building {tmp_path / 'v'} with settings:" in said and '"effect": "softclip"' in said


def test_tensorboard_missing_is_said_once(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from training import train

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr(train, "_TENSORBOARD_MISSING_SAID", False)
    monkeypatch.delenv("DEDISTORT_NO_TENSORBOARD", raising=False)
    said = []
    assert train._tensorboard(tmp_path, said.append) is None
    assert train._tensorboard(tmp_path, said.append) is None
    assert len(said) == 1 and "tensorboard is not installed" in said[0]
