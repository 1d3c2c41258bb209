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


def _energy(x: np.ndarray) -> float:
    # numpy's pairwise sum, not np.dot: BLAS splits a dot product across however many threads it has,
    # which changes the last bits, and datagen records these values in files that must be byte-identical.
    return float(np.sum(x * x))


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain SDR in dB, 10·log10(‖s‖² / ‖s − ŝ‖²), over all channels; +inf when identical.

    This is the input SDR the paper and the declipping survey use to set clipping levels.
    """
    s, s_hat = _pair(reference, estimate)
    error = _energy(s - s_hat)
    return float("inf") if error == 0.0 else 10.0 * np.log10(_energy(s) / error)


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019; the paper's Eq. 9), over all channels.

    The reference is scaled by α = ⟨ŝ, s⟩ / ‖s‖² so that the residual is orthogonal to it.
    """
    s, s_hat = _pair(reference, estimate)
    alpha = float(np.sum(s_hat * s)) / _energy(s)
    target = alpha * s
    error = _energy(target - s_hat)
    return float("inf") if error == 0.0 else 10.0 * np.log10(_energy(target) / error)
