"""``dedistort train``: the paper's training procedure (Section V-B) on a datagen corpus.

Adam at each model's original learning rate, loss −SI-SDR (or −SDR), learning rate × 0.1 after 150
epochs without validation improvement, 1000 epochs by default (an epoch is one pass over the training
split), an atomic checkpoint after every epoch and ``--resume``, CSV and TensorBoard logs. The same
seed gives the same run on the CPU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from manifests.dataset_info import atomic_path

from . import models
from .data import PairStream, apply_online, make_loader
from .losses import LOSSES, si_sdr
from .threaded_loader import ThreadedLoader

#: Adam learning rates of the original implementations.
LEARNING_RATES = {"crafx": 1e-4, "waveunet": 1e-4, "openunmix": 1e-3, "demucs": 3e-4}
#: How the training split is read: threads of this process, or DataLoader worker processes.
LOADERS = ("threads", "processes")
#: The paper crops 2 s (2.3 s for CRAFx, whose pooling and context want more).
CROP_SECONDS = {"crafx": 2.3}


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in every checkpoint."""

    data: str
    model: str = "demucs"
    size: str = "paper"
    epochs: int = 1000
    batch_size: int = 16
    learning_rate: float | None = None  # None: the model's original rate
    loss: str = "si-sdr"
    patience_epochs: int = 150
    crop_seconds: float | None = None  # None: 2 s, 2.3 s for CRAFx
    seed: int = 0
    num_workers: int = 2  # parallel readers of the training split (0: read in the training loop itself)
    loader: str = "threads"  # "threads" (training.threaded_loader) or "processes" (torch DataLoader workers)
    max_batches_per_epoch: int = 0  # 0: the whole split (for quick trials)

    def resolved(self) -> TrainConfig:
        if self.model not in models.MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(models.MODELS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience_epochs < 1:
            raise ValueError("epochs, batch size and patience must be at least 1")
        if self.loader not in LOADERS or self.num_workers < 0:
            raise ValueError(f"loader must be one of {', '.join(LOADERS)} with workers >= 0, got {self.loader!r} "
                             f"with {self.num_workers}")
        changes = {}
        if self.learning_rate is None:
            changes["learning_rate"] = LEARNING_RATES[self.model]
        if self.crop_seconds is None:
            changes["crop_seconds"] = CROP_SECONDS.get(self.model, 2.0)
        return TrainConfig(**{**asdict(self), **changes})


def seed_everything(seed: int) -> None:
    # numpy's global RNG is never used: data randomness is addressed by (seed, epoch, key).
    random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save through a temporary file and a rename: a crash never leaves half a checkpoint."""
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from None


def model_from_checkpoint(state: dict, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained with; returns (model in eval mode, its config dict)."""
    config = state["config"]
    model = models.create(config["model"], config["size"], channels=state["channels"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def validate(model: torch.nn.Module, stream: PairStream, device: torch.device, batch_size: int) -> float:
    """Mean SI-SDR (dB) of the model's output over the whole validation split."""
    model.eval()
    scores = []
    for batch in make_loader(stream, batch_size=batch_size):
        noisy, clean = apply_online(batch, stream, device)
        scores.append(si_sdr(model(noisy), clean).cpu())
    return float(torch.cat(scores).mean())


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False, device: torch.device | None = None,
          progress: bool = True, log=print) -> dict:
    """Train ``config.model`` on ``config.data``, writing ``out_dir``/{last.pt, best.pt, log.csv}.

    Returns a summary: epochs run, best validation SI-SDR and its epoch.
    """
    config = config.resolved()
    device = device or default_device()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    seed_everything(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    train_stream = PairStream(config.data, "train", config.crop_seconds, training=True, seed=config.seed)
    valid_stream = PairStream(config.data, "valid", None, training=False, seed=config.seed)
    channels = int(train_stream.rows[0]["channels"])
    model = models.create(config.model, config.size, channels=channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1,
                                                           patience=config.patience_epochs)
    loss_function = LOSSES[config.loss]
    start_epoch, best, best_epoch = 0, -math.inf, -1
    if resume and last.exists():
        state = load_checkpoint(last, device)
        # Only the epoch budget may change on resume (to train longer); anything else is another run.
        if {**state["config"], "epochs": None} != {**asdict(config), "epochs": None}:
            raise ValueError(f"{last} was trained with another config; start a new --out or drop --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
        log(f"resuming {last} at epoch {start_epoch}")
    elif last.exists():
        raise ValueError(f"{out_dir} already holds a run; use --resume to continue it or choose another --out")

    writer = _tensorboard(out_dir)
    log_path = out_dir / "log.csv"
    if start_epoch == 0:
        with open(log_path, "w", newline="") as handle:
            csv.writer(handle).writerow(["epoch", "train_loss", "valid_si_sdr_db", "learning_rate", "seconds"])
    # One loader for the whole run: its workers persist, and each pass advances their epoch by one.
    train_stream.set_epoch(start_epoch)
    if config.loader == "threads" and config.num_workers > 0:
        loader = ThreadedLoader(train_stream, config.batch_size, config.num_workers)
    else:
        loader = make_loader(train_stream, config.batch_size, config.num_workers, persistent_workers=True)
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        model.train()
        train_stream.set_epoch(epoch)  # for in-process loading; persistent workers count by themselves
        losses = []
        batches = iter(loader)
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
        try:
            for index, batch in enumerate(bar):
                if config.max_batches_per_epoch and index >= config.max_batches_per_epoch:
                    break
                noisy, clean = apply_online(batch, train_stream, device)
                loss = loss_function(model(noisy), clean)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.2f}")
        finally:
            bar.close()
            if hasattr(batches, "close"):  # ends reader threads of an epoch cut short
                batches.close()
        score = validate(model, valid_stream, device, config.batch_size)
        scheduler.step(score)
        if score > best:
            best, best_epoch = score, epoch
        state = {"config": asdict(config), "channels": channels, "sample_rate": train_stream.sample_rate,
                 "epoch": epoch, "best": best, "best_epoch": best_epoch, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        save_checkpoint(last, state)
        if best_epoch == epoch:
            save_checkpoint(out_dir / "best.pt", state)
        train_loss = float(np.mean(losses)) if losses else math.nan
        seconds = time.perf_counter() - started
        with open(log_path, "a", newline="") as handle:
            csv.writer(handle).writerow([epoch, f"{train_loss:.6f}", f"{score:.6f}",
                                         optimizer.param_groups[0]["lr"], f"{seconds:.2f}"])
        if writer:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("si_sdr/valid", score, epoch)
            writer.add_scalar("learning_rate", optimizer.param_groups[0]["lr"], epoch)
            writer.flush()
        log(f"epoch {epoch}: train loss {train_loss:.3f}, valid SI-SDR {score:.2f} dB (best {best:.2f} dB at "
            f"epoch {best_epoch}), {seconds:.1f} s")
    if isinstance(loader, ThreadedLoader):
        loader.close()  # its readers went on with the epoch after the last
    if writer:
        writer.close()
    summary = {"epochs": config.epochs, "best_valid_si_sdr_db": best, "best_epoch": best_epoch,
               "checkpoint": str(out_dir / "best.pt")}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _tensorboard(out_dir: Path):
    if os.environ.get("DEDISTORT_NO_TENSORBOARD"):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the train extra installs tensorboard; without it the CSV log still exists
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
