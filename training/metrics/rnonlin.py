"""R_nonlin, a calibrated variant of the predictor of Tan, Moore, Zacharov & Mattila (2004).

C.-T. Tan, B. C. J. Moore, N. Zacharov and V.-V. Mattila, "Predicting the Perceived Quality of Nonlinearly
Distorted Music and Speech Signals", J. Audio Eng. Soc. 52(7/8), pp. 699-711, 2004. Imort et al. (2022,
Sec. V-C 3) and the declipping survey of Záviška, Rajmic, Ozerov and Rencker (IEEE JSTSP 15(1), 2021) score
outputs with it. This is *not* Tan et al.'s model as published: its peripheral stages follow their description,
but the band weighting of step 4 is ours, calibrated on the survey's published scores (below), so scores from
here are comparable with the survey's, not with values computed by Tan et al.'s own program. The model compares
the reference and the test signal band by band after a simple peripheral auditory model:

1. **Outer and middle ear.** Both signals pass through a linear-phase FIR filter whose magnitude response is
   the free-field-to-eardrum transfer plus the middle-ear transfer of Moore's group, as tabulated in ANSI
   S3.4-2007 (the same tables as Glasberg & Moore 2002/2006, "A model of loudness applicable to time-varying
   sounds", JAES 50(5)). Gains between table points are linear in dB over log-frequency.
2. **Auditory filters.** A bank of :data:`BANDS` = 40 fourth-order gammatone filters, each one ERB_N wide
   (Glasberg & Moore 1990, ERB_N = 24.7 (4.37 f/kHz + 1) Hz), centres equally spaced on the ERB_N-number
   scale from 50 Hz to one step below min(fs/2, 20 kHz), so all centres lie below Nyquist (at 44.1 kHz that is
   the paper's ≈1-ERB_N spacing up to ≈18 kHz; at 16 kHz the filters are 0.79 ERB_N apart and end at ≈7.3 kHz).
   Each filter is the real part of a cascade of four complex one-pole filters (Hohmann 2002, Acta Acustica 88),
   run by a numba kernel over all bands at once.
3. **Frames and cross-correlation.** Band outputs are cut into 30 ms frames with 50 % overlap. Per band and
   frame the normalised cross-correlation ``Σ r(n) t(n+τ) / sqrt(Σ r(n)² · Σ t(n+τ)²)`` is maximised over
   lags |τ| ≤ 1 ms, which tolerates small, frequency-dependent delays; the test samples come from the whole
   band signal (not just the frame), so a delayed copy correlates perfectly.
4. **Weighting.** Per frame, the band maxima (negative ones count as 0) are averaged with weights E^γ, E being
   the reference band energy in that frame and γ = :data:`WEIGHT_EXPONENT`; R_nonlin is the mean over frames.
   Frames whose reference energy is more than :data:`SILENCE_DB` below the loudest frame are left out.

The exponent γ (the calibration). The descriptions we could read give the band weights only as "according
to the energy" of each filter output; we did not find Tan et al.'s exact weighting function, and the survey
computed its values with a MATLAB program not included in its code (``Rnonlin_calc``). Plain energy weights
(γ = 1) let the strongest bands, where clipping does least harm, dominate and score hard-clipped music far
above the survey's values. γ was therefore fitted: the γ minimising the rms difference from the survey's
published R_nonlin of its hard-clipped SQAM excerpts (44.1 kHz, 7 input SDRs from 1 to 20 dB,
``Rnonlin_calc_clipped`` in ``Numerical_results/Rnonlin_calc_declippingResults.mat`` of
rajmic/declipping2020_codes) over nine of its ten excerpts (the glockenspiel left out). That agreement is
in-sample and proves nothing; ``benchmarks/reference/fit_rnonlin_gamma.py`` reproduces the fit from the
toolbox checkout, and ``benchmarks/bench_aspade.py --survey-dir ... --rnonlin`` compares our scores with the
survey's on A-SPADE restorations, outputs that took no part in the fit (figures in BENCHMARKS.md). A small γ
makes the weights nearly uniform over the bands that carry signal, while a band without reference energy still
gets none; all weights are invariant to the signals' gains.

1 means identical (up to gain and a delay of at most 1 ms); lower values mean more nonlinear distortion.
At 16 kHz fewer bands carry the clipping's harmonics than at 44.1 kHz, so scores of the same material differ
between rates; compare scores made at one rate.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import signal

#: Number of gammatone filters (Tan et al. 2004).
BANDS = 40
#: Centre frequency of the lowest filter, Hz.
LOWEST_CENTRE_HZ = 50.0
#: The filters span up to min(fs/2, this), Hz: the upper limit of hearing.
HIGHEST_EDGE_HZ = 20000.0
#: Frame length, seconds; frames overlap by half.
FRAME_SECONDS = 0.030
#: Largest lag of the cross-correlation, seconds.
MAX_LAG_SECONDS = 0.001
#: Frames this far (dB) below the most energetic frame of the reference are ignored.
SILENCE_DB = 60.0
#: Band weights are (reference band energy)^WEIGHT_EXPONENT: our calibration, fitted to the survey's scores by
#: benchmarks/reference/fit_rnonlin_gamma.py (module docstring), not a value from Tan et al.
WEIGHT_EXPONENT = 0.035
#: Gammatone order.
_ORDER = 4
#: Length of the outer/middle-ear FIR, seconds: fine enough to follow the steep low-frequency slope.
_EAR_FIR_SECONDS = 0.064
#: Frames processed together: bounds the memory of the band signals at any signal length.
_FRAMES_PER_GROUP = 64

# ANSI S3.4-2007: free-field (frontal incidence) to eardrum transfer, dB.
_OUTER_FREQUENCIES_HZ = np.array([
    20, 25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 750, 800, 1000, 1250, 1500,
    1600, 2000, 2500, 3000, 3150, 4000, 5000, 6000, 6300, 8000, 9000, 10000, 11200, 12500, 14000, 15000,
    16000, 20000])
_OUTER_GAIN_DB = np.array([
    0, 0, 0, 0, 0, 0, 0, 0, 0.1, 0.3, 0.5, 0.9, 1.4, 1.6, 1.7, 2.5, 2.7, 2.6, 2.6, 3.2, 5.2, 6.6, 12.0, 16.8,
    15.3, 15.2, 14.2, 10.7, 7.1, 6.4, 1.8, -0.9, -1.6, 1.9, 4.9, 2.0, -2.0, 2.5, 2.5])
# ANSI S3.4-2007: middle-ear transfer (eardrum to cochlea), dB.
_MIDDLE_FREQUENCIES_HZ = np.array([
    20, 25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 750, 800, 1000, 1250, 1500,
    1600, 2000, 2500, 3000, 3150, 4000, 5000, 6000, 6300, 8000, 9000, 10000, 11200, 12500, 14000, 15000,
    16000, 18000, 20000])
_MIDDLE_GAIN_DB = -np.array([
    39.6, 32.0, 25.85, 21.4, 18.5, 15.9, 14.1, 12.4, 11.0, 9.6, 8.3, 7.4, 6.2, 4.8, 3.8, 3.3, 2.9, 2.6, 2.6,
    4.5, 5.4, 6.1, 8.5, 10.4, 7.3, 7.0, 6.6, 7.0, 9.2, 10.2, 12.2, 10.8, 10.1, 12.7, 15.0, 18.2, 23.8, 32.3,
    45.5, 50.0])


def erb_hz(frequency_hz: np.ndarray | float) -> np.ndarray:
    """ERB_N (Hz) of the auditory filter centred at ``frequency_hz`` (Glasberg & Moore 1990)."""
    return 24.7 * (4.37 * np.asarray(frequency_hz, dtype=np.float64) / 1000.0 + 1.0)


def erb_number(frequency_hz: np.ndarray | float) -> np.ndarray:
    """ERB_N-number (Cam) of ``frequency_hz``: the integral of 1/ERB_N from 0 Hz."""
    return 21.4 * np.log10(4.37 * np.asarray(frequency_hz, dtype=np.float64) / 1000.0 + 1.0)


def _from_erb_number(cams: np.ndarray) -> np.ndarray:
    return (10.0 ** (cams / 21.4) - 1.0) * 1000.0 / 4.37


def centre_frequencies_hz(sample_rate: float) -> np.ndarray:
    """The :data:`BANDS` gammatone centre frequencies (Hz, ascending, float64) used at ``sample_rate``.

    Equally spaced in ERB_N-number: the lowest at :data:`LOWEST_CENTRE_HZ`, the highest one spacing below
    min(sample_rate/2, :data:`HIGHEST_EDGE_HZ`), so every centre lies below Nyquist.
    """
    top_hz = min(sample_rate / 2.0, HIGHEST_EDGE_HZ)
    cams = np.linspace(erb_number(LOWEST_CENTRE_HZ), erb_number(top_hz), BANDS + 1)[:BANDS]
    return _from_erb_number(cams)


def ear_gain_db(frequency_hz: np.ndarray) -> np.ndarray:
    """Outer (free field to eardrum) plus middle-ear gain in dB at ``frequency_hz`` (ANSI S3.4-2007 tables).

    Linear in dB over log-frequency between table points, held constant below 20 Hz and above 20 kHz.
    """
    log_f = np.log(np.clip(np.asarray(frequency_hz, dtype=np.float64), 20.0, 20000.0))
    outer = np.interp(log_f, np.log(_OUTER_FREQUENCIES_HZ), _OUTER_GAIN_DB)
    middle = np.interp(log_f, np.log(_MIDDLE_FREQUENCIES_HZ), _MIDDLE_GAIN_DB)
    return outer + middle


def ear_filter(sample_rate: float) -> np.ndarray:
    """Linear-phase FIR (odd length, float64) with the magnitude response :func:`ear_gain_db`."""
    half = int(round(_EAR_FIR_SECONDS * sample_rate))
    frequencies = np.linspace(0.0, sample_rate / 2.0, 4 * half + 1)
    gains = 10.0 ** (ear_gain_db(frequencies) / 20.0)
    return signal.firwin2(2 * half + 1, frequencies, gains, fs=sample_rate)


def _gammatone_poles(sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    # A 4th-order gammatone t³·exp(−2πbt)·cos(2πf_c t) has an equivalent rectangular bandwidth of
    # b·π·6!/(2⁶·3!²) ≈ 0.982·b, so b = ERB_N/0.982 makes each filter one ERB_N wide. Sampling the envelope
    # gives the pole λ = exp(−2πb/fs); rotating it to the centre frequency gives the complex one-pole filter
    # that, applied four times, has (k+1)(k+2)(k+3)/6 · λ^k · e^{iβk} ≈ the gammatone as impulse response.
    centres = centre_frequencies_hz(sample_rate)
    bandwidth_factor = math.pi * math.factorial(2 * _ORDER - 2) / (2.0 ** (2 * _ORDER - 2)
                                                                     * math.factorial(_ORDER - 1) ** 2)
    radii = np.exp(-2.0 * math.pi * erb_hz(centres) / bandwidth_factor / sample_rate)
    poles = radii * np.exp(2j * math.pi * centres / sample_rate)
    # Unit gain at the centre frequency: |1 − p·e^{−iβ}| = 1 − λ there.
    gains = (1.0 - radii) ** _ORDER
    return poles, gains


@numba.njit(cache=True, nogil=True)
def _gammatone_block(x, poles_re, poles_im, gains, state, out):  # pragma: no cover - compiled
    # x: (samples,) float64; poles_*, gains: (bands,); state: (2·ORDER, bands) float64, the real and imaginary
    # parts of the four cascaded one-pole states, updated in place so that blocks chain seamlessly;
    # out: (samples, bands) float64 = 2·Re of the last stage (the filter is analytic, so its real part carries
    # half the amplitude). Bands are the inner loop: they are independent, so the loop vectorises (SIMD), and
    # the output rows are written contiguously (about ten times faster than a (bands, samples) output).
    bands = poles_re.shape[0]
    for n in range(x.shape[0]):
        xn = x[n]
        for b in range(bands):
            pr = poles_re[b]
            pi = poles_im[b]
            in_re = gains[b] * xn
            in_im = 0.0
            for stage in range(4):
                sr = state[2 * stage, b]
                si = state[2 * stage + 1, b]
                new_re = pr * sr - pi * si + in_re
                new_im = pr * si + pi * sr + in_im
                state[2 * stage, b] = new_re
                state[2 * stage + 1, b] = new_im
                in_re = new_re
                in_im = new_im
            out[n, b] = 2.0 * in_re


class _Bank:
    """Gammatone filters for one signal: keeps the state between consecutive blocks."""

    def __init__(self, poles: np.ndarray, gains: np.ndarray) -> None:
        self.poles_re = np.ascontiguousarray(poles.real)
        self.poles_im = np.ascontiguousarray(poles.imag)
        self.gains = np.ascontiguousarray(gains)
        self.state = np.zeros((2 * _ORDER, poles.size))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Band signals of the next block ``x`` (samples,): (bands, samples) float64, C-contiguous."""
        out = np.empty((x.size, self.gains.size))
        _gammatone_block(np.ascontiguousarray(x), self.poles_re, self.poles_im, self.gains, self.state, out)
        # Bands first: the per-lag products below reduce over contiguous hops, ~2.5x faster than bands last.
        return np.ascontiguousarray(out.T)


def band_statistics(reference: np.ndarray, test: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame, per-band maximum normalised cross-correlation and reference energy, for one channel.

    Args:
        reference, test: (samples,) float64, finite, equal length of at least one frame (30 ms), already
            passed through the outer/middle-ear filter.
        sample_rate: Hz.

    Returns:
        ``(correlation, energy)``, both (frames, :data:`BANDS`) float64: the largest normalised
        cross-correlation over lags |τ| ≤ 1 ms, in [-1, 1] (0 where either band signal is silent in the frame),
        and the reference band energy Σ r(n)² in the frame. Frame k covers samples [k·hop, k·hop + 2·hop),
        hop = round(15 ms · sample_rate); a tail shorter than a hop is not scored.
    """
    hop = max(1, int(round(FRAME_SECONDS * sample_rate / 2.0)))
    frame = 2 * hop
    max_lag = int(round(MAX_LAG_SECONDS * sample_rate))
    frames = (reference.size - frame) // hop + 1
    # Zeros on both sides let every frame look max_lag samples beyond the signal: the filters start at rest,
    # so leading zeros change nothing, and trailing zeros let the band signals ring out.
    zeros = np.zeros(max_lag)
    padded_reference = np.concatenate([zeros, reference, zeros])
    padded_test = np.concatenate([zeros, test, zeros])
    poles, gains = _gammatone_poles(sample_rate)
    reference_bank, test_bank = _Bank(poles, gains), _Bank(poles, gains)

    correlation = np.empty((frames, BANDS))
    energy = np.empty((frames, BANDS))
    reference_bands = test_bands = np.empty((BANDS, 0))
    filtered_until = 0  # padded samples [0, filtered_until) have gone through the filters
    buffer_start = 0  # padded index of the first buffered band sample
    for first in range(0, frames, _FRAMES_PER_GROUP):
        last = min(frames, first + _FRAMES_PER_GROUP)  # this group: frames [first, last)
        start = first * hop
        end = last * hop + hop + 2 * max_lag  # padded samples the group needs: [start, end)
        reference_bands = np.concatenate([reference_bands[:, start - buffer_start:],
                                          reference_bank(padded_reference[filtered_until:end])], axis=1)
        test_bands = np.concatenate([test_bands[:, start - buffer_start:],
                                     test_bank(padded_test[filtered_until:end])], axis=1)
        buffer_start, filtered_until = start, end
        correlation[first:last], energy[first:last] = _group_statistics(reference_bands, test_bands, hop,
                                                                        max_lag, last - first)
    return correlation, energy


def _group_statistics(reference_bands: np.ndarray, test_bands: np.ndarray, hop: int, max_lag: int,
                      frames: int) -> tuple[np.ndarray, np.ndarray]:
    # reference_bands, test_bands: (bands, (frames + 1)·hop + 2·max_lag) band signals of consecutive frames,
    # starting max_lag samples before the first frame. Frame k is made of hops k and k + 1, so every sum over
    # a frame is the sum of two hop sums, and hop sums are one reshape away: all frames at once per lag.
    hops = frames + 1
    span = hops * hop
    reference_hops = reference_bands[:, max_lag:max_lag + span].reshape(BANDS, hops, hop)
    hop_energy = np.einsum("bji,bji->bj", reference_hops, reference_hops)
    frame_energy = hop_energy[:, :-1] + hop_energy[:, 1:]
    # Test energy of the frame shifted by `lag`, slid one sample at a time from the most negative lag:
    # each step adds the sample entering at the end and drops the one leaving at the start.
    test_squared = test_bands * test_bands
    frame_starts = np.arange(frames) * hop
    first_hops = test_squared[:, :span].reshape(BANDS, hops, hop).sum(axis=2)
    lagged_energy = first_hops[:, :-1] + first_hops[:, 1:]
    best = np.full((BANDS, frames), -1.0)
    tiny = np.finfo(np.float64).tiny
    for offset in range(2 * max_lag + 1):  # offset = lag + max_lag
        if offset:
            lagged_energy += test_squared[:, frame_starts + offset - 1 + 2 * hop] \
                - test_squared[:, frame_starts + offset - 1]
        test_hops = test_bands[:, offset:offset + span].reshape(BANDS, hops, hop)
        hop_product = np.einsum("bji,bji->bj", reference_hops, test_hops)
        product = hop_product[:, :-1] + hop_product[:, 1:]
        denominator = np.sqrt(frame_energy * np.maximum(lagged_energy, 0.0))
        value = np.divide(product, denominator, out=np.zeros_like(product), where=denominator > tiny)
        np.maximum(best, value, out=best)
    return np.clip(best, -1.0, 1.0).T, frame_energy.T


def _as_channels(x: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (samples,) or (channels, samples), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    array = np.atleast_2d(array).astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains {int(np.count_nonzero(~np.isfinite(array)))} non-finite samples "
                         "(NaN or inf)")
    return array


def rnonlin(reference: np.ndarray, test: np.ndarray, sample_rate: float) -> float:
    """R_nonlin of ``test`` against ``reference``: 1 for no nonlinear distortion, towards 0 for heavy distortion.

    Args:
        reference: the clean signal, float array of shape (samples,) or (channels, samples).
        test: the signal to score, same shape as ``reference``.
        sample_rate: Hz, at least 2 kHz; filters and frames are designed for it.

    Returns:
        R_nonlin in [0, 1] as a float; for several channels the mean of the per-channel values.

    Raises:
        ValueError: shapes differ, either input is empty or has NaN/inf samples, the signals are shorter than
            one 30 ms frame, a reference channel is silent, or the sample rate is not a finite number ≥ 2 kHz.
    """
    try:
        rate = float(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"sample_rate must be a number, got {sample_rate!r}") from None
    if not math.isfinite(rate) or rate < 2000.0:
        raise ValueError(f"sample_rate must be a finite number of at least 2000 Hz, got {sample_rate!r}")
    reference_channels = _as_channels(reference, "reference")
    test_channels = _as_channels(test, "test")
    if np.shape(reference) != np.shape(test):
        raise ValueError(f"reference and test differ in shape: {np.shape(reference)} vs {np.shape(test)}")
    frame = 2 * max(1, int(round(FRAME_SECONDS * rate / 2.0)))
    if reference_channels.shape[1] < frame:
        raise ValueError(f"signals of {reference_channels.shape[1]} samples are shorter than one "
                         f"{FRAME_SECONDS * 1000:g} ms frame ({frame} samples at {rate:g} Hz)")
    silent = [c for c in range(reference_channels.shape[0]) if not np.any(reference_channels[c])]
    if silent:
        raise ValueError(f"reference channel(s) {silent} are silent: R_nonlin is undefined for them")

    taps = ear_filter(rate)
    scores = []
    for reference_channel, test_channel in zip(reference_channels, test_channels, strict=True):
        # mode="same" with a linear-phase (symmetric) FIR keeps the signals in place: no delay to undo.
        ear_reference = signal.oaconvolve(reference_channel, taps, mode="same")
        ear_test = signal.oaconvolve(test_channel, taps, mode="same")
        correlation, energy = band_statistics(ear_reference, ear_test, rate)
        scores.append(combine_bands(correlation, energy))
    return float(np.mean(scores))


def combine_bands(correlation: np.ndarray, energy: np.ndarray, weight_exponent: float = WEIGHT_EXPONENT) -> float:
    """R_nonlin of one channel from :func:`band_statistics`' ``(correlation, energy)``, both (frames, bands).

    Per audible frame the average of the band correlations (negative ones as 0) weighted by
    ``energy ** weight_exponent``, then the mean over those frames; a float in [0, 1]. The fitting script
    calls it with other exponents on the same statistics.
    """
    frame_energy = energy.sum(axis=1)
    loudest = frame_energy.max()
    if not loudest > 0.0:
        raise ValueError("the reference is silent after the outer/middle-ear and gammatone filters")
    audible = frame_energy > loudest * 10.0 ** (-SILENCE_DB / 10.0)
    # energy ** p with p > 0 keeps weight 0 for a band without reference energy.
    weights = energy[audible] ** weight_exponent
    frame_scores = (weights * np.maximum(correlation[audible], 0.0)).sum(axis=1) / weights.sum(axis=1)
    return float(np.clip(frame_scores.mean(), 0.0, 1.0))
