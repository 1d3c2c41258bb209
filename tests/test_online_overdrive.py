"""datagen build --effect overdrive --online trains: the loader renders overdrive in torch; effects it cannot
render are refused when the corpus is built, not when training starts."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import effects  # noqa: E402
from datagen.cli import main as datagen_main  # noqa: E402
from effects import registry  # noqa: E402
from training import data  # noqa: E402
from training.cli import main as dedistort_main  # noqa: E402


@pytest.fixture(scope="module")
def online_overdrive(tmp_path_factory, write_takes) -> Path:
    clean = write_takes(tmp_path_factory.mktemp("clean"), 6, 2.0, seed=40)
    out = tmp_path_factory.mktemp("data") / "od"
    assert datagen_main(["build", "--source", str(clean), "--out", str(out), "--effect", "overdrive", "--online",
                         "--gains", "uniform:10:40:1", "--effect-arg", "colour=20", "--segment-seconds", "1",
                         "--splits", "60:20:20", "--workers", "1", "-q"]) == 0
    return out


def test_loader_renders_online_overdrive_as_the_numpy_effect(online_overdrive):
    stream = data.PairStream(online_overdrive, "train", crop_seconds=0.5, seed=1)
    assert stream.online.effect == "overdrive" and dict(stream.online.effect_args) == {"colour": 20.0}
    batch = next(iter(data.make_loader(stream, batch_size=2)))
    noisy, clean = data.apply_online(batch, stream, "cpu")
    for b in range(2):
        gain_db = float(batch["parameter"][b])
        assert 10.0 <= gain_db <= 40.0
        expected = effects.overdrive(clean[b].numpy(), gain_db, 20.0)
        np.testing.assert_allclose(noisy[b].numpy(), expected, atol=1e-6, rtol=0)


@pytest.mark.usefixtures("small_paper_models")  # the training path, not the model size
def test_online_overdrive_trains(online_overdrive, tmp_path):
    assert dedistort_main(["train", "--data", str(online_overdrive), "--model", "waveunet", "--epochs", "1",
                           "--batch-size", "2", "--crop-seconds", "0.5", "--workers", "0", "--max-batches", "2",
                           "--out", str(tmp_path / "run"), "-q"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert np.isfinite(summary["best_valid_si_sdr_db"])


def test_build_refuses_an_online_effect_the_loader_cannot_render(tmp_path, capsys):
    numpy_only = effects.Effect("numpy-only", "a test effect without a torch twin",
                                (effects.Parameter("gain_db", "dB", "gain", 0.0, 10.0, default=1.0),), "gain_db",
                                render=lambda x, gain_db: (x, {}))
    effects.register(numpy_only)
    try:
        assert datagen_main(["effects"]) == 0
        listing = capsys.readouterr().out.splitlines()
        assert "rendered in torch" not in next(line for line in listing if line.startswith("numpy-only:"))
        assert "rendered in torch" in next(line for line in listing if line.startswith("overdrive:"))
        assert datagen_main(["build", "--effect", "numpy-only", "--online", "--gains", "1,2", "--out",
                             str(tmp_path / "out"), "-q"]) == 2
    finally:
        del registry._REGISTRY["numpy-only"]
    error = capsys.readouterr().err
    assert "cannot render numpy-only" in error and "overdrive" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()
