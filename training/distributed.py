"""Data-parallel training under ``torchrun``: the process group, the device of each rank, reductions.

``torchrun --nproc_per_node N dedistort train ...`` starts N copies of the training command with the
environment variables ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. With
them, :func:`setup` joins one process group (NCCL when training on CUDA, gloo on the CPU) and gives each
rank its device (``cuda:LOCAL_RANK`` on a multi-GPU node). Without them (a plain ``dedistort train``) it
is a world of one and nothing is initialised, so every helper here is a no-op and single-process training
pays nothing.

What the training loop does with a :class:`World`:

- the model is wrapped in ``DistributedDataParallel`` (gradients averaged over ranks at each step);
- :class:`~training.data.PairStream` deals its shards to ``world_size × readers`` slots by itself (it
  asks ``torch.distributed`` for the rank), so each rank reads its own part of the training split;
- ``--batch-size`` stays the *global* batch: each rank takes ``batch_size / world_size`` examples;
- validation sums scores and counts over ranks (:meth:`World.sum`), so every example counts once;
- rank 0 alone writes checkpoints, logs, TensorBoard events and ``summary.json``; decisions that end a
  run (the time budget) are taken on rank 0 and broadcast, so all ranks stop at the same epoch.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: Environment variables torchrun (torch.distributed.run) sets for every rank.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (0 of 1 without torchrun), on ``device``."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        """Whether this rank writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64; the same list on every rank)."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.cpu()]

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (so that all ranks take the same decision)."""
        if not self.distributed:
            return bool(flag)
        tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self._collective_device())
        dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def gather(self, value: object) -> list:
        """``value`` (any picklable object) of every rank, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        gathered: list = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def close(self) -> None:
        """Leave the process group if :func:`setup` joined it."""
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()

    def _collective_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a torchrun job of more than one process."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (None: CUDA when available, else the CPU), checked against the machine.

    Raises ValueError (one line) when CUDA is asked for but absent, or the index names no device.
    """
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {spec!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {spec!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available on this machine (torch {torch.__version__}, "
                             f"built {'with' if torch.backends.cuda.is_built() else 'without'} CUDA); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {spec}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return device


def setup(device: torch.device | str | None = None) -> World:
    """Join the torchrun process group when launched by torchrun, and pick this rank's device.

    ``device`` is what the user asked for (see :func:`resolve_device`). Under torchrun with CUDA, each
    rank takes ``cuda:LOCAL_RANK`` (a ``cuda:N`` request on a multi-rank job is refused: one GPU cannot
    serve several ranks well, and NCCL refuses it). Without torchrun: rank 0 of 1, nothing initialised.
    """
    device = resolve_device(device)
    if not launched_by_torchrun():
        return World(0, 1, 0, device)
    rank, size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device.type == "cuda":
        if device.index is not None and size > 1:
            raise ValueError(f"--device {device}: under torchrun give --device cuda (each rank takes cuda:LOCAL_RANK)")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"torchrun rank {rank}: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                             "CUDA device(s); use --nproc_per_node <= the GPU count")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return World(rank, size, local_rank, device, initialised_here)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when the world has several ranks, else ``model`` itself."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (whose state dict keys carry no ``module.``)."""
    return getattr(model, "module", model)


def per_rank_batch(batch_size: int, world: World) -> int:
    """Examples per rank for a global batch of ``batch_size``; refuses a batch the ranks cannot share evenly."""
    if batch_size % world.size:
        raise ValueError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                         f"{world.size} ranks of this torchrun job")
    return batch_size // world.size


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state dict (names, dtypes, shapes and bytes): equal digests, identical weights."""
    digest = hashlib.sha256()
    for name, tensor in unwrap(model).state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        # reshape(-1) first: a 0-dim tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
