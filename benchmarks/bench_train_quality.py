"""Does training work? Per model, validation SI-SDR after a fixed CPU budget, against the input and the IRM.

    python benchmarks/bench_train_quality.py --steps 200 [--models crafx,waveunet,openunmix,demucs] [--data DIR]
    python benchmarks/bench_train_quality.py --minutes 2 ...

Builds the demo corpus (overdrive 20..50 dB in 5 gains, the paper's CEG-OD on synthetic guitar; or uses
``--data``), trains each model at paper size with ``dedistort train``'s procedure (batch 16, the model's
own learning rate, 2 threaded readers, seed 0) and prints the best mean validation SI-SDR (dB) beside two
references on the same validation split: the distorted input itself (the floor) and the ideal ratio mask
(an oracle: the clean magnitude over the input's with the input's phase, which the paper's Demucs beats
by far on overdrive).

The budget is either ``--steps``, a number of optimizer steps per model (the same computation on any
machine however busy: whole epochs of equal length, rounded up to a whole number of them, and printed),
or ``--minutes`` of wall time (``--max-minutes``: the run stops after the epoch that crosses it; it
depends on the machine and its load). Validation runs after every epoch, as in training; its time is in
the wall time. Threads: torch's default.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from training import distributed  # noqa: E402
from training.baselines.irm import ideal_ratio_mask  # noqa: E402
from training.data import PairStream, make_loader  # noqa: E402
from training.losses import si_sdr  # noqa: E402
from training.train import TrainConfig, batches_per_epoch, train  # noqa: E402


def references(data: Path) -> dict[str, float]:
    """Mean validation SI-SDR (dB) of the input itself and of the ideal ratio mask."""
    stream = PairStream(data, "valid", None, training=False)
    scores: dict[str, list[torch.Tensor]] = {"input": [], "irm": []}
    for batch in make_loader(stream, batch_size=4):
        noisy, clean = batch["input"], batch["target"]
        scores["input"].append(si_sdr(noisy, clean))
        scores["irm"].append(si_sdr(ideal_ratio_mask(noisy, clean, stream.sample_rate), clean))
    return {name: float(torch.cat(values).mean()) for name, values in scores.items()}


def epoch_batches(config: TrainConfig) -> int:
    """Optimizer steps in one whole epoch of ``config`` (8 batches of 16 on the demo corpus, 2 readers)."""
    config = config.resolved()
    stream = PairStream(config.data, "train", config.crop_seconds, training=True, seed=config.seed)
    return batches_per_epoch(stream, config.batch_size, config.num_workers,
                             distributed.World(0, 1, 0, torch.device("cpu")))


def step_budget(steps: int, full: int) -> tuple[int, int]:
    """(epochs, batches per epoch) giving at least ``steps`` optimizer steps in epochs of equal length.

    ``full`` is a whole epoch's batches: fewer steps run one cut epoch; more run more epochs, each cut to
    ``ceil(steps / epochs)`` batches, so that ``epochs × batches`` is ``steps`` or just above.
    """
    epochs = math.ceil(steps / full)
    return epochs, math.ceil(steps / epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=0,
                        help="budget per model in optimizer steps of batch 16 (reproducible on a busy machine)")
    budget.add_argument("--minutes", type=float, default=0.0,
                        help="budget per model in minutes of wall time (stops after the epoch that crosses it)")
    parser.add_argument("--steps-crafx", type=int, default=0,
                        help="another step budget for CRAFx alone (paper-size CRAFx is the slowest; 0: --steps)")
    parser.add_argument("--models", default="crafx,waveunet,openunmix,demucs",
                        help="comma-separated models, trained at paper size one after the other")
    parser.add_argument("--data", help="a datagen build (default: build the demo corpus in a temporary folder)")
    args = parser.parse_args()
    if args.steps < 0 or args.steps_crafx < 0 or not (math.isfinite(args.minutes) and args.minutes >= 0):
        parser.error("--steps, --steps-crafx and --minutes must be >= 0")
    if not args.steps and not args.minutes:
        args.steps = 200
    os.environ.setdefault("DEDISTORT_NO_TENSORBOARD", "1")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data) if args.data else Path(scratch) / "demo"
        if not args.data:
            build(BuildConfig(effect="overdrive", sweep="20:50:5"), data, progress=False, log=lambda _: None)
        reference = references(data)
        load = " ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"validation split of {data.name}: input {reference['input']:.2f} dB, ideal ratio mask "
              f"{reference['irm']:.2f} dB (mean SI-SDR); budget "
              + (f"{args.steps} steps" if args.steps else f"{args.minutes:g} min") + " per model"
              + (f" ({args.steps_crafx} for CRAFx)" if args.steps and args.steps_crafx else "")
              + f", {torch.get_num_threads()} torch threads, load average {load}")
        print(f"{'model':10s} {'steps':>5s} {'epochs':>6s} {'minutes':>7s} {'first epoch':>11s} "
              f"{'best valid':>10s} {'vs input':>8s} {'vs IRM':>7s}")
        for name in args.models.split(","):
            config = TrainConfig(data=str(data), model=name, size="paper", epochs=100000, max_minutes=args.minutes)
            per_epoch = epoch_batches(config)
            if args.steps:
                steps = args.steps_crafx if name == "crafx" and args.steps_crafx else args.steps
                config.epochs, per_epoch = step_budget(steps, per_epoch)
                config.max_batches_per_epoch = per_epoch
            started = time.perf_counter()
            summary = train(config, Path(scratch) / f"run-{name}", device="cpu", progress=False, log=lambda _: None)
            minutes = (time.perf_counter() - started) / 60
            with open(Path(scratch) / f"run-{name}" / "log.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            done = len(rows) * per_epoch
            best, first = summary["best_valid_si_sdr_db"], float(rows[0]["valid_si_sdr_db"])
            print(f"{name:10s} {done:5d} {len(rows):6d} {minutes:7.1f} {first:8.2f} dB {best:7.2f} dB "
                  f"{best - reference['input']:+8.2f} {best - reference['irm']:+7.2f}", flush=True)


if __name__ == "__main__":
    main()
