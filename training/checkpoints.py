"""Checkpoints of ``dedistort train``: written atomically, read without running code.

A ``.pt`` file is a pickle, and unpickling can call any function the file names: a crafted checkpoint
given to ``dedistort run --checkpoint``, ``evaluate --checkpoint`` or ``train --resume`` would run its
payload. So every checkpoint is read with ``torch.load(weights_only=True)``, torch's restricted
unpickler, which admits tensors and plain containers (dict, list, tuple, str, int, float, bool, None)
and refuses every other global before anything is built. What ``dedistort train`` stores is exactly
that: the config as a plain dict (:func:`dataclasses.asdict`), state dicts of the model, optimizer and
scheduler, the torch RNG state as a byte tensor, and numbers. :func:`save_checkpoint` checks that before
writing, so a checkpoint this module writes always loads.

This module is the one place that reads or writes checkpoints; train, evaluate, run and the methods
registry all go through it.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from manifests.dataset_info import atomic_path

#: Keys every checkpoint of ``dedistort train`` holds (a model's state dict alone is not a checkpoint).
REQUIRED_KEYS = ("config", "channels", "sample_rate", "epoch", "model")
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: object, where: str) -> None:
    """Raise ValueError unless ``value`` is tensors and plain data all the way down (what weights_only loads)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"checkpoint entry {where} has a key of type {type(key).__name__}")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN):
        raise ValueError(f"checkpoint entry {where} is a {type(value).__name__}, not plain data or a tensor "
                         "(it would not load with weights_only=True)")


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` with torch.save through a temporary file and a rename (a crash never leaves half a file).

    ``state`` must be tensors and plain data only (dicts with str or int keys, lists, tuples, str, int,
    float, bool, None), so that :func:`load_checkpoint` can read it with ``weights_only=True``;
    anything else is a ValueError before a byte is written.
    """
    _check_plain(state, "state")
    with atomic_path(Path(path)) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``, onto ``device``.

    Raises a one-line ValueError naming the file for a missing, truncated or foreign file, and for a file
    that names any global beyond tensors and plain data (a pickle payload): nothing of it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a truncated or foreign file, or one naming code (refused by weights_only)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if isinstance(error, pickle.UnpicklingError) and found:
            raise ValueError(f"{path}: refused: the checkpoint names {found.group(1)}; only tensors and plain data "
                             "are loaded (weights_only=True), so nothing in it was run") from None
        # torch's message spans lines and advises weights_only=False, which is exactly what we must not do.
        reason = re.search(r"WeightsUnpickler error: (.*?)(?:Check the documentation|$)", " ".join(str(error).split()))
        reason = reason.group(1).strip() if reason else " ".join(str(error).split())[:200]
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}: {reason})") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise ValueError(f"{path}: not a checkpoint of dedistort train (needs the entries {', '.join(REQUIRED_KEYS)})")
    return state


def model_from_checkpoint(state: dict, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained with; returns (model in eval mode, its config dict)."""
    from . import models

    config = state["config"]
    model = models.create(config["model"], config["size"], channels=state["channels"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config
