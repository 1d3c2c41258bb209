"""A-SPADE (training/baselines/aspade.py): the vectorised solver against the frame-wise transcription of the
toolbox, the consistency A-SPADE guarantees, pass-through of unclipped audio, restoration quality, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import effects
import training.baselines.aspade as aspade_module
from datagen.demo import demo_guitar
from training.baselines.aspade import _kth_largest, _mth_largest_below, _mth_smallest_from, aspade, aspade_framewise

RATE = 16000


@pytest.fixture(scope="module")
def short_guitar() -> np.ndarray:
    """One second of the demo guitar, (1, 16000) float32."""
    return demo_guitar(1.0, RATE, seed=7, peak=0.9)


def sines(seconds: float = 1.0, seed: int = 1) -> np.ndarray:
    """Six steady sinusoids, (1, samples) float32, peak 0.9: the signal A-SPADE's sparsity model describes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            for f in rng.uniform(100.0, 2000.0, 6))
    return (0.9 * x / np.abs(x).max())[np.newaxis].astype(np.float32)


def clipped_masks(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    theta = float(np.abs(y).max())
    return y >= theta, y <= -theta, theta


def delta_sdr_db(clean: np.ndarray, clipped: np.ndarray, restored: np.ndarray, mask=None) -> float:
    """Output SDR minus input SDR, over ``mask`` (all samples when None)."""
    clean, clipped, restored = (np.asarray(a, dtype=np.float64) for a in (clean, clipped, restored))
    if mask is not None:
        clean, clipped, restored = clean[mask], clipped[mask], restored[mask]
    return 10 * np.log10(np.sum((clean - clipped) ** 2) / np.sum((clean - restored) ** 2))


# ------------------------------------------------------------------------------------------------------------
# The two implementations agree


def test_vectorised_matches_framewise_on_guitar(short_guitar):
    y, _ = effects.clip_to_sdr(short_guitar.astype(np.float64), 5.0)
    ours, ours_stats = aspade(y, return_stats=True)
    loop, loop_stats = aspade_framewise(y, return_stats=True)
    assert np.max(np.abs(ours - loop)) < 1e-6
    np.testing.assert_array_equal(ours_stats.iterations, loop_stats.iterations)
    np.testing.assert_array_equal(ours_stats.converged, loop_stats.converged)
    assert ours_stats.clipped_frames.sum() > 10  # the comparison covered many solved frames
    assert ours_stats.mean_iterations > 5


@pytest.mark.parametrize("options", [
    # hop not dividing the window, k growing by 2 every 3rd iteration, an odd DFT size (redundancy 1, odd window)
    {"window_samples": 255, "hop_samples": 100, "redundancy": 1, "sparsity_step": 2, "sparsity_every": 3},
    {"window_samples": 256, "hop_samples": 64, "redundancy": 3, "epsilon": 0.02},
    # an iteration cap that stops frames before they converge: the best iterate is kept
    {"window_samples": 512, "hop_samples": 128, "max_iterations": 7},
])
def test_vectorised_matches_framewise_with_other_settings(short_guitar, options):
    y, _ = effects.clip_to_sdr(short_guitar[:, :8000].astype(np.float64), 3.0)
    ours, ours_stats = aspade(y, return_stats=True, **options)
    loop, loop_stats = aspade_framewise(y, return_stats=True, **options)
    assert np.max(np.abs(ours - loop)) < 1e-6
    np.testing.assert_array_equal(ours_stats.iterations, loop_stats.iterations)
    if "max_iterations" in options:
        clipped = ours_stats.clipped_frames
        assert ours_stats.iterations[clipped].max() == options["max_iterations"]
        assert not ours_stats.converged[clipped & (ours_stats.iterations == options["max_iterations"])].any()


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(0, 12), min_size=1, max_size=60), data=st.data())
def test_selections_match_a_sort(values, data):
    # Small integers make ties common: the helpers must return the k-th value counted with multiplicity.
    values = np.array(values, dtype=np.float64) / 4
    descending = np.sort(values)[::-1]
    k = data.draw(st.integers(1, values.size))
    assert _kth_largest(values.copy(), k) == descending[k - 1]
    limit = data.draw(st.sampled_from(sorted(set(values.tolist())) + [4.0]))
    below, from_limit = descending[descending < limit], np.sort(values[values >= limit])
    buffer = np.empty(values.size)
    if below.size:
        m = data.draw(st.integers(1, below.size))
        assert _mth_largest_below(values, limit, m, buffer) == below[m - 1]
    if from_limit.size:
        m = data.draw(st.integers(1, from_limit.size))
        assert _mth_smallest_from(values, limit, m, buffer) == from_limit[m - 1]


# ------------------------------------------------------------------------------------------------------------
# Consistency: what A-SPADE guarantees after overlap-add


def test_output_is_consistent_with_the_clipped_float32_input(short_guitar):
    y, _ = effects.clip_to_sdr(short_guitar, 3.0)
    out, stats = aspade(y, return_stats=True)
    assert out.dtype == np.float32 and out.shape == y.shape
    high, low, theta = clipped_masks(y)
    reliable = ~(high | low)
    # Every frame's estimate has the observed samples on R and the dual window sums to one: in float64 the
    # error is rounding, far under float32's half ulp, so the float32 output is bit-exact there.
    np.testing.assert_array_equal(out[reliable], y[reliable])
    assert np.all(out[high] >= theta * (1 - 1e-6)) and np.all(out[low] <= -theta * (1 - 1e-6))
    # ... and A-SPADE moved the clipped samples beyond the threshold
    assert np.mean(np.abs(out[high | low]) > theta * 1.01) > 0.5
    assert stats.thresholds[0] == pytest.approx(theta)


def test_float64_output_is_consistent_and_unclipped_frames_are_unchanged():
    x = demo_guitar(1.0, RATE, seed=3, peak=0.9).astype(np.float64)
    # Clip only the second half, the first kept under θ, so the first frames hold no clipped sample at all.
    theta = 0.6 * float(np.abs(x[:, 8000:]).max())
    x[:, :8000] *= 0.5 * theta / np.abs(x[:, :8000]).max()
    y = np.clip(x, -theta, theta)
    assert np.abs(y[:, :8000]).max() < theta and np.sum(np.abs(y) == theta) > 10
    out, stats = aspade(y, threshold=theta, return_stats=True)
    high, low = y >= theta, y <= -theta
    reliable = ~(high | low)
    np.testing.assert_allclose(out[reliable], y[reliable], rtol=0, atol=1e-12)
    assert np.all(out[high] >= theta * (1 - 1e-12)) and np.all(out[low] <= -theta * (1 - 1e-12))
    assert not stats.clipped_frames[0, :20].any() and stats.clipped_frames[0, -20:].any()
    assert np.all(stats.iterations[~stats.clipped_frames] == 0)
    assert np.all(stats.iterations[stats.clipped_frames] >= 1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=st.integers(8, 64), hop_fraction=st.floats(0.1, 0.9), redundancy=st.integers(1, 3),
       seed=st.integers(0, 2**16), clip_level=st.floats(0.3, 0.9))
def test_consistency_for_any_framing(window, hop_fraction, redundancy, seed, clip_level):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(700))  # a random walk: smooth enough to clip in plateaus
    theta = clip_level * np.abs(x).max()
    y = np.clip(x, -theta, theta)
    hop = max(1, min(window - 1, int(hop_fraction * window)))
    out = aspade(y, threshold=theta, window_samples=window, hop_samples=hop, redundancy=redundancy,
                 max_iterations=50)
    high, low = y >= theta, y <= -theta
    reliable = ~(high | low)
    np.testing.assert_allclose(out[reliable], y[reliable], rtol=0, atol=1e-9 * theta)
    assert np.all(out[high] >= theta * (1 - 1e-12)) and np.all(out[low] <= -theta * (1 - 1e-12))


# ------------------------------------------------------------------------------------------------------------
# Unclipped audio, channels


def test_unclipped_signal_passes_through_unchanged(short_guitar):
    # Its peak is one lone sample, not a clipping plateau: nothing is clipped, nothing iterates.
    out, stats = aspade(short_guitar, return_stats=True)
    np.testing.assert_array_equal(out, short_guitar)
    assert out is not short_guitar and out.dtype == short_guitar.dtype
    assert not stats.clipped_frames.any() and not stats.iterations.any()
    assert np.isnan(stats.thresholds[0])
    # A clipped signal given a threshold above its peak is unclipped too.
    y, _ = effects.clip_to_sdr(short_guitar, 5.0)
    np.testing.assert_array_equal(aspade(y, threshold=1.01 * float(np.abs(y).max())), y)


def test_channels_are_declipped_independently(short_guitar):
    left, _ = effects.clip_to_sdr(short_guitar[0, :6000], 5.0)
    right = demo_guitar(6000 / RATE, RATE, seed=5, peak=0.4)[0]  # unclipped
    stereo = np.stack([left, right])
    out = aspade(stereo, window_samples=512, hop_samples=128)
    assert out.shape == stereo.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], aspade(left, window_samples=512, hop_samples=128))
    np.testing.assert_array_equal(out[1], right)


def test_chunked_framing_gives_the_same_output(short_guitar, monkeypatch):
    y, _ = effects.clip_to_sdr(short_guitar[:, :6000], 3.0)
    whole = aspade(y, window_samples=512, hop_samples=128)
    monkeypatch.setattr(aspade_module, "_FRAMING_CHUNK", 5)
    monkeypatch.setattr(aspade_module, "BATCH_FRAMES", 3)
    np.testing.assert_array_equal(aspade(y, window_samples=512, hop_samples=128), whole)


# ------------------------------------------------------------------------------------------------------------
# Restoration quality


def test_declipping_improves_the_guitar(guitar):
    clean = guitar[:, :32000]
    y, _ = effects.clip_to_sdr(clean, 5.0)
    out = aspade(y)
    high, low, _ = clipped_masks(y)
    improvement = delta_sdr_db(clean, y, out)
    assert improvement > 3.0
    # Reliable samples are untouched, so the SDR gain on clipped samples only is the same number.
    assert delta_sdr_db(clean, y, out, high | low) == pytest.approx(improvement, abs=1e-3)


def test_declipping_recovers_sparse_sinusoids():
    clean = sines()
    y, _ = effects.clip_to_sdr(clean, 5.0)
    assert delta_sdr_db(clean, y, aspade(y)) > 20.0


# ------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("options", [
    {"window_samples": 0}, {"window_samples": 3}, {"window_samples": 1024.0}, {"window_samples": True},
    {"hop_samples": 0}, {"hop_samples": 1024}, {"hop_samples": 2000},
    {"redundancy": 0}, {"sparsity_step": 0}, {"sparsity_every": -1},
    {"epsilon": 0.0}, {"epsilon": -0.1}, {"epsilon": float("nan")}, {"epsilon": float("inf")}, {"epsilon": "x"},
    {"max_iterations": 0}, {"threshold": 0.0}, {"threshold": -0.5}, {"threshold": float("nan")},
])
def test_bad_parameters_raise(short_guitar, options):
    y, _ = effects.clip_to_sdr(short_guitar[:, :4000], 5.0)
    for function in (aspade, aspade_framewise):
        with pytest.raises(ValueError):
            function(y, **options)


@pytest.mark.parametrize("bad", [
    np.array([0.1, np.nan, 0.2]), np.array([[0.1, 0.2], [np.inf, 0.0]]), np.zeros(0), np.zeros((1, 0)),
    np.zeros(100), np.ones((1, 2, 50)), np.ones(10, dtype=np.int16), [0.1, 0.2],
])
def test_bad_audio_raises(bad):
    with pytest.raises((TypeError, ValueError)):  # TypeError for a wrong type or dtype, as the effects raise
        aspade(bad)


def test_nan_message_names_the_problem(short_guitar):
    y = short_guitar.copy()
    y[0, 123] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        aspade(y)
