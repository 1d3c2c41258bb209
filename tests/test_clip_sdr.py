import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from effects import clip_to_sdr, clipping_threshold_for_sdr, hard_clip, sdr_db

signals = st.one_of(
    arrays(np.float32, st.integers(1, 400), elements=st.floats(-1, 1, width=32, allow_subnormal=False)),
    arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 300)),
           elements=st.floats(-1, 1, width=32, allow_subnormal=False)),
)
targets = st.floats(0.0, 60.0, exclude_min=True)


def _brute_force_threshold(x: np.ndarray, sdr: float) -> float:
    """Bisection on the residual energy in float64: slow, obviously right."""
    a = np.abs(x.astype(np.float64)).ravel()
    target = np.dot(a, a) * 10 ** (-sdr / 10)
    low, high = 0.0, a.max()
    for _ in range(200):
        middle = 0.5 * (low + high)
        residual = np.sum(np.maximum(a - middle, 0.0) ** 2)
        low, high = (middle, high) if residual > target else (low, middle)
    return 0.5 * (low + high)


@settings(max_examples=300, deadline=None)
@given(signals, targets)
def test_sdr_is_exact(x, sdr):
    assume(np.abs(x).max() >= 1e-6)
    clipped, gain_db = clip_to_sdr(x, sdr)
    assert clipped.shape == x.shape and clipped.dtype == x.dtype
    assert abs(sdr_db(x, clipped) - sdr) <= 0.01
    assert math.isfinite(gain_db)


@settings(max_examples=100, deadline=None)
@given(signals, targets)
def test_threshold_matches_bisection(x, sdr):
    assume(np.abs(x).max() >= 1e-6)
    assert clipping_threshold_for_sdr(x, sdr) == pytest.approx(_brute_force_threshold(x, sdr), rel=1e-9,
                                                                abs=1e-12)


@pytest.mark.parametrize("sdr", [1, 3, 5, 7, 10, 15, 20, 35, 60])
def test_exact_on_music(guitar, stereo_guitar, sdr):
    for x in (guitar, stereo_guitar):
        clipped, _ = clip_to_sdr(x, sdr)
        assert abs(sdr_db(x, clipped) - sdr) <= 0.01


def test_exact_on_many_equal_magnitudes():
    # A square wave puts every sample in one histogram bin, and ties at every breakpoint.
    x = np.tile(np.array([0.5, -0.5], dtype=np.float32), 5000)
    x[::7] *= 0.25
    for sdr in (0.5, 6, 30, 60):
        clipped, _ = clip_to_sdr(x, sdr)
        assert abs(sdr_db(x, clipped) - sdr) <= 0.01


def test_hand_computed_single_peak():
    # One sample of 1 among zeros: residual (1 - θ)² must be 1/10 of the energy 1 at 10 dB.
    x = np.zeros(100, dtype=np.float32)
    x[40] = 1.0
    clipped, gain_db = clip_to_sdr(x, 10.0)
    theta = 1 - math.sqrt(0.1)
    assert clipped[40] == pytest.approx(theta, rel=1e-6)
    assert gain_db == pytest.approx(-20 * math.log10(theta), rel=1e-9)


def test_gain_is_the_equivalent_hard_clip(guitar):
    clipped, gain_db = clip_to_sdr(guitar, 5.0)
    theta = 10 ** (-gain_db / 20)
    np.testing.assert_allclose(hard_clip(guitar, gain_db), clipped / theta, atol=1e-5)


def test_lower_sdr_clips_harder(guitar):
    gains = [clip_to_sdr(guitar, sdr)[1] for sdr in (1, 5, 10, 20, 40)]
    assert np.all(np.diff(gains) < 0)


@pytest.mark.parametrize("sdr", [0.0, -3.0, 60.5, float("nan"), float("inf")])
def test_bad_targets_rejected(guitar, sdr):
    with pytest.raises(ValueError, match="sdr_db"):
        clip_to_sdr(guitar, sdr)


def test_silent_input_rejected():
    with pytest.raises(ValueError, match="silent"):
        clip_to_sdr(np.zeros((2, 100), dtype=np.float32), 10.0)


def test_nan_input_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        clip_to_sdr(np.array([0.5, np.nan], dtype=np.float32), 10.0)
