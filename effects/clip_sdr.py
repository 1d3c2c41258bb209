"""Hard clipping at a chosen input SDR, solved in closed form.

For a clipping threshold θ the residual energy of clipping is

    E(θ) = ‖x − clip_θ(x)‖² = Σ_{|x_i| > θ} (|x_i| − θ)²,

a convex, strictly decreasing piecewise quadratic of θ whose breakpoints are the sample magnitudes.
The target SDR fixes E* = ‖x‖² · 10^(−SDR/10); between two consecutive breakpoints E is one
quadratic, so θ follows from the quadratic formula once the right interval is known. No iterative
root finder is involved.

Sorting all magnitudes to find that interval costs O(n log n), several times the rest of the work on
long signals. Instead, one pass counts magnitudes in logarithmic bins (128 per octave, read off the
float's bits) while it measures the energy; bin counts bound E at every bin edge from above and below, which brackets θ
between two edges a few bins apart. A second pass collects the magnitudes inside the bracket (a
small fraction of the signal) and the exact sums of those above it, and only those are sorted. If
rounding ever made the bracket wrong, the exact sums reveal it and all magnitudes are used instead.
The passes are numba kernels: numpy would allocate several signal-sized temporaries per pass.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._validation import check_audio, check_number, non_finite_error

#: The targets for which the closed form is guaranteed exact to 0.01 dB in float32 output.
SDR_DB_RANGE = (0.0, 60.0)
#: Logarithmic bins read off the float's bit pattern: the exponent and the top 7 mantissa bits,
#: 128 bins per octave. For non-negative floats, bit-pattern order is value order, so bin k holds
#: exactly the magnitudes in [edge_k, edge_{k+1}). float32 has 256 octaves in all; float64 magnitudes
#: are binned over 2^-200..2^56, anything smaller in bin 0 and larger in the last bin.
_MANTISSA_BITS_KEPT = 7
_N_BINS = 256 << _MANTISSA_BITS_KEPT
_LAYOUT = {  # dtype -> (unsigned view, shift, first binned bit pattern >> shift, sign mask)
    np.dtype(np.float32): (np.uint32, 23 - _MANTISSA_BITS_KEPT, 0, np.uint32(0x7FFFFFFF)),
    np.dtype(np.float64): (np.uint64, 52 - _MANTISSA_BITS_KEPT, (1023 - 200) << _MANTISSA_BITS_KEPT,
                           np.uint64(0x7FFFFFFFFFFFFFFF)),
}


@numba.njit(cache=True, nogil=True)
def _energy_and_log_histogram(flat, bits, shift, base, mask):  # pragma: no cover - compiled
    counts = np.zeros(_N_BINS, dtype=np.int64)
    peak = 0.0
    energy = 0.0
    for i in range(flat.shape[0]):
        v = abs(np.float64(flat[i]))
        energy += v * v
        peak = max(peak, v)
        b = np.int64((bits[i] & mask) >> shift) - base
        counts[min(max(b, 0), _N_BINS - 1)] += 1
    return peak, energy, counts


def _bin_edges(dtype: np.dtype) -> np.ndarray:
    """Lower edge of every bin plus the last bin's upper edge, as float64: exact, since each edge is a float."""
    unsigned, shift, base, _ = _LAYOUT[dtype]
    patterns = (np.arange(_N_BINS + 1, dtype=np.uint64) + np.uint64(base)) << np.uint64(shift)
    with np.errstate(invalid="ignore"):  # the top float32 patterns are inf and NaN; never occupied
        edges = patterns.astype(unsigned).view(dtype).astype(np.float64)
    edges[0] = 0.0  # bin 0 also takes zeros and anything below the window
    edges[-1] = math.inf  # the last bin takes everything above it
    return edges


_EDGES = {dtype: _bin_edges(dtype) for dtype in _LAYOUT}


@numba.njit(cache=True, nogil=True)
def _split(flat, low, high, capacity):  # pragma: no cover - compiled
    # Magnitudes in (low, high] are returned for sorting; those above high are only summed.
    members = np.empty(capacity, dtype=np.float64)
    k = 0
    above = 0
    above_sum = 0.0
    above_square = 0.0
    for value in flat:
        v = abs(np.float64(value))
        if v > low:
            if v > high:
                above += 1
                above_sum += v
                above_square += v * v
            elif k < capacity:
                members[k] = v
                k += 1
            else:
                return members[:0], -1, 0.0, 0.0  # more than the histogram promised: caller falls back
    return members[:k], above, above_sum, above_square


@numba.njit(cache=True)
def _residual(descending, above, above_sum, above_square, t):  # pragma: no cover - compiled
    # E(t) for t <= every member: the above-set sums plus each member's (v − t)².
    total = above_square - 2.0 * t * above_sum + above * t * t
    for v in descending:
        if v > t:
            total += (v - t) * (v - t)
    return total


@numba.njit(cache=True)
def _solve(descending, above, above_sum, above_square, lower_edge, target):  # pragma: no cover - compiled
    # Walk the breakpoints downwards, growing the set of clipped samples, until the residual at the
    # next breakpoint reaches the target; between that breakpoint and the previous one E is the single
    # quadratic m·θ² − 2·S1·θ + S2, solved for E = target.
    m = np.float64(above)
    s1 = above_sum
    s2 = above_square
    lower = lower_edge
    for b in descending:
        if s2 - 2.0 * b * s1 + m * b * b >= target:
            lower = b
            break
        m += 1.0
        s1 += b
        s2 += b * b
    excess = max(s2 - 2.0 * lower * s1 + m * lower * lower - target, 0.0)
    slope = s1 - m * lower  # half the magnitude of dE/dθ at the lower breakpoint
    # θ = lower + δ with m·δ² − 2·slope·δ + excess = 0; the smaller root, written without cancellation.
    denominator = slope + math.sqrt(max(slope * slope - m * excess, 0.0))
    return lower + (excess / denominator if denominator > 0.0 else 0.0)


def _bracket(counts: np.ndarray, edges: np.ndarray, peak: float, target: float) -> tuple[float, float, int]:
    """Bin edges (low, high) with E(low) >= target >= E(high), and how many magnitudes lie between.

    For edge t_j and a bin k >= j holding c_k magnitudes in [t_k, t_{k+1}), each contributes between
    (t_k − t_j)² and (t_{k+1} − t_j)² to E(t_j): summing gives a lower and an upper bound on E(t_j).
    """
    occupied = np.flatnonzero(counts)
    c = counts[occupied].astype(np.float64)
    low_edges = edges[occupied]
    high_edges = np.minimum(edges[occupied + 1], peak)
    # Candidate thresholds: the lower edges of the occupied bins (E only bends at magnitudes).
    # Suffix sums of c·t², c·t, c over bins at or above each candidate give Σ c·(t_k − t_j)².
    def bound(edges_k: np.ndarray) -> np.ndarray:
        s2 = np.cumsum((c * edges_k * edges_k)[::-1])[::-1]
        s1 = np.cumsum((c * edges_k)[::-1])[::-1]
        s0 = np.cumsum(c[::-1])[::-1]
        return s2 - 2.0 * low_edges * s1 + s0 * low_edges * low_edges

    lower_bound, upper_bound = bound(low_edges), bound(high_edges)
    safe_low = np.flatnonzero(lower_bound >= target)
    low_index = int(safe_low[-1]) if safe_low.size else -1
    safe_high = np.flatnonzero(upper_bound[low_index + 1:] <= target)
    high_index = low_index + 1 + int(safe_high[0]) if safe_high.size else occupied.size
    low = float(low_edges[low_index]) if low_index >= 0 else 0.0
    high = float(low_edges[high_index]) if high_index < occupied.size else math.inf
    between = int(counts[occupied[max(low_index, 0):high_index]].sum())
    return low, high, between


def clipping_threshold_for_sdr(x: np.ndarray, sdr_db: float) -> float:
    """The threshold θ (linear amplitude) at which hard clipping gives input SDR ``sdr_db``.

    SDR = 10·log10(‖x‖² / ‖x − clip_θ(x)‖²), over all channels together.

    Args:
        x: audio, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``, not silent.
        sdr_db: target input SDR in dB, in (0, 60].
    """
    x = check_audio(x, require_finite=False)  # NaN or inf shows in the energy, measured below anyway
    sdr_db = check_number(sdr_db, "sdr_db", *SDR_DB_RANGE, low_inclusive=False)
    flat = x.reshape(-1)
    unsigned, shift, base, mask = _LAYOUT[flat.dtype]
    peak, energy, counts = _energy_and_log_histogram(flat, flat.view(unsigned), shift, base, mask)
    if not math.isfinite(energy):
        if not np.isfinite(x).all():
            raise non_finite_error(x)
        raise ValueError(f"x has samples up to {peak:.3g}: too large to square in float64")
    if energy == 0.0:
        raise ValueError("x is silent (all samples are zero): no clipping threshold gives a finite SDR")
    target = energy * 10.0 ** (-sdr_db / 10.0)

    low, high, between = _bracket(counts, _EDGES[flat.dtype], peak, target)
    members, above, above_sum, above_square = _split(flat, low, high, between)
    descending = np.sort(members)[::-1]
    bracket_holds = above >= 0 and (
        _residual(descending, above, above_sum, above_square, low) >= target
        and (high == math.inf or above_square - 2.0 * high * above_sum + above * high * high <= target))
    if not bracket_holds:
        # Rounding in the bounds misled the bracket: solve over every magnitude instead.
        low = 0.0
        members, above, above_sum, above_square = _split(flat, 0.0, math.inf, flat.size)
        descending = np.sort(members)[::-1]
    threshold = _solve(descending, above, above_sum, above_square, low, target)
    # Targets within ~1e-300 dB of 0 put θ below the smallest float; keep it positive so the
    # equivalent gain stays finite.
    return float(min(max(threshold, np.finfo(np.float64).tiny), peak))


def clip_to_sdr(x: np.ndarray, sdr_db: float) -> tuple[np.ndarray, float]:
    """Hard-clip ``x`` at the threshold that makes its input SDR equal ``sdr_db`` (within 0.01 dB).

    Args:
        x: audio, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``, not silent.
        sdr_db: target input SDR in dB, in (0, 60].

    Returns:
        ``(clipped, gain_db)``: ``clipped = clip(x, -θ, θ)`` with the same shape and dtype as ``x``,
        and the equivalent gain γ = −20·log10(θ) in dB, so that ``hard_clip(x, γ)`` equals
        ``clipped / θ``.
    """
    threshold = clipping_threshold_for_sdr(x, sdr_db)
    limit = x.dtype.type(threshold)
    return np.clip(x, -limit, limit), -20.0 * math.log10(threshold)
