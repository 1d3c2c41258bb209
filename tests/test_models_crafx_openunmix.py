"""CRAFx and Open-Unmix: shapes for any length, sizes, gradients, a short overfit, SAAF, the STFT round trip.

Parameter bands (trainable parameters; the paper's size first):
- CRAFx: 0.2 M to 0.5 M for both sizes and any channel count (channels are folded into the batch): 275,073,
  as the original Keras model (the count tests/golden/crafx.npz records from it; see test_model_parity.py).
- Open-Unmix "original" (44.1 kHz, n_fft 4096, 1487 bins seen): 8.5 M to 9.3 M in stereo, as the published
  UMX (about 8.9 M per target; umxhq's checkpoints are 34 MB of float32), 6.5 M to 7.5 M in mono.
  "paper" (16 kHz, n_fft 2048, all 1025 bins): 6.0 M to 6.6 M mono, 7.0 M to 7.7 M stereo.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from training.models import crafx, create, openunmix, parameter_count
from training.models.crafx import BLSTM, SAAF, CRAFx
from training.models.openunmix import OpenUnmix

SIZES = ("paper", "original")
MODULES = {"crafx": crafx, "openunmix": openunmix}
PARAMETER_BANDS = {
    ("crafx", "paper", 1): (0.2e6, 0.5e6), ("crafx", "paper", 2): (0.2e6, 0.5e6),
    ("crafx", "original", 1): (0.2e6, 0.5e6), ("crafx", "original", 2): (0.2e6, 0.5e6),
    ("openunmix", "paper", 1): (6.0e6, 6.6e6), ("openunmix", "paper", 2): (7.0e6, 7.7e6),
    ("openunmix", "original", 1): (6.5e6, 7.5e6), ("openunmix", "original", 2): (8.5e6, 9.3e6),
}


@functools.cache
def _model(name: str, size: str, channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create(name, size, channels)


def _fresh(name: str, size: str = "paper", channels: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create(name, size, channels)


# --- registry, configs, sizes -------------------------------------------------------------------------


def test_registry_builds_both_models():
    model = create("crafx", "paper")
    assert isinstance(model, CRAFx) and model.channels == 1
    model = create("openunmix", "original", channels=2)
    assert isinstance(model, OpenUnmix) and model.channels == 2
    assert crafx.PREFERRED_SEGMENT_SECONDS == 2.3


@pytest.mark.parametrize("name", MODULES)
def test_configs_and_unknown_size(name):
    module = MODULES[name]
    assert set(module.CONFIGS) == {"paper", "original"}
    with pytest.raises(ValueError, match="size"):
        module.build("tiny", 1)


def test_crafx_paper_is_the_original():
    # Imort et al. (2022) did not shrink CRAFx.
    assert crafx.CONFIGS["paper"] == crafx.CONFIGS["original"]
    assert crafx.CONFIGS["original"]["filters"] == 32 and crafx.CONFIGS["original"]["kernel_size"] == 64


def test_openunmix_bins_follow_umx_bandwidth():
    # UMX keeps the bins up to 16 kHz: 1487 of 2049 at 44.1 kHz; at 16 kHz every bin is below it.
    assert _model("openunmix", "original", 1).nb_bins == 1487
    assert _model("openunmix", "paper", 1).nb_bins == 1025


@pytest.mark.parametrize("key", PARAMETER_BANDS, ids=lambda k: "-".join(map(str, k)))
def test_parameter_counts_in_band(key):
    low, high = PARAMETER_BANDS[key]
    count = parameter_count(_model(*key))
    print(f"{key}: {count:,} parameters")
    assert low <= count <= high


def test_crafx_parameters_do_not_depend_on_channels():
    assert parameter_count(_model("crafx", "paper", 1)) == parameter_count(_model("crafx", "paper", 2)) == 275_073


# --- shapes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 2])
def test_any_length_keeps_shape_dtype_and_is_finite(name, size, channels):
    model = _model(name, size, channels).eval()
    with torch.no_grad():
        for length in (1, 777, 16000, 36800):
            x = torch.randn(2, channels, length) * 0.3
            y = model(x)
            assert y.shape == x.shape and y.dtype == torch.float32
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODULES)
def test_training_mode_shapes(name):
    model = _fresh(name, "paper", 2).train()
    for length in (1, 777):
        x = torch.randn(2, 2, length)
        assert model(x).shape == x.shape


@pytest.mark.parametrize("name", MODULES)
def test_wrong_input_shape_is_refused(name):
    model = _model(name, "paper", 2)
    for bad in (torch.zeros(1, 1, 100), torch.zeros(2, 100), torch.zeros(1, 2, 0)):
        with pytest.raises(ValueError, match="expected"):
            model(bad)


# --- gradients, overfitting, determinism -------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("size", SIZES)
def test_gradients_reach_every_parameter(name, size):
    model = _fresh(name, size, 2).train()
    x = torch.randn(2, 2, 5000) * 0.3
    model(x).abs().mean().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name,size", [("crafx", "paper"), ("openunmix", "paper"), ("openunmix", "original")])
def test_overfits_one_pair(name, size):
    # Half a second at 16 kHz: a random target and its soft-clipped version as input.
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(1, 1, 8000, generator=generator) * 0.3
    x = torch.tanh(4 * target) / 4
    model = _fresh(name, size, 1, seed=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.l1_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"{name} {size}: L1 {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", MODULES)
def test_deterministic_in_eval_mode(name):
    model = _model(name, "paper", 2).eval()
    x = torch.randn(2, 2, 9000)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


# --- CRAFx specifics ---------------------------------------------------------------------------------


def test_crafx_processes_channels_independently():
    # In float64: the reference's linear last BLSTM cell makes a fresh CRAFx sensitive enough that float32
    # rounding, which differs with the batch size, shows at 1e-4 of the output's scale.
    model = _fresh("crafx", "paper", 2).double().eval()
    mono = _fresh("crafx", "paper", 1, seed=5).double()
    mono.load_state_dict(model.state_dict())
    mono.eval()
    x = torch.randn(1, 2, 3000, dtype=torch.float64) * 0.3
    with torch.no_grad():
        stereo = model(x)
        torch.testing.assert_close(stereo[:, :1], mono(x[:, :1]), rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(stereo[:, 1:], mono(x[:, 1:]), rtol=1e-7, atol=1e-7)


def test_crafx_decoder_is_the_reference_tied_convolution():
    # DL-AFx's Conv1D_tied: a "same" convolution (31 left, 32 right) of the filters with the front-end
    # kernel, channel-transposed and not flipped in time, plus one bias; no weights of its own.
    model = _fresh("crafx")
    with torch.no_grad():
        model.deconv_bias.fill_(0.25)
    y = torch.randn(2, 32, 640)
    kernel = model.conv.weight  # (32, 1, 64)
    assert all("deconv" not in name or name == "deconv_bias" for name, _ in model.named_parameters())
    padded = F.pad(y, (31, 32))
    expected = sum(padded[:, :, j:j + 640] * kernel[None, :, 0, j, None] for j in range(64)).sum(1, keepdim=True)
    torch.testing.assert_close(model._decode(y, 640), expected + 0.25, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    ({"kernel_size": 0}, "kernel_size"), ({"filters": -1}, "filters"), ({"pool_size": 2.5}, "pool_size"),
    ({"lstm_units": (64, 32, 8)}, "last BLSTM"), ({"lstm_units": ()}, "at least one"),
    ({"frame_length": 4000}, "multiple of pool_size"), ({"hop_length": 1024}, "half of frame_length"),
    ({"context_frames": -1}, "context_frames"), ({"dropout": 1.0}, "dropout"),
    ({"saaf_break_points": 1}, "break_points"),
])
def test_crafx_refuses_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CRAFx(**kwargs)


def test_crafx_overlap_add_of_unchanged_frames_is_the_input():
    # The original's slicing (centred 4096-sample frames, hop 2048, no window) and overlap (periodic Hann,
    # rate 2 · hop / frame = 1): frames passed through unchanged give the signal back, at every length.
    model = _fresh("crafx")
    model.forward_frames = lambda frames: frames
    for length in (1, 2047, 2048, 5000, 36864):
        x = torch.randn(2, 1, length)
        torch.testing.assert_close(model(x), x, rtol=1e-5, atol=1e-6)
        assert model.frames(x[:, 0]).shape == (2, -(-length // 2048) + 1, 4096)


def test_crafx_crop_and_whole_signal_see_the_same_context():
    # Training crops and evaluation signals: a frame with its 4 previous and 4 next frames inside the crop
    # gives the same output in both (frames on the same 2048-sample grid), and its samples do too.
    model = _fresh("crafx").eval()
    hop = 2048
    x = torch.randn(1, 1, 30 * hop) * 0.3
    start, crop = 6 * hop, 16 * hop
    with torch.no_grad():
        whole = model(x)
        part = model(x[..., start:start + crop])
    inside = slice(5 * hop, 10 * hop)  # covered by crop frames 5..10, whose contexts lie within the crop
    torch.testing.assert_close(part[..., inside], whole[..., start:start + crop][..., inside], rtol=1e-4, atol=1e-5)
    # Near the crop's edges the context is zeros instead of signal: there the outputs differ.
    assert (part[..., :hop] - whole[..., start:start + hop]).abs().max() > 1e-4


@pytest.mark.parametrize("activation", ["tanh", "linear"])
def test_blstm_dropout_path_with_unit_masks_is_the_plain_path(activation):
    # Training with Keras's per-sequence masks (inputs and previous outputs, per gate) takes another code
    # path than evaluation (checked against the Keras golden in test_model_parity.py): all-one masks give
    # the same output, and real masks change it.
    torch.manual_seed(0)
    lstm = BLSTM(6, 5, activation, dropout=0.5, recurrent_dropout=0.5)
    x = torch.randn(3, 7, 6)
    plain = lstm.eval()(x)
    assert plain.shape == (3, 7, 10)
    lstm.train()
    assert (lstm(x) - plain).abs().max() > 1e-3
    lstm._masks = lambda rate, shape, like: like.new_ones(shape)
    torch.testing.assert_close(lstm(x), plain, rtol=1e-6, atol=1e-6)


def test_blstm_recurrent_kernel_is_one_orthogonal_matrix_for_the_four_gates_as_keras_draws_it():
    lstm = BLSTM(6, 5)
    for direction in lstm.weight_hh:  # (4·units, units): Keras's (units, 4·units) orthogonal matrix, transposed
        torch.testing.assert_close(direction.T @ direction, torch.eye(5), rtol=0, atol=1e-5)


def test_fresh_crafx_in_training_mode_stays_at_the_scale_of_evaluation_mode():
    # Dropout changes the output a little, as in the reference (Keras, full size, the same input: training-mode
    # outputs within 2 % of the inference output's mean magnitude). With each gate's recurrent block drawn
    # orthogonal on its own, the recurrent gain doubled and the linear last BLSTM cell ran away in training
    # mode: 10^3-10^5 times the evaluation-mode output.
    model = _fresh("crafx", "paper", 1)
    target = torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(1)) * 0.3
    x = torch.tanh(4 * target) / 4
    with torch.no_grad():
        evaluation = model.eval()(x).abs().mean()
        training = torch.stack([model.train()(x).abs().mean() for _ in range(2)])
    assert (training < 2 * evaluation).all() and (training > evaluation / 2).all(), (evaluation, training)


# --- SAAF ----------------------------------------------------------------------------------------------


def _random_saaf(channels: int = 3) -> SAAF:
    saaf = SAAF(channels).double()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in saaf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.05)
    return saaf


def _saaf_reference(saaf: SAAF, x: torch.Tensor) -> torch.Tensor:
    """DL-AFx's SAAF.call written out: break points linspace(-0.2, 0.2, 25), segments [p_2k, p_2k+1]."""
    points = torch.linspace(-0.2, 0.2, 25, dtype=torch.float64).float().double()
    out = saaf.slope * x
    for k in range(12):
        s, e = points[2 * k], points[2 * k + 1]
        basis = torch.where(x < s, 0.0, torch.where(x < e, 0.5 * (x - s) ** 2, (e - s) * (x - e) + 0.5 * (e - s) ** 2))
        out = out + 100.0 * basis * saaf.weight[k]
    return out


def test_saaf_starts_as_the_reference_does():
    torch.manual_seed(0)
    saaf = SAAF(400)
    parameters = torch.cat([saaf.weight.flatten(), saaf.slope])  # all from N(0, 0.05²), slope included
    assert abs(parameters.mean()) < 0.005 and abs(parameters.std() - 0.05) < 0.003
    assert saaf.segments == 12 and len(list(saaf.parameters())) == 2
    assert sum(p.numel() for p in saaf.parameters()) == 13 * 400  # the reference's (12 + 1, channels) kernel


def test_saaf_matches_the_basis_sum():
    saaf = _random_saaf()
    x = torch.linspace(-0.5, 0.5, 5001, dtype=torch.float64)[:, None].expand(-1, 3)
    x = torch.cat([x, saaf.starts.double()[:, None].expand(-1, 3), saaf.ends.double()[:, None].expand(-1, 3)])
    with torch.no_grad():
        torch.testing.assert_close(saaf(x), _saaf_reference(saaf, x), rtol=1e-9, atol=1e-9)
        assert (saaf(x) - saaf.slope * x).abs().max() > 0.01  # the segments matter


def test_saaf_is_continuous_and_smooth_at_every_break_point():
    saaf = _random_saaf()
    points = torch.cat([saaf.starts, saaf.ends]).double()[:, None].expand(-1, 3)
    eps = 1e-9

    def slope_at(x: torch.Tensor) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        saaf(x).sum().backward()
        return x.grad

    with torch.no_grad():
        assert (saaf(points - eps) - saaf(points + eps)).abs().max() < 1e-5
        assert (saaf(points) - saaf(points - eps)).abs().max() < 1e-5
    assert (slope_at(points - eps) - slope_at(points + eps)).abs().max() < 1e-5


def test_saaf_is_linear_outside_its_segments():
    saaf = _random_saaf()
    gaps = [(saaf.ends[k], saaf.starts[k + 1]) for k in range(saaf.segments - 1)]
    with torch.no_grad():
        for low, high in [(-9.0, -0.2), (0.19, 9.0)] + [(float(a), float(b)) for a, b in gaps]:
            y = saaf(torch.linspace(low, high, 50, dtype=torch.float64)[:, None].expand(-1, 3))
            second_difference = y[2:] - 2 * y[1:-1] + y[:-2]
            assert second_difference.abs().max() < 1e-9


def test_saaf_float32_break_point_continuity():
    saaf = SAAF(2)
    with torch.no_grad():
        saaf.weight.normal_()
    points = torch.cat([saaf.starts, saaf.ends])[:, None].expand(-1, 2)
    with torch.no_grad():
        assert (saaf(points) - saaf(torch.nextafter(points, points - 1))).abs().max() < 1e-5


def test_saaf_refuses_nonsense():
    with pytest.raises(ValueError, match="break_points"):
        SAAF(4, break_points=1)
    with pytest.raises(ValueError, match="break_range"):
        SAAF(4, break_range=-1.0)
    with pytest.raises(ValueError, match="channels"):
        SAAF(4)(torch.zeros(3, 5))


# --- Open-Unmix specifics ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_openunmix_mask_of_ones_reproduces_the_input(size):
    model = _fresh("openunmix", size, 2).eval()
    with torch.no_grad():
        model.fc3.weight.zero_()  # bn3 (eval) then gives 0, so the mask is relu(0 · scale + 1) = 1
        for length in (1, 2, 777, 16001):
            x = torch.randn(2, 2, length)
            mask = model.mask(x)
            assert mask.shape == (2, 2, model.n_fft // 2 + 1, 1 + -(-length // model.hop_length))
            assert torch.equal(mask, torch.ones_like(mask))
            assert (model(x) - x).abs().max() < 1e-4


def test_openunmix_window_is_a_buffer():
    model = _model("openunmix", "paper", 1)
    buffers = dict(model.named_buffers())
    assert "window" in buffers and buffers["window"].shape == (2048,)
    assert "window" not in model.state_dict()


@pytest.mark.parametrize("kwargs,match", [
    ({"n_fft": 0}, "n_fft"), ({"hop_length": 4096}, "hop_length"), ({"hidden_size": 511}, "even"),
    ({"nb_layers": 0}, "nb_layers"), ({"bandwidth_hz": -1.0}, "bandwidth_hz"), ({"sample_rate": 0}, "sample_rate"),
    ({"dropout": -0.1}, "dropout"), ({"channels": 0}, "channels"),
])
def test_openunmix_refuses_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenUnmix(**kwargs)


def test_training_initialises_openunmix_input_statistics_from_the_training_split(tmp_path):
    # `dedistort train` calls prepare_from_batches on every whole training example before the first epoch
    # (UMX's train script does the same); one Adam step (lr 1e-3) later the weights are still within 1e-3.
    import soundfile as sf

    from datagen.build import build
    from datagen.config import BuildConfig
    from datagen.demo import demo_guitar
    from training.data import PairStream, apply_online, make_loader
    from training.train import TrainConfig, train

    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(4):
        sf.write(clean / f"take-{i}.wav", demo_guitar(2.0, 16000, seed=700 + i, peak=0.5).T, 16000)
    corpus = tmp_path / "corpus"
    build(BuildConfig(source=str(clean), effect="hardclip", sweep="6,12", segment_seconds=1.0, codec="wav32",
                      name="umx"), corpus, progress=False, log=lambda _: None)
    config = TrainConfig(data=str(corpus), model="openunmix", epochs=1, batch_size=2, crop_seconds=0.5,
                         num_workers=0, max_batches_per_epoch=1)
    train(config, tmp_path / "run", progress=False, log=lambda _: None)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    stream = PairStream(corpus, "train", None, training=False)
    expected = _fresh("openunmix", "paper", 1).prepare_from_batches(
        apply_online(batch, stream, "cpu")[0] for batch in make_loader(stream, batch_size=1))
    nb_bins = state["input_mean"].shape[0]
    mean = torch.from_numpy(expected["mean"][:nb_bins]).float()
    scale = torch.from_numpy(expected["scale"][:nb_bins]).float()
    assert mean.abs().max() > 1e-2  # far from the zeros a model starts with
    torch.testing.assert_close(state["input_mean"], -mean, rtol=0, atol=1.5e-3)
    torch.testing.assert_close(state["input_scale"], 1 / scale, rtol=0, atol=1.5e-3)
