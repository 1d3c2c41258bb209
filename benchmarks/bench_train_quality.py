"""Does training work? Per model, validation SI-SDR after a fixed CPU budget, against the input and the IRM.

    python benchmarks/bench_train_quality.py [--minutes 2] [--models crafx,waveunet,openunmix,demucs] [--data DIR]

Builds the demo corpus (overdrive 20..50 dB in 5 gains, the paper's CEG-OD on synthetic guitar; or uses
``--data``), trains each model at paper size with ``dedistort train``'s procedure for ``--minutes`` of
wall time (``--max-minutes``: the run stops after the epoch that crosses the budget), and prints the
best mean validation SI-SDR (dB) beside two references on the same validation split: the distorted
input itself (the floor) and the ideal ratio mask (an oracle: the clean magnitude over the input's with
the input's phase, which the paper's Demucs beats by far on overdrive). Threads: torch's default; run
it on an otherwise idle machine, and compare rows of one run only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from training.baselines.irm import ideal_ratio_mask  # noqa: E402
from training.data import PairStream, make_loader  # noqa: E402
from training.losses import si_sdr  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402


def references(data: Path) -> dict[str, float]:
    """Mean validation SI-SDR (dB) of the input itself and of the ideal ratio mask."""
    stream = PairStream(data, "valid", None, training=False)
    scores: dict[str, list[torch.Tensor]] = {"input": [], "irm": []}
    for batch in make_loader(stream, batch_size=4):
        noisy, clean = batch["input"], batch["target"]
        scores["input"].append(si_sdr(noisy, clean))
        scores["irm"].append(si_sdr(ideal_ratio_mask(noisy, clean, stream.sample_rate), clean))
    return {name: float(torch.cat(values).mean()) for name, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per model (default 2)")
    parser.add_argument("--models", default="crafx,waveunet,openunmix,demucs")
    parser.add_argument("--data", help="a datagen build (default: build the demo corpus in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data) if args.data else Path(scratch) / "demo"
        if not args.data:
            build(BuildConfig(effect="overdrive", sweep="20:50:5"), data, progress=False, log=lambda _: None)
        reference = references(data)
        print(f"validation split of {data.name}: input {reference['input']:.2f} dB, ideal ratio mask "
              f"{reference['irm']:.2f} dB (mean SI-SDR); budget {args.minutes:g} min per model, "
              f"{torch.get_num_threads()} torch threads")
        print(f"{'model':10s} {'epochs':>6s} {'minutes':>7s} {'valid SI-SDR':>13s} {'vs input':>9s} {'vs IRM':>7s}")
        for name in args.models.split(","):
            config = TrainConfig(data=str(data), model=name, size="paper", epochs=100000, max_minutes=args.minutes)
            started = time.perf_counter()
            summary = train(config, Path(scratch) / f"run-{name}", device="cpu", progress=False, log=lambda _: None)
            minutes = (time.perf_counter() - started) / 60
            log = (Path(scratch) / f"run-{name}" / "log.csv").read_text().splitlines()
            best = summary["best_valid_si_sdr_db"]
            print(f"{name:10s} {len(log) - 1:6d} {minutes:7.1f} {best:10.2f} dB {best - reference['input']:+8.2f} "
                  f"{best - reference['irm']:+7.2f}", flush=True)


if __name__ == "__main__":
    main()
