"""Demucs v2 (Défossez, Usunier, Bottou and Bach, 2019/2021) as released, for one source (paper Sec. IV-D).

Reference code: ``facebookresearch/demucs``, ``demucs/model.py`` at commit
d6abb138972bf46531d5315fe20c2cedbae22830 ("demucs v2", 2021-04-28) and, unchanged but for the optional
``normalize``, at 7445cbdb38e40df947cba1e0a08b7ee85d08ec9c (the last v2 commit before the hybrid v3).
The model here is written anew from the paper and that code and follows it layer for layer:

- the input is upsampled ×2 with julius' windowed-sinc ``resample_frac`` (``resample=True``) and the
  output downsampled back;
- each of the L encoder levels is Conv1d(kernel 8, stride 4) + ReLU, then a 1×1 convolution doubling the
  channels and a GLU halving them; channels grow ×2 per level from ``channels_first``;
- a 2-layer BLSTM with as many units as channels, plus a linear layer back to the channel count, runs on
  the coarsest level;
- each decoder level adds the centre-trimmed encoder output of its level, then a "valid" Conv1d of kernel
  ``context = 3`` doubling the channels, a GLU, ConvTranspose1d(kernel 8, stride 4) and a ReLU (none on
  the last level);
- every (transposed) convolution's weights and bias are rescaled at initialisation so that their standard
  deviation moves towards ``rescale = 0.1`` (``rescale_module``);
- the input is zero-padded symmetrically to :meth:`Demucs.valid_length` and the output centre-trimmed back
  (v2 does it in ``apply_model``); each example is normalised by the mean and standard deviation of its
  channel average and scaled back at the end (v2's ``normalize=True``; v2's default normalises whole
  tracks outside the model, which a model fed random crops cannot do).

Intended differences, and why:

- one source (the restored signal) instead of four, and ``channels`` audio channels (1 for the paper's
  mono guitar): distortion removal has one target;
- statistics for the normalisation are taken before padding (as the later ``demucs.demucs.Demucs`` of the
  demucs 4 package does), so that they do not depend on the padding; v2's ``apply_model`` padded first;
- for a one-sample input the standard deviation is the population one (the unbiased one is undefined);
- sample rate: the paper's 16 kHz (nothing in the model depends on it).

Sizes. "original" is v2's released default (64 initial channels, depth 6, context 3, 2 BLSTM layers):
265.68 M parameters for one mono source (265.68 M for the released four stereo sources as well; the
released checkpoints are 1 GB of float32). Imort et al. quote "66 million" for the model they started
from. That is a quarter of the release, and the release's code gives it in two ways: 32 initial channels
at depth 6 (66.44 M) or depth 5 at 64 channels (66.40 M); the paper does not say which. Reducing "the
number of layers" to reach "1 million" then gives depth 3 at 32 channels (1.03 M) or depth 2 at 64
channels (0.99 M). "paper" is the first (depth 3, 32 channels, 1.03 M): its BLSTM runs at 1/64 of the
(upsampled) rate, where depth 2 would run it over 4,000 steps per 2-s crop at 16 kHz.
"""

from __future__ import annotations

import math

import julius
import torch
import torch.nn.functional as F
from torch import nn

CONFIGS: dict[str, dict] = {
    "paper": {"depth": 3, "channels_first": 32},
    "original": {"depth": 6, "channels_first": 64},
}


class BLSTM(nn.Module):
    """Bidirectional LSTM over time with as many units as channels, and a linear layer back (v2's BLSTM).

    Shape:
        (B, C, T) -> (B, C, T).
    """

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (T, B, C) for the LSTM, and back.
        return self.linear(self.lstm(x.permute(2, 0, 1))[0]).permute(1, 2, 0)


class Demucs(nn.Module):
    """Demucs v2 for one source: a waveform batch in, the restored waveform out.

    Args:
        channels: audio channels in and out.
        depth: encoder/decoder levels L.
        channels_first: channels of the first level (×``growth`` per level).
        kernel: encoder/decoder convolution kernel size, in samples of the level's rate.
        stride: their stride (downsampling factor per level).
        lstm_layers: BLSTM layers on the coarsest level (0: none).
        context: kernel size of the decoder's "valid" convolution before each transposed convolution.
        growth: channel multiplier per level.
        resample: upsample the input ×2 before the encoder and downsample the output /2 after the decoder.
        rescale: standard deviation the convolutions' initial weights are rescaled towards (0: no rescaling).
        normalize: normalise each example by the mean and standard deviation of its channel average.

    Shape:
        (B, C, T) -> (B, C, T), any T >= 1.

    >>> model = Demucs(channels=1, depth=2, channels_first=8).eval()
    >>> model(torch.randn(2, 1, 1000)).shape
    torch.Size([2, 1, 1000])
    """

    def __init__(self, channels: int = 1, depth: int = 6, channels_first: int = 64, kernel: int = 8,
                 stride: int = 4, lstm_layers: int = 2, context: int = 3, growth: float = 2.0,
                 resample: bool = True, rescale: float = 0.1, normalize: bool = True) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("depth", depth), ("channels_first", channels_first),
                            ("kernel", kernel), ("stride", stride), ("context", context)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if int(lstm_layers) != lstm_layers or lstm_layers < 0:
            raise ValueError(f"lstm_layers must be a non-negative integer, got {lstm_layers!r}")
        if stride > kernel:
            raise ValueError(f"stride ({stride}) must not exceed kernel ({kernel})")
        if not (math.isfinite(growth) and growth >= 1):
            raise ValueError(f"growth must be a number >= 1, got {growth!r}")
        if not (math.isfinite(rescale) and rescale >= 0):
            raise ValueError(f"rescale must be a non-negative number (0: off), got {rescale!r}")
        self.channels, self.depth, self.kernel, self.stride = channels, depth, kernel, stride
        self.context, self.resample, self.normalize = context, bool(resample), bool(normalize)
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        inner, outer = channels_first, channels
        for level in range(depth):
            self.encoder.append(nn.Sequential(nn.Conv1d(outer, inner, kernel, stride), nn.ReLU(),
                                              nn.Conv1d(inner, 2 * inner, 1), nn.GLU(dim=1)))
            decode = [nn.Conv1d(inner, 2 * inner, context), nn.GLU(dim=1),
                      nn.ConvTranspose1d(inner, outer, kernel, stride)]
            if level > 0:
                decode.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*decode))
            outer, inner = inner, int(growth * inner)
        self.lstm = BLSTM(outer, lstm_layers) if lstm_layers else None
        if rescale:
            # v2's rescale_module: divide weights and bias by sqrt(std / rescale) for every convolution.
            for module in self.modules():
                if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                    with torch.no_grad():
                        scale = (module.weight.std() / rescale) ** 0.5
                        module.weight /= scale
                        if module.bias is not None:
                            module.bias /= scale

    def valid_length(self, length: int) -> int:
        """The smallest input length >= ``length`` (samples) whose output needs no zero-padding inside.

        v2's ``valid_length``: every strided convolution sees whole windows, each level's context
        convolution has its ``context - 1`` extra steps, and the ×2 resampling is accounted for.
        """
        if self.resample:
            length *= 2
        for _ in range(self.depth):
            length = max(math.ceil((length - self.kernel) / self.stride) + 1, 1)
            length += self.context - 1
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel
        if self.resample:
            length = math.ceil(length / 2)
        return int(length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] < 1:
            raise ValueError(f"expected (batch, {self.channels}, samples) with samples >= 1, got {tuple(x.shape)}")
        length = x.shape[-1]
        if self.normalize:
            # Mean and (unbiased) standard deviation of the channel average, scaled back at the end.
            mono = x.mean(dim=1, keepdim=True)
            mean = mono.mean(dim=-1, keepdim=True)
            std = mono.std(dim=-1, keepdim=True, correction=1 if length > 1 else 0)
            h = (x - mean) / (1e-5 + std)
        else:
            mean, std, h = 0.0, 1.0, x
        # Zero-pad both ends to the valid length; the centre is trimmed back out at the end.
        delta = self.valid_length(length) - length
        h = F.pad(h, (delta // 2, delta - delta // 2))
        if self.resample:
            h = julius.resample_frac(h, 1, 2)
        skips = []
        for encode in self.encoder:
            # Strided convolution, ReLU, 1×1 convolution and GLU; keep the result for the skip.
            h = encode(h)
            skips.append(h)
        if self.lstm is not None:
            h = self.lstm(h)
        for decode in self.decoder:
            # Add this level's encoder output, trimmed to the centre; context convolution, GLU, transposed conv.
            h = decode(h + center_trim(skips.pop(), h.shape[-1]))
        if self.resample:
            h = julius.resample_frac(h, 2, 1)
        return center_trim(h * std + mean, length)


def center_trim(x: torch.Tensor, length: int) -> torch.Tensor:
    """The centre ``length`` samples of ``x`` (..., T); an odd excess is removed on the right, as in v2."""
    delta = x.shape[-1] - length
    if delta < 0:
        raise ValueError(f"cannot trim {x.shape[-1]} samples to {length}")
    return x[..., delta // 2: delta // 2 + length]


def build(size: str, channels: int) -> Demucs:
    """The "paper" (1.03 M parameters) or "original" (v2's released 265.7 M) Demucs for ``channels`` channels."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return Demucs(channels, **CONFIGS[size])
