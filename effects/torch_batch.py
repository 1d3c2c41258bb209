"""Torch twins of the clipping effects, for batches rendered on the training device.

Each takes a batch ``x`` of shape ``(B, C, T)`` and one parameter per example (a tensor of shape
``(B,)``, or a Python number for all), runs on whatever device ``x`` is on, and agrees with the
numpy functions of :mod:`effects` within 1e-5. Used for online augmentation (e.g. the paper's
SignalTrain-HC, clipped at a random input SDR per example).
"""

from __future__ import annotations

import torch

from . import clip_sdr
from .clip_sdr import SDR_DB_RANGE
from .clipping import MAX_GAIN_DB, MIN_GAIN_DB


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x must have shape (batch, channels, samples), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point audio, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains non-finite samples (NaN or inf); effects need finite audio")


def _per_example(value: torch.Tensor | float, x: torch.Tensor, name: str, low: float, high: float,
                 low_inclusive: bool = True) -> torch.Tensor:
    """``value`` as a float64 tensor of shape (B,) on x's device, range-checked."""
    batch = x.shape[0]
    tensor = torch.as_tensor(value, dtype=torch.float64, device=x.device)
    if tensor.dim() == 0:
        tensor = tensor.expand(batch)
    if tensor.shape != (batch,):
        raise ValueError(f"{name} must be a number or have shape ({batch},), got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite")
    below = tensor < low if low_inclusive else tensor <= low
    if bool(below.any()) or bool((tensor > high).any()):
        opening = "[" if low_inclusive else "("
        raise ValueError(f"{name} must be in {opening}{low:g}, {high:g}], got {tensor.tolist()}")
    return tensor


def _gain(gain_db: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    gain_db = _per_example(gain_db, x, "gain_db", MIN_GAIN_DB, MAX_GAIN_DB)
    # The amplitude factor is formed in float64 and rounded once, as numpy's float32 path does.
    return torch.pow(10.0, gain_db / 20.0).to(x.dtype).view(-1, 1, 1)


def hard_clip(x: torch.Tensor, gain_db: torch.Tensor | float, threshold: float = 1.0) -> torch.Tensor:
    """Batched :func:`effects.hard_clip`: ``clamp(10^(γ_b/20) · x_b, -θ, θ)`` per example b.

    Shapes: x (B, C, T); gain_db (B,) in dB or a number. Returns (B, C, T), x's dtype and device.
    """
    _check_batch(x)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return torch.clamp(x * _gain(gain_db, x), -threshold, threshold)


def soft_clip(x: torch.Tensor, gain_db: torch.Tensor | float) -> torch.Tensor:
    """Batched :func:`effects.soft_clip`: λ_sc(10^(γ_b/20) · x_b), saturating at ±2/3.

    Shapes: x (B, C, T); gain_db (B,) in dB or a number. Returns (B, C, T), x's dtype and device.
    """
    _check_batch(x)
    m = torch.clamp(x * _gain(gain_db, x), -1.0, 1.0)
    return m - m * m * m * (1.0 / 3.0)


def clipping_threshold_for_sdr(x: torch.Tensor, sdr_db: torch.Tensor | float) -> torch.Tensor:
    """Per-example threshold θ_b giving input SDR ``sdr_db[b]``; shape (B,), float64.

    Same closed form as :func:`effects.clipping_threshold_for_sdr`. On an accelerator it runs over a
    full sort of each example's magnitudes (sorting is what GPUs do well); on the CPU, where torch's
    sort is slow, each example goes through the numpy implementation's histogram kernels instead.
    """
    _check_batch(x)
    sdr_db = _per_example(sdr_db, x, "sdr_db", *SDR_DB_RANGE, low_inclusive=False)
    if x.device.type == "cpu":
        examples = x.detach()
        if examples.dtype not in (torch.float32, torch.float64):
            examples = examples.float()
        thresholds = []
        for b, (example, target) in enumerate(zip(examples.numpy(), sdr_db.tolist(), strict=True)):
            try:
                thresholds.append(clip_sdr.clipping_threshold_for_sdr(example, target))
            except ValueError as error:
                raise ValueError(f"example {b}: {error}") from None
        return torch.tensor(thresholds, dtype=torch.float64)
    return _thresholds_by_sort(x, sdr_db)


def _thresholds_by_sort(x: torch.Tensor, sdr_db: torch.Tensor) -> torch.Tensor:
    """The closed form over each example's sorted magnitudes: x (B, C, T), sdr_db (B,) -> θ (B,) float64."""
    batch = x.shape[0]
    magnitudes = x.detach().reshape(batch, -1).abs().to(torch.float64)
    descending = torch.sort(magnitudes, dim=1, descending=True).values
    energy = descending.square().sum(dim=1)
    silent = energy == 0
    if bool(silent.any()):
        raise ValueError(f"example {int(torch.nonzero(silent)[0, 0])}: x is silent (all samples are zero): "
                         "no clipping threshold gives a finite SDR")
    target = energy * torch.pow(10.0, -sdr_db / 10.0)

    # With the k largest magnitudes clipped, the residual at the next magnitude b_{k+1} is
    # S2_k − 2·b_{k+1}·S1_k + k·b_{k+1}², rising with k; θ lies above the first b_{k+1} where it
    # reaches the target.
    count = torch.arange(1, descending.shape[1] + 1, dtype=torch.float64, device=x.device).expand(batch, -1)
    s1 = torch.cumsum(descending, dim=1)
    s2 = torch.cumsum(descending.square(), dim=1)
    following = torch.nn.functional.pad(descending[:, 1:], (0, 1))  # b_{k+1}; 0 after the last
    residual = s2 - 2.0 * following * s1 + count * following.square()
    k = torch.searchsorted(residual, target.unsqueeze(1)).clamp(max=descending.shape[1] - 1)
    lower, m, s1k, residual_at_lower = (t.gather(1, k).squeeze(1) for t in (following, count, s1, residual))
    excess = (residual_at_lower - target).clamp(min=0.0)
    slope = s1k - m * lower
    denominator = slope + torch.sqrt((slope.square() - m * excess).clamp(min=0.0))
    delta = torch.where(denominator > 0, excess / denominator.clamp(min=torch.finfo(torch.float64).tiny),
                        torch.zeros_like(excess))
    return torch.minimum(lower + delta, descending[:, 0])


def clip_to_sdr(x: torch.Tensor, sdr_db: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`effects.clip_to_sdr`: clip each example at the threshold of its target SDR.

    Shapes: x (B, C, T); sdr_db (B,) in dB within (0, 60], or a number. Returns ``(clipped, gain_db)``
    with clipped (B, C, T) in x's dtype and gain_db (B,) float64, γ_b = −20·log10(θ_b).
    """
    threshold = clipping_threshold_for_sdr(x, sdr_db)
    limit = threshold.to(x.dtype).view(-1, 1, 1)
    return torch.clamp(x, -limit, limit), -20.0 * torch.log10(threshold)
