"""FAD: the Fréchet distance, streaming Gaussian statistics, the set-level score, and VGGish (front end,
network layout compatible with torchvggish, loading from a user's file)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from datagen.demo import demo_guitar
from effects import clip_to_sdr, hard_clip
from training.metrics.fad import (
    Embedder,
    FrechetAudioDistance,
    GaussianStats,
    frechet_audio_distance,
    frechet_distance,
    to_mono,
)
from training.metrics.vggish import (
    VGGish,
    VGGishEmbedder,
    VGGishPCA,
    example_count,
    load_vggish,
    load_vggish_pca,
    log_mel_spectrogram,
    mel_filterbank,
    vggish_examples,
)

RATE = 16000


def _random_spd(rng: np.random.Generator, dimension: int, rank: int | None = None) -> np.ndarray:
    factor = rng.normal(size=(dimension, rank or dimension))
    return factor @ factor.T / dimension


def _sqrtm_reference(mean_a, cov_a, mean_b, cov_b) -> float:
    """The textbook formula with scipy's general matrix square root of the (non-symmetric) product."""
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


# ---------------------------------------------------------------------------------------------- distance


@settings(max_examples=50, deadline=None)
@given(mu1=st.floats(-10, 10), mu2=st.floats(-10, 10), sigma1=st.floats(0.0, 5.0), sigma2=st.floats(0.0, 5.0))
def test_frechet_distance_1d_closed_form(mu1, mu2, sigma1, sigma2):
    expected = (mu1 - mu2) ** 2 + sigma1**2 + sigma2**2 - 2 * sigma1 * sigma2
    got = frechet_distance(np.array([mu1]), np.array([[sigma1**2]]), np.array([mu2]), np.array([[sigma2**2]]))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_distance_hand_value():
    # N(0, 4) vs N(3, 1): 9 + 4 + 1 - 2·2·1 = 10.
    assert frechet_distance(np.zeros(1), np.array([[4.0]]), np.array([3.0]), np.eye(1)) == pytest.approx(10.0)


def test_frechet_distance_diagonal_covariances():
    rng = np.random.default_rng(0)
    var_a, var_b = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
    mean_a, mean_b = rng.normal(size=16), rng.normal(size=16)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("rank", [None, 5])  # full rank, and singular (5 of 24 dimensions)
def test_frechet_distance_identical_is_zero(rank):
    rng = np.random.default_rng(1)
    cov = _random_spd(rng, 24, rank) * 100.0
    mean = rng.normal(size=24) * 10.0
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-8 * np.trace(cov))


def test_frechet_distance_symmetric_nonnegative_and_matches_sqrtm():
    rng = np.random.default_rng(2)
    for trial in range(10):
        dimension = int(rng.integers(2, 20))
        cov_a, cov_b = _random_spd(rng, dimension), _random_spd(rng, dimension)
        mean_a, mean_b = rng.normal(size=dimension), rng.normal(size=dimension) * (trial % 2)
        ab = frechet_distance(mean_a, cov_a, mean_b, cov_b)
        ba = frechet_distance(mean_b, cov_b, mean_a, cov_a)
        assert ab > 0
        assert ab == pytest.approx(ba, rel=1e-9)
        assert ab == pytest.approx(_sqrtm_reference(mean_a, cov_a, mean_b, cov_b), rel=1e-7)


def test_frechet_distance_rejects_bad_input():
    mean, cov = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="1-D of equal length"):
        frechet_distance(mean, cov, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(mean, np.eye(2), mean, cov)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mean, np.full((3, 3), np.nan), mean, cov)


# ---------------------------------------------------------------------------------------------- statistics


def test_gaussian_stats_streaming_equals_numpy():
    rng = np.random.default_rng(3)
    batches = [rng.normal(loc=5.0, size=(n, 6)) @ rng.normal(size=(6, 6)) for n in (1, 7, 30, 2)]
    stats = GaussianStats()
    for batch in batches:
        stats.add(batch)
    everything = np.concatenate(batches)
    assert stats.count == 40 and stats.dimension == 6
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(everything, rowvar=False, ddof=1), rtol=1e-10, atol=1e-12)


def test_gaussian_stats_merge_and_large_offset():
    rng = np.random.default_rng(4)
    # A large common offset: a naive sum-of-outer-products would lose the spread to cancellation.
    first, second = rng.normal(size=(50, 4)) + 1e6, rng.normal(size=(25, 4)) * 2 + 1e6
    a, b = GaussianStats().add(first), GaussianStats().add(second)
    merged = a.merge(b)
    everything = np.concatenate([first, second])
    assert merged.count == 75 and a.count == 50 and b.count == 25
    np.testing.assert_allclose(merged.mean, everything.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(merged.covariance, np.cov(everything, rowvar=False), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(GaussianStats().merge(a).covariance, a.covariance)


def test_gaussian_stats_errors_and_save_load(tmp_path: Path):
    stats = GaussianStats()
    with pytest.raises(ValueError, match="no embeddings"):
        _ = stats.mean
    stats.add(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = stats.covariance
    with pytest.raises(ValueError, match="dimension"):
        stats.add(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        stats.add(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="empty"):
        stats.add(np.ones((0, 3)))
    stats.add(np.arange(9.0).reshape(3, 3))
    path = tmp_path / "reference.stats"
    stats.save(path)
    loaded = GaussianStats.load(path)
    assert loaded.count == stats.count
    np.testing.assert_array_equal(loaded.covariance, stats.covariance)
    with pytest.raises(ValueError, match="missing.stats"):
        GaussianStats.load(tmp_path / "missing.stats")


# ---------------------------------------------------------------------------------------------- FAD


def log_band_embedder(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """A tiny embedder built here: log energies of 16 equal-width bands per 64-ms frame, (frames, 16)."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), 1024)[::512]
    power = np.abs(np.fft.rfft(frames * np.hanning(1024), axis=-1)[:, :1024 // 2]) ** 2
    return np.log10(power.reshape(len(frames), 16, 32).sum(axis=-1) + 1e-8)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Four different 2-s guitar clips at 16 kHz, each (1, 32000) float32."""
    return [demo_guitar(2.0, RATE, seed=seed, peak=0.8) for seed in range(4)]


def _fad(reference: list[np.ndarray], test: list[np.ndarray], embedder: Embedder = log_band_embedder) -> float:
    return frechet_audio_distance(embedder, reference, test, RATE)


def test_fad_identical_sets_score_zero(clips):
    assert isinstance(log_band_embedder, Embedder)
    assert _fad(clips, clips) == pytest.approx(0.0, abs=1e-9)
    # Order of the clips does not matter: the statistics are of the set.
    assert _fad(clips, clips[::-1]) == pytest.approx(0.0, abs=1e-9)


def test_fad_grows_with_distortion(clips):
    mild = [clip_to_sdr(x, 20.0)[0] for x in clips]
    heavy = [clip_to_sdr(x, 1.0)[0] for x in clips]
    fad_mild, fad_heavy = _fad(clips, mild), _fad(clips, heavy)
    assert 0 < fad_mild < fad_heavy
    assert _fad(clips, [hard_clip(x, 5.0) for x in clips]) < _fad(clips, [hard_clip(x, 40.0) for x in clips])


def test_fad_accumulates_and_reuses_saved_reference(clips, tmp_path: Path):
    fad = FrechetAudioDistance(log_band_embedder)
    added = [fad.add_reference(x, RATE) for x in clips]
    assert added == [len(log_band_embedder(to_mono(x), RATE)) for x in clips]
    with pytest.raises(ValueError, match="the test set 0"):
        fad.score()
    heavy = [clip_to_sdr(x, 1.0)[0] for x in clips]
    for x in heavy:
        fad.add_test(x, RATE)
    score = fad.score()
    fad.reference.save(tmp_path / "ref.npz")
    again = FrechetAudioDistance(log_band_embedder, reference=GaussianStats.load(tmp_path / "ref.npz"))
    for x in heavy:
        again.add_test(x, RATE)
    assert again.score() == pytest.approx(score, rel=1e-12)
    fad.reset_test()
    assert fad.test.count == 0


def test_fad_mixes_stereo_to_mono(stereo_guitar):
    np.testing.assert_allclose(to_mono(stereo_guitar), stereo_guitar.mean(axis=0), rtol=1e-6)
    fad = FrechetAudioDistance(log_band_embedder)
    fad.add_reference(stereo_guitar, RATE)
    fad.add_test(stereo_guitar.mean(axis=0), RATE)
    assert fad.score() == pytest.approx(0.0, abs=1e-6)


def test_fad_rejects_bad_input(guitar):
    fad = FrechetAudioDistance(log_band_embedder)
    with pytest.raises(ValueError, match="NaN"):
        fad.add_reference(np.full(4000, np.nan, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="empty"):
        fad.add_reference(np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="sample_rate"):
        fad.add_reference(guitar, 0)
    broken = FrechetAudioDistance(lambda audio, rate: np.zeros(5))
    with pytest.raises(ValueError, match="embedder returned shape"):
        broken.add_test(guitar, RATE)
    with pytest.raises(ValueError, match="callable"):
        FrechetAudioDistance(None)


# ---------------------------------------------------------------------------------------------- VGGish front end


def test_mel_filterbank_triangles():
    weights = mel_filterbank()
    assert weights.shape == (257, 64)
    assert np.all(weights >= 0) and np.all(weights <= 1)
    bins_hz = np.linspace(0, 8000, 257)
    assert np.all(weights[0] == 0)  # no DC
    assert np.all(weights[(bins_hz <= 125) | (bins_hz >= 7500)] == 0)
    for band in weights.T:  # each band is one triangle: rises to its peak, then falls
        peak = int(np.argmax(band))
        assert band[peak] > 0.5
        assert np.all(np.diff(band[: peak + 1]) >= 0) and np.all(np.diff(band[peak:]) <= 0)
    # Neighbouring triangles are complementary: between the first and last centres they sum to 1.
    mel = 1127 * np.log(1 + bins_hz / 700)
    edges = np.linspace(1127 * np.log(1 + 125 / 700), 1127 * np.log(1 + 7500 / 700), 66)
    inside = (mel >= edges[1]) & (mel <= edges[-2])
    np.testing.assert_allclose(weights[inside].sum(axis=1), 1.0, atol=1e-12)


def test_sine_peaks_at_its_mel_band():
    t = np.arange(2 * RATE) / RATE
    log_mel = log_mel_spectrogram(0.5 * np.sin(2 * np.pi * 1000 * t))
    edges_mel = np.linspace(1127 * math.log(1 + 125 / 700), 1127 * math.log(1 + 7500 / 700), 66)
    centres_hz = 700 * (np.exp(edges_mel[1:-1] / 1127) - 1)
    assert int(np.argmax(log_mel.mean(axis=0))) == int(np.argmin(np.abs(centres_hz - 1000)))


def test_log_mel_frame_matches_independent_computation(guitar):
    x = guitar[0].astype(np.float64)
    log_mel = log_mel_spectrogram(x)
    assert log_mel.shape == (1 + (x.size - 400) // 160, 64)
    window = scipy.signal.get_window("hann", 400, fftbins=True)  # periodic Hann
    for frame in (0, 17, log_mel.shape[0] - 1):
        spectrum = np.abs(np.fft.rfft(x[frame * 160: frame * 160 + 400] * window, 512))
        np.testing.assert_allclose(log_mel[frame], np.log(spectrum @ mel_filterbank() + 0.01), rtol=1e-12)


@pytest.mark.parametrize("seconds", [1.0, 2.0, 3.0])
def test_front_end_shape(seconds):
    audio = demo_guitar(seconds, RATE, seed=5)[0]
    examples = vggish_examples(audio, RATE)
    assert examples.shape == (math.floor(seconds / 0.96), 1, 96, 64) and examples.dtype == np.float32
    assert example_count(audio.size) == math.floor(seconds / 0.96)
    # At 44.1 kHz the audio is resampled to 16 kHz first, with the same number of examples.
    assert vggish_examples(demo_guitar(seconds, 44100, seed=5)[0], 44100).shape == examples.shape


def test_front_end_rejects_bad_input():
    with pytest.raises(ValueError, match="shorter"):
        vggish_examples(np.zeros(15000, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="mono"):
        vggish_examples(np.zeros((2, 32000), dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="NaN"):
        vggish_examples(np.full(32000, np.inf, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="sample_rate"):
        vggish_examples(np.zeros(32000, dtype=np.float32), -5)
    assert vggish_examples(np.zeros(16000, dtype=np.float32), RATE).shape == (1, 1, 96, 64)  # silence is valid


# ---------------------------------------------------------------------------------------------- VGGish network


@pytest.fixture(scope="module")
def vggish_file(tmp_path_factory) -> tuple[VGGish, Path]:
    """A randomly initialised VGGish and its state dict saved like torchvggish's vggish-10086976.pth."""
    torch.manual_seed(0)
    model = VGGish().eval()
    path = tmp_path_factory.mktemp("vggish") / "vggish-random.pth"
    torch.save(model.state_dict(), path)
    return model, path


def _torchvggish_layout_forward(state: dict[str, torch.Tensor], examples: torch.Tensor) -> torch.Tensor:
    """The torchvggish forward pass written out with functional ops on a state dict, independently of
    VGGish.forward: six 3x3 convolutions, pools after 1, 2, 4 and 6, transpose(1, 3) then transpose(1, 2)
    before flattening, three linear layers each followed by a ReLU."""
    x = examples
    for index in (0, 3, 6, 8, 11, 13):
        x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
        if index in (0, 3, 8, 13):
            x = F.max_pool2d(x, 2)
    x = x.transpose(1, 3).transpose(1, 2).reshape(x.shape[0], -1)
    for index in (0, 2, 4):
        x = F.relu(F.linear(x, state[f"embeddings.{index}.weight"], state[f"embeddings.{index}.bias"]))
    return x


def test_vggish_loads_and_matches_torchvggish_layout(vggish_file, guitar):
    model, path = vggish_file
    expected_keys = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")}
    expected_keys |= {f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert set(model.state_dict()) == expected_keys
    assert model.state_dict()["embeddings.0.weight"].shape == (4096, 512 * 6 * 4)
    loaded = load_vggish(path)
    embeddings = VGGishEmbedder(loaded)(guitar[0], RATE)
    assert embeddings.shape == (3, 128) and embeddings.dtype == np.float32
    examples = torch.from_numpy(vggish_examples(guitar[0], RATE))
    with torch.no_grad():
        original = model(examples).numpy()
        functional = _torchvggish_layout_forward(model.state_dict(), examples).numpy()
    np.testing.assert_array_equal(embeddings, original)
    np.testing.assert_allclose(original, functional, rtol=1e-4, atol=1e-6 * np.abs(original).max())
    assert np.abs(original).max() > 0  # the comparison above is not of zeros
    # Without the final ReLU the outputs differ exactly where they were clipped at zero.
    loaded.final_relu = False
    with torch.no_grad():
        raw = loaded(examples).numpy()
    np.testing.assert_array_equal(np.maximum(raw, 0), original)
    assert np.any(raw < 0)


def _expanded_state_dict(model: VGGish) -> dict[str, torch.Tensor]:
    """VGGish-shaped tensors that share one element each, so that a test file stays a few bytes large."""
    return {name: torch.zeros(1).expand(t.shape) for name, t in model.state_dict().items()}


def test_load_vggish_errors_name_the_file(vggish_file, tmp_path: Path):
    model, _ = vggish_file
    missing = tmp_path / "absent.pth"
    with pytest.raises(ValueError, match=r"absent\.pth does not exist"):
        load_vggish(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("this is not a weights file")
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        load_vggish(garbage)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], a_list)
    with pytest.raises(ValueError, match=r"list\.pth does not hold a state dict"):
        load_vggish(a_list)
    renamed = _expanded_state_dict(model)
    renamed["features.1.weight"] = renamed.pop("features.0.weight")
    wrong_key = tmp_path / "wrong-key.pth"
    torch.save(renamed, wrong_key)
    with pytest.raises(ValueError, match=r"wrong-key\.pth.*missing keys \['features\.0\.weight'\].*unexpected"):
        load_vggish(wrong_key)
    reshaped = _expanded_state_dict(model)
    reshaped["embeddings.4.weight"] = torch.zeros(64, 4096)
    wrong_shape = tmp_path / "wrong-shape.pth"
    torch.save(reshaped, wrong_shape)
    with pytest.raises(ValueError, match=r"wrong-shape\.pth.*embeddings\.4\.weight is \(64, 4096\)"):
        load_vggish(wrong_shape)


def test_pca_postprocessing(vggish_file, tmp_path: Path, guitar):
    model, path = vggish_file
    rng = np.random.default_rng(6)
    matrix, means = rng.normal(size=(128, 128)) * 30, rng.normal(size=128) * 0.01
    # torchvggish's PCA file holds numpy arrays; Google's release is an .npz.
    torch.save({"pca_eigen_vectors": matrix, "pca_means": means}, tmp_path / "pca.pth")
    np.savez(tmp_path / "pca.npz", pca_eigen_vectors=matrix, pca_means=means)
    examples = torch.from_numpy(vggish_examples(guitar[0], RATE))
    with torch.no_grad():
        raw = model(examples).numpy().astype(np.float64)
    expected = np.round((np.clip((raw - means) @ matrix.T, -2, 2) + 2) * 255 / 4)
    loaded = load_vggish(path, pca_params_path=tmp_path / "pca.pth")
    for pca_path in (tmp_path / "pca.pth", tmp_path / "pca.npz"):
        loaded.pca = load_vggish_pca(pca_path)
        embedded = VGGishEmbedder(loaded, postprocess=True)(guitar[0], RATE)
        assert np.mean(embedded == expected) > 0.99  # float32 rounding may flip a value at a .5 boundary
        assert np.all(np.abs(embedded - expected) <= 1)
        assert embedded.min() >= 0 and embedded.max() <= 255 and len(np.unique(embedded)) > 10
    with pytest.raises(ValueError, match="needs PCA"):
        VGGishEmbedder(model, postprocess=True)
    torch.save({"pca_means": means}, tmp_path / "half.pth")
    with pytest.raises(ValueError, match=r"half\.pth lacks pca_eigen_vectors"):
        load_vggish_pca(tmp_path / "half.pth")


def test_whole_torchvggish_state_dict_brings_its_pca(vggish_file, tmp_path: Path):
    model, _ = vggish_file
    state = _expanded_state_dict(model)
    state["pproc.pca_matrix"] = torch.eye(128)
    state["pproc.pca_means"] = torch.zeros(128, 1)
    path = tmp_path / "whole.pth"
    torch.save(state, path)
    loaded = load_vggish(path)
    assert loaded.pca is not None
    values = torch.tensor([[-3.0, -2.0, 0.0, 1.0, 2.0, 9.0] + [0.0] * 122])
    np.testing.assert_array_equal(loaded.postprocess(values)[0, :6].numpy(), [0, 0, 128, 191, 255, 255])


# ---------------------------------------------------------------------------------------------- torchvggish parity


def test_network_matches_torchvggish_package_with_the_same_weights(guitar):
    # The package's own network (torchvggish 0.2, harritaylor/torchvggish; built without its hub download),
    # randomly initialised, its weights loaded into ours: a state dict that works there works here, so the
    # released weights give the released embeddings.
    package = pytest.importorskip("torchvggish.torchvggish")
    torch.manual_seed(3)
    theirs = package._vgg(postprocess=False).eval()
    ours = VGGish().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    examples = torch.from_numpy(vggish_examples(guitar[0], RATE))
    with torch.no_grad():
        expected, got = theirs(examples), ours(examples)
        ours.final_relu = False  # their last ReLU is embeddings[5]: drop it on their side too
        expected_raw, got_raw = theirs.embeddings[:5](_flattened(theirs, examples)), ours(examples)
    assert float(expected.abs().max()) > 0 and bool((expected_raw < 0).any())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max()))
    torch.testing.assert_close(got_raw, expected_raw, rtol=1e-5, atol=1e-6 * float(expected_raw.abs().max()))


def _flattened(theirs: torch.nn.Module, examples: torch.Tensor) -> torch.Tensor:
    """torchvggish's VGG.forward up to its fully connected layers, with its own transposes."""
    x = theirs.features(examples)
    return torch.transpose(torch.transpose(x, 1, 3), 1, 2).contiguous().view(x.size(0), -1)


def test_front_end_matches_torchvggish_package(guitar):
    # torchvggish's vggish_input (the release's numpy mel_features) on 16 kHz audio, which it does not resample.
    vggish_input = pytest.importorskip("torchvggish.vggish_input")
    audio = demo_guitar(4.0, RATE, seed=11, peak=0.8).astype(np.float64)[0]
    theirs = vggish_input.waveform_to_examples(audio, RATE, return_tensor=False)
    ours = vggish_examples(audio, RATE)
    assert ours.shape == (theirs.shape[0], 1, 96, 64)
    np.testing.assert_allclose(ours[:, 0], theirs, rtol=0, atol=1e-4)


def test_pca_matches_torchvggish_postprocessor(vggish_file, guitar):
    package = pytest.importorskip("torchvggish.torchvggish")
    model, _ = vggish_file
    rng = np.random.default_rng(8)
    matrix, means = rng.normal(size=(128, 128)) * 30, rng.normal(size=128) * 0.01
    postprocessor = object.__new__(package.Postprocessor)  # its __init__ downloads the release's PCA file
    postprocessor._pca_matrix = torch.as_tensor(matrix).float()
    postprocessor._pca_means = torch.as_tensor(means.reshape(-1, 1)).float()
    model_with_pca = VGGish().eval()
    model_with_pca.load_state_dict(model.state_dict())
    model_with_pca.pca = VGGishPCA(matrix, means)
    with torch.no_grad():
        raw = model_with_pca(torch.from_numpy(vggish_examples(guitar[0], RATE)))
        ours, theirs = model_with_pca.postprocess(raw), postprocessor.postprocess(raw)
    assert len(torch.unique(theirs)) > 10
    # The same float32 formula in a different order: a value at a .5 boundary may round the other way.
    assert float((ours != theirs).float().mean()) < 0.01 and float((ours - theirs).abs().max()) <= 1
