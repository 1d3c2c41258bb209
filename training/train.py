"""``dedistort train``: the paper's training procedure (Section V-B) on a datagen corpus.

Adam at each model's original learning rate, loss −SI-SDR (or −SDR), learning rate × 0.1 after 150
epochs without validation improvement, 1000 epochs by default (an epoch is one pass over the training
split), an atomic checkpoint after every epoch and ``--resume``, CSV and TensorBoard logs. The same
seed gives the same run on the CPU.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed, guards, models
from .checkpoints import load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: F401 (re-exported)
from .data import PairStream, apply_online, make_loader
from .losses import LOSSES, si_sdr
from .threaded_loader import ThreadedLoader

#: Adam learning rates of the original implementations.
LEARNING_RATES = {"crafx": 1e-4, "waveunet": 1e-4, "openunmix": 1e-3, "demucs": 3e-4}
#: How the training split is read: threads of this process, or DataLoader worker processes.
LOADERS = ("threads", "processes")
#: The paper crops 2 s (2.3 s for CRAFx, whose pooling and context want more).
CROP_SECONDS = {"crafx": 2.3}
#: Numeric precision of the forward and backward pass (torch.autocast); weights stay float32.
PRECISIONS = ("32", "bf16", "16-mixed")
#: Config entries a resumed run may change: they budget the run, they do not change what it computes.
RESUMABLE_CHANGES = ("epochs", "max_minutes")


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
    precision: str = "32"  # "32" (float32), "bf16" (bfloat16 autocast) or "16-mixed" (float16 autocast, CUDA)
    max_minutes: float = 0.0  # time budget of one invocation: stop after the epoch that crosses it (0: none)

    def resolved(self) -> TrainConfig:
        if self.model not in models.MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(models.MODELS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience_epochs < 1:
            raise ValueError("epochs, batch size and patience must be at least 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (self.max_minutes >= 0 and math.isfinite(self.max_minutes)):
            raise ValueError(f"--max-minutes must be a finite number >= 0 (0: no budget), got {self.max_minutes!r}")
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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def validate(model: torch.nn.Module, stream: PairStream, device: torch.device, batch_size: int,
             world: distributed.World | None = None, precision: str = "32", progress: bool = False) -> float:
    """Mean SI-SDR (dB) of the model's output over the whole validation split, each example counted once.

    Under torchrun each rank scores its own share of the split (:class:`PairStream` deals evaluation
    examples by rank) and the sums and counts are added over ranks, so every rank returns the mean over
    the whole split, whatever the world size. ``model`` must be the bare model, not its DDP wrapper
    (ranks may hold different numbers of validation batches).
    """
    model.eval()
    world = world or distributed.World(0, 1, 0, torch.device(device))
    total, count, bad = 0.0, 0, []
    batches = math.ceil(len(stream.assigned_rows(world.rank, world.size)) / batch_size)
    with tqdm(make_loader(stream, batch_size=batch_size), total=batches, desc="validation", unit="batch",
              leave=False, disable=not progress) as bar:
        for batch in bar:
            noisy, clean = apply_online(_to_device(batch, device), stream, device)
            with autocast(device, precision):
                estimate = model(noisy)
            scores = si_sdr(estimate.float(), clean)
            bad += guards.non_finite_keys(scores, batch["key"])
            total += float(scores.double().sum())
            count += scores.numel()
    total, count, bad_count = world.sum([total, count, len(bad)])
    guards.require_finite_scores(bad, bad_count, count)  # on every rank at once: a NaN score is never "best"
    return total / count if count else math.nan


def validation_batch_size(batch_size: int, crop_seconds: float, example_seconds: float) -> int:
    """Whole validation examples per batch holding no more audio than one training batch (at least 1).

    Validation runs whole examples (10 s in the demo corpus) where training runs crops (2 s): a batch
    of ``batch_size`` whole examples held 5× the activations of a training batch and set the run's
    peak memory (benchmarks/bench_train_memory.py). The score is a mean over examples either way.
    """
    return max(1, int(batch_size * crop_seconds // max(example_seconds, 1e-9)))


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` ("32": none; "bf16"; "16-mixed": float16) on ``device``."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device``; on CUDA through pinned memory with a non-blocking copy."""
    if device.type != "cuda":
        return batch
    return {name: value.pin_memory().to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for name, value in batch.items()}


def batches_per_epoch(stream: PairStream, batch_size: int, readers: int, world: distributed.World) -> int:
    """Training batches this rank takes per epoch: each of its ``readers`` slots batches its own rows, the
    last batch possibly short (see :class:`~training.threaded_loader.ThreadedLoader`)."""
    slots = world.size * max(readers, 1)
    first = world.rank * max(readers, 1)
    return sum(math.ceil(len(stream.assigned_rows(slot, slots)) / batch_size)
               for slot in range(first, first + max(readers, 1)))


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False,
          device: torch.device | str | None = None, progress: bool = True, log=print) -> dict:
    """Train ``config.model`` on ``config.data``, writing ``out_dir``/{last.pt, best.pt, log.csv, summary.json}.

    ``device``: "cpu", "cuda", "cuda:N" or a torch.device (None: CUDA when available). Under torchrun
    this is one rank of a data-parallel job (see :mod:`training.distributed`): rank 0 alone writes files
    and logs. Returns the summary (also in summary.json): epochs run, best validation SI-SDR and its epoch,
    and why the run stopped.
    """
    config = config.resolved()
    world = distributed.setup(device)
    try:
        return _train(config, Path(out_dir), resume, world, progress and world.main, log if world.main else _silent)
    finally:
        world.close()


def _silent(*_args, **_kwargs) -> None:
    """The log of ranks other than 0."""


def _train(config: TrainConfig, out_dir: Path, resume: bool, world: distributed.World, progress: bool, log) -> dict:
    device = world.device
    if config.precision == "16-mixed" and device.type != "cuda":
        raise ValueError("--precision 16-mixed needs CUDA (float16 autocast with a gradient scaler); "
                         "on the CPU use --precision bf16 or 32")
    rank_batch = distributed.per_rank_batch(config.batch_size, world)
    run_started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    seed_everything(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    train_stream = PairStream(config.data, "train", config.crop_seconds, training=True, seed=config.seed)
    valid_stream = PairStream(config.data, "valid", None, training=False, seed=config.seed)
    channels = int(train_stream.rows[0]["channels"])
    valid_batch = validation_batch_size(rank_batch, config.crop_seconds,
                                        max(float(row["duration_seconds"]) for row in valid_stream.rows))
    model = models.create(config.model, config.size, channels=channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1,
                                                           patience=config.patience_epochs)
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none.
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "16-mixed")
    loss_function = LOSSES[config.loss]
    start_epoch, best, best_epoch = 0, -math.inf, -1
    if resume and last.exists():
        state = load_checkpoint(last, device)
        # Only the budget (epochs, minutes) may change on resume; anything else is another run.
        ignored = dict.fromkeys(RESUMABLE_CHANGES)
        if {**state["config"], **ignored} != {**asdict(config), **ignored}:
            raise ValueError(f"{last} was trained with another config; start a new --out or drop --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
        log(f"resuming {last} at epoch {start_epoch}")
    elif last.exists():
        raise ValueError(f"{out_dir} already holds a run; use --resume to continue it or choose another --out")
    if start_epoch == 0 and hasattr(model, "prepare_from_batches"):
        # Data-dependent initialisation before the first epoch (Open-Unmix: per-bin input statistics over
        # the whole training split, as its train script computes them).
        stats_stream = PairStream(config.data, "train", None, training=False, seed=config.seed)
        inputs = (apply_online(batch, stats_stream, device)[0] for batch in make_loader(stats_stream, batch_size=1))
        model.prepare_from_batches(tqdm(inputs, desc="input statistics", total=len(stats_stream.rows),
                                        unit="example", leave=False, disable=not progress))
    log(f"training {config.model} ({config.size}, {models.parameter_count(model):,} parameters) on "
        f"{_describe(device)}, precision {config.precision}"
        + (f", {world.size} ranks (torchrun), {rank_batch} examples per rank and step" if world.distributed else ""))
    network = distributed.wrap(model, world)  # gradients averaged over ranks; the same module as `model`

    writer = _tensorboard(out_dir, log) if world.main else None
    log_path = out_dir / "log.csv"
    if start_epoch == 0 and world.main:
        with open(log_path, "w", newline="") as handle:
            csv.writer(handle).writerow(["epoch", "train_loss", "valid_si_sdr_db", "learning_rate", "seconds"])
    # One loader for the whole run: its workers persist, and each pass advances their epoch by one.
    train_stream.set_epoch(start_epoch)
    if config.loader == "threads" and config.num_workers > 0:
        loader = ThreadedLoader(train_stream, rank_batch, config.num_workers)
    else:
        loader = make_loader(train_stream, rank_batch, config.num_workers, persistent_workers=True)
    stopped, epoch = "completed the epochs asked for", start_epoch - 1
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            model.train()
            train_stream.set_epoch(epoch)  # for in-process loading; persistent workers count by themselves
            total = batches_per_epoch(train_stream, rank_batch, config.num_workers, world)
            if config.max_batches_per_epoch:
                total = min(total, config.max_batches_per_epoch)
            losses = []
            batches = iter(loader)
            bar = tqdm(batches, total=total, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
            try:
                for index, batch in enumerate(bar):
                    if config.max_batches_per_epoch and index >= config.max_batches_per_epoch:
                        break
                    noisy, clean = apply_online(_to_device(batch, device), train_stream, device)
                    with autocast(device, config.precision):
                        estimate = network(noisy)
                    loss = loss_function(estimate.float(), clean)  # the loss in float32 whatever the precision
                    guards.require_finite_loss(loss, batch["key"], epoch, index, world)  # before it reaches weights
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    losses.append(loss.item())
                    bar.set_postfix(loss=f"{losses[-1]:.2f}")
            finally:
                bar.close()
                if hasattr(batches, "close"):  # ends reader threads of an epoch cut short
                    batches.close()
            loss_sum, loss_count = world.sum([sum(losses), len(losses)])  # the mean over all ranks' steps
            train_loss = loss_sum / loss_count if loss_count else math.nan
            score = validate(model, valid_stream, device, valid_batch, world, config.precision, progress)
            scheduler.step(score)  # the same score on every rank, so the same learning rate
            if score > best:
                best, best_epoch = score, epoch
            if world.main:
                state = {"config": asdict(config), "channels": channels, "sample_rate": train_stream.sample_rate,
                         "epoch": epoch, "best": best, "best_epoch": best_epoch, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "torch_rng": torch.get_rng_state()}
                if scaler.is_enabled():
                    state["scaler"] = scaler.state_dict()
                save_checkpoint(last, state)
                if best_epoch == epoch:
                    save_checkpoint(out_dir / "best.pt", state)
                seconds = time.perf_counter() - started
                with open(log_path, "a", newline="") as handle:
                    csv.writer(handle).writerow([epoch, f"{train_loss:.6f}", f"{score:.6f}",
                                                 optimizer.param_groups[0]["lr"], f"{seconds:.2f}"])
                if writer:
                    writer.add_scalar("loss/train", train_loss, epoch)
                    writer.add_scalar("si_sdr/valid", score, epoch)
                    writer.add_scalar("learning_rate", optimizer.param_groups[0]["lr"], epoch)
                    writer.flush()
                log(f"epoch {epoch}: train loss {train_loss:.3f}, valid SI-SDR {score:.2f} dB (best {best:.2f} dB "
                    f"at epoch {best_epoch}), {seconds:.1f} s")
            world.barrier()  # no rank starts the next epoch (or reads last.pt) before rank 0 wrote this one
            # The budget is rank 0's clock, broadcast, so that all ranks stop after the same epoch.
            minutes = (time.perf_counter() - run_started) / 60
            if config.max_minutes and epoch + 1 < config.epochs and world.broadcast_flag(minutes >= config.max_minutes):
                stopped = (f"stopped after epoch {epoch}: the time budget of {config.max_minutes:g} min was used "
                           f"({minutes:.1f} min); continue with --resume")
                log(stopped)
                break
    finally:
        if isinstance(loader, ThreadedLoader):
            loader.close()  # its readers went on with the epoch after the last
        if writer:
            writer.close()
    # Data parallelism is only right if every rank ends with the same weights: check it, and record it.
    digests = world.gather(distributed.weights_digest(model))
    if len(set(digests)) > 1:
        raise RuntimeError(f"{out_dir}: the {world.size} ranks ended with different weights (digests "
                           f"{', '.join(d[:12] for d in digests)}); the data-parallel run is not consistent")
    summary = {"epochs": config.epochs, "epochs_run": epoch + 1 - start_epoch, "last_epoch": epoch,
               "best_valid_si_sdr_db": best, "best_epoch": best_epoch, "checkpoint": str(out_dir / "best.pt"),
               "last_checkpoint": str(last), "stopped": stopped, "device": str(device), "precision": config.precision,
               "world_size": world.size, "weights_sha256_per_rank": digests}
    if world.main:  # strict JSON (no NaN or Infinity), naming only files that exist
        summary = guards.write_summary(out_dir / "summary.json", summary)
    return summary


def _describe(device: torch.device) -> str:
    """The device and, for CUDA, the card's name."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


_TENSORBOARD_MISSING_SAID = False


def _tensorboard(out_dir: Path, log=print):
    global _TENSORBOARD_MISSING_SAID
    if os.environ.get("DEDISTORT_NO_TENSORBOARD"):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the train extra installs tensorboard; without it the CSV log still exists
        if not _TENSORBOARD_MISSING_SAID:  # once per process, not once per run or epoch
            _TENSORBOARD_MISSING_SAID = True
            log("tensorboard is not installed: no TensorBoard logs, log.csv has the same numbers "
                "(pip install 'dedistort[train]' for them)")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
