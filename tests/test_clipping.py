import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from effects import hard_clip, sdr_db, soft_clip

audio = st.one_of(
    arrays(np.float32, st.integers(1, 300), elements=st.floats(-1, 1, width=32)),
    arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 200)), elements=st.floats(-1, 1, width=32)),
)


def test_hard_clip_hand_computed():
    x = np.array([0.0, 0.05, -0.05, 0.2, -0.5, 0.09], dtype=np.float32)
    # 20 dB is a factor of 10: 0.05 -> 0.5, 0.2 -> 2 -> clipped to 1, 0.09 -> 0.9.
    expected = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.9], dtype=np.float32)
    np.testing.assert_allclose(hard_clip(x, 20.0), expected, rtol=1e-6)
    np.testing.assert_allclose(hard_clip(x, 20.0, threshold=0.6), np.clip(expected, -0.6, 0.6), rtol=1e-6)
    np.testing.assert_array_equal(hard_clip(x, 0.0), x)


def test_soft_clip_hand_computed():
    x = np.array([0.0, 0.05, -0.05, 0.2, -0.5, 0.1], dtype=np.float32)
    # m = 10 x: 0.5 -> 0.5 - 0.125/3, 2 -> 2/3, -5 -> -2/3, 1 -> 2/3 (the branches meet).
    expected = np.array([0.0, 0.5 - 0.125 / 3, -(0.5 - 0.125 / 3), 2 / 3, -2 / 3, 2 / 3])
    np.testing.assert_allclose(soft_clip(x, 20.0), expected, atol=1e-6)


@given(audio, st.floats(-60, 100))
def test_hard_clip_range_shape_dtype(x, gain_db):
    y = hard_clip(x, gain_db, threshold=0.5)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.all(np.abs(y) <= np.float32(0.5))


@given(audio, st.floats(-60, 100))
def test_soft_clip_range_shape_dtype(x, gain_db):
    y = soft_clip(x, gain_db)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.all(np.abs(y) <= np.float32(2 / 3) + 1e-7)


@settings(max_examples=50)
@given(audio.filter(lambda x: np.abs(x).max() > 1e-3), st.floats(0, 50), st.floats(0.5, 20))
@pytest.mark.parametrize("shaper", [hard_clip, soft_clip])
def test_sdr_falls_as_gain_rises(shaper, x, gain_db, step_db):
    # Undo the gain so the two outputs are comparable with the input: more drive, more distortion.
    def input_sdr(g):
        # Above ~150 dB the "distortion" is float rounding of the gain and its inverse, not clipping.
        return min(sdr_db(x.astype(np.float64), shaper(x.astype(np.float64), g) / 10 ** (g / 20)), 150.0)

    assert input_sdr(gain_db + step_db) <= input_sdr(gain_db) + 1e-9


def test_sdr_falls_on_music(guitar):
    sdrs = [sdr_db(guitar, hard_clip(guitar, g) / 10 ** (g / 20)) for g in (0, 5, 10, 20, 30)]
    assert sdrs[0] == np.inf and np.all(np.diff(sdrs[1:]) < 0)


def test_float64_keeps_dtype():
    x = np.linspace(-1, 1, 11)
    assert hard_clip(x, 6.0).dtype == np.float64
    assert soft_clip(x, 6.0).dtype == np.float64


@pytest.mark.parametrize("shaper", [hard_clip, soft_clip])
@pytest.mark.parametrize("gain_db", [float("nan"), float("inf"), -61.0, 101.0, "loud"])
def test_bad_gain_rejected(shaper, gain_db):
    with pytest.raises((ValueError, TypeError), match="gain_db"):
        shaper(np.zeros(4, dtype=np.float32), gain_db)


@pytest.mark.parametrize("shaper", [hard_clip, soft_clip])
def test_bad_audio_rejected(shaper):
    with pytest.raises(ValueError, match="non-finite"):
        shaper(np.array([0.0, np.nan], dtype=np.float32), 10.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        shaper(np.array([1, 2], dtype=np.int16), 10.0)
    with pytest.raises(ValueError, match="shape"):
        shaper(np.zeros((1, 2, 3), dtype=np.float32), 10.0)
    with pytest.raises(TypeError, match="numpy array"):
        shaper([0.1, 0.2], 10.0)


def test_bad_threshold_rejected():
    with pytest.raises(ValueError, match="threshold"):
        hard_clip(np.zeros(4, dtype=np.float32), 10.0, threshold=0.0)
