"""Demucs v2 (Défossez et al., 2019): convolutional encoder, BLSTM, decoder with skips (paper Sec. IV-D).

Each of the L encoder levels is Conv1d(kernel 8, stride 4) + ReLU, then a 1×1 convolution doubling the
channels and a GLU halving them again; channels grow by 2 per level from ``channels_first``. A 2-layer
BLSTM (plus a linear layer back to the channel count) runs on the coarsest level. The decoder mirrors
the encoder (1×1 convolution + GLU, then ConvTranspose1d(kernel 8, stride 4) + ReLU, no ReLU on the
last) and adds each encoder level's output to its input (skip connections). The input is padded to
Demucs' "valid length" and the output cropped back, so any T works. As in Demucs v2's inference code,
the input is normalised by its standard deviation and the output scaled back (inside the model here).

Sizes: "original" is Demucs v2's default configuration (6 levels, 64 initial channels, 2-layer BLSTM
of the last level's 2048 channels) with one output source: 243 M parameters here, most of them in the
BLSTM (Imort et al. quote 66 M for the model they started from). "paper" has 4 levels from 16
channels: 0.95 M parameters, the "about one million" Imort et al. reduced it to.
Demucs v2's weight rescaling at initialisation is not applied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CONFIGS: dict[str, dict] = {
    "paper": {"depth": 4, "channels_first": 16, "kernel": 8, "stride": 4, "lstm_layers": 2},
    "original": {"depth": 6, "channels_first": 64, "kernel": 8, "stride": 4, "lstm_layers": 2},
}


class Demucs(nn.Module):
    """Demucs v2 for one source: a waveform batch in, the restored waveform out.

    Args:
        channels: audio channels in and out.
        depth: encoder/decoder levels L.
        channels_first: channels of the first level (doubling per level).
        kernel: convolution kernel size in samples.
        stride: convolution stride (downsampling factor per level).
        lstm_layers: BLSTM layers on the coarsest level.

    Shape:
        (B, C, T) -> (B, C, T), any T >= 1.
    """

    def __init__(self, channels: int = 1, depth: int = 6, channels_first: int = 64, kernel: int = 8,
                 stride: int = 4, lstm_layers: int = 2) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("depth", depth), ("channels_first", channels_first),
                            ("kernel", kernel), ("stride", stride), ("lstm_layers", lstm_layers)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if stride > kernel:
            raise ValueError(f"stride ({stride}) must not exceed kernel ({kernel})")
        self.channels, self.depth, self.kernel, self.stride = channels, depth, kernel, stride
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        inner, outer = channels_first, channels
        for level in range(depth):
            self.encoder.append(nn.Sequential(nn.Conv1d(outer, inner, kernel, stride), nn.ReLU(),
                                              nn.Conv1d(inner, 2 * inner, 1), nn.GLU(dim=1)))
            decode = [nn.Conv1d(inner, 2 * inner, 1), nn.GLU(dim=1), nn.ConvTranspose1d(inner, outer, kernel, stride)]
            if level > 0:
                decode.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*decode))
            outer, inner = inner, 2 * inner
        self.lstm = nn.LSTM(outer, outer, num_layers=lstm_layers, bidirectional=True)
        self.lstm_out = nn.Linear(2 * outer, outer)

    def valid_length(self, length: int) -> int:
        """The smallest length >= ``length`` that the strided convolutions map back onto itself exactly."""
        for _ in range(self.depth):
            length = max(math.ceil((length - self.kernel) / self.stride) + 1, 1)
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel
        return length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"expected (batch, {self.channels}, samples), got {tuple(x.shape)}")
        length = x.shape[-1]
        # Normalise by the standard deviation (scaled back at the end), as Demucs v2 does around the model.
        scale = x.flatten(1).std(dim=1, unbiased=False).clamp(min=1e-5).view(-1, 1, 1)
        # Pad both ends to the valid length; the centre is cropped back out.
        delta = self.valid_length(length) - length
        h = F.pad(x / scale, (delta // 2, delta - delta // 2))
        skips = []
        for encode in self.encoder:
            # Strided convolution, ReLU, 1×1 convolution and GLU; keep the result for the skip.
            h = encode(h)
            skips.append(h)
        # BLSTM over time at the coarsest level: (B, C, T') -> (T', B, C) and back.
        recurrent = self.lstm(h.permute(2, 0, 1))[0]
        h = self.lstm_out(recurrent).permute(1, 2, 0)
        for decode in self.decoder:
            # Add the encoder output of this level, then 1×1 convolution, GLU, transposed convolution.
            skip = skips.pop()
            h = decode(h + skip[..., : h.shape[-1]])
        return h[..., delta // 2: delta // 2 + length] * scale


def build(size: str, channels: int) -> Demucs:
    """The "paper" (~1 M parameters) or "original" Demucs v2 for ``channels`` channels."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return Demucs(channels, **CONFIGS[size])
