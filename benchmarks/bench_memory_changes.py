"""Training-step memory and time of CRAFx and Wave-U-Net now against their previous computation, same weights.

    python benchmarks/bench_memory_changes.py [--models crafx,waveunet] [--batch 4] [--steps 2]

"previous" patches the models back to how they computed before (same parameters, same outputs):

- CRAFx: the front-end on every frame plus 2k all-zero context frames per signal, softplus before the max
  pooling (which then keeps its full-rate input), unpooling by ``repeat_interleave``, the full-rate SAAF in
  one piece with all its intermediates kept for the backward pass;
- Wave-U-Net: the fixed sinc resampling as plain ``F.conv1d`` / ``F.conv_transpose1d`` (which keep their
  padded input for a filter gradient nobody needs).

Each cell is a fresh process (paper size, mono, the training crop length, Adam): the peak resident memory
above the baseline after the model is built (``ru_maxrss``) over one warm-up step, then the mean time of
``--steps`` steps. The table gives previous / now as a ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train_memory import overdriven_crops, peak_mb  # noqa: E402 (this folder: the same crops and reading)


def _previous_crafx() -> None:
    import torch
    import torch.nn.functional as F

    from training.models import crafx

    def context_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, count, length = frames.shape
        k = self.context_frames
        y = F.pad(frames, (0, 0, k, k)).reshape(-1, 1, length)
        bands = self.conv(crafx._pad_same(y, self.conv.kernel_size[0]))
        envelopes = F.softplus(self.filterbank(crafx._pad_same(bands.abs(), self.filterbank.kernel_size[0])))
        pooled = F.max_pool1d(envelopes, self.pool_size)
        steps = pooled.shape[-1]
        z = pooled.reshape(batch, count + 2 * k, -1, steps).unfold(1, 2 * k + 1, 1)
        centre = bands.reshape(batch, count + 2 * k, -1, length)[:, k:k + count].reshape(batch * count, -1, length)
        return centre, z.permute(0, 1, 3, 4, 2).reshape(batch * count, steps, -1)

    crafx.CRAFx.context_features = context_features
    crafx._unpool_times = lambda bands, z, pool: bands.transpose(1, 2) * z.repeat_interleave(pool, dim=1)
    crafx._recomputed = lambda module, x: module(x)


def _previous_waveunet() -> None:
    import torch.nn.functional as F

    from training.models import waveunet

    waveunet._FixedFilter.apply = staticmethod(lambda x, weight, stride, groups, transposed: (
        F.conv_transpose1d if transposed else F.conv1d)(x, weight, stride=stride, groups=groups))


def child(model_name: str, version: str, batch: int, steps: int) -> dict:
    import torch

    from training import models
    from training.losses import si_sdr
    from training.train import CROP_SECONDS

    if version == "previous":
        {"crafx": _previous_crafx, "waveunet": _previous_waveunet}[model_name]()
    torch.manual_seed(0)
    model = models.create(model_name, "paper", channels=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    seconds = CROP_SECONDS.get(model_name, 2.0)
    x, y = overdriven_crops(batch, seconds)  # (batch, 1, samples)
    baseline = peak_mb()

    def step() -> float:
        loss = -si_sdr(model(x), y).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    first_loss = step()
    peak = peak_mb()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"baseline_mb": baseline, "above_mb": peak - baseline, "step_s": (time.perf_counter() - start) / steps,
            "first_loss": first_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="crafx,waveunet")
    parser.add_argument("--batch", type=int, default=4, help="training crops per step")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the warm-up step")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VERSION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.batch, args.steps)))
        return
    print(f"training step, batch {args.batch}, CPU, paper size: peak resident memory above the baseline, time")
    print(f"{'model':10s} {'previous MB':>12s} {'now MB':>8s} {'ratio':>6s} {'previous s':>11s} {'now s':>7s} "
          f"{'speed-up':>9s}  first loss (previous, now)")
    for name in args.models.split(","):
        row = {}
        for version in ("now", "previous"):
            command = [sys.executable, __file__, "--child", name, version, "--batch", str(args.batch),
                       "--steps", str(args.steps)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            row[version] = json.loads(result.stdout.strip().splitlines()[-1])
        previous, now = row["previous"], row["now"]
        print(f"{name:10s} {previous['above_mb']:12.0f} {now['above_mb']:8.0f} "
              f"{previous['above_mb'] / now['above_mb']:5.2f}x {previous['step_s']:11.2f} {now['step_s']:7.2f} "
              f"{previous['step_s'] / now['step_s']:8.2f}x  {previous['first_loss']:.6f}, {now['first_loss']:.6f}")


if __name__ == "__main__":
    main()
