"""Memoryless wave-shapers of the paper's Section II: hard clipping (Eq. 3, 4) and soft clipping (Eq. 5)."""

from __future__ import annotations

import numpy as np

from ._validation import check_audio, check_number, db_to_amplitude

#: Gains below this are attenuations so strong that no clipping can happen on normalised audio.
MIN_GAIN_DB = -60.0
#: Upper bound shared with SoX's overdrive range.
MAX_GAIN_DB = 100.0


def hard_clip(x: np.ndarray, gain_db: float, threshold: float = 1.0) -> np.ndarray:
    """Amplify by ``gain_db`` and clip to ``[-threshold, threshold]`` (Eq. 3 with λ_hc of Eq. 4).

    Args:
        x: audio, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``.
        gain_db: gain γ in dB applied before the clipper, in [-60, 100].
        threshold: clipping threshold θ_c (linear amplitude, > 0). The paper fixes θ_c = 1.

    Returns:
        ``clip(10^(γ/20) · x, -θ_c, θ_c)``, same shape and dtype as ``x``.
    """
    x = check_audio(x)
    gain_db = check_number(gain_db, "gain_db", MIN_GAIN_DB, MAX_GAIN_DB)
    threshold = check_number(threshold, "threshold", 0.0, None, low_inclusive=False)
    gain = x.dtype.type(db_to_amplitude(gain_db))
    y = np.multiply(x, gain)
    limit = x.dtype.type(threshold)
    return np.clip(y, -limit, limit, out=y)


def soft_clip(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Amplify by ``gain_db`` and apply the cubic soft clipper λ_sc of Eq. 5.

    λ_sc(m) = m − m³/3 for |m| ≤ 1, and ±2/3 beyond, so the output saturates at ±2/3.

    Args:
        x: audio, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``.
        gain_db: gain γ in dB applied before the shaper, in [-60, 100].

    Returns:
        ``λ_sc(10^(γ/20) · x)``, same shape and dtype as ``x``, within [-2/3, 2/3].
    """
    x = check_audio(x)
    gain_db = check_number(gain_db, "gain_db", MIN_GAIN_DB, MAX_GAIN_DB)
    one = x.dtype.type(1.0)
    m = np.multiply(x, x.dtype.type(db_to_amplitude(gain_db)))
    # Clamping m to [-1, 1] first turns the two-branch definition into one polynomial:
    # λ_sc(±1) = 1 − 1/3 = 2/3, which is exactly the saturated branch.
    np.clip(m, -one, one, out=m)
    cube = m * m
    cube *= m
    cube *= x.dtype.type(1.0 / 3.0)
    m -= cube
    return m
