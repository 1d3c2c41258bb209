"""Training-side speed: the shard loader against a per-file Dataset, and each model's step and inference time.

    python benchmarks/bench_training.py [--budget-minutes 10] [--parts loader,models,demucs] [--codec flac24]

1. Loader: 2-second examples per second from a datagen corpus (the demo, overdrive at 20 gains) through
   ``training.data.PairStream`` with 1 and 2 readers (threads, as training uses it, and DataLoader worker
   processes), against the straightforward
   alternative in the same run: the same pairs written as WAV files and a map-style torch Dataset that
   reads both files of an example with soundfile and crops 2 s at random. Both loaders keep their
   workers across epochs (persistent workers), so that steady-state reading is measured, not start-up;
   three rounds alternate the loaders, and the median of each is reported.
2. Models: per model and size, the time of one training step (forward + backward + Adam on 2-s
   crops: batch 16 for the paper sizes, 4 for the original ones, whose biggest member is a 243 M
   parameter Demucs) and inference x real time on 10-s inputs, on the CPU (and the GPU when present).
3. Demucs (paper size) trained on the demo corpus for a fixed CPU budget; its validation SI-SDR.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from manifests import read_manifests, read_shard  # noqa: E402
from training import models  # noqa: E402
from training.data import PairStream, make_loader  # noqa: E402
from training.losses import si_sdr  # noqa: E402
from training.threaded_loader import ThreadedLoader  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402

CROP = 32000  # 2 s at 16 kHz
_ROUNDS = 3  # loader timings per loader and worker count (the median is reported)


class WavPairs(torch.utils.data.Dataset):
    """The straightforward Dataset: one input and one target WAV per example, cropped at random."""

    def __init__(self, folder: Path) -> None:
        self.inputs = sorted(folder.glob("*.input.wav"))
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        noisy, _ = sf.read(self.inputs[index], dtype="float32", always_2d=True)
        clean, _ = sf.read(str(self.inputs[index]).replace(".input.", ".target."), dtype="float32", always_2d=True)
        start = int(self.rng.integers(noisy.shape[0] - CROP + 1))
        return {"input": torch.from_numpy(noisy[start:start + CROP].T.copy()),
                "target": torch.from_numpy(clean[start:start + CROP].T.copy())}


def examples_per_second(loader, epochs: int = 12) -> float:
    """Examples per second over ``epochs`` passes, after one untimed pass that starts the workers."""
    gc.collect()  # the previous loaders' workers (processes, threads) shut down before this one is timed
    for _ in loader:
        pass
    count, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            count += batch["input"].shape[0]
    return count / (time.perf_counter() - started)


def bench_loader(corpus: Path, wav_folder: Path) -> list[str]:
    for shard in sorted(corpus.glob("train/*.tar")):
        for member in read_shard(shard):
            for extension, data in member.files.items():
                if extension != "json":
                    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
                    sf.write(wav_folder / f"{member.key}.{extension.split('.')[0]}.wav", audio, rate, subtype="FLOAT")
    os.sync()  # the WAV files just written: their writeback would otherwise run during the timings
    loaders = {
        "threads": lambda workers: ThreadedLoader(PairStream(corpus, "train", 2.0), 16, workers),
        "processes": lambda workers: make_loader(PairStream(corpus, "train", 2.0), 16, workers,
                                                 persistent_workers=True),
        "theirs": lambda workers: torch.utils.data.DataLoader(WavPairs(wav_folder), batch_size=16, shuffle=True,
                                                              num_workers=workers, drop_last=True,
                                                              persistent_workers=True),
    }
    lines = []
    for workers in (1, 2):
        # Rounds that alternate the loaders, and the median per loader: a background hiccup then moves one
        # round, not the ratio.
        rates = {name: [] for name in loaders}
        for _ in range(_ROUNDS):
            for name, make in loaders.items():
                rates[name].append(examples_per_second(make(workers)))
        threads, processes, theirs = (float(np.median(rates[name])) for name in loaders)
        lines.append(f"loader, {workers} worker{'s' if workers > 1 else ' '}: PairStream {threads:6.0f} ex/s in "
                     f"threads ({processes:6.0f} in DataLoader processes), per-file WAV Dataset {theirs:6.0f} ex/s: "
                     f"{threads / theirs:.1f}x ({processes / theirs:.1f}x); threads per round "
                     f"{', '.join(f'{r:.0f}' for r in rates['threads'])}, theirs "
                     f"{', '.join(f'{r:.0f}' for r in rates['theirs'])}")
    return lines


def bench_models(device: torch.device) -> list[str]:
    lines = []
    for name in models.MODELS:
        for size in models.SIZES:
            model = models.create(name, size).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            batch = torch.randn(16 if size == "paper" else 4, 1, CROP, device=device) * 0.1
            timings = []
            for step in range(3):
                started = time.perf_counter()
                loss = -si_sdr(model(batch), batch).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if step:
                    timings.append(time.perf_counter() - started)
            model.eval()
            audio = torch.randn(1, 1, 160000, device=device) * 0.1
            with torch.no_grad():
                model(audio)
                started = time.perf_counter()
                model(audio)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                inference = time.perf_counter() - started
            lines.append(f"{name:9s} {size:8s} {models.parameter_count(model):>11,d} params  train step "
                         f"(batch {batch.shape[0]}) "
                         f"{np.median(timings):6.2f} s  inference {10.0 / inference:8.1f}x real time ({device.type})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="CPU budget of the Demucs run")
    parser.add_argument("--parts", default="loader,models,demucs",
                        help="comma-separated parts to run: loader, models, demucs (default all)")
    parser.add_argument("--codec", default="flac24", help="codec of the benchmark corpus (default flac24)")
    parser.add_argument("--devices", default="cpu,cuda", help="devices of the model timings, those present "
                                                                "(default cpu,cuda)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)

        def demo_corpus(name: str, sweep: str) -> Path:
            build(BuildConfig(effect="overdrive", sweep=sweep, name=name, shard_max_examples=20, codec=args.codec),
                  folder / name, workers=2, progress=False, log=lambda _: None)
            return folder / name

        lines = [f"corpus: {args.codec}"]
        if "loader" in parts:
            # 20 gains (480 training examples), not 5: each reader drops its last partial batch, which in a
            # 120-example epoch would be a fifth of what two readers read (a real corpus has thousands).
            (folder / "wav").mkdir()
            lines += bench_loader(demo_corpus("demo-od-20", "20:50:20"), folder / "wav")
        corpus = demo_corpus("demo-od", "20:50:5") if parts & {"models", "demucs"} else None
        if "models" in parts:
            for device in args.devices.split(","):
                if device == "cpu" or (device == "cuda" and torch.cuda.is_available()):
                    lines += bench_models(torch.device(device))
        if "demucs" in parts:
            examples = len(read_manifests(corpus)["train"])
            per_epoch = examples // 16
            started = time.perf_counter()
            config = TrainConfig(data=str(corpus), model="demucs", size="paper", epochs=10_000, batch_size=16)
            # Epochs until the budget is spent: train one epoch at a time with --resume semantics.
            epochs = 0
            summary = None
            while time.perf_counter() - started < args.budget_minutes * 60:
                epochs += 1
                config.epochs = epochs
                summary = train(config, folder / "demucs", resume=epochs > 1, progress=False, log=lambda _: None)
            lines.append(f"demucs paper on the demo corpus (overdrive 20..50 dB): {epochs} epochs of {per_epoch} "
                         f"batches in {(time.perf_counter() - started) / 60:.1f} min CPU: best validation SI-SDR "
                         f"{summary['best_valid_si_sdr_db']:.2f} dB")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
