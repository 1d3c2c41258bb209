import numpy as np
import pytest

from effects import Overdrive, overdrive


def _reference(x: np.ndarray, gain_db: float, colour: float) -> np.ndarray:
    """A direct transcription of Eq. 6 with SoX's input grid, offset, state and clamp, one sample at a time."""
    gain, offset = 10 ** (gain_db / 20), colour / 200
    out = np.empty_like(x, dtype=np.float64)
    for c, channel in enumerate(np.atleast_2d(x)):
        last_in = last_out = 0.0
        # SoX's 32-bit integer samples: truncated towards zero, clamped to [-2^31, 2^31 - 1].
        grid = np.clip(np.trunc(channel.astype(np.float64) * 2.0**31), -2.0**31, 2.0**31 - 1) / 2.0**31
        for n, dry in enumerate(grid):
            m = dry * gain + offset
            shaped = -2 / 3 if m < -1 else 2 / 3 if m > 1 else m - m**3 / 3
            last_out = shaped - last_in + 0.995 * last_out
            last_in = shaped
            np.atleast_2d(out)[c, n] = min(max(0.5 * dry + 0.75 * last_out, -1.0), 1.0)
    return out


def test_hand_computed_first_samples():
    x = np.array([0.1, 0.1, -0.2, 0.0], dtype=np.float32)
    # 20 dB: m = 1.0 -> 2/3; d0 = 2/3, y0 = 0.05 + 0.5; d1 = 0 + 0.995 * 2/3; m = -2 -> -2/3 ...
    d0 = 2 / 3
    d1 = 0.995 * d0
    d2 = -2 / 3 - 2 / 3 + 0.995 * d1
    d3 = 0 + 2 / 3 + 0.995 * d2
    expected = [0.05 + 0.75 * d0, 0.05 + 0.75 * d1, -0.1 + 0.75 * d2, 0.75 * d3]
    np.testing.assert_allclose(overdrive(x, 20.0), expected, atol=1e-6)


@pytest.mark.parametrize("gain_db,colour", [(5, 0), (20, 20), (35, 0), (50, 100)])
def test_matches_transcription(guitar, gain_db, colour):
    x = guitar[:, :4000]
    np.testing.assert_allclose(overdrive(x, gain_db, colour), _reference(x, gain_db, colour), atol=1e-6)


@pytest.mark.parametrize("gain_db,colour", [(5, 0), (30, 20), (100, 100)])
def test_float64_input_is_exact(guitar, gain_db, colour):
    # float64 audio takes the kernel's float64 shaper: only the order of rounding differs from Eq. 6.
    x = np.concatenate([guitar[:, :3000], np.ones((1, 5)), -np.ones((1, 5)), guitar[:, 3000:4000] * 1e-3],
                       axis=1).astype(np.float64)
    np.testing.assert_allclose(overdrive(x, gain_db, colour), _reference(x, gain_db, colour), rtol=0, atol=1e-12)


@pytest.mark.parametrize("gain_db", [1, 10, 20, 30, 40, 50, 65, 80, 100])
@pytest.mark.parametrize("colour", [0, 20, 55, 100])
def test_matches_sox_binary(run_sox, guitar, gain_db, colour):
    expected = run_sox(guitar, "overdrive", str(gain_db), str(colour))
    np.testing.assert_allclose(overdrive(guitar, gain_db, colour), expected, rtol=0, atol=1e-6)


def test_matches_sox_on_quiet_and_loud_music(run_sox, guitar):
    # Quiet passages exercise SoX's integer input grid, loud ones the output clamp.
    for scale in (0.001, 1.1):
        x = np.clip(guitar * scale, -1, 1).astype(np.float32)
        for gain_db in (30, 100):
            np.testing.assert_allclose(overdrive(x, gain_db), run_sox(x, "overdrive", str(gain_db), "0"),
                                       rtol=0, atol=1e-6)


def test_matches_sox_per_channel_state(run_sox, stereo_guitar):
    expected = run_sox(stereo_guitar, "overdrive", "40", "20")
    np.testing.assert_allclose(overdrive(stereo_guitar, 40, 20), expected, rtol=0, atol=1e-6)


def test_zero_gain_passes_through_like_sox(run_sox, guitar):
    y = overdrive(guitar, 0.0, colour=50)
    np.testing.assert_array_equal(y, guitar)
    np.testing.assert_allclose(run_sox(guitar, "overdrive", "0", "50"), guitar, atol=1e-7)


def test_streaming_equals_whole_signal(stereo_guitar):
    whole = overdrive(stereo_guitar, 30, 20)
    stream = Overdrive(30, 20, channels=2)
    pieces = [stream.process(stereo_guitar[:, s:s + 999]) for s in range(0, stereo_guitar.shape[1], 999)]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    stream.reset()
    np.testing.assert_array_equal(stream.process(stereo_guitar), whole)


def test_output_clamped_and_typed(stereo_guitar):
    loud = np.clip(stereo_guitar * 2, -1, 1).astype(np.float32)
    y = overdrive(loud, 100, 100)
    assert y.dtype == np.float32 and y.shape == loud.shape
    assert np.abs(y).max() <= 1.0
    mono = overdrive(loud[0].astype(np.float64), 30)
    assert mono.dtype == np.float64 and mono.shape == loud[0].shape


@pytest.mark.parametrize("kwargs,match", [
    ({"gain_db": -1}, "gain_db"), ({"gain_db": 101}, "gain_db"), ({"gain_db": float("nan")}, "gain_db"),
    ({"gain_db": 20, "colour": -5}, "colour"), ({"gain_db": 20, "colour": 100.5}, "colour"),
])
def test_bad_parameters_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        overdrive(np.zeros(8, dtype=np.float32), **kwargs)


def test_bad_audio_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        overdrive(np.array([0.1, np.inf], dtype=np.float32), 20)
    with pytest.raises(ValueError, match="channels"):
        Overdrive(20, channels=2).process(np.zeros((1, 10), dtype=np.float32))
