"""Peak memory of training on the CPU: one training step and one validation pass per model, each in a fresh process.

    python benchmarks/bench_train_memory.py [--models crafx,waveunet,openunmix,demucs] [--batch 16]
        [--phases train,validate-whole-batch,validate-bounded]

For each model (paper size, mono, 16 kHz) a child process measures its peak resident set size
(``resource.getrusage(...).ru_maxrss``) after building the model (the baseline: Python, torch, weights),
after one training step (forward, −SI-SDR, backward, Adam) on ``--batch`` crops of the training length
(2 s; 2.3 s for CRAFx), and after validating ``--batch`` whole 10-s examples (the demo corpus's segment
length) in the two ways ``training.train.validate`` can batch them:

- ``batch`` examples at once, what ``validate`` did before (the validation batch was the training batch);
- batches bounded by the audio of one training batch (``training.train.validation_batch_size``: 3 of
  the 10-s examples for 16 crops of 2 s), what it does now.

Peaks are in MB above the baseline. With ``--profile MODEL`` the child also prints the operators that
allocate most during the training step (torch.profiler with profile_memory), which says where it goes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLE_RATE = 16000
PHASES = ("train", "validate-whole-batch", "validate-bounded")
EXAMPLE_SECONDS = 10.0


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def overdriven_crops(batch: int, seconds: float):
    """``batch`` demo-guitar crops of ``seconds`` s through overdrive at 35 dB: (input, target) tensors
    ``(batch, 1, samples)`` at :data:`SAMPLE_RATE`."""
    import numpy as np
    import torch

    import effects
    from datagen.demo import demo_guitar

    clean = np.stack([demo_guitar(seconds, SAMPLE_RATE, seed=i, peak=0.5) for i in range(batch)])
    noisy = np.stack([effects.overdrive(c, gain_db=35.0) for c in clean])
    return torch.from_numpy(noisy), torch.from_numpy(clean)


def child(model_name: str, phase: str, batch: int, profile: bool) -> dict:
    import torch

    from training import models
    from training.losses import si_sdr
    from training.train import CROP_SECONDS, validation_batch_size

    torch.manual_seed(0)
    model = models.create(model_name, "paper", channels=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    seconds = CROP_SECONDS.get(model_name, 2.0) if phase == "train" else EXAMPLE_SECONDS
    x, y = overdriven_crops(batch, seconds)
    baseline = peak_mb()
    if phase == "train":
        def step() -> None:
            model.train()
            loss = -si_sdr(model(x), y).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if profile:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
                step()
            print(profiler.key_averages().table(sort_by="self_cpu_memory_usage", row_limit=12), file=sys.stderr)
        else:
            step()
    else:
        size = batch if phase == "validate-whole-batch" else validation_batch_size(batch, 2.0, EXAMPLE_SECONDS)
        model.eval()
        with torch.no_grad():
            for start in range(0, batch, size):
                si_sdr(model(x[start:start + size]), y[start:start + size])
    return {"baseline_mb": baseline, "peak_mb": peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="crafx,waveunet,openunmix,demucs")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--profile", help="print the top allocating operators of this model's training step")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {', '.join(PHASES)} (the others print as -)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.batch, args.profile == args.child[0])))
        return
    phases = tuple(phase for phase in PHASES if phase in args.phases.split(","))
    if not phases or set(args.phases.split(",")) - set(PHASES):
        parser.error(f"--phases must name some of {', '.join(PHASES)}, got {args.phases!r}")
    print(f"peak resident memory above the baseline (MB), batch {args.batch}, CPU, paper sizes")
    print(f"{'model':10s} {'baseline':>9s} {'train step':>11s} {'valid, batch':>13s} {'valid, bounded':>15s}  ratio")
    for name in args.models.split(","):
        row = {}
        for phase in phases:
            command = [sys.executable, __file__, "--child", name, phase, "--batch", str(args.batch)]
            if args.profile:
                command += ["--profile", args.profile]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            if result.stderr.strip() and args.profile == name and phase == "train":
                print(result.stderr)
            row[phase] = json.loads(result.stdout.strip().splitlines()[-1])
        base = row[phases[0]]["baseline_mb"]
        above = {phase: f"{row[phase]['peak_mb'] - row[phase]['baseline_mb']:.0f}" if phase in row else "-"
                 for phase in PHASES}
        ratio = (f"{float(above['validate-whole-batch']) / max(float(above['validate-bounded']), 1):.1f}x"
                 if "-" not in (above["validate-whole-batch"], above["validate-bounded"]) else "-")
        print(f"{name:10s} {base:9.0f} {above['train']:>11s} {above['validate-whole-batch']:>13s} "
              f"{above['validate-bounded']:>15s}  {ratio}")


if __name__ == "__main__":
    main()
