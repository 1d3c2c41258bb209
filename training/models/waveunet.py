"""Wave-U-Net (Stoller, Ewert and Dixon, 2018) as in its PyTorch port, the 17 M-parameter model of the paper.

Reference code: ``f90/Wave-U-Net-Pytorch`` (Daniel Stoller's own port), ``model/waveunet.py``,
``model/conv.py``, ``model/resample.py`` at commit 86c113da51540c94b01a91fbf17227f0e9c3c274, with the
defaults of its ``train.py``: 6 levels of 32·2^i features, kernel 5, stride 4, depth 1, group-normalised
convolutions ("gn"), fixed sinc resampling ("fixed") and one network per source. Imort et al. (Sec. IV-C)
quote "17 million" parameters: the port's per-source network has 17.48 M trainable parameters for stereo
and 17.48 M for mono (plus 0.06 M fixed filter taps), while Stoller et al.'s TensorFlow M4 has about
10 M. So the port is the model followed here, written anew and layer for layer:

- every convolution is "valid" (no padding) and followed by GroupNorm (groups of 8 channels) and a ReLU;
- a downsampling block is a convolution (kept as the skip), a second convolution, then decimation by 4
  with a fixed 15-tap windowed-sinc low-pass (reflect padding);
- the bottleneck is one convolution; an upsampling block upsamples ×4 with the same sinc filter
  (transposed, zero-stuffing), convolves, concatenates the centre-cropped skip and convolves again;
- a 1×1 convolution gives the output, clipped to [-1, 1] in evaluation mode (as the port does at test time);
- with valid convolutions the output is shorter than the input: the network needs input context on both
  sides of the samples it restores (:meth:`WaveUNet.sizes`).

Intended differences, and why:

- one source and ``channels`` audio channels (mono for the paper) instead of four stereo sources: one target;
- any length T maps to T: the input is zero-padded with the context the network needs (as the port's
  ``predict_song`` pads a whole song) and the output cropped to T. The training loader crops equal-length
  input/target pairs, so context at a crop's edges is zeros here where the port trains on real audio
  around each output window;
- the bottleneck has at least 8 steps (the port's 7-sample reflect padding is undefined on shorter signals);
- the port's sinc window is computed as written there (``0.42 - 0.5 cos(2πi/M) + 0.08 cos(4πM)``, which is
  a Hann window since ``cos(4πM) = 1``), and held in a buffer rather than a frozen parameter (same
  state-dict key).

Sizes: "original" is the port's default network (17.48 M trainable parameters mono); "paper" has 4
levels instead of 6 (1.08 M), the "about one million" Imort et al. reduced it to "by decreasing the number
of layers".
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

CONFIGS: dict[str, dict] = {
    "paper": {"levels": 4, "features": 32, "kernel": 5, "stride": 4, "depth": 1},
    "original": {"levels": 6, "features": 32, "kernel": 5, "stride": 4, "depth": 1},
}

#: Taps of the fixed sinc resampling filter (the port's Resample1d(…, 15, stride)).
RESAMPLE_TAPS = 15
#: Shortest bottleneck, in steps: reflect padding of (RESAMPLE_TAPS - 1) // 2 needs more samples than that.
MIN_BOTTLENECK = 8


def sinc_filter(taps: int, cutoff: float) -> torch.Tensor:
    """The port's windowed-sinc low-pass: ``taps`` coefficients, ``cutoff`` in cycles per sample, unit DC gain."""
    m = taps - 1
    i = torch.arange(taps, dtype=torch.float64)
    offset = i - m // 2
    window = 0.42 - 0.5 * torch.cos(2 * math.pi * i / m) + 0.08 * math.cos(4 * math.pi * m)
    safe = torch.where(offset == 0, 1.0, offset)
    kernel = torch.where(offset == 0, 2 * math.pi * cutoff, torch.sin(2 * math.pi * cutoff * offset) / safe * window)
    kernel = kernel.float()
    return kernel / kernel.sum()


class ConvLayer(nn.Module):
    """A valid Conv1d, GroupNorm over groups of 8 channels, ReLU. Shape: (B, C_in, T) -> (B, C_out, T - k + 1)."""

    def __init__(self, inputs: int, outputs: int, kernel: int) -> None:
        super().__init__()
        if outputs % 8:
            raise ValueError(f"feature channels must be multiples of 8 (group norm), got {outputs}")
        self.filter = nn.Conv1d(inputs, outputs, kernel)
        self.norm = nn.GroupNorm(outputs // 8, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.filter(x)))


class Resample(nn.Module):
    """Fixed sinc decimation (T -> (T - 1) / stride + 1, T ≡ 1 mod stride) or upsampling (T -> (T - 1)·stride + 1)."""

    def __init__(self, channels: int, stride: int, up: bool) -> None:
        super().__init__()
        self.stride, self.up, self.channels = stride, up, channels
        self.register_buffer("filter", sinc_filter(RESAMPLE_TAPS, 0.5 / stride).repeat(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        pad = (RESAMPLE_TAPS - 1) // 2
        x = F.pad(x, (pad, pad), mode="reflect")
        if not self.up:
            return _FixedFilter.apply(x, self.filter, self.stride, self.channels, False)
        # Zero-stuffing and filtering in one transposed convolution, then the centre (length - 1)·stride + 1.
        out = _FixedFilter.apply(x, self.filter, self.stride, self.channels, True)
        excess = out.shape[-1] - ((length - 1) * self.stride + 1)
        return out[..., excess // 2: out.shape[-1] - excess // 2]


class _FixedFilter(torch.autograd.Function):
    """Strided depth-wise convolution (or its transpose) ``(N, C, T) -> (N, C, T')`` with a fixed filter.

    Autograd's convolution keeps its input for the filter's gradient even when the filter needs none; the
    input's gradient needs only the filter. So this keeps nothing of the input for the backward pass (the
    reflect-padded input of each resampling, as large as the level's activations). Same values and
    gradients as ``F.conv1d`` / ``F.conv_transpose1d``. Under autocast the gradient is computed in the
    incoming gradient's dtype and returned in the input's.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, groups: int,
                transposed: bool) -> torch.Tensor:
        if weight.requires_grad:
            raise ValueError("_FixedFilter is for filters that need no gradient")
        ctx.save_for_backward(weight)
        ctx.stride, ctx.groups, ctx.transposed, ctx.shape, ctx.dtype = stride, groups, transposed, x.shape, x.dtype
        convolve = F.conv_transpose1d if transposed else F.conv1d
        return convolve(x, weight, stride=stride, groups=groups)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        (weight,) = ctx.saved_tensors
        weight = weight.to(grad.dtype)
        if ctx.transposed:  # the adjoint of a transposed convolution is the convolution
            grad_x = F.conv1d(grad, weight, stride=ctx.stride, groups=ctx.groups)
        else:
            grad_x = torch.nn.grad.conv1d_input(ctx.shape, weight, grad, stride=ctx.stride, groups=ctx.groups)
        return grad_x.to(ctx.dtype), None, None, None, None


class DownsamplingBlock(nn.Module):
    """Convolution (the skip), convolution, sinc decimation. Returns (decimated, skip)."""

    def __init__(self, inputs: int, shortcut: int, outputs: int, kernel: int, stride: int, depth: int) -> None:
        super().__init__()
        self.pre_shortcut_convs = nn.ModuleList(
            [ConvLayer(inputs if d == 0 else shortcut, shortcut, kernel) for d in range(depth)])
        self.post_shortcut_convs = nn.ModuleList(
            [ConvLayer(shortcut if d == 0 else outputs, outputs, kernel) for d in range(depth)])
        self.downconv = Resample(outputs, stride, up=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for conv in self.pre_shortcut_convs:
            x = conv(x)
        shortcut = x
        for conv in self.post_shortcut_convs:
            x = conv(x)
        return self.downconv(x), shortcut


class UpsamplingBlock(nn.Module):
    """Sinc upsampling, convolution, concatenation with the centre-cropped skip, convolution."""

    def __init__(self, inputs: int, shortcut: int, outputs: int, kernel: int, stride: int, depth: int) -> None:
        super().__init__()
        self.upconv = Resample(inputs, stride, up=True)
        self.pre_shortcut_convs = nn.ModuleList(
            [ConvLayer(inputs if d == 0 else outputs, outputs, kernel) for d in range(depth)])
        self.post_shortcut_convs = nn.ModuleList(
            [ConvLayer(outputs + shortcut if d == 0 else outputs, outputs, kernel) for d in range(depth)])

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        x = self.upconv(x)
        for conv in self.pre_shortcut_convs:
            x = conv(x)
        combined = _centre_crop(shortcut, x.shape[-1])
        for conv in self.post_shortcut_convs:
            combined = conv(torch.cat([combined, _centre_crop(x, combined.shape[-1])], dim=1))
        return combined


class WaveUNet(nn.Module):
    """Wave-U-Net (PyTorch port) for one source: a waveform batch in, the restored waveform out.

    Args:
        channels: audio channels in and out.
        levels: number of feature levels (``levels - 1`` down- and upsampling blocks).
        features: feature channels of the first level (×2 per level), a multiple of 8.
        kernel: convolution kernel size in samples, odd.
        stride: resampling factor per level.
        depth: convolutions per position in each block.

    Shape:
        (B, C, T) -> (B, C, T), any T >= 1; :meth:`forward_valid` maps ``sizes(T)[0]`` samples to
        ``sizes(T)[1]`` without padding.

    >>> model = WaveUNet(channels=1, levels=3, features=8).eval()
    >>> model(torch.randn(2, 1, 1000)).shape
    torch.Size([2, 1, 1000])
    """

    def __init__(self, channels: int = 1, levels: int = 6, features: int = 32, kernel: int = 5, stride: int = 4,
                 depth: int = 1) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("features", features), ("depth", depth)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if int(levels) != levels or levels < 2:
            raise ValueError(f"levels must be an integer >= 2 (one down/upsampling block), got {levels!r}")
        if int(stride) != stride or stride < 2:
            raise ValueError(f"stride must be an integer >= 2, got {stride!r}")
        if int(kernel) != kernel or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd integer (centred valid convolutions), got {kernel!r}")
        if depth != 1:
            raise ValueError(f"depth must be 1: the port's upsampling block cannot stack convolutions, got {depth!r}")
        if features % 8:
            raise ValueError(f"features must be a multiple of 8 (group norm over 8 channels), got {features!r}")
        self.channels, self.levels, self.kernel, self.stride, self.depth = channels, levels, kernel, stride, depth
        widths = [features * 2**i for i in range(levels)]
        self.downsampling_blocks = nn.ModuleList(
            DownsamplingBlock(channels if i == 0 else widths[i], widths[i], widths[i + 1], kernel, stride, depth)
            for i in range(levels - 1))
        self.upsampling_blocks = nn.ModuleList(
            UpsamplingBlock(widths[-1 - i], widths[-2 - i], widths[-2 - i], kernel, stride, depth)
            for i in range(levels - 1))
        self.bottlenecks = nn.ModuleList(ConvLayer(widths[-1], widths[-1], kernel) for _ in range(depth))
        self.output_conv = nn.Conv1d(widths[0], channels, 1)

    def sizes(self, length: int) -> tuple[int, int]:
        """(input samples, output samples) of the smallest network whose output covers ``length`` samples.

        The output is centred in the input: it starts ``(input - output) // 2`` samples in.
        """
        return _sizes(self.levels, self.kernel, self.stride, self.depth, int(length))

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself (the port's ``forward_module``): ``sizes(T)[0]`` samples in, ``sizes(T)[1]`` out."""
        shortcuts = []
        for block in self.downsampling_blocks:
            x, shortcut = block(x)
            shortcuts.append(shortcut)
        for conv in self.bottlenecks:
            x = conv(x)
        for block in self.upsampling_blocks:
            x = block(x, shortcuts.pop())
        x = self.output_conv(x)
        # At test time the port clips its estimates to the valid amplitude range.
        return x if self.training else x.clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] < 1:
            raise ValueError(f"expected (batch, {self.channels}, samples) with samples >= 1, got {tuple(x.shape)}")
        length = x.shape[-1]
        inputs, outputs = self.sizes(length)
        # Zeros as context on both sides: the output window starts (inputs - outputs) // 2 samples in.
        left = (inputs - outputs) // 2
        y = self.forward_valid(F.pad(x, (left, inputs - left - length)))
        return y[..., :length]


@functools.lru_cache(maxsize=256)
def _sizes(levels: int, kernel: int, stride: int, depth: int, length: int) -> tuple[int, int]:
    """WaveUNet.sizes for a configuration: the port's ``check_padding`` in closed steps."""
    shrink = depth * (kernel - 1)  # samples a block's convolutions remove, per convolution stack
    bottleneck = MIN_BOTTLENECK
    while True:
        out = bottleneck
        for _ in range(levels - 1):
            out = (out - 1) * stride + 1 - 2 * shrink  # upsampling, then two convolution stacks
        if out >= length and out > 0:
            break
        bottleneck += max(1, (length - out) // stride ** (levels - 1))
    size = bottleneck + shrink  # the bottleneck convolutions
    for _ in range(levels - 1):
        size = (size - 1) * stride + 1 + 2 * shrink  # two convolution stacks, then decimation
    return size, out


def _centre_crop(x: torch.Tensor, length: int) -> torch.Tensor:
    """The centre ``length`` samples of ``x`` (..., T); T - length must be even (as in the port)."""
    excess = x.shape[-1] - length
    if excess < 0 or excess % 2:
        raise ValueError(f"cannot centre-crop {x.shape[-1]} samples to {length}")
    return x[..., excess // 2: x.shape[-1] - excess // 2]


def build(size: str, channels: int) -> WaveUNet:
    """The "paper" (1.08 M parameters) or "original" (the port's 17.5 M) Wave-U-Net for ``channels`` channels."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return WaveUNet(channels, **CONFIGS[size])
