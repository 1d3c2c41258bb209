"""Torch twins of the clipping effects, for batches rendered on the training device.

Each takes a batch ``x`` of shape ``(B, C, T)`` and one parameter per example (a tensor of shape
``(B,)``, or a Python number for all), runs on whatever device ``x`` is on, and agrees with the
numpy functions of :mod:`effects` within 1e-5 (overdrive within 1e-6). Used for online augmentation
(e.g. the paper's SignalTrain-HC, clipped at a random input SDR per example), through
:func:`render_online` and the effects registry (``Effect.torch_render``).
"""

from __future__ import annotations

import torch

from . import clip_sdr
from .clip_sdr import SDR_DB_RANGE
from .clipping import MAX_GAIN_DB, MIN_GAIN_DB
from .overdrive import _SOX_FULL_SCALE, COLOUR_RANGE, DC_BLOCK_POLE, DRY_GAIN, GAIN_DB_RANGE, WET_GAIN

#: Samples per block of the DC blocker's scan. Within a block the recursion is a cumulative sum scaled by
#: a^-j (a = 0.995): a^-8192 ≈ 7e17 stays far inside float64, and the sum's rounding error stays near
#: eps·1/(1 − a) because its terms grow geometrically. Across blocks the carry decays by a^8192 ≈ 1e-18.
_SCAN_BLOCK = 8192


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


def _one_pole(u: torch.Tensor, pole: float) -> torch.Tensor:
    """d_k = u_k + pole·d_{k−1} along the last axis, d_{−1} = 0, for float64 ``u`` of shape (..., T).

    A chunked parallel scan: each block of ``_SCAN_BLOCK`` samples is one cumulative sum of u_j·a^−j
    rescaled by a^k (no Python loop over samples, so it runs as a handful of kernels on a GPU); the blocks
    are then chained by their last values, one small step per block.
    """
    length = u.shape[-1]
    block = min(length, _SCAN_BLOCK)
    blocks = -(-length // block)
    padded = torch.nn.functional.pad(u, (0, blocks * block - length)).reshape(*u.shape[:-1], blocks, block)
    steps = torch.arange(block, dtype=torch.float64, device=u.device)
    rising = torch.pow(torch.tensor(pole, dtype=torch.float64, device=u.device), steps)  # a^k
    local = torch.cumsum(padded / rising, dim=-1) * rising  # the recursion within each block from zero state
    if blocks > 1:
        # The state entering block c is the last value of block c − 1, itself carried from block c − 2, ...
        decay = rising * pole  # a^(k+1): how the entering state reaches sample k of the block
        carry = local[..., 0, -1]
        carried = [local[..., 0, :]]
        for c in range(1, blocks):
            row = local[..., c, :] + carry.unsqueeze(-1) * decay
            carried.append(row)
            carry = row[..., -1]
        local = torch.stack(carried, dim=-2)
    return local.reshape(*u.shape[:-1], blocks * block)[..., :length]


def overdrive(x: torch.Tensor, gain_db: torch.Tensor | float, colour: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Batched :func:`effects.overdrive` (SoX's overdrive, Eq. 6): equal to the numpy effect within 1e-6.

    Per example b, channel and sample k, with q the input on SoX's 32-bit grid (trunc(x·2^31)/2^31,
    clamped), m = clamp(10^(γ_b/20)·q + colour_b/200, −1, 1) and s = m − m³/3::

        d_k = s_k − s_{k−1} + 0.995·d_{k−1}      (zero state at the start of each example)
        y_k = clamp(0.5·q_k + 0.75·d_k, −1, 1)

    Examples with γ_b = 0 dB are returned unchanged, as SoX (and the numpy effect) does. The quantisation
    runs in x's precision, exactly as the numpy kernel does; the shaper and the DC blocker run in float64
    (the blocker's running sum grows to 200 times the DC of s), so float32 batches are rounded once at the end.

    Shapes: x (B, C, T) float32 or float64 on any device; gain_db (B,) in dB within [0, 100] or a number;
    colour (B,) within [0, 100] (SoX's colour; the paper's Eq. 6 is 0) or a number. Returns (B, C, T) in
    x's dtype on x's device.
    """
    _check_batch(x)
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 audio, got {x.dtype}")
    gain_db = _per_example(gain_db, x, "gain_db", *GAIN_DB_RANGE)
    offset = (_per_example(colour, x, "colour", *COLOUR_RANGE) / 200.0).view(-1, 1, 1)
    gain = torch.pow(10.0, gain_db / 20.0).view(-1, 1, 1)
    if x.dtype == torch.float32:
        # float32 rounds 2^31 − 1 up to 2^31, as the numpy kernel's float32 path does.
        full, top = torch.tensor(_SOX_FULL_SCALE, dtype=x.dtype), torch.tensor(_SOX_FULL_SCALE - 1.0, dtype=x.dtype)
        full, top = full.item(), top.item()
    else:
        full, top = _SOX_FULL_SCALE, _SOX_FULL_SCALE - 1.0
    # Scaling by a power of two and truncating are exact in either precision.
    quantised = (torch.clamp(torch.trunc(x * full), -full, top) * (1.0 / full)).to(torch.float64)
    m = torch.clamp(quantised * gain + offset, -1.0, 1.0)
    shaped = m - m * m * m * (1.0 / 3.0)
    difference = torch.diff(shaped, dim=-1, prepend=torch.zeros_like(shaped[..., :1]))
    blocked = _one_pole(difference, DC_BLOCK_POLE)
    out = torch.clamp(DRY_GAIN * quantised + WET_GAIN * blocked, -1.0, 1.0).to(x.dtype)
    return torch.where((gain_db == 0.0).view(-1, 1, 1), x, out)


def render_online(effect: str, x: torch.Tensor, values: torch.Tensor, effect_args: dict | None = None,
                  dry_gain: float = 0.0) -> torch.Tensor:
    """Render a registered effect on a batch at training time: what ``datagen build --online`` recorded.

    ``values`` (B,) is the effect's primary parameter per example (gain_db or sdr_db, in dB); ``effect_args``
    the other parameters, fixed for the dataset (e.g. ``{"colour": 20}``); ``dry_gain`` adds the clean batch
    with that linear weight (Eq. 1), as the offline build does. Shapes: x (B, C, T) -> (B, C, T).
    """
    from .registry import get_effect, online_effect_names

    spec = get_effect(effect)
    if spec.torch_render is None:
        raise ValueError(f"effect {effect!r} has no torch implementation; online effects: "
                         + ", ".join(online_effect_names()))
    y = spec.torch_render(x, values.to(device=x.device), **spec.resolve_fixed(effect_args or {}))
    if dry_gain:
        y = y + x * dry_gain
    return y

