"""Distortion measures between a clean reference and a processed signal."""

from __future__ import annotations

import math

import numba
import numpy as np


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Contiguous, in their own float dtype: the kernels widen each sample to float64 as they read it.
    reference = np.ascontiguousarray(reference).reshape(-1)
    estimate = np.ascontiguousarray(estimate).reshape(-1)
    if not (np.issubdtype(reference.dtype, np.floating) and np.issubdtype(estimate.dtype, np.floating)):
        reference, estimate = reference.astype(np.float64), estimate.astype(np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate differ in size: {reference.size} vs {estimate.size} samples")
    if not (np.isfinite(reference).all() and np.isfinite(estimate).all()):
        raise ValueError("reference and estimate must be finite")
    if not np.any(reference):
        raise ValueError("reference is silent: SDR is undefined")
    return reference, estimate


@numba.njit(cache=True, nogil=True)
def _moments(s, h):  # pragma: no cover - compiled
    # ⟨s,s⟩, ⟨h,h⟩, ⟨s,h⟩, ‖s−h‖² in one sequential float64 pass: deterministic (unlike a threaded BLAS dot).
    ss = 0.0
    hh = 0.0
    sh = 0.0
    ee = 0.0
    for i in range(s.shape[0]):
        a = np.float64(s[i])
        b = np.float64(h[i])
        ss += a * a
        hh += b * b
        sh += a * b
        ee += (a - b) * (a - b)
    return ss, hh, sh, ee


def input_sdrs_db(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """(SDR, SI-SDR) in dB of ``estimate`` against ``reference`` from one pass over both signals.

    Same definitions as :func:`sdr_db` and :func:`si_sdr_db`, from sums gathered in one pass: ‖s − ŝ‖²
    directly, and for SI-SDR ‖αs − ŝ‖² = ⟨ŝ,ŝ⟩ − ⟨s,ŝ⟩²/⟨s,s⟩, whose subtraction loses ~1e-16 of the
    energy (it matters only above ~100 dB SI-SDR). For datagen, which measures every example it writes.
    """
    s = np.ascontiguousarray(reference).reshape(-1)
    h = np.ascontiguousarray(estimate).reshape(-1)
    if s.shape != h.shape:
        raise ValueError(f"reference and estimate differ in size: {s.size} vs {h.size} samples")
    ss, hh, sh, error = _moments(s, h)
    if not (math.isfinite(ss) and math.isfinite(hh)):
        raise ValueError("reference and estimate must be finite")
    if ss == 0.0:
        raise ValueError("reference is silent: SDR is undefined")
    scaled_error = max(hh - sh * sh / ss, 0.0)
    sdr = math.inf if error == 0.0 else 10.0 * math.log10(ss / error)
    si_sdr = math.inf if scaled_error == 0.0 else 10.0 * math.log10((sh * sh / ss) / scaled_error)
    return sdr, si_sdr


@numba.njit(cache=True, nogil=True)
def _residual_energy(s, h, alpha):  # pragma: no cover - compiled
    # ‖αs − h‖² summed directly (not from the moments), so that SI-SDRs of 100 dB and more stay exact.
    total = 0.0
    for i in range(s.shape[0]):
        d = alpha * np.float64(s[i]) - np.float64(h[i])
        total += d * d
    return total


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain SDR in dB, 10·log10(‖s‖² / ‖s − ŝ‖²), over all channels; +inf when identical.

    This is the input SDR the paper and the declipping survey use to set clipping levels.
    """
    s, s_hat = _pair(reference, estimate)
    ss, _, _, error = _moments(s, s_hat)
    return float("inf") if error == 0.0 else 10.0 * math.log10(ss / error)


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019; the paper's Eq. 9), over all channels.

    The reference is scaled by α = ⟨ŝ, s⟩ / ‖s‖² so that the residual is orthogonal to it.
    """
    s, s_hat = _pair(reference, estimate)
    ss, _, sh, _ = _moments(s, s_hat)
    alpha = sh / ss
    error = _residual_energy(s, s_hat, alpha)
    return float("inf") if error == 0.0 else 10.0 * math.log10(alpha * alpha * ss / error)
