"""PEAQ, basic version (ITU-R BS.1387-1): how much worse a test signal sounds than its reference.

PEAQ ("Perceptual Evaluation of Audio Quality") compares a test signal with its time-aligned reference
through a model of the ear and reports an Objective Difference Grade (ODG) on the impairment scale of
listening tests: 0 imperceptible, -1 perceptible but not annoying, -2 slightly annoying, -3 annoying,
-4 very annoying. The basic version implemented here has the network's range [-3.98, 0.22] (identical
signals score a little above 0). Imort et al. (2022, Sec. V-C 2) score restored music with it.

The computation, stage by stage (following Kabal's report):

1. Input (:func:`_prepare`): both signals resampled to 48 kHz (the only rate the model is defined at),
   scaled to 16-bit units (full scale 1.0 -> 32768) and cut into 2048-sample Hann frames with a hop of
   1024. The playback level is the standard's assumption: a full-scale sine (0 dBFS) plays at 92 dB SPL.
2. FFT ear model (Kabal §2, :func:`_ear_model_spectra`, :func:`_ear_model_patterns`): power spectrum, outer and
   middle ear weighting, grouping into 109 bands a quarter of a Bark wide (80 Hz - 18 kHz), internal
   noise, level-dependent spreading across bands, then smearing across frames: the excitation patterns.
   The difference of the two weighted magnitude spectra, grouped the same way, is the noise pattern.
3. Pattern processing: level and pattern adaptation, modulation patterns, loudness.
4. Model output variables (:func:`_frame_precursors`, :func:`_average_movs`): the 11 MOVs of the basic
   version, each a per-frame quantity averaged over the frames inside the data boundary (from the
   first to the last 5-sample run of the reference whose absolute sum exceeds 200 in 16-bit units), with
   the 0.5 s settling delay for the modulation MOVs and the loudness threshold for RmsNoiseLoudB.
5. Neural network (:func:`odg_from_movs`): scaled MOVs, 3 hidden sigmoid units, the distortion index DI,
   and ODG = bmin + (bmax - bmin) · sigmoid(DI).

Stereo is handled as the standard's basic version does: each channel is modelled on its own, the MOVs
are averaged over channels, and the detection probability takes the larger of the two channels per band.

Where the standard is ambiguous this code does what P. Kabal's MATLAB PQevalAudio (2004) does, the
implementation the declipping literature scores with; on the same 48 kHz input it reproduces that code's
ODG to 1e-6 and its MOVs to 1e-5 relative (tests/test_peaq.py::test_matches_kabal_pqevalaudio; the reference
values come from benchmarks/reference/peaq_kabal.py). One choice is exposed: the error harmonic structure's
peak. Kabal's report and GstPEAQ's documentation describe it as the largest peak after the first valley of
a cepstrum-like spectrum, and Kabal's last C PQevalAudio (v3r0, 2009) searches it so. His earlier MATLAB
(2004) and C (2003) code, and GstPEAQ in effect, take the largest value past the zeroth one instead, which
also counts the low-quefrency lobe that a smooth spectral tilt (a low-pass, say) produces. The default,
``ehs_peak="largest"``, follows those tools, on which the two independent implementations we could run
agree and with which published scores were made; ``"after_valley"`` follows the description, but it also
misses a harmonic peak the spectrum rises to straight from lag 0 (the widely spaced harmonics of a
clipped 1 kHz sine). Only EHSB, and through it the ODG, depends on the choice.

Band-limited material (16 kHz audio, say) leaves empty the band where the bandwidth MOVs look for the
signal's upper edge (8.1-21.6 kHz, against the test signal's floor above 21.6 kHz) and half the band over
which EHS takes the log ratio of the two spectra (up to 12 kHz). There they measure whatever fills it: here,
where resampling runs in float64, the Hann window's leakage of the in-band content; in audio that arrives
at 48 kHz, whatever its format added (float32 rounding noise, 16-bit quantisation noise, a resampler's
images). The ODG follows, by up to one grade on clipped guitar (BENCHMARKS.md, "Metrics";
tests/test_peaq.py::test_band_limited_scores_depend_on_what_fills_the_empty_band). Compare scores of
band-limited material only with scores made the same way.

References: ITU-R BS.1387-1 (2001); P. Kabal, "An Examination and Interpretation of ITU-R BS.1387:
Perceptual Evaluation of Audio Quality", TSP Lab Technical Report, McGill University (2002/2003).

Everything is vectorised across frames (all FFTs of a signal at once, per-band arrays shaped
(frames, 109)); the recursive smoothing across frames and the level-dependent spreading across bands
are small numba kernels.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse
import soxr

#: The only sample rate the model is defined at; other rates are resampled to it.
MODEL_SAMPLE_RATE = 48000
#: Frame length and hop of the FFT ear model, in samples at 48 kHz.
FRAME_SAMPLES = 2048
HOP_SAMPLES = FRAME_SAMPLES // 2
#: Full scale (1.0) in the 16-bit units in which the standard states its thresholds.
FULL_SCALE_16BIT = 32768.0
#: Sound pressure level of a full-scale sine: the standard's assumed listening level, in dB SPL.
PLAYBACK_LEVEL_DB_SPL = 92.0
#: The basic version's model output variables, in the order the neural network takes them.
MOV_NAMES = ("BandwidthRefB", "BandwidthTestB", "TotalNMRB", "WinModDiff1B", "ADBB", "EHSB", "AvgModDiff1B",
             "AvgModDiff2B", "RmsNoiseLoudB", "MFPDB", "RelDistFramesB")
#: The ODG range of the basic version's network, [bmin, bmax].
ODG_RANGE = (-3.98, 0.22)

_FRAME_RATE_HZ = MODEL_SAMPLE_RATE / HOP_SAMPLES  # 46.875 frames per second
_BIN_HZ = MODEL_SAMPLE_RATE / FRAME_SAMPLES  # 23.4375 Hz per DFT bin
_N_BINS = FRAME_SAMPLES // 2 + 1
_BARK_STEP = 0.25  # band width of the basic version, in Bark
#: Frames whose stage-1 arrays (frames x 2048 samples) are held at once: bounds memory on long signals.
_CHUNK_FRAMES = 256


# --------------------------------------------------------------------------------------------------
# Constant tables of the ear model
# --------------------------------------------------------------------------------------------------

def _band_frequencies_hz() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower, centre and upper frequency of the 109 bands, in Hz, each shaped (109,).

    The bands are a quarter of a Bark wide on the scale z = 7 asinh(f / 650) from 80 Hz to 18 kHz (the
    last one is narrower). The standard tabulates them; four of its entries do not follow the formula
    (misprints, it seems) and are kept as printed, since the implementations checked against use the table.
    """
    z_low, z_high = 7.0 * math.asinh(80.0 / 650.0), 7.0 * math.asinh(18000.0 / 650.0)
    n_bands = math.ceil((z_high - z_low) / _BARK_STEP)
    lower = z_low + np.arange(n_bands) * _BARK_STEP
    upper = np.minimum(lower + _BARK_STEP, z_high)
    centre = 0.5 * (lower + upper)
    f_lower, f_centre, f_upper = (650.0 * np.sinh(z / 7.0) for z in (lower, centre, upper))
    f_upper[28], f_lower[66], f_upper[70], f_centre[100] = 933.113, 3853.817, 4643.482, 13294.85
    return f_lower, f_centre, f_upper


_F_LOWER_HZ, _F_CENTRE_HZ, _F_UPPER_HZ = _band_frequencies_hz()
_N_BANDS = _F_CENTRE_HZ.size  # 109


def _band_grouping_matrix() -> scipy.sparse.csr_array:
    """(109, 1025) sparse weights that sum DFT-bin powers into band powers.

    Bin k covers [(k - ½)·Δf, (k + ½)·Δf]; its weight in a band is the fraction of the bin inside the band,
    so bins wholly inside count fully and the two edge bins in proportion (Kabal §2.6).
    """
    bin_low = (np.arange(_N_BINS) - 0.5) * _BIN_HZ
    bin_high = bin_low + _BIN_HZ
    overlap_hz = (np.minimum(_F_UPPER_HZ[:, None], bin_high[None, :])
                  - np.maximum(_F_LOWER_HZ[:, None], bin_low[None, :]))
    return scipy.sparse.csr_array(np.clip(overlap_hz / _BIN_HZ, 0.0, None))


def _outer_middle_ear_power_weight() -> np.ndarray:
    """Outer and middle ear transfer function |W(f)|² at the DFT bins, shaped (1025,) (BS.1387 Eq. 7)."""
    f_khz = np.arange(_N_BINS) * _BIN_HZ / 1000.0
    with np.errstate(divide="ignore"):  # f = 0: -inf dB, a weight of exactly 0 for the DC bin
        weight_db = -2.184 * f_khz ** -0.8 + 6.5 * np.exp(-0.6 * (f_khz - 3.3) ** 2) - 0.001 * f_khz ** 3.6
    return 10.0 ** (weight_db / 10.0)


def _internal_noise(f_hz: np.ndarray) -> np.ndarray:
    """Internal noise of the ear as an energy per band (BS.1387 Eq. 14)."""
    return 10.0 ** (1.456 * (f_hz / 1000.0) ** -0.8 / 10.0)


def _smoothing_coefficients(tau_100_s: float, tau_min_s: float) -> np.ndarray:
    """Per-band pole a of y[n] = a·y[n-1] + (1 - a)·x[n] at the frame rate, shaped (109,).

    The time constant falls from tau_100_s at 100 Hz towards tau_min_s at high frequencies.
    """
    tau_s = tau_min_s + (100.0 / _F_CENTRE_HZ) * (tau_100_s - tau_min_s)
    return np.exp(-1.0 / (_FRAME_RATE_HZ * tau_s))


def _hann_gain() -> float:
    """Gain on the Hann window that puts a full-scale sine at :data:`PLAYBACK_LEVEL_DB_SPL`.

    The reference sine is at 1019.5 Hz with peak 32768; it falls between DFT bins, so its largest bin is
    the window's peak response times the scalloping factor of a Hann window about half a bin off centre.
    """
    span = FRAME_SAMPLES - 1
    f_norm = 1019.5 / MODEL_SAMPLE_RATE
    k = math.floor(f_norm * FRAME_SAMPLES)
    offset = min((k + 1) / FRAME_SAMPLES - f_norm, f_norm - k / FRAME_SAMPLES) * span
    scallop = math.sin(math.pi * offset) / (math.pi * offset * (1.0 - offset ** 2))
    return 10.0 ** (PLAYBACK_LEVEL_DB_SPL / 20.0) / (scallop * FULL_SCALE_16BIT / 4.0 * span)


def _symmetric_hann(length: int) -> np.ndarray:
    """0.5·(1 - cos(2πn / (N - 1))), the form the standard specifies (not the periodic DFT window)."""
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(length) / (length - 1)))


_WINDOW = _hann_gain() * _symmetric_hann(FRAME_SAMPLES)
_EAR_WEIGHT = _outer_middle_ear_power_weight()
_GROUPING = _band_grouping_matrix()
_INTERNAL_NOISE = _internal_noise(_F_CENTRE_HZ)
_A_SMEAR = _smoothing_coefficients(0.030, 0.008)  # time-domain spreading (Kabal §2.9)
_A_PATTERN = _smoothing_coefficients(0.050, 0.008)  # level/pattern adaptation and modulation

# Level-dependent spreading (Kabal §2.8): the slope towards lower bands is fixed, -27 dB/Bark; towards
# higher bands it is -24 - 230/f dB/Bark plus 2 dB/Bark per 10 dB of band energy.
_A_LOWER = 10.0 ** (-2.7 * _BARK_STEP)
_A_UPPER = 10.0 ** ((-2.4 - 23.0 / _F_CENTRE_HZ) * _BARK_STEP)
_SPREAD_POWER = 0.4  # spread contributions add as (Σ E^0.4)^(1/0.4)

# Bandwidth MOVs: bins around 21.6 kHz give the test signal's noise floor; the reference's
# bandwidth is searched between 8.1 kHz and there.
_BW_FLOOR_BIN = round(21586.0 / MODEL_SAMPLE_RATE * FRAME_SAMPLES)  # 921
_BW_LOW_BIN = round(8109.0 / MODEL_SAMPLE_RATE * FRAME_SAMPLES)  # 346

# Error harmonic structure: 256 lags (the largest power of 2 below the 384 bins up to 9 kHz) of the
# log spectral ratio over 511 bins (up to 12 kHz).
_EHS_LAGS = 256
_EHS_WINDOW = math.sqrt(8.0 / 3.0) / _EHS_LAGS * _symmetric_hann(_EHS_LAGS)
#: How the EHS peak is picked: "largest" (Kabal's MATLAB, GstPEAQ; the default) or "after_valley" (as described).
EHS_PEAK_RULES = ("largest", "after_valley")
_EHS_ENERGY_THRESHOLD = 8000.0  # on the last 1024 samples of a frame, 16-bit units squared

_DATA_BOUNDARY_RUN = 5  # samples
_DATA_BOUNDARY_THRESHOLD = 200.0  # sum of |x| over the run, 16-bit units

# The basic version's network: MOV scaling ranges, input weights (11 x 3), biases, output weights.
_MOV_MIN = np.array([393.916656, 361.965332, -24.045116, 1.110661, -0.206623, 0.074318, 1.113683, 0.950345,
                     0.029985, 0.000101, 0.0])
_MOV_MAX = np.array([921.0, 881.131226, 16.212030, 107.137772, 2.886017, 13.933351, 63.257874, 1145.018555,
                     14.819740, 1.0, 1.0])
_INPUT_WEIGHTS = np.array([
    [-0.502657, 0.436333, 1.219602],
    [4.307481, 3.246017, 1.123743],
    [4.984241, -2.211189, -0.192096],
    [0.051056, -1.762424, 4.331315],
    [2.321580, 1.789971, -0.754560],
    [-5.303901, -3.452257, -10.814982],
    [2.730991, -6.111805, 1.519223],
    [0.624950, -1.331523, -5.955151],
    [3.102889, 0.871260, -5.922878],
    [-1.051468, -0.939882, -0.142913],
    [-1.804679, -0.503610, -0.620456],
])
_HIDDEN_BIASES = np.array([-2.518254, 0.654841, -2.207228])
_OUTPUT_WEIGHTS = np.array([-3.817048, 4.107138, 4.629582])
_OUTPUT_BIAS = -0.307594


# --------------------------------------------------------------------------------------------------
# Compiled kernels: the recursions across frames and across bands
# --------------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _smooth_frames(x, a, b):  # pragma: no cover - compiled
    # y[n, m] = a[m]·y[n-1, m] + b[m]·x[n, m] with y[-1] = 0, for every band m: one first-order IIR per
    # band along the frame axis (scipy's lfilter would need one call per band, the poles all differ).
    frames, bands = x.shape
    y = np.empty_like(x)
    state = np.zeros(bands)
    for n in range(frames):
        for m in range(bands):
            state[m] = a[m] * state[m] + b[m] * x[n, m]
            y[n, m] = state[m]
    return y


@numba.njit(cache=True, nogil=True)
def _spread_bands(energy, a_upper, a_lower, normalisation, bark_step, power):  # pragma: no cover - compiled
    # Level-dependent spreading of each frame's band energies (Kabal §2.8, Eqs. 23-28). Every band
    # spreads its energy to lower bands with a fixed slope and to higher bands with a slope that gets
    # shallower as its energy grows; each band's spread is normalised to unit total, and the
    # contributions add in the power-law domain. The upward sums are a triangular double loop per frame.
    frames, bands = energy.shape
    out = np.empty_like(energy)
    scaled = np.empty(bands)
    slope_up = np.empty(bands)
    slope_down = a_lower ** power
    for n in range(frames):
        for m in range(bands):
            e = energy[n, m]
            a_up = a_upper[m] * e ** (0.2 * bark_step)
            # Sums of the geometric spreading over all bands: downwards (m + 1 terms) and upwards.
            down_sum = (1.0 - a_lower ** (m + 1)) / (1.0 - a_lower)
            if abs(1.0 - a_up) < 1e-12:
                up_sum = float(bands - m)
            else:
                up_sum = (1.0 - a_up ** (bands - m)) / (1.0 - a_up)
            scaled[m] = (e / (down_sum + up_sum - 1.0)) ** power
            slope_up[m] = a_up ** power
        acc = 0.0
        for i in range(bands - 1, -1, -1):  # downward spreading, from every band m >= i
            acc = slope_down * acc + scaled[i]
            out[n, i] = acc
        for m in range(bands - 1):  # upward spreading, from every band m < i
            r = scaled[m]
            for i in range(m + 1, bands):
                r *= slope_up[m]
                out[n, i] += r
        for i in range(bands):
            out[n, i] = out[n, i] ** (1.0 / power) / normalisation[i]
    return out


def _spread(energy: np.ndarray) -> np.ndarray:
    """Unsmeared excitation from pitch patterns: both shaped (frames, 109), energies."""
    return _spread_bands(np.ascontiguousarray(energy, dtype=np.float64), _A_UPPER, _A_LOWER,
                         _spread_normalisation(), _BARK_STEP, _SPREAD_POWER)


@functools.cache
def _spread_normalisation() -> np.ndarray:
    """(109,) divisors that make a flat pattern of ones spread to ones: that pattern spread unnormalised."""
    ones = np.ones((1, _N_BANDS))
    return _spread_bands(ones, _A_UPPER, _A_LOWER, np.ones(_N_BANDS), _BARK_STEP, _SPREAD_POWER)[0]


def _smooth(x: np.ndarray, a: np.ndarray, b: np.ndarray | float | None = None) -> np.ndarray:
    """y[n] = a·y[n-1] + b·x[n] along frames (axis 0) with per-band a, b; b defaults to 1 - a."""
    b_arr = 1.0 - a if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    return _smooth_frames(np.ascontiguousarray(x, dtype=np.float64), a, np.ascontiguousarray(b_arr))


# --------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------

def _as_channels(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as float64 (channels, samples) after the checks every input gets."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise ValueError(f"{name} must be float audio (float32 or float64), got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (samples,) or (channels, samples), got shape {x.shape}")
    x2 = x[None, :] if x.ndim == 1 else x
    if x2.shape[0] not in (1, 2):
        raise ValueError(f"{name} has {x2.shape[0]} channels; PEAQ takes mono or stereo (channels first)")
    if x2.shape[1] == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x2).all():
        bad = int(np.count_nonzero(~np.isfinite(x2)))
        raise ValueError(f"{name} contains {bad} non-finite samples (NaN or inf)")
    return np.asarray(x2, dtype=np.float64)


def _prepare(reference: np.ndarray, test: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Both signals checked, resampled to 48 kHz and scaled to 16-bit units: (channels, samples) float64."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"sample_rate must be a number in Hz, got {sample_rate!r}")
    if not math.isfinite(float(sample_rate)) or float(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    ref = _as_channels(reference, "reference")
    tst = _as_channels(test, "test")
    if ref.shape != tst.shape:
        raise ValueError(f"reference and test must have the same shape (channels, samples), got {ref.shape} "
                         f"and {tst.shape}")
    if float(sample_rate) != MODEL_SAMPLE_RATE:
        # The standard defines the model at 48 kHz only. Resampled in float64 whatever the input's dtype,
        # so that the empty band above the input's Nyquist frequency holds no rounding noise (see the
        # module docstring on band-limited material).
        ref = soxr.resample(ref.T, float(sample_rate), MODEL_SAMPLE_RATE, quality="VHQ").T
        tst = soxr.resample(tst.T, float(sample_rate), MODEL_SAMPLE_RATE, quality="VHQ").T
    return np.ascontiguousarray(ref) * FULL_SCALE_16BIT, np.ascontiguousarray(tst) * FULL_SCALE_16BIT


def _data_boundary(reference_16bit: np.ndarray) -> tuple[int, int]:
    """First and last sample of the reference's content (inclusive), from (channels, samples) 16-bit units.

    The content starts at the first run of 5 samples whose absolute values sum to more than 200 in some
    channel and ends with the last such run.
    """
    run = _DATA_BOUNDARY_RUN
    if reference_16bit.shape[1] < run:
        raise ValueError(f"reference is too short for PEAQ: {reference_16bit.shape[1]} samples at 48 kHz")
    # Sums over every run of 5 samples, from a running sum (one pass, no convolution).
    running = np.cumsum(np.abs(reference_16bit), axis=1)
    sums = running[:, run - 1:].copy()
    sums[:, 1:] -= running[:, :-run]
    loud = (sums > _DATA_BOUNDARY_THRESHOLD).any(axis=0)
    if not loud.any():
        raise ValueError("reference is silent: no 5-sample run exceeds the standard's threshold of 200/32768 "
                         "(about -44 dBFS average magnitude)")
    return int(np.argmax(loud)), loud.size - 1 - int(np.argmax(loud[::-1])) + run - 1


# --------------------------------------------------------------------------------------------------
# FFT ear model
# --------------------------------------------------------------------------------------------------

@dataclass
class _Spectra:
    """Per-frame outputs of the FFT stage for one channel; band arrays are (frames, 109)."""

    band_ref: np.ndarray  # weighted power grouped into bands
    band_test: np.ndarray
    band_noise: np.ndarray  # power of the difference of the weighted magnitude spectra, grouped
    bandwidth_ref: np.ndarray  # (frames,), DFT bins, -1 where undefined
    bandwidth_test: np.ndarray
    ehs: np.ndarray  # (frames,), -1 for frames below the energy threshold


def _frames(x: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 2048) view of the hop-1024 frames of x (samples,), zero-padded past its end."""
    padded = np.zeros((n_frames - 1) * HOP_SAMPLES + FRAME_SAMPLES)
    used = min(padded.size, x.size)
    padded[:used] = x[:used]
    return np.lib.stride_tricks.sliding_window_view(padded, FRAME_SAMPLES)[::HOP_SAMPLES]


def _last_true(mask: np.ndarray) -> np.ndarray:
    """Index of the last True in each row of a (rows, n) mask, -1 for rows with none."""
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), last, -1)


def _bandwidths(power_ref: np.ndarray, power_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame bandwidths in DFT bins, from (frames, 1025) power spectra.

    The test signal's largest bin above 21.6 kHz is the noise floor; the reference's bandwidth is the
    highest bin below that (down to 8.1 kHz) 10 dB above the floor, the test signal's the highest bin
    below the reference's bandwidth 5 dB above it. Both are -1 where no bin qualifies (frames skipped
    in the average).
    """
    floor = power_test[:, _BW_FLOOR_BIN:FRAME_SAMPLES // 2].max(axis=1, keepdims=True)
    ref_hit = _last_true(power_ref[:, _BW_LOW_BIN + 1:_BW_FLOOR_BIN] >= 10.0 * floor)
    bandwidth_ref = np.where(ref_hit >= 0, ref_hit + _BW_LOW_BIN + 2, -1)
    below_ref = np.arange(_BW_FLOOR_BIN)[None, :] < bandwidth_ref[:, None]
    test_hit = _last_true((power_test[:, :_BW_FLOOR_BIN] >= 10.0 ** 0.5 * floor) & below_ref)
    bandwidth_test = np.where(test_hit >= 0, test_hit + 1, -1)
    return bandwidth_ref, bandwidth_test


def _error_harmonic_structure(power_ref: np.ndarray, power_test: np.ndarray, tail_energy_ref: np.ndarray,
                              tail_energy_test: np.ndarray, peak_rule: str) -> np.ndarray:
    """Per-frame EHS: how harmonic the log ratio of the two spectra is; (frames,).

    D[k] = ln(|T[k]|² / |R[k]|²) over the 511 bins below ~12 kHz; its normalised autocorrelation over
    256 lags, demeaned and Hann-windowed, is transformed once more, and a peak of that power spectrum is
    the EHS: with ``peak_rule`` "after_valley" the largest rising value after its first fall (the "peak
    after the first valley"), with "largest" the largest value above the zeroth one (as Kabal's MATLAB
    code does; it also counts the low-quefrency lobe a smooth spectral tilt gives).
    Frames where both signals' last 1024 samples have less energy than 8000 (16-bit units) get -1 and are
    skipped in the average.
    """
    lags = _EHS_LAGS
    span = 2 * lags - 1
    tiny = 1e-30  # only exact zeros (digital silence in one signal) need it: keeps the log finite
    d = np.log((power_test[:, :span] + tiny) / (power_ref[:, :span] + tiny))
    # C[i] = Σ_{j<256} D[j]·D[i+j] for i < 256, by FFT (no wrap-around: i + j <= 510 < 512).
    head = scipy.fft.rfft(d[:, :lags], 2 * lags, axis=1)
    full = scipy.fft.rfft(d, 2 * lags, axis=1)
    corr = scipy.fft.irfft(np.conj(head) * full, 2 * lags, axis=1)[:, :lags]
    # Normalise by the energies of the two windows D[0:256] and D[i:i+256] (Cauchy–Schwarz bound 1).
    squares = np.concatenate([np.zeros((d.shape[0], 1)), np.cumsum(d * d, axis=1)], axis=1)
    window_energy = squares[:, lags:lags + lags] - squares[:, :lags]
    window_energy[:, 0] = corr[:, 0]
    denominator = corr[:, :1] * window_energy
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(denominator > 0, corr / np.sqrt(np.where(denominator > 0, denominator, 1.0)), 1.0)
    normalised[:, 0] = 1.0
    normalised -= normalised.mean(axis=1, keepdims=True)
    spectrum = np.abs(scipy.fft.rfft(normalised * _EHS_WINDOW, axis=1)) ** 2  # (frames, 129)
    if peak_rule == "largest":
        candidates = np.where(spectrum[:, 1:] > spectrum[:, :1], spectrum[:, 1:], 0.0)
    else:
        # Largest rising value after the first fall (the first valley); 0 if the spectrum never rises again.
        steps = np.diff(spectrum, axis=1)
        falling = steps < 0
        first_fall = np.where(falling.any(axis=1), np.argmax(falling, axis=1), steps.shape[1])
        after_valley = np.arange(steps.shape[1])[None, :] > first_fall[:, None]
        candidates = np.where((steps > 0) & after_valley, spectrum[:, 1:], 0.0)
    ehs = candidates.max(axis=1)
    quiet = (tail_energy_ref < _EHS_ENERGY_THRESHOLD) & (tail_energy_test < _EHS_ENERGY_THRESHOLD)
    return np.where(quiet, -1.0, ehs)


def _ear_model_spectra(ref: np.ndarray, test: np.ndarray, n_frames: int, ehs_peak: str) -> _Spectra:
    """The FFT stage for one channel: ref and test (samples,) in 16-bit units at 48 kHz.

    Frames are processed in chunks so that memory stays bounded on long signals; only band powers and
    a few numbers per frame leave this function.
    """
    frames_ref, frames_test = _frames(ref, n_frames), _frames(test, n_frames)
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in ("ref", "test", "noise", "bw_ref", "bw_test", "ehs")}
    for start in range(0, n_frames, _CHUNK_FRAMES):
        chunk = slice(start, min(n_frames, start + _CHUNK_FRAMES))
        fr, ft = frames_ref[chunk], frames_test[chunk]
        power_ref = np.abs(scipy.fft.rfft(fr * _WINDOW, axis=1)) ** 2  # (frames, 1025), SPL-calibrated
        power_test = np.abs(scipy.fft.rfft(ft * _WINDOW, axis=1)) ** 2
        bw_ref, bw_test = _bandwidths(power_ref, power_test)
        tail_ref = np.einsum("ij,ij->i", fr[:, HOP_SAMPLES:], fr[:, HOP_SAMPLES:])
        tail_test = np.einsum("ij,ij->i", ft[:, HOP_SAMPLES:], ft[:, HOP_SAMPLES:])
        ehs = _error_harmonic_structure(power_ref, power_test, tail_ref, tail_test, ehs_peak)
        weighted_ref, weighted_test = power_ref * _EAR_WEIGHT, power_test * _EAR_WEIGHT
        # (|Xr| - |Xt|)²: the noise the test signal adds in each bin, phase ignored.
        weighted_noise = (np.sqrt(weighted_ref) - np.sqrt(weighted_test)) ** 2
        for key, weighted in (("ref", weighted_ref), ("test", weighted_test), ("noise", weighted_noise)):
            outputs[key].append(np.maximum((_GROUPING @ weighted.T).T, 1e-12))
        outputs["bw_ref"].append(bw_ref)
        outputs["bw_test"].append(bw_test)
        outputs["ehs"].append(ehs)
    joined = {k: np.concatenate(v) for k, v in outputs.items()}
    return _Spectra(joined["ref"], joined["test"], joined["noise"], joined["bw_ref"], joined["bw_test"],
                    joined["ehs"])


@dataclass
class _Patterns:
    """Excitation-domain patterns of one signal of one channel, each (frames, 109)."""

    unsmeared: np.ndarray  # excitation before time smearing
    excitation: np.ndarray  # after time smearing
    modulation: np.ndarray
    average_loudness: np.ndarray  # smoothed E^0.3, the modulation's normaliser


def _ear_model_patterns(band_power: np.ndarray) -> _Patterns:
    """From grouped band powers (frames, 109): internal noise, spreading, smearing and modulation."""
    unsmeared = _spread(band_power + _INTERNAL_NOISE)
    # Time-domain spreading: a per-band one-pole smoother; the excitation never falls below the
    # unsmeared value of the current frame (Kabal §2.9).
    excitation = np.maximum(_smooth(unsmeared, _A_SMEAR), unsmeared)
    # Modulation: smoothed absolute frame-to-frame change of E^0.3, per second, over its
    # smoothed level. The first frame's change is taken from zero, as the filters start from rest.
    loudness = unsmeared ** 0.3
    change = np.abs(np.diff(loudness, axis=0, prepend=0.0)) * _FRAME_RATE_HZ
    change_avg = _smooth(change, _A_PATTERN)
    average_loudness = _smooth(loudness, _A_PATTERN)
    modulation = change_avg / (1.0 + average_loudness / 0.3)
    return _Patterns(unsmeared, excitation, modulation, average_loudness)


def _adapt(excitation_ref: np.ndarray, excitation_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level and pattern adaptation: spectrally adapted patterns, each (frames, 109).

    The louder signal is scaled to the other's level (one correction per frame from smoothed patterns),
    then each band is scaled by smoothed ratio-based corrections averaged over neighbouring bands, so
    that linear filtering of the test signal is partly compensated before noise loudness is computed.
    """
    a = _A_PATTERN
    smooth_ref, smooth_test = _smooth(excitation_ref, a), _smooth(excitation_test, a)
    level = (np.sqrt(smooth_ref * smooth_test).sum(axis=1) / smooth_test.sum(axis=1)) ** 2
    level = level[:, None]
    adapted_ref = np.where(level > 1.0, excitation_ref / level, excitation_ref)
    adapted_test = np.where(level > 1.0, excitation_test, excitation_test * level)
    # Pattern correction: smoothed cross- and auto-products (the smoother here has no (1 - a) gain).
    cross = _smooth(adapted_test * adapted_ref, a, 1.0)
    auto = _smooth(adapted_ref * adapted_ref, a, 1.0)
    test_louder = cross >= auto
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_ref = np.where(test_louder, 1.0, cross / auto)
        ratio_test = np.where(test_louder, auto / cross, 1.0)
    # Average over bands m-3 .. m+4, clipped at the edges.
    correction_ref = _smooth(_band_average(ratio_ref, 3, 4), a)
    correction_test = _smooth(_band_average(ratio_test, 3, 4), a)
    return adapted_ref * correction_ref, adapted_test * correction_test


def _band_average(x: np.ndarray, below: int, above: int) -> np.ndarray:
    """Mean of x[:, m-below .. m+above] (clipped to the bands there are) for every band m."""
    bands = x.shape[1]
    cumulative = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    low = np.maximum(np.arange(bands) - below, 0)
    high = np.minimum(np.arange(bands) + above, bands - 1) + 1
    return (cumulative[:, high] - cumulative[:, low]) / (high - low)


# --------------------------------------------------------------------------------------------------
# Per-frame MOV precursors and their averages
# --------------------------------------------------------------------------------------------------

_LOUDNESS_THRESHOLD = 10.0 ** (3.64 * (_F_CENTRE_HZ / 1000.0) ** -0.8 / 10.0)
_LOUDNESS_INDEX = 10.0 ** ((-2.0 - 2.05 * np.arctan(_F_CENTRE_HZ / 4000.0)
                            - 0.75 * np.arctan((_F_CENTRE_HZ / 1600.0) ** 2)) / 10.0)
_LOUDNESS_SCALE = 1.07664 * (_LOUDNESS_THRESHOLD / (_LOUDNESS_INDEX * 1e4)) ** 0.23
# Masking offset of the NMR: 3 dB up to 12 Bark, then 0.25·z dB (BS.1387 Eq. 25).
_MASK_OFFSET = 10.0 ** (-np.where(np.arange(_N_BANDS) * _BARK_STEP <= 12.0, 3.0,
                                  0.25 * np.arange(_N_BANDS) * _BARK_STEP) / 10.0)
_PD_POLY = (-0.198719, 0.0550197, -0.00102438, 5.05622e-6, 9.01033e-11)


def _loudness(excitation: np.ndarray) -> np.ndarray:
    """Total loudness per frame in sone, from excitation (frames, 109)."""
    specific = _LOUDNESS_SCALE * ((1.0 - _LOUDNESS_INDEX + _LOUDNESS_INDEX * excitation / _LOUDNESS_THRESHOLD)
                                  ** 0.23 - 1.0)
    return 24.0 / _N_BANDS * np.maximum(specific, 0.0).sum(axis=1)


def _detection(excitation_ref: np.ndarray, excitation_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band probability of detection and steps above threshold, each (frames, 109)."""
    ref_db, test_db = 10.0 * np.log10(excitation_ref), 10.0 * np.log10(excitation_test)
    diff_db = ref_db - test_db
    louder_ref = diff_db > 0
    level = np.where(louder_ref, 0.3 * ref_db + 0.7 * test_db, test_db)
    exponent = np.where(louder_ref, 4.0, 6.0)
    c0, c1, c2, c3, c4 = _PD_POLY
    safe_level = np.where(level > 0, level, 1.0)
    step = 5.95072 * (6.39468 / safe_level) ** 1.71332 + c0 + safe_level * (
        c1 + safe_level * (c2 + safe_level * (c3 + safe_level * c4)))
    step = np.where(level > 0, step, 1e30)  # below 0 dB the difference is never detected
    probability = 1.0 - 0.5 ** ((np.abs(diff_db) / step) ** exponent)
    steps_above = np.abs(np.trunc(diff_db)) / step
    return probability, steps_above


@dataclass
class _Precursors:
    """Per-frame values (over all frames from the signal's start) for one channel."""

    bandwidth_ref: np.ndarray
    bandwidth_test: np.ndarray
    nmr_avg: np.ndarray
    nmr_max: np.ndarray
    mod_diff_1: np.ndarray
    mod_diff_2: np.ndarray
    mod_weight: np.ndarray
    noise_loudness: np.ndarray
    loudness_ref: np.ndarray
    loudness_test: np.ndarray
    ehs: np.ndarray
    detection_probability: np.ndarray  # (frames, 109)
    detection_steps: np.ndarray  # (frames, 109)


def _frame_precursors(ref: np.ndarray, test: np.ndarray, n_frames: int, ehs_peak: str) -> _Precursors:
    """Everything the MOVs average, per frame, for one channel: ref and test (samples,) in 16-bit units."""
    spectra = _ear_model_spectra(ref, test, n_frames, ehs_peak)
    p_ref, p_test = _ear_model_patterns(spectra.band_ref), _ear_model_patterns(spectra.band_test)

    # Modulation differences; the second one weights decreases of modulation by 0.1.
    m_ref, m_test = p_ref.modulation, p_test.modulation
    diff = np.abs(m_test - m_ref)
    mod_diff_1 = 100.0 / _N_BANDS * (diff / (1.0 + m_ref)).sum(axis=1)
    mod_diff_2 = 100.0 / _N_BANDS * (np.where(m_ref > m_test, 0.1, 1.0) * diff / (0.01 + m_ref)).sum(axis=1)
    average = p_ref.average_loudness
    mod_weight = (average / (average + 100.0 * _INTERNAL_NOISE ** 0.3)).sum(axis=1)

    # Noise loudness from the spectrally adapted patterns.
    adapted_ref, adapted_test = _adapt(p_ref.excitation, p_test.excitation)
    s_ref, s_test = 0.15 * m_ref + 0.5, 0.15 * m_test + 0.5
    beta = np.exp(-1.5 * (adapted_test - adapted_ref) / adapted_ref)
    audible = np.maximum(s_test * adapted_test - s_ref * adapted_ref, 0.0)
    masker = _INTERNAL_NOISE + s_ref * adapted_ref * beta
    noise_loudness = 24.0 / _N_BANDS * ((_INTERNAL_NOISE / s_test) ** 0.23
                                        * ((1.0 + audible / masker) ** 0.23 - 1.0)).sum(axis=1)
    noise_loudness = np.maximum(noise_loudness, 0.0)

    # Noise-to-mask ratio: noise pattern over the masked threshold of the reference.
    nmr = spectra.band_noise / (_MASK_OFFSET * p_ref.excitation)
    probability, steps = _detection(p_ref.excitation, p_test.excitation)
    return _Precursors(
        bandwidth_ref=spectra.bandwidth_ref, bandwidth_test=spectra.bandwidth_test,
        nmr_avg=nmr.mean(axis=1), nmr_max=nmr.max(axis=1),
        mod_diff_1=mod_diff_1, mod_diff_2=mod_diff_2, mod_weight=mod_weight, noise_loudness=noise_loudness,
        loudness_ref=_loudness(p_ref.excitation), loudness_test=_loudness(p_test.excitation),
        ehs=spectra.ehs, detection_probability=probability, detection_steps=steps,
    )


def _mean_of_non_negative(x: np.ndarray) -> float:
    """Mean of the entries >= 0 (negative entries flag frames without a value); 0 if there are none."""
    kept = x[x >= 0]
    return float(kept.mean()) if kept.size else 0.0


def _windowed_average(x: np.ndarray, length: int) -> float:
    """sqrt(mean over windows of (mean of sqrt(x) over `length` frames)^4); 0 if too short."""
    if x.size < length:
        return 0.0
    window_means = np.convolve(np.sqrt(x), np.full(length, 1.0 / length), mode="valid")
    return float(np.sqrt(np.mean(window_means ** 4)))


def _average_movs(channels: list[_Precursors], first: int, count: int) -> dict[str, float]:
    """The 11 MOVs from per-frame precursors of each channel, over frames first .. first + count - 1.

    Frames before ``first`` only warmed up the filters. The modulation MOVs skip the first 0.5 s of the
    signal (24 frames, counted from its first frame); RmsNoiseLoudB also skips frames until 50 ms
    after both signals first exceed 0.1 sone.
    """
    window = slice(first, first + count)
    settle = max(0, math.ceil(0.5 * _FRAME_RATE_HZ) - first)
    loud_after = count
    for ch in channels:
        loud = np.flatnonzero((ch.loudness_ref[window] > 0.1) & (ch.loudness_test[window] > 0.1))
        if loud.size:
            loud_after = min(loud_after, int(loud[0]))
    noise_start = max(loud_after + math.ceil(0.05 * _FRAME_RATE_HZ), settle)

    per_channel: dict[str, list[float]] = {name: [] for name in MOV_NAMES}
    for ch in channels:
        per_channel["BandwidthRefB"].append(_mean_of_non_negative(ch.bandwidth_ref[window]))
        per_channel["BandwidthTestB"].append(_mean_of_non_negative(ch.bandwidth_test[window]))
        per_channel["TotalNMRB"].append(10.0 * math.log10(float(np.mean(ch.nmr_avg[window]))))
        per_channel["RelDistFramesB"].append(float(np.mean(ch.nmr_max[window] > 10.0 ** 0.15)))
        mod_1, mod_2, weight = (v[window][settle:] for v in (ch.mod_diff_1, ch.mod_diff_2, ch.mod_weight))
        per_channel["WinModDiff1B"].append(_windowed_average(mod_1, math.floor(0.1 * _FRAME_RATE_HZ)))
        per_channel["AvgModDiff1B"].append(float(np.sum(weight * mod_1) / np.sum(weight)) if mod_1.size else 0.0)
        per_channel["AvgModDiff2B"].append(float(np.sum(weight * mod_2) / np.sum(weight)) if mod_2.size else 0.0)
        noise = ch.noise_loudness[window][noise_start:]
        per_channel["RmsNoiseLoudB"].append(float(np.sqrt(np.mean(noise ** 2))) if noise.size else 0.0)
        per_channel["EHSB"].append(1000.0 * _mean_of_non_negative(ch.ehs[window]))
    movs = {name: float(np.mean(values)) for name, values in per_channel.items() if values}

    # Detection probability: the channels combine per band (the larger), then the bands per frame.
    probability = np.max([ch.detection_probability[window] for ch in channels], axis=0)
    steps = np.max([ch.detection_steps[window] for ch in channels], axis=0)
    frame_probability = 1.0 - np.prod(1.0 - probability, axis=1)
    frame_steps = steps.sum(axis=1)
    smoothed = scipy.signal.lfilter([0.1], [1.0, -0.9], frame_probability)
    movs["MFPDB"] = float(max(0.0, smoothed.max()))
    detected = frame_probability > 0.5
    total_steps = float(frame_steps[detected].sum())
    if not detected.any():
        movs["ADBB"] = 0.0
    else:
        movs["ADBB"] = math.log10(total_steps / int(detected.sum())) if total_steps > 0 else -0.5
    return {name: movs[name] for name in MOV_NAMES}


# --------------------------------------------------------------------------------------------------
# Neural network and public API
# --------------------------------------------------------------------------------------------------

def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


def distortion_index_from_movs(movs: dict[str, float]) -> float:
    """The basic network's distortion index DI from the 11 MOVs (keys :data:`MOV_NAMES`)."""
    missing = [name for name in MOV_NAMES if name not in movs]
    if missing:
        raise ValueError(f"movs lacks {', '.join(missing)}")
    values = np.array([float(movs[name]) for name in MOV_NAMES])
    if not np.isfinite(values).all():
        raise ValueError(f"movs must be finite, got {dict(zip(MOV_NAMES, values.tolist(), strict=True))}")
    scaled = (values - _MOV_MIN) / (_MOV_MAX - _MOV_MIN)  # not clipped to [0, 1], as in the standard
    hidden = _sigmoid(_HIDDEN_BIASES + scaled @ _INPUT_WEIGHTS)
    return float(_OUTPUT_BIAS + _OUTPUT_WEIGHTS @ hidden)


def odg_from_distortion_index(distortion_index: float) -> float:
    """ODG = bmin + (bmax - bmin)·sigmoid(DI), in [-3.98, 0.22]."""
    low, high = ODG_RANGE
    return float(low + (high - low) * _sigmoid(distortion_index))


def odg_from_movs(movs: dict[str, float]) -> float:
    """The Objective Difference Grade from the 11 MOVs of the basic version."""
    return odg_from_distortion_index(distortion_index_from_movs(movs))


@dataclass(frozen=True)
class PeaqResult:
    """The outcome of :func:`peaq`.

    Attributes:
        odg: Objective Difference Grade, in [-3.98, 0.22]: 0 imperceptible ... -4 very annoying.
        distortion_index: the network's output before the final sigmoid (larger is better).
        movs: the 11 model output variables of the basic version, keyed by :data:`MOV_NAMES`
            (BandwidthRefB and BandwidthTestB in DFT bins of 23.4 Hz, TotalNMRB in dB, EHSB scaled by 1000,
            MFPDB and RelDistFramesB fractions, the rest as the standard defines them).
    """

    odg: float
    distortion_index: float
    movs: dict[str, float]


def peaq(reference: np.ndarray, test: np.ndarray, sample_rate: float, *, ehs_peak: str = "largest") -> PeaqResult:
    """PEAQ basic version (ITU-R BS.1387-1) of ``test`` against ``reference``.

    Args:
        reference: the clean signal, float32/float64, shape (samples,) or (channels, samples) with 1 or 2
            channels, full scale ±1.0.
        test: the signal to grade, same shape and sample rate as ``reference``, time-aligned with it.
        sample_rate: of both signals, in Hz. Anything but 48 kHz is resampled to 48 kHz first with soxr's
            VHQ filter, since the model is defined at 48 kHz only.
        ehs_peak: how the error harmonic structure picks its peak: "largest" (the default), as Kabal's
            MATLAB PQevalAudio (2004; the tool behind many published declipping scores) and, in effect,
            GstPEAQ do, or "after_valley", the largest peak after the first valley as Kabal's report
            describes it. Only EHSB, and through it the ODG, depends on it.

    The level is the standard's assumption: a full-scale sine plays at 92 dB SPL. Scaling both signals
    down by 20 dB therefore grades them as heard 20 dB quieter, not the same; a test signal at another
    level than the reference is graded as such (match levels first if that is not wanted). A silent test
    signal scores about -1.3, as in Kabal's code: the network never saw such a pair. Only magnitude
    spectra enter the model, so a polarity-inverted copy scores like an identical one.

    Returns:
        :class:`PeaqResult` with the ODG, the distortion index and the 11 MOVs.

    Raises:
        ValueError: non-float, empty, NaN/inf or wrongly shaped audio, mismatched shapes, a bad sample
            rate, a silent reference (nothing above the standard's data threshold of 200/32768 summed
            over 5 samples), or content shorter than the model's first full frame.
    """
    if ehs_peak not in EHS_PEAK_RULES:
        raise ValueError(f"ehs_peak must be one of {', '.join(EHS_PEAK_RULES)}, got {ehs_peak!r}")
    ref, tst = _prepare(reference, test, sample_rate)
    start, end = _data_boundary(ref)
    first = start // HOP_SAMPLES
    # The last frame is the last whose second half starts no later than one sample past the content.
    last = (end + 1 - HOP_SAMPLES) // HOP_SAMPLES
    if last < first:
        raise ValueError(f"the reference's content ({end - start + 1} samples at 48 kHz) is too short for "
                         f"PEAQ's {FRAME_SAMPLES}-sample frames")
    n_frames = last + 1  # frames from the signal's start: those before `first` warm up the filters
    channels = [_frame_precursors(ref[c], tst[c], n_frames, ehs_peak) for c in range(ref.shape[0])]
    movs = _average_movs(channels, first, last - first + 1)
    distortion_index = distortion_index_from_movs(movs)
    return PeaqResult(odg=odg_from_distortion_index(distortion_index), distortion_index=distortion_index,
                      movs=movs)


def peaq_odg(reference: np.ndarray, test: np.ndarray, sample_rate: float) -> float:
    """PEAQ's Objective Difference Grade of ``test`` against ``reference``, in [-3.98, 0.22].

    Shapes (samples,) or (channels, samples), full scale ±1.0 heard at 92 dB SPL, any sample rate
    (resampled to 48 kHz); see :func:`peaq` for the details and the MOVs.
    """
    return peaq(reference, test, sample_rate).odg
