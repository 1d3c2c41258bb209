"""dedistort train / evaluate / run end to end on a small corpus, and the models listing."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from training import models  # noqa: E402
from training.cli import main as dedistort_main  # noqa: E402
from training.data import PairStream  # noqa: E402
from training.train import TrainConfig, load_checkpoint, model_from_checkpoint, train, validate  # noqa: E402

# The training machinery, not the paper's model sizes: "paper" builds small models here (tests/small_models.py).
pytestmark = pytest.mark.usefixtures("small_paper_models")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    clean = tmp_path_factory.mktemp("clean")
    for i in range(10):
        sf.write(clean / f"take-{i}.wav", demo_guitar(4.0, 16000, seed=300 + i, peak=0.5).T, 16000)
    out = tmp_path_factory.mktemp("data") / "hc"
    build(BuildConfig(source=str(clean), effect="hardclip", sweep="6,12", segment_seconds=2.0, name="hc"), out,
          progress=False, log=lambda _: None)
    return out


def _config(corpus, **changes) -> TrainConfig:
    settings = dict(data=str(corpus), model="waveunet", size="paper", epochs=3, batch_size=4, crop_seconds=0.5,
                    learning_rate=1e-3, seed=0)
    settings.update(changes)
    return TrainConfig(**settings)


def test_short_training_raises_validation_si_sdr(corpus, tmp_path):
    config = _config(corpus, learning_rate=1e-2).resolved()  # the small model: a higher rate learns in 3 epochs
    torch.manual_seed(0)
    untrained = models.create("waveunet", "paper")
    before = validate(untrained, PairStream(corpus, "valid", None, training=False), torch.device("cpu"), 4)
    summary = train(config, tmp_path / "run", progress=False, log=lambda _: None)
    assert summary["best_valid_si_sdr_db"] > before + 3.0, (before, summary)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "last.pt").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    valid = [e.value for e in events.Scalars("si_sdr/valid")]
    assert valid == pytest.approx([float(r["valid_si_sdr_db"]) for r in rows], abs=1e-5)


def test_same_seed_same_run_and_resume_continues(corpus, tmp_path):
    first = train(_config(corpus, epochs=2), tmp_path / "a", progress=False, log=lambda _: None)
    second = train(_config(corpus, epochs=2), tmp_path / "b", progress=False, log=lambda _: None)
    assert first["best_valid_si_sdr_db"] == second["best_valid_si_sdr_db"]
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # One epoch, then resume to two: the same weights as two epochs in one go.
    train(_config(corpus, epochs=1), tmp_path / "c", progress=False, log=lambda _: None)
    train(_config(corpus, epochs=2), tmp_path / "c", resume=True, progress=False, log=lambda _: None)
    c = load_checkpoint(tmp_path / "c" / "last.pt")["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(ValueError, match="another config"):
        train(_config(corpus, epochs=3, batch_size=2), tmp_path / "c", resume=True, progress=False,
              log=lambda _: None)
    with pytest.raises(ValueError, match="--resume"):
        train(_config(corpus, epochs=1), tmp_path / "c", progress=False, log=lambda _: None)


def test_evaluate_and_run_commands(corpus, tmp_path, capsys):
    train(_config(corpus, epochs=1), tmp_path / "run", progress=False, log=lambda _: None)
    checkpoint = tmp_path / "run" / "best.pt"
    assert dedistort_main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(corpus), "--split", "test",
                           "-o", str(tmp_path / "results"), "-q"]) == 0
    import pyarrow.parquet as pq

    scores = pq.read_table(tmp_path / "results" / "scores.parquet").to_pylist()
    from manifests import read_manifests

    assert sorted(r["key"] for r in scores) == sorted(r["key"] for r in read_manifests(corpus)["test"])
    assert "si_sdr_improvement_db" in capsys.readouterr().out
    # A stereo file at 44.1 kHz and an odd length, through a mono 16 kHz model.
    noisy = np.clip(np.concatenate([demo_guitar(3.3, 44100, seed=1), demo_guitar(3.3, 44100, seed=2)]) * 4, -1, 1)
    sf.write(tmp_path / "in.wav", noisy.T[:-7], 44100)
    assert dedistort_main(["run", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"), "--checkpoint",
                           str(checkpoint), "--chunk-seconds", "1", "--overlap-seconds", "0.25"]) == 0
    restored, rate = sf.read(tmp_path / "out.wav", always_2d=True)
    assert rate == 44100 and restored.shape == noisy.T[:-7].shape and np.isfinite(restored).all()
    assert "x real time" in capsys.readouterr().out
    state = load_checkpoint(checkpoint)
    model, config = model_from_checkpoint(state)
    assert config["model"] == "waveunet" and not model.training


def test_models_command_lists_both_sizes(capsys):
    assert dedistort_main(["models"]) == 0
    printed = capsys.readouterr().out
    for name in ("crafx", "waveunet", "openunmix", "demucs"):
        assert name in printed


def test_bad_checkpoint_and_arguments(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(data="x", model="transformer").resolved()


def test_time_budget_stops_after_the_epoch_with_a_checkpoint(corpus, tmp_path):
    logged = []
    # A budget of 0.0001 min is crossed by the first epoch: the run stops after it, says so, and resumes.
    config = _config(corpus, epochs=3, max_batches_per_epoch=1, max_minutes=0.0001)
    summary = train(config, tmp_path / "run", device="cpu", progress=False, log=logged.append)
    assert summary["last_epoch"] == 0 and summary["epochs_run"] == 1 and "time budget" in summary["stopped"]
    assert any("stopped after epoch 0: the time budget" in line for line in logged), logged
    assert logged[0].startswith("training waveunet") and "on cpu" in logged[0] and "precision 32" in logged[0]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 0 and state["config"]["max_minutes"] == 0.0001
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # Resuming with another budget is the same run; it continues at epoch 1.
    resumed = train(_config(corpus, epochs=2, max_batches_per_epoch=1, max_minutes=0.0),
                    tmp_path / "run", resume=True, device="cpu", progress=False, log=lambda _: None)
    assert resumed["last_epoch"] == 1 and resumed["stopped"] == "completed the epochs asked for"


def test_device_and_precision_are_checked(corpus, tmp_path, capsys):
    if not torch.cuda.is_available():
        assert dedistort_main(["train", "--data", str(corpus), "--out", str(tmp_path / "x"), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(ValueError, match="16-mixed needs CUDA"):
        train(_config(corpus, precision="16-mixed"), tmp_path / "y", device="cpu", progress=False, log=lambda _: None)
    with pytest.raises(ValueError, match="--precision must be one of"):
        _config(corpus, precision="fp8").resolved()
    # bf16 runs on the CPU too (autocast; slow without native bf16, so only a layer here), weights stay float32.
    from training.train import autocast

    layer = torch.nn.Conv1d(1, 2, 3)
    with autocast(torch.device("cpu"), "bf16"):
        output = layer(torch.randn(1, 1, 16))
    assert output.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32
