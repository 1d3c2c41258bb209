"""What the models keep for the backward pass: less than before, for the same outputs and gradients.

CRAFx runs its front-end once per frame (and once for the all-zero context frame) and gathers each frame's
context from there, unpools by broadcasting, and recomputes its full-rate SAAF in the backward pass in
chunks; Wave-U-Net's fixed sinc resampling keeps nothing of its input. Each is checked against the
straightforward computation it replaced (kept here as a reference), and the saved bytes are counted with
``saved_tensors_hooks``.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from training.models import crafx, waveunet
from training.models.crafx import SAAF, CRAFx

# A small CRAFx: 4 filters, 64-sample frames (8 pooled steps), 2 context frames each side.
# Its SAAF input rows are small: recompute it in chunks of a few rows, as the paper-size model does.
CHUNKED = functools.partial(crafx._recomputed, chunk_elements=1024)
SMALL = {"filters": 4, "kernel_size": 8, "filterbank_kernel_size": 16, "pool_size": 8, "frame_length": 64,
         "hop_length": 32, "context_frames": 2, "lstm_units": (6, 2), "dense_units": (4,), "se_units": 8}


def _small_crafx(seed: int = 0, **overrides) -> CRAFx:
    torch.manual_seed(seed)
    model = CRAFx(**{**SMALL, **overrides})
    with torch.no_grad():  # SAAFs away from the identity, so that their pieces matter
        for saaf in (model.latent_saaf, model.dense_saaf):
            saaf.weight.normal_(0.0, 0.05)
    return model


def _context_features_framewise(model: CRAFx, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's ``GeneratorContext`` read literally: for every frame, its 2k+1 frames (zero frames beyond
    the ends) each through the whole front-end (convolution, |.|, filterbank, softplus, max pooling), the
    pooled features concatenated frame-major at each pooled step. Returns (centre bands, features)."""
    batch, count, length = frames.shape
    k = model.context_frames
    padded = F.pad(frames, (0, 0, k, k))
    context = torch.stack([padded[:, f:f + 2 * k + 1] for f in range(count)], dim=1)  # (N, F, 2k+1, length)
    y = context.reshape(-1, 1, length)
    bands = model.conv(crafx._pad_same(y, model.conv.kernel_size[0]))
    envelopes = F.softplus(model.filterbank(crafx._pad_same(bands.abs(), model.filterbank.kernel_size[0])))
    pooled = F.max_pool1d(envelopes, model.pool_size)  # (N·F·(2k+1), filters, steps)
    steps = pooled.shape[-1]
    z = pooled.reshape(batch * count, 2 * k + 1, -1, steps).permute(0, 3, 1, 2).reshape(batch * count, steps, -1)
    centre = bands.reshape(batch * count, 2 * k + 1, -1, length)[:, k]
    return centre, z


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, name: str = "") -> None:
    """Equal to float rounding relative to the tensor's largest value (gradients are sums of many terms,
    summed in another order; a small element may differ from its reference by more than its own size·rtol)."""
    assert actual.shape == expected.shape, name
    scale = expected.abs().max().item()
    assert (actual - expected).abs().max().item() <= rtol * scale + 1e-12, (name, scale)


def _assert_same_outputs_and_gradients(model, x, target, monkeypatch, patch_now, patch_reference,
                                        seed: int | None = None) -> None:
    """One training step's output and gradients, with ``patch_now`` and then with ``patch_reference`` applied
    (each gets a ``monkeypatch`` context), agree: outputs to float rounding, gradients to their scale."""
    results = []
    for patch_with in (patch_now, patch_reference):
        with monkeypatch.context() as patch:
            patch_with(patch)
            if seed is not None:
                torch.manual_seed(seed)  # the same dropout masks
            model.zero_grad()
            out = model(x)
            ((out - target) ** 2).mean().backward()
            results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out, grads), (out_ref, grads_ref) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-6, atol=1e-7)
    for name, grad in grads.items():
        _assert_close_to_scale(grad, grads_ref[name], name=name)


def _saved_bytes(function, *args) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of ``function(*args)``."""
    storages = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function(*args)
    return sum(storages.values())


def test_crafx_context_features_equal_the_front_end_of_every_context_frame():
    model = _small_crafx()
    frames = model.frames(torch.randn(3, 200, generator=torch.Generator().manual_seed(1)))  # 8 frames each
    results = []
    for function in (_context_features_framewise, CRAFx.context_features):
        model.zero_grad()
        bands, z = function(model, frames)
        generator = torch.Generator().manual_seed(2)
        upstream = (torch.randn(bands.shape, generator=generator), torch.randn(z.shape, generator=generator))
        ((bands * upstream[0]).sum() + (z * upstream[1]).sum()).backward()
        results.append((bands.detach(), z.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (bands_ref, z_ref, grads_ref), (bands, z, grads) = results
    assert z.shape == (3 * 8, 8, 4 * 5) and bands.shape == (3 * 8, 4, 64)
    torch.testing.assert_close(bands, bands_ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(z, z_ref, rtol=1e-6, atol=1e-7)
    assert len(grads) == len(grads_ref) == 4  # conv and filterbank weights and biases
    for grad, grad_ref in zip(grads, grads_ref, strict=True):
        _assert_close_to_scale(grad, grad_ref)


@pytest.mark.parametrize("context_frames", [0, 2])
def test_crafx_output_and_gradients_equal_the_framewise_front_end_without_recomputation(monkeypatch,
                                                                                       context_frames):
    generator = torch.Generator().manual_seed(3)
    x, target = torch.randn(2, 1, 300, generator=generator), torch.randn(2, 1, 300, generator=generator)
    model = _small_crafx(context_frames=context_frames).train()

    def framewise(patch):
        patch.setattr(CRAFx, "context_features", _context_features_framewise)
        patch.setattr(crafx, "_recomputed", lambda module, x: module(x))
        patch.setattr(crafx, "_unpool_times", lambda bands, z, pool: bands.transpose(1, 2)
                      * z.repeat_interleave(pool, dim=1))

    _assert_same_outputs_and_gradients(model, x, target, monkeypatch,
                                       lambda patch: patch.setattr(crafx, "_recomputed", CHUNKED), framewise, seed=4)


def test_crafx_keeps_less_for_backward_than_the_framewise_front_end(monkeypatch):
    model = _small_crafx().train()
    x = torch.randn(4, 1, 1000, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(crafx, "_recomputed", CHUNKED)
    ours = _saved_bytes(model, x)
    monkeypatch.setattr(CRAFx, "context_features", _context_features_framewise)
    monkeypatch.setattr(crafx, "_recomputed", lambda module, x: module(x))
    framewise = _saved_bytes(model, x)
    assert ours < 0.5 * framewise, (ours, framewise)


def test_recomputed_saaf_in_chunks_equals_the_saaf_and_keeps_only_its_input():
    saaf = SAAF(4)
    with torch.no_grad():
        saaf.weight.normal_(0.0, 0.05)
    x = (0.3 * torch.randn(37, 50, 4, generator=torch.Generator().manual_seed(6))).requires_grad_()
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    results = []
    for function in (saaf, lambda v: crafx._recomputed(saaf, v, chunk_elements=1000)):
        saaf.zero_grad()
        x.grad = None
        out = function(x)
        (out * upstream).sum().backward()
        results.append((out.detach(), x.grad.clone(), saaf.weight.grad.clone(), saaf.slope.grad.clone()))
    for ours, reference in zip(results[1], results[0], strict=True):
        _assert_close_to_scale(ours, reference)
    with torch.no_grad():
        assert torch.equal(crafx._recomputed(saaf, x, chunk_elements=1000), saaf(x))
    # The SAAF keeps several tensors of x's size; recomputed, only x itself (and tiny parameter views).
    assert _saved_bytes(saaf, x) > 3 * x.numel() * 4
    assert _saved_bytes(lambda v: crafx._recomputed(saaf, v, chunk_elements=1000), x) <= x.numel() * 4 + 4096


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("length", [29, 32])
def test_waveunet_fixed_filter_equals_the_convolution_and_keeps_nothing_of_its_input(transposed, length):
    weight = waveunet.sinc_filter(waveunet.RESAMPLE_TAPS, 0.125).repeat(3, 1, 1)
    x = torch.randn(2, 3, length, generator=torch.Generator().manual_seed(8), requires_grad=True)
    convolve = F.conv_transpose1d if transposed else F.conv1d
    results = []
    for function in (lambda v: convolve(v, weight, stride=4, groups=3),
                     lambda v: waveunet._FixedFilter.apply(v, weight, 4, 3, transposed)):
        x.grad = None
        out = function(x)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(9)))
        results.append((out.detach(), x.grad.clone()))
    for ours, reference in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-7)
    assert _saved_bytes(lambda v: convolve(v, weight, stride=4, groups=3), x) >= x.numel() * 4
    assert _saved_bytes(lambda v: waveunet._FixedFilter.apply(v, weight, 4, 3, transposed), x) <= weight.numel() * 4


def test_waveunet_output_and_gradients_unchanged_by_the_fixed_filter(monkeypatch):
    generator = torch.Generator().manual_seed(10)
    x, target = torch.randn(2, 1, 700, generator=generator), torch.randn(2, 1, 700, generator=generator)
    torch.manual_seed(0)
    model = waveunet.WaveUNet(channels=1, levels=3, features=8).train()

    def plain_convolution(patch):
        patch.setattr(waveunet._FixedFilter, "apply", lambda v, w, stride, groups, transposed: (
            F.conv_transpose1d if transposed else F.conv1d)(v, w, stride=stride, groups=groups))

    _assert_same_outputs_and_gradients(model, x, target, monkeypatch, lambda patch: None, plain_convolution)
