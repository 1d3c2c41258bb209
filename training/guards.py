"""What stops a training run rather than letting it go on with garbage, and the run's honest summary.

- a non-finite training loss (NaN or inf: NaN in the audio, a diverging model) stops the run before the
  optimizer step, naming the batch's examples, so no weights or checkpoints are touched by it;
- a non-finite validation score stops the run naming the examples that gave it;
- ``summary.json`` is strict JSON (``allow_nan=False``: no ``NaN`` or ``-Infinity``, which most JSON
  readers refuse) and names only files that exist.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from manifests.dataset_info import atomic_path


class NonFiniteError(ValueError):
    """A loss or score that is NaN or infinite; the message names the examples."""


def _named(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def require_finite_loss(loss: torch.Tensor, keys: Sequence[str], epoch: int, step: int, world=None) -> None:
    """Raise :class:`NonFiniteError` naming ``keys`` (the batch's examples) if ``loss`` is NaN or infinite.

    Call it before the backward pass: a non-finite loss then never reaches the weights. Costs one
    device-to-host copy of a scalar; under torchrun (``world``: a :class:`training.distributed.World`)
    also one all-reduce of a flag, so that every rank stops at the same step instead of the others
    waiting in the next gradient all-reduce for ever. Each rank names its own batch.
    """
    value = float(loss.detach())
    here = not math.isfinite(value)
    anywhere = world.sum([float(here)])[0] > 0 if world is not None and world.distributed else here
    if here:
        raise NonFiniteError(f"non-finite training loss ({value}) at epoch {epoch}, step {step}; the batch held "
                             f"{_named(list(keys))}: check their audio for NaN or inf, or lower the learning rate")
    if anywhere:
        raise NonFiniteError(f"non-finite training loss on another rank at epoch {epoch}, step {step} "
                             "(that rank names its batch)")


def non_finite_keys(scores: torch.Tensor, keys: Sequence[str]) -> list[str]:
    """The keys whose score in ``scores`` (one per key) is NaN or infinite."""
    return [key for key, value in zip(keys, scores.tolist(), strict=True) if not math.isfinite(value)]


def require_finite_scores(bad_keys: Sequence[str], bad_count: float, examples: float,
                          what: str = "validation SI-SDR") -> None:
    """Raise :class:`NonFiniteError` when ``bad_count`` of ``examples`` scores were not finite.

    ``bad_keys`` are this rank's (:func:`non_finite_keys`); counts are summed over ranks, so every rank
    raises together.
    """
    if bad_count:
        named = f": {_named(list(bad_keys))}" if bad_keys else " (on other ranks, which name them)"
        raise NonFiniteError(f"non-finite {what} for {int(bad_count)} of {int(examples)} examples{named}; "
                             "check their audio for NaN or inf")


def write_summary(path: str | Path, summary: dict) -> dict:
    """Write ``summary`` to ``path`` as strict JSON, atomically; returns what was written.

    Non-finite numbers become null, and entries naming files (``checkpoint``, ``last_checkpoint``, any
    string value ending in ``.pt``) are dropped when the file does not exist.
    """

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not _missing_file(v)}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    cleaned = clean(summary)
    text = json.dumps(cleaned, indent=2, allow_nan=False) + "\n"
    with atomic_path(Path(path)) as temporary:
        Path(temporary).write_text(text)
    return cleaned


def _missing_file(value: object) -> bool:
    return isinstance(value, str) and value.endswith(".pt") and not Path(value).is_file()
