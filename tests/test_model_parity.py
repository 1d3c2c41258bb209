"""Our models against their authors' code: the same weights in both give the same output.

Where the reference is an installable package (demucs, openunmix) both models are built here; where it
is not (Demucs v2's own commit, Wave-U-Net-Pytorch, CRAFx), a small golden file in tests/golden/ holds
weights, an input and the reference code's output, written by the make_*.py script beside it.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.models import crafx, demucs, openunmix, parameter_count, waveunet

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """(state dict, input, reference output) from tests/golden/``name``.npz."""
    with np.load(GOLDEN / f"{name}.npz") as data:
        state = {key.removeprefix("state/"): torch.from_numpy(data[key]) for key in data if key.startswith("state/")}
        return state, torch.from_numpy(data["input"]), torch.from_numpy(data["output"])


# --- Demucs ---------------------------------------------------------------------------------------------


def test_demucs_matches_v2_golden():
    # Demucs v2's model.py (facebookresearch/demucs 7445cbd) at depth 2, 8 channels, context 3, stereo;
    # written by tests/golden/make_demucs_v2.py. Normalisation off: v2 normalised outside the model.
    state, x, expected = _golden("demucs_v2")
    model = demucs.Demucs(channels=2, depth=2, channels_first=8, context=3, normalize=False).eval()
    model.load_state_dict(state)  # v2's state-dict keys, one for one
    with torch.no_grad():
        out = model(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    # The comparison can fail: another context width or untrimmed skips give another output.
    with torch.no_grad():
        other = demucs.Demucs(channels=2, depth=2, channels_first=8, context=3, normalize=False, resample=False)
        other.load_state_dict(state)
        assert (other.eval()(x) - expected).abs().max() > 1e-3


def _package_demucs(**kwargs) -> torch.nn.Module:
    """demucs 4's time-domain ``demucs.demucs.Demucs`` with its v3 additions (DConv, GELU, group norm) off."""
    pytest.importorskip("einops")  # demucs.demucs imports it through demucs.transformer
    module = pytest.importorskip("demucs.demucs")
    return module.Demucs(sources=["target"], gelu=False, glu=True, norm_starts=10**6, dconv_mode=0,
                         lstm_layers=2, resample=True, normalize=True, rescale=0.1, **kwargs)


@pytest.mark.parametrize("channels,depth,width", [(1, 3, 8), (2, 2, 16)])
def test_demucs_matches_the_demucs_package(channels, depth, width):
    # demucs 4 changed `context` into a "same" convolution of kernel 2·context + 1, so v2's context 3
    # (a "valid" kernel-3 convolution) has no counterpart there; kernel 1 (our context=1, its context=0)
    # is the same in both, and checks everything else: normalisation, padding, ×2 resampling, skips, BLSTM.
    torch.manual_seed(0)
    ours = demucs.Demucs(channels=channels, depth=depth, channels_first=width, context=1).eval()
    reference = _package_demucs(audio_channels=channels, channels=width, depth=depth, context=0).eval()
    reference.load_state_dict(ours.state_dict())  # its loader maps v2's key names onto its own
    for length in (2, 999, 4410):
        x = torch.randn(2, channels, length) * 0.3
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x)[:, 0], rtol=1e-5, atol=1e-6)


def test_demucs_rescaled_initialisation_matches_the_package():
    # Same random draws, same rescaling: the freshly built weights agree with demucs' own.
    torch.manual_seed(3)
    ours = demucs.Demucs(channels=1, depth=3, channels_first=8, context=1)
    torch.manual_seed(3)
    reference = _package_demucs(audio_channels=1, channels=8, depth=3, context=0)
    theirs = reference.state_dict()
    renamed = {re.sub(r"^(encoder|decoder)\.(\d+)\.2\.", r"\1.\2.3.", key): value
               for key, value in ours.state_dict().items()}
    for key, value in renamed.items():
        if not key.startswith("lstm"):
            torch.testing.assert_close(value, theirs[key], rtol=0, atol=0, msg=key)


# --- Wave-U-Net ----------------------------------------------------------------------------------------


def test_waveunet_matches_the_port_golden():
    # Wave-U-Net-Pytorch (86c113d) at 3 levels of 8·2^i features, eval mode; tests/golden/make_waveunet.py.
    state, x, expected = _golden("waveunet")
    assert 0.05 < expected.abs().mean() and (expected.abs() < 1).float().mean() > 0.5  # not clipped away
    model = waveunet.WaveUNet(channels=1, levels=3, features=8).eval()
    model.load_state_dict(state)  # the port's keys under waveunets.<source>., one for one
    inputs, outputs = model.sizes(expected.shape[-1])
    assert (inputs, outputs) == (x.shape[-1], expected.shape[-1])  # the port's check_padding
    with torch.no_grad():
        torch.testing.assert_close(model.forward_valid(x), expected, rtol=0, atol=1e-5)
        # forward() pads with zeros where the golden input has real context (and group norm sees it all).
        start = (inputs - outputs) // 2
        padded = model(x[..., start:start + outputs])
        assert (padded - expected).abs().max() > 1e-4


# --- CRAFx ---------------------------------------------------------------------------------------------


def _crafx_golden() -> tuple[crafx.CRAFx, dict[str, np.ndarray]]:
    """Our CRAFx holding the Keras reference's weights from tests/golden/crafx.npz, and the file's arrays.

    Keras layouts: convolution kernels (time, in, out), dense and LSTM kernels (in, out), LSTM gates i, f, c, o
    in both; a SAAF's kernel is (segments + 1, channels), the slope last.
    """
    with np.load(GOLDEN / "crafx.npz") as file:
        data = {key: file[key] for key in file}
    frame, filters, kernel, context = data["config"].tolist()
    # Models.CRAFx(win_length, filters, kernel_size_1): pooling win_length // 64, smoothing kernel 2·kernel_size_1,
    # BLSTMs of 2·filters, filters and filters / 2 units, dense layers filters, filters / 2, filters / 2, SE ×16.
    model = crafx.CRAFx(filters=filters, kernel_size=kernel, filterbank_kernel_size=2 * kernel,
                        pool_size=frame // 64, frame_length=frame, hop_length=frame // 2, context_frames=context,
                        lstm_units=(2 * filters, filters, filters // 2),
                        dense_units=(filters, filters // 2, filters // 2), se_units=16 * filters)

    def keras(name: str) -> torch.Tensor:
        return torch.from_numpy(data[f"keras/{name}"])

    state = {"conv.weight": keras("conv/kernel").permute(2, 1, 0), "conv.bias": keras("conv/bias"),
             "filterbank.weight": keras("conv_smoothing/kernel").permute(2, 1, 0),
             "filterbank.bias": keras("conv_smoothing/bias"), "deconv_bias": keras("deconv/bias")}
    for index, layer in enumerate(("birnn_in/{}_lstm", "birnn_1/{}_lstm_1", "birnn_2/{}_lstm_2")):
        cells = [layer.format(direction) + "/lstm_cell/" for direction in ("forward", "backward")]
        state[f"lstms.{index}.weight_ih"] = torch.stack([keras(cell + "kernel").T for cell in cells])
        state[f"lstms.{index}.weight_hh"] = torch.stack([keras(cell + "recurrent_kernel").T for cell in cells])
        state[f"lstms.{index}.bias"] = torch.stack([keras(cell + "bias") for cell in cells])
    for ours, theirs in (("latent_saaf", "saaf_1"), ("dense_saaf", "saaf_out")):
        state[f"{ours}.weight"], state[f"{ours}.slope"] = keras(f"{theirs}/kernel")[:-1], keras(f"{theirs}/kernel")[-1]
    dense = [(f"dense.{i}", name) for i, name in enumerate(("dense_in", "dense_h1", "dense_h2", "dense_out"))]
    for ours, theirs in dense + [("excitation.hidden", "se_dense1_1"), ("excitation.gate", "se_dense2_1")]:
        state[f"{ours}.weight"], state[f"{ours}.bias"] = keras(f"{theirs}/kernel").T, keras(f"{theirs}/bias")
    model.load_state_dict(state)  # strict: every parameter of ours has its Keras weight, and no more
    return model.eval(), data


def test_crafx_matches_the_keras_golden():
    # DL-AFx's Keras CRAFx (c7de3b4) with 1024-sample frames, 8 filters, kernel 16, its 4 context frames
    # each side; written by tests/golden/make_crafx.py.
    model, data = _crafx_golden()
    x = torch.from_numpy(data["input"])[None]
    frames = model.frames(x)
    assert torch.equal(frames[0], torch.from_numpy(data["frames"]))  # GeneratorContext's centre frames
    expected = torch.from_numpy(data["frame_output"])
    assert expected.abs().mean() > 0.05
    with torch.no_grad():
        out = model.forward_frames(frames)[0]  # what the Keras model outputs: one frame per row
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        signal = model(x[None])[0, 0]
    # The overlap-add, against Utils.overlap as Evaluate.py calls it. Utils.overlap leaves the last frame
    # out, so its window's rising half is missing from the last hop; here the windows sum to one there too.
    hop, reference = model.hop_length, torch.from_numpy(data["output"])
    torch.testing.assert_close(signal[:-hop], reference[:-hop], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(signal[-hop:], reference[-hop:] + out[-1, :hop] * model.window[:hop], rtol=1e-5,
                               atol=1e-6)
    # The comparison can fail: the decoder's exact adjoint (the flipped kernel) or SAAFs without the
    # reference's magnitude give other outputs.
    with torch.no_grad():
        left = (model.conv.kernel_size[0] - 1) // 2
        model._decode = lambda y, length: F.conv_transpose1d(y, model.conv.weight, model.deconv_bias)[
            ..., left:left + length]
        assert (model.forward_frames(frames)[0] - expected).abs().max() > 1e-3
        del model._decode
        model.latent_saaf.magnitude = 1.0
        assert (model.forward_frames(frames)[0] - expected).abs().max() > 1e-3


def test_crafx_has_the_reference_parameter_count():
    # The full-size Keras model (CRAFx(4096, 32, 64)), counted by tests/golden/make_crafx.py.
    with np.load(GOLDEN / "crafx.npz") as data:
        assert parameter_count(crafx.build("original", 1)) == int(data["original_parameters"]) == 275_073


# --- Open-Unmix ----------------------------------------------------------------------------------------


@pytest.fixture
def umx_reference(monkeypatch):
    """The ``openunmix`` package's ``openunmix/model.py``, imported without torchaudio.

    The package's ``__init__`` imports ``openunmix.utils`` and ``model.py`` imports ``transforms.py``,
    both of which import torchaudio at the top, and no torchaudio wheel exists for torch 2.13. Neither
    touches torchaudio in the network (``OpenUnmix``): the package's folder is mounted as a new package
    name (its ``__init__`` skipped) with an empty ``torchaudio`` module, both only for this test.
    """
    spec = importlib.util.find_spec("openunmix")
    if spec is None or spec.origin is None:
        pytest.skip("openunmix is not installed")
    package = types.ModuleType("_umx_reference")
    package.__path__ = [str(Path(spec.origin).parent)]
    monkeypatch.setitem(sys.modules, "_umx_reference", package)
    if importlib.util.find_spec("torchaudio") is None:
        monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
    for name in ("filtering", "transforms", "model"):
        monkeypatch.delitem(sys.modules, f"_umx_reference.{name}", raising=False)
    module = importlib.import_module("_umx_reference.model")
    yield module
    for name in ("filtering", "transforms", "model"):
        sys.modules.pop(f"_umx_reference.{name}", None)


@pytest.mark.parametrize("channels,bandwidth_hz", [(1, None), (2, 6000.0)])
def test_openunmix_matches_the_package(umx_reference, channels, bandwidth_hz):
    torch.manual_seed(0)
    ours = openunmix.OpenUnmix(channels=channels, sample_rate=16000.0, n_fft=512, hop_length=128,
                               bandwidth_hz=bandwidth_hz, hidden_size=32)
    # Non-trivial input statistics, batch-norm statistics and output scaling, so that each one matters.
    with torch.no_grad():
        for name, tensor in ours.state_dict().items():
            if tensor.is_floating_point() and name.split(".")[0] in {"input_mean", "input_scale", "output_scale",
                                                                       "output_mean"}:
                tensor.add_(torch.randn_like(tensor) * 0.3)
            elif "running_var" in name:
                tensor.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                tensor.normal_(0.0, 0.3)
    reference = umx_reference.OpenUnmix(nb_bins=257, nb_channels=channels, hidden_size=32, nb_layers=3,
                                        max_bin=ours.nb_bins if bandwidth_hz else None)
    assert list(reference.state_dict()) == list(ours.state_dict())  # key for key, in order
    reference.load_state_dict(ours.state_dict())
    ours.eval(), reference.eval()
    magnitude = torch.stft(torch.randn(2 * channels, 8000), 512, 128, window=torch.hann_window(512),
                           return_complex=True).abs().reshape(2, channels, 257, -1)
    with torch.no_grad():
        expected = reference(magnitude)  # the estimated magnitude: mask · input
        torch.testing.assert_close(ours.mask_from_magnitude(magnitude) * magnitude, expected, rtol=1e-5, atol=1e-5)


def test_openunmix_input_statistics_follow_umx_get_statistics():
    # UMX's get_statistics with sklearn's StandardScaler, written out: per-bin mean and population
    # standard deviation of the channel-averaged magnitudes over every frame of every example.
    torch.manual_seed(0)
    model = openunmix.OpenUnmix(channels=2, sample_rate=16000.0, n_fft=256, hop_length=64, bandwidth_hz=5000.0,
                                hidden_size=16)
    examples = [torch.randn(1, 2, n) * gain for n, gain in ((4000, 0.1), (2500, 1.0), (3100, 0.5))]
    examples[1][..., :] = examples[1] * torch.linspace(0, 1, 2500)  # a level change inside an example
    stats = model.prepare_from_batches(iter(examples))
    frames = torch.cat([model.stft(x).abs().mean(1)[0].T for x in examples]).double()  # (frames, bins)
    mean, scale = frames.mean(0), frames.std(0, correction=0)
    scale = torch.maximum(scale, 1e-4 * scale.max())
    assert int(stats["frames"]) == frames.shape[0]
    np.testing.assert_allclose(stats["mean"], mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(stats["scale"], scale.numpy(), rtol=1e-8)
    torch.testing.assert_close(model.input_mean, -mean[:model.nb_bins].float())
    torch.testing.assert_close(model.input_scale, 1 / scale[:model.nb_bins].float())
    # Silence has no spread: StandardScaler's unit scale, then the floor.
    silent = openunmix.OpenUnmix(channels=1, sample_rate=16000.0, n_fft=256, hop_length=64, hidden_size=16)
    stats = silent.prepare_from_batches([torch.zeros(1, 1, 1000)])
    assert (stats["scale"] == 1).all() and (stats["mean"] == 0).all()
    with pytest.raises(ValueError, match="no training examples"):
        silent.prepare_from_batches([])
