"""Distortion measures between a clean reference and a processed signal."""

from __future__ import annotations

import numpy as np


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    estimate = np.asarray(estimate, dtype=np.float64).reshape(-1)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate differ in size: {reference.size} vs {estimate.size} samples")
    if not (np.isfinite(reference).all() and np.isfinite(estimate).all()):
        raise ValueError("reference and estimate must be finite")
    if not np.any(reference):
        raise ValueError("reference is silent: SDR is undefined")
    return reference, estimate


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain SDR in dB, 10·log10(‖s‖² / ‖s − ŝ‖²), over all channels; +inf when identical.

    This is the input SDR the paper and the declipping survey use to set clipping levels.
    """
    s, s_hat = _pair(reference, estimate)
    error = float(np.dot(s - s_hat, s - s_hat))
    return float("inf") if error == 0.0 else 10.0 * np.log10(float(np.dot(s, s)) / error)


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019; the paper's Eq. 9), over all channels.

    The reference is scaled by α = ⟨ŝ, s⟩ / ‖s‖² so that the residual is orthogonal to it.
    """
    s, s_hat = _pair(reference, estimate)
    alpha = float(np.dot(s_hat, s)) / float(np.dot(s, s))
    target = alpha * s
    error = float(np.dot(target - s_hat, target - s_hat))
    return float("inf") if error == 0.0 else 10.0 * np.log10(float(np.dot(target, target)) / error)
