"""torchrun data parallelism on the CPU: two gloo ranks train one job, equal to one process with the same batch.

The corpus holds exactly one global batch of training examples (16), so each step of any run sees the
whole training split: one process with batch 16 and a torchrun job of 2 ranks × 8 examples see the same
examples with the same crops (crops are seeded by seed, epoch and key, not by reader), and
DistributedDataParallel's averaged gradient equals the single process's up to float summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from manifests import read_manifests  # noqa: E402
from training import distributed  # noqa: E402
from training.checkpoints import load_checkpoint  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARGS = dict(model="waveunet", size="paper", epochs=2, batch_size=16, crop_seconds=0.25, learning_rate=1e-3,
            seed=3, num_workers=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, write_takes) -> Path:
    # 16 / 2 / 2 recordings of 1 s: 16 training examples, 2 validation examples
    clean = write_takes(tmp_path_factory.mktemp("clean"), 20, 1.0, seed=500)
    out = tmp_path_factory.mktemp("data") / "od"
    splits = tuple((f"take-{i}.wav", "train" if i < 16 else "valid" if i < 18 else "test") for i in range(20))
    build(BuildConfig(source=str(clean), effect="hardclip", sweep="12", segment_seconds=1.0, name="od",
                      split_assignment=splits), out, progress=False, log=lambda _: None)
    return out


def _torchrun(corpus: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "train_small.py"), "train", "--data", str(corpus), "--out", str(out), "-q",
               "--device", "cpu",
               "--model", ARGS["model"], "--size", ARGS["size"], "--batch-size", str(ARGS["batch_size"]),
               "--crop-seconds", str(ARGS["crop_seconds"]), "--learning-rate", str(ARGS["learning_rate"]),
               "--seed", str(ARGS["seed"]), "--workers", str(ARGS["num_workers"]), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEDISTORT_NO_TENSORBOARD": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


# Both the torchrun job (tests/train_small.py) and the single process build the small "paper" models.
@pytest.mark.usefixtures("small_paper_models")
def test_two_gloo_ranks_train_one_job_equal_to_one_process(corpus, tmp_path):
    counts = {split: len(rows) for split, rows in read_manifests(corpus).items()}
    assert counts == {"train": 16, "valid": 2, "test": 2}, counts  # one global batch; one validation example per rank
    # The torchrun job, one epoch, then --resume to two (resume must work under torchrun too).
    first = _torchrun(corpus, tmp_path / "ddp", "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _torchrun(corpus, tmp_path / "ddp", "--epochs", str(ARGS["epochs"]), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    printed = first.stdout + resumed.stdout
    # Rank 0 alone reports: one "training ..." line per invocation, one line per epoch, one final line.
    assert printed.count("training waveunet") == 2 and "2 ranks (torchrun), 8 examples per rank" in printed
    assert printed.count("epoch 0:") == 1 and printed.count("epoch 1:") == 1, printed
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["last_epoch"] == 1
    digests = summary["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold identical weights
    rows = (tmp_path / "ddp" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]  # rank 0 wrote the log, once per epoch

    # One process, the same global batch: the same weights and the same validation score.
    single = train(TrainConfig(data=str(corpus), **ARGS), tmp_path / "one", device="cpu", progress=False,
                   log=lambda _: None)
    assert single["world_size"] == 1
    ddp_state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    one_state = load_checkpoint(tmp_path / "one" / "last.pt")
    assert set(ddp_state["model"]) == set(one_state["model"])  # no "module." prefix from the DDP wrapper
    # Float tolerance: the two runs sum the same gradients in a different order, and Adam's first steps
    # (update ≈ lr·g/|g|) magnify that where a gradient is near 0; a different batch or a missing
    # gradient average moves nearly every weight by about the learning rate (1e-3) instead.
    differences = torch.cat([(ddp_state["model"][name] - weight).abs().flatten()
                             for name, weight in one_state["model"].items()])
    assert differences.max() < 2e-4 and differences.mean() < 1e-6, (differences.max(), differences.mean())
    # Validation reduced over ranks: each of the 2 validation examples counted once, on one rank each.
    ddp_scores = [float(r.split(",")[2]) for r in rows[1:]]
    one_scores = [float(r.split(",")[2]) for r in (tmp_path / "one" / "log.csv").read_text().splitlines()[1:]]
    assert ddp_scores == pytest.approx(one_scores, abs=1e-3)
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["weights_sha256_per_rank"] == [
        distributed.weights_digest(_model_of(one_state))]


def _model_of(state: dict) -> torch.nn.Module:
    from training.checkpoints import model_from_checkpoint

    return model_from_checkpoint(state)[0]


def test_global_batch_must_split_evenly_and_cuda_must_exist():
    world = distributed.World(rank=0, size=3, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="--batch-size 16 is the global batch.*3 ranks"):
        distributed.per_rank_batch(16, world)
    assert distributed.per_rank_batch(15, world) == 5
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            distributed.resolve_device("cuda:0")
    with pytest.raises(ValueError, match="cpu, cuda or cuda:N"):
        distributed.resolve_device("tpu")
    assert distributed.setup("cpu") == distributed.World(0, 1, 0, torch.device("cpu"))  # no torchrun: no group
