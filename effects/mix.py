"""Wet/dry superposition of the paper's Eq. 1."""

from __future__ import annotations

import numpy as np

from ._validation import check_audio, check_number

#: Linear amplitude weights beyond this are almost certainly dB values passed by mistake.
MAX_LINEAR_GAIN = 100.0


def mix(wet: np.ndarray, dry: np.ndarray, wet_gain: float, dry_gain: float) -> np.ndarray:
    """Superimpose an effect's output with the clean signal: y = g_wet · wet + g_dry · dry (Eq. 1).

    Args:
        wet: the processed signal, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``.
        dry: the clean signal, the same shape as ``wet``.
        wet_gain: g_wet, a linear amplitude weight in [0, 100] (not dB).
        dry_gain: g_dry, a linear amplitude weight in [0, 100] (not dB).

    Returns:
        The mixture, same shape and dtype as ``wet``.
    """
    wet = check_audio(wet, "wet")
    dry = check_audio(dry, "dry")
    if wet.shape != dry.shape:
        raise ValueError(f"wet and dry must have the same shape, got {wet.shape} and {dry.shape}")
    wet_gain = check_number(wet_gain, "wet_gain", 0.0, MAX_LINEAR_GAIN)
    dry_gain = check_number(dry_gain, "dry_gain", 0.0, MAX_LINEAR_GAIN)
    out = np.multiply(wet, wet.dtype.type(wet_gain))
    out += dry.astype(wet.dtype, copy=False) * wet.dtype.type(dry_gain)
    return out
