"""A-SPADE, the analysis sparse audio declipper (Kitić, Bertin & Gribonval 2015), the paper's declipping baseline.

Imort et al. (2022), Sec. IV-E, compare their models with A-SPADE as implemented in the declipping survey
toolbox of Záviška, Rajmic, Ozerov & Rencker (IEEE JSTSP 2021, ``rajmic/declipping2020_codes``:
``spade_segmentation.m``, ``aspade.m``, ``hard_thresholding.m``, ``proj_time.m``). This module follows that
implementation step by step (our own code):

Framing. Every frame of ``window_samples`` is multiplied by the analysis window g, a periodic Hann window
of peak 1 (LTFAT ``firwin('hann')``, peak-normalised). Restored frames are overlap-added with the
canonical dual window g / Σₙ g(t − n·hop)² (LTFAT ``gabdual(g, a, M)·M``), so that a frame left as its
windowed input reconstructs the input exactly. The signal is zero-padded so that every sample is covered
by the full set of frames; with the defaults the frame grid is the toolbox's (frames centred on n·hop).

Per frame. The operator A is the unitary DFT of the frame zero-padded to ``redundancy · window_samples``
points, a Parseval tight frame (A*A = I). ADMM alternates between

- hard thresholding H_k: keep the k largest coefficients of the half spectrum (DC to Nyquist), each
  standing for itself and its complex conjugate so the signal stays real; as in the toolbox, the DC
  coefficient is ranked by half its magnitude and the Nyquist coefficient by its own;
- projection onto the clipping-consistent set Γ of the *windowed* frame: reliable samples equal the
  windowed observation, samples clipped from above are at least the windowed observation (g·θ), samples
  clipped from below at most it (−g·θ).

k starts at ``sparsity_step`` (s) and grows by s every ``sparsity_every`` (r) iterations. A frame stops
when ‖A x − H_k(A x + u)‖₂ ≤ ``epsilon`` or after ``max_iterations``; its estimate is the iterate with the
smallest residual, which is always inside Γ. The defaults (window 1024 and hop 256 at 16 kHz, s = r = 1,
ε = 0.1) are Kitić et al.'s; the survey ran 44.1 kHz excerpts with window 8192, hop 2048 and r = 2
(``main_spade_SQAM.m``). With those settings, on the survey's excerpts, this module is meant to reproduce its
published per-excerpt A-SPADE ΔSDR to 0.01 dB: ``benchmarks/bench_aspade.py --survey-dir CHECKOUT`` checks
it against a checkout of the toolbox (opt-in: its excerpts are not part of this repository).

Guarantees (checked by ``tests/test_aspade.py``). Each frame's estimate lies in Γ and the dual window is
non-negative with Σ g·g_dual = 1, so after overlap-add the output equals the input on reliable samples (up
to float64 rounding: bit-exact once cast back to float32) and is ≥ θ on samples clipped from above, ≤ −θ
on samples clipped from below. Frames without clipped samples are not iterated at all.

Masks and threshold. The observation is the clipped signal alone: θ is ``threshold`` or, by default, the
channel's peak magnitude max|y|; a sample is clipped when |y| ≥ θ·(1 − 1e-6). A channel whose peak
magnitude is reached by a single sample is not clipped (a lone peak is the maximum of an unclipped
signal, a clipped one has a plateau), and is returned unchanged, as is a channel without samples at θ.

Two implementations of the same algorithm:

- :func:`aspade`: the clipped frames of a channel iterate together, in batches of :data:`BATCH_FRAMES`,
  as one (frames, bins) array: real FFTs of the whole batch (``scipy.fft.rfft``/``irfft``, ``workers=1``)
  with conjugate pairs counted once, a compiled (numba) pass per iteration doing the hard thresholding, the
  residual and the next synthesis input for every row, and frames dropped from the batch as they
  converge. k depends only on a frame's iteration count, which all frames of a batch share. The k-th
  largest coefficient of a row is searched for from the row's previous threshold, since it moves only a
  few places per iteration (a quickselect when it moved far).
- :func:`aspade_framewise`: one frame at a time with full complex ``numpy.fft`` DFTs and a sort per
  iteration, transcribing the toolbox's ``aspade.m``; the reference the tests compare with and the
  benchmark's alternative (``benchmarks/bench_aspade.py``).

The two agree to float64 rounding unless two coefficient magnitudes tie within rounding at the k-th
place, where the two selections may keep different ones.

``epsilon`` is absolute, in the units of the coefficients (those of the signal, A being unitary), as in
the toolbox, whose test signals peak near 1: a quieter recording stops earlier relative to its level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

from effects._validation import check_audio

#: A sample counts as clipped when its magnitude is within this relative distance of the threshold θ.
CLIP_RELATIVE_TOLERANCE = 1e-6

#: Frames solved together in one batch of :func:`aspade`: (frames, bins) complex arrays of this many rows
#: stay within the CPU caches (64 × 1025 × 16 bytes = 1 MiB each with the defaults), which measured faster
#: than larger batches, and memory stays bounded on long signals.
BATCH_FRAMES = 64

#: Frames framed, solved and overlap-added at a time (about a minute at 16 kHz with the default hop), to bound
#: the memory of the (frames, window) arrays on long recordings.
_FRAMING_CHUNK = 4096

#: How far (in coefficients) the k-th largest may move from a row's previous threshold and still be found by
#: one pass with a small sorted buffer; beyond it the row falls back to a full quickselect.
_GUESS_REACH = 32


@dataclass(frozen=True)
class AspadeStats:
    """What A-SPADE did on each frame.

    Attributes:
        iterations: ``(channels, frames)`` int64, ADMM iterations per frame (0 for frames without clipped
            samples, which pass through).
        clipped_frames: ``(channels, frames)`` bool, frames holding at least one clipped sample.
        converged: ``(channels, frames)`` bool, clipped frames that reached ``epsilon`` before
            ``max_iterations`` (False for the others).
        thresholds: ``(channels,)`` float64, the clipping threshold θ used per channel (NaN for channels
            found unclipped).
    """

    iterations: np.ndarray
    clipped_frames: np.ndarray
    converged: np.ndarray
    thresholds: np.ndarray

    @property
    def mean_iterations(self) -> float:
        """Mean iterations over the clipped frames (0.0 when there are none)."""
        count = int(self.clipped_frames.sum())
        return float(self.iterations[self.clipped_frames].sum() / count) if count else 0.0


@dataclass(frozen=True)
class _Settings:
    window_samples: int
    hop_samples: int
    fft_size: int
    sparsity_step: int
    sparsity_every: int
    epsilon: float
    max_iterations: int


def aspade(clipped: np.ndarray, threshold: float | None = None, window_samples: int = 1024, hop_samples: int = 256,
           redundancy: int = 2, sparsity_step: int = 1, sparsity_every: int = 1, epsilon: float = 0.1,
           max_iterations: int | None = None, return_stats: bool = False
           ) -> np.ndarray | tuple[np.ndarray, AspadeStats]:
    """Declip ``clipped`` with A-SPADE, all frames of a channel iterating together.

    Args:
        clipped: hard-clipped audio, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``;
            channels are declipped independently.
        threshold: clipping threshold θ (linear amplitude, > 0) for every channel; None estimates it per
            channel as max|y| (see the module docstring for the clipped-sample rule).
        window_samples: frame length in samples (≥ 4).
        hop_samples: frame shift in samples, in [1, window_samples).
        redundancy: DFT redundancy: each frame is zero-padded to ``redundancy · window_samples`` points.
        sparsity_step: s, the initial k and its increment.
        sparsity_every: r, k grows by s every r iterations.
        epsilon: stop a frame when ‖A x − z‖₂ ≤ epsilon (absolute, in signal units).
        max_iterations: iteration cap per frame; None uses the toolbox's ⌈(bins · r) / s⌉, the count
            after which k covers the whole half spectrum of ``bins = redundancy · window_samples / 2 + 1``.
        return_stats: also return an :class:`AspadeStats`.

    Returns:
        The declipped signal, same shape and dtype as ``clipped`` (a copy equal to the input where a
        channel has no clipped samples); with ``return_stats``, the pair ``(declipped, stats)``.

    Raises:
        ValueError: bad parameters, empty or silent input, NaN or inf samples, a wrong shape or dtype.
    """
    return _declip(clipped, threshold, window_samples, hop_samples, redundancy, sparsity_step, sparsity_every,
                   epsilon, max_iterations, return_stats, _solve_batched)


def aspade_framewise(clipped: np.ndarray, threshold: float | None = None, window_samples: int = 1024,
                     hop_samples: int = 256, redundancy: int = 2, sparsity_step: int = 1, sparsity_every: int = 1,
                     epsilon: float = 0.1, max_iterations: int | None = None, return_stats: bool = False
                     ) -> np.ndarray | tuple[np.ndarray, AspadeStats]:
    """:func:`aspade` computed one frame at a time with full complex numpy DFTs, as the toolbox does.

    Same arguments, result and errors as :func:`aspade`; slower, and written to be read against
    ``aspade.m`` and ``hard_thresholding.m``.
    """
    return _declip(clipped, threshold, window_samples, hop_samples, redundancy, sparsity_step, sparsity_every,
                   epsilon, max_iterations, return_stats, _solve_framewise)


# ----------------------------------------------------------------------------------------------------------
# Shared: checks, masks, framing, overlap-add


def _declip(clipped, threshold, window_samples, hop_samples, redundancy, sparsity_step, sparsity_every, epsilon,
            max_iterations, return_stats, solver):
    y = _check_audio(clipped)
    settings = _check_settings(window_samples, hop_samples, redundancy, sparsity_step, sparsity_every, epsilon,
                               max_iterations)
    if threshold is not None:
        threshold = _check_positive(threshold, "threshold")
    channels = y.reshape(-1, y.shape[-1])
    analysis, synthesis = _windows(settings.window_samples, settings.hop_samples)
    frame_count = _frame_count(channels.shape[1], settings)
    out = np.empty_like(channels)
    iterations = np.zeros((channels.shape[0], frame_count), dtype=np.int64)
    clipped_frames = np.zeros((channels.shape[0], frame_count), dtype=bool)
    converged = np.zeros((channels.shape[0], frame_count), dtype=bool)
    thresholds = np.full(channels.shape[0], np.nan)
    for c, signal in enumerate(channels):
        high, low, theta = _clipping_masks(signal, threshold)
        if theta is None:
            out[c] = signal
            continue
        thresholds[c] = theta
        restored, frame_stats = _declip_channel(signal.astype(np.float64), high, low, analysis, synthesis, settings,
                                                solver)
        out[c] = restored
        clipped_frames[c], iterations[c], converged[c] = frame_stats
    out = out.reshape(y.shape)
    if return_stats:
        return out, AspadeStats(iterations, clipped_frames, converged, thresholds)
    return out


def _check_audio(x) -> np.ndarray:
    # The effects' checks (type, dtype, shape, finite: the same errors), then what declipping needs too.
    check_audio(x, "clipped")
    if x.size == 0:
        raise ValueError(f"clipped is empty (shape {x.shape})")
    if not np.any(x):
        raise ValueError("clipped is silent (all samples are zero): there is nothing to declip")
    return x


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def _check_positive(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _check_settings(window_samples, hop_samples, redundancy, sparsity_step, sparsity_every, epsilon,
                    max_iterations) -> _Settings:
    window_samples = _check_int(window_samples, "window_samples", 4)
    hop_samples = _check_int(hop_samples, "hop_samples", 1)
    if hop_samples >= window_samples:
        raise ValueError(f"hop_samples must be smaller than window_samples ({window_samples}) for the frames to "
                         f"overlap and the dual window to exist, got {hop_samples}")
    redundancy = _check_int(redundancy, "redundancy", 1)
    sparsity_step = _check_int(sparsity_step, "sparsity_step", 1)
    sparsity_every = _check_int(sparsity_every, "sparsity_every", 1)
    epsilon = _check_positive(epsilon, "epsilon")
    fft_size = redundancy * window_samples
    if max_iterations is None:
        # The toolbox's cap: enough iterations for k to reach every coefficient of the half spectrum.
        max_iterations = math.ceil((fft_size // 2 + 1) * sparsity_every / sparsity_step)
    max_iterations = _check_int(max_iterations, "max_iterations", 1)
    return _Settings(window_samples, hop_samples, fft_size, sparsity_step, sparsity_every, epsilon, max_iterations)


def _clipping_masks(signal: np.ndarray, threshold: float | None):
    """(high, low, θ) boolean masks of samples clipped from above / below, or (None, None, None) if unclipped."""
    magnitude = np.abs(signal)
    peak = float(magnitude.max())
    if peak == 0.0:
        return None, None, None
    theta = peak if threshold is None else threshold
    limit = theta * (1.0 - CLIP_RELATIVE_TOLERANCE)
    high = signal >= limit
    low = signal <= -limit
    count = int(high.sum() + low.sum())
    # A lone sample at the estimated θ is the peak of an unclipped signal, not a clipping plateau.
    if count == 0 or (threshold is None and count == 1):
        return None, None, None
    return high, low, theta


def _windows(window_samples: int, hop_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Analysis window (periodic Hann, peak 1) and its canonical dual for hop ``hop_samples``, float64."""
    analysis = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window_samples) / window_samples)
    # Σₙ g(t − n·hop)² is periodic in t with period hop; sample j of a frame sees the class j mod hop.
    squares = np.zeros(hop_samples)
    np.add.at(squares, np.arange(window_samples) % hop_samples, analysis**2)
    synthesis = analysis / squares[np.arange(window_samples) % hop_samples]
    return analysis, synthesis


def _frame_count(samples: int, settings: _Settings) -> int:
    """Frames start at n·hop − (window − hop): every sample is covered by all the frames that could cover it."""
    lead = settings.window_samples - settings.hop_samples
    return (samples + lead + settings.hop_samples - 1) // settings.hop_samples


def _declip_channel(signal, high, low, analysis, synthesis, settings: _Settings, solver):
    """Frame one channel, solve its clipped frames with ``solver``, overlap-add. Returns (restored, stats)."""
    window, hop = settings.window_samples, settings.hop_samples
    lead = window - hop
    frame_count = _frame_count(signal.size, settings)
    padded_length = (frame_count - 1) * hop + window

    def frames_of(values, fill):
        padded = np.full(padded_length, fill, dtype=values.dtype)
        padded[lead:lead + values.size] = values
        return np.lib.stride_tricks.sliding_window_view(padded, window)[::hop]  # a view: no copy per frame

    frames = frames_of(signal, 0.0)
    high_frames, low_frames = frames_of(high, False), frames_of(low, False)
    is_clipped = high_frames.any(axis=1) | low_frames.any(axis=1)
    iterations = np.zeros(frame_count, dtype=np.int64)
    converged = np.zeros(frame_count, dtype=bool)
    restored = np.zeros(padded_length)
    # A chunk of frames at a time, so that the (frames, window) arrays stay small on long recordings.
    for start in range(0, frame_count, _FRAMING_CHUNK):
        chunk = slice(start, min(start + _FRAMING_CHUNK, frame_count))
        estimates = frames[chunk] * analysis  # frames without clipping stay their windowed input
        index = np.flatnonzero(is_clipped[chunk])
        if index.size:
            blocks = estimates[index]
            # Γ as elementwise bounds of the windowed frame: equal on reliable samples, one-sided on clipped ones.
            lower = np.where(low_frames[chunk][index], -np.inf, blocks)
            upper = np.where(high_frames[chunk][index], np.inf, blocks)
            estimates[index], iterations[start + index], converged[start + index] = solver(blocks, lower, upper,
                                                                                           settings)
        estimates *= synthesis
        for n, contribution in enumerate(estimates, start):
            restored[n * hop:n * hop + window] += contribution
    return restored[lead:lead + signal.size], (is_clipped, iterations, converged)


# ----------------------------------------------------------------------------------------------------------
# Vectorised solver: every frame of a batch in one (frames, bins) array


def _solve_batched(blocks, lower, upper, settings: _Settings):
    """Solve A-SPADE on each row of ``blocks`` (frames, window); returns (estimates, iterations, converged)."""
    estimates = np.empty_like(blocks)
    iterations = np.zeros(blocks.shape[0], dtype=np.int64)
    converged = np.zeros(blocks.shape[0], dtype=bool)
    for start in range(0, blocks.shape[0], BATCH_FRAMES):
        rows = slice(start, start + BATCH_FRAMES)
        estimates[rows], iterations[rows], converged[rows] = _solve_batch(blocks[rows], lower[rows], upper[rows],
                                                                          settings)
    return estimates, iterations, converged


def _solve_batch(blocks, lower, upper, settings: _Settings):
    fft_size, window = settings.fft_size, settings.window_samples
    bins = fft_size // 2 + 1
    # ‖z‖² of the full Hermitian spectrum from its half: DC (and Nyquist for even sizes) once, the rest twice.
    weights = np.full(bins, 2.0)
    weights[0] = 1.0
    if fft_size % 2 == 0:
        weights[-1] = 1.0

    def analyse(x):
        return scipy.fft.rfft(x, n=fft_size, axis=1, norm="ortho", workers=1)

    def synthesise(z):
        return scipy.fft.irfft(z, n=fft_size, axis=1, norm="ortho", workers=1)[:, :window]

    frame_total = blocks.shape[0]
    estimates = blocks.copy()  # the iterate of smallest residual so far (the toolbox's data_rec)
    iterations = np.zeros(frame_total, dtype=np.int64)
    converged = np.zeros(frame_total, dtype=bool)
    ids = np.arange(frame_total)  # which frame each row of the working arrays holds
    alive = np.ones(frame_total, dtype=bool)  # rows still iterating; finished rows linger until compaction
    best = np.full(frame_total, np.inf)
    thresholds = np.full(frame_total, np.inf)  # each row's last k-th largest rank, the next selection's guess
    x = blocks.copy()
    z = analyse(x)
    u = np.zeros_like(z)
    k = settings.sparsity_step
    for count in range(1, settings.max_iterations + 1):
        z_bar = np.empty_like(z)
        synthesis_input = np.empty_like(z)  # z_bar − u
        objective = np.empty(z.shape[0])
        _threshold_rows(z, u, k, weights, thresholds, z_bar, synthesis_input, objective)
        improved = alive & (objective <= best)
        best[improved] = objective[improved]
        estimates[ids[improved]] = x[improved]
        done = alive & (objective <= settings.epsilon)
        iterations[ids[done]] = count
        converged[ids[done]] = True
        alive &= ~done
        remaining = int(alive.sum())
        if remaining == 0:
            break
        # Drop finished rows once they are an eighth of the batch: compaction copies every working array,
        # so doing it for each finished frame would cost more than the lingering rows' extra work.
        if alive.size - remaining >= max(1, alive.size // 8):
            keep = np.flatnonzero(alive)
            ids, best, thresholds, x, z, u = ids[keep], best[keep], thresholds[keep], x[keep], z[keep], u[keep]
            z_bar, synthesis_input, lower, upper = z_bar[keep], synthesis_input[keep], lower[keep], upper[keep]
            alive = np.ones(keep.size, dtype=bool)
        x = np.clip(synthesise(synthesis_input), lower, upper)
        z = analyse(x)
        _update_dual(u, z, z_bar)
        if (count + 1) % settings.sparsity_every == 0:
            k += settings.sparsity_step
    else:
        iterations[ids[alive]] = settings.max_iterations
    return estimates, iterations, converged


@numba.njit(cache=True)
def _threshold_rows(z, u, k, weights, thresholds, z_bar, synthesis_input, objective):  # pragma: no cover - compiled
    """Per row: z_bar = H_k(z + u), synthesis_input = z_bar − u, objective = ‖z − z_bar‖ (full spectrum).

    One fused pass per quantity instead of numpy's temporaries. The k-th largest rank is found from the
    row's previous threshold (``thresholds``, updated in place): the count of ranks at or above it tells how
    many places the k-th largest moved, usually a few, found in one pass with a small sorted buffer.
    Ranks are squared magnitudes, DC's scaled by 1/4 (the toolbox ranks DC by half its magnitude); the kept
    set is {rank ≥ k-th largest rank}, as ``np.partition`` would give.
    """
    rows, bins = z.shape
    rank = np.empty(bins)
    work = np.empty(bins)
    buffer = np.empty(_GUESS_REACH)
    for i in range(rows):
        guess = thresholds[i]
        at_or_above = 0
        for j in range(bins):
            v = z[i, j] + u[i, j]
            r = v.real * v.real + v.imag * v.imag
            if j == 0:
                r *= 0.25
            rank[j] = r
            if r >= guess:
                at_or_above += 1
        if k >= bins:
            kth = -1.0  # keep everything
        elif at_or_above == k:
            kth = guess  # exactly k ranks reach the guess: they are the k largest
        elif at_or_above < k and k - at_or_above <= _GUESS_REACH:
            kth = _mth_largest_below(rank, guess, k - at_or_above, buffer)
        elif at_or_above > k and at_or_above - k < _GUESS_REACH:
            kth = _mth_smallest_from(rank, guess, at_or_above - k + 1, buffer)
        else:
            work[:] = rank
            kth = _kth_largest(work, k)
        total = 0.0
        smallest_kept = np.inf
        for j in range(bins):
            v = z[i, j] + u[i, j]
            if rank[j] >= kth:
                kept = v
                smallest_kept = min(smallest_kept, rank[j])
            else:
                kept = 0j
            z_bar[i, j] = kept
            synthesis_input[i, j] = kept - u[i, j]
            d = z[i, j] - kept
            total += weights[j] * (d.real * d.real + d.imag * d.imag)
        objective[i] = np.sqrt(total)
        thresholds[i] = smallest_kept


@numba.njit(cache=True)
def _mth_largest_below(values, limit, m, buffer):  # pragma: no cover - compiled
    """The m-th largest of the values < limit (there must be at m least), with a descending buffer of m."""
    filled = 0
    for value in values:
        if value >= limit or (filled == m and value <= buffer[m - 1]):
            continue
        position = filled if filled < m else m - 1
        filled = min(filled + 1, m)
        while position > 0 and buffer[position - 1] < value:
            buffer[position] = buffer[position - 1]
            position -= 1
        buffer[position] = value
    return buffer[m - 1]


@numba.njit(cache=True)
def _mth_smallest_from(values, limit, m, buffer):  # pragma: no cover - compiled
    """The m-th smallest of the values ≥ limit (there must be at m least), with an ascending buffer of m."""
    filled = 0
    for value in values:
        if value < limit or (filled == m and value >= buffer[m - 1]):
            continue
        position = filled if filled < m else m - 1
        filled = min(filled + 1, m)
        while position > 0 and buffer[position - 1] > value:
            buffer[position] = buffer[position - 1]
            position -= 1
        buffer[position] = value
    return buffer[m - 1]


@numba.njit(cache=True)
def _kth_largest(values, k):  # pragma: no cover - compiled
    """The k-th largest (1-based) of ``values``, which it reorders: quickselect, median-of-three pivots."""
    low, high = 0, values.size - 1
    target = k - 1  # position in descending order
    while high > low:
        middle = (low + high) >> 1
        a, b, c = values[low], values[middle], values[high]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = low, high
        while i <= j:  # Hoare partition, descending: ≥ pivot to the left, ≤ pivot to the right
            while values[i] > pivot:
                i += 1
            while values[j] < pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if target <= j:
            high = j
        elif target >= i:
            low = i
        else:
            return values[target]  # between j and i every value equals the pivot
    return values[target]


@numba.njit(cache=True)
def _update_dual(u, z, z_bar):  # pragma: no cover - compiled
    """u ← u + z − z_bar in place, in the order the toolbox adds them."""
    rows, bins = u.shape
    for i in range(rows):
        for j in range(bins):
            u[i, j] = u[i, j] + z[i, j] - z_bar[i, j]


# ----------------------------------------------------------------------------------------------------------
# Reference solver: one frame at a time, a transcription of the toolbox's aspade.m


def _solve_framewise(blocks, lower, upper, settings: _Settings):
    estimates = np.empty_like(blocks)
    iterations = np.zeros(blocks.shape[0], dtype=np.int64)
    converged = np.zeros(blocks.shape[0], dtype=bool)
    for n in range(blocks.shape[0]):
        estimates[n], iterations[n], converged[n] = _solve_frame(blocks[n], lower[n], upper[n], settings)
    return estimates, iterations, converged


def _solve_frame(block, lower, upper, settings: _Settings):
    fft_size, window = settings.fft_size, settings.window_samples

    def analyse(x):  # A: unitary DFT of the zero-padded frame
        return np.fft.fft(x, n=fft_size, norm="ortho")

    def synthesise(z):  # A*: inverse DFT cropped to the frame
        return np.fft.ifft(z, norm="ortho").real[:window]

    x = block.copy()
    z = analyse(x)
    u = np.zeros_like(z)
    k = settings.sparsity_step
    best, estimate = np.inf, block
    for count in range(1, settings.max_iterations + 1):
        z_bar = _hard_threshold(z + u, k)
        objective = np.linalg.norm(z - z_bar)
        if objective <= best:
            best, estimate = objective, x
        if objective <= settings.epsilon:
            return estimate, count, True
        x = np.clip(synthesise(z_bar - u), lower, upper)
        z = analyse(x)
        u = u + z - z_bar
        if (count + 1) % settings.sparsity_every == 0:
            k += settings.sparsity_step
    return estimate, settings.max_iterations, False


def _hard_threshold(z: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest of DC..Nyquist (DC ranked at half its magnitude) and their conjugates; zero the rest."""
    size = z.size
    half = z[:size // 2 + 1]
    rank = np.abs(half)
    rank[0] /= 2
    kept = np.zeros_like(half)
    if k < half.size:
        largest = np.argsort(-rank, kind="stable")[:k]
        kept[largest] = half[largest]
    else:
        kept[:] = half
    out = np.zeros_like(z)
    out[:half.size] = kept
    mirrored = np.arange(1, (size + 1) // 2)  # bins whose conjugate lives in the upper half
    out[size - mirrored] = np.conj(kept[mirrored])
    return out
