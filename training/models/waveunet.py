"""Wave-U-Net (Stoller, Ewert and Dixon, 2018): a 1-D U-Net on the waveform, as in the paper's Sec. IV-C.

L downsampling blocks (convolution, LeakyReLU, decimation by 2) lead to a bottleneck convolution; L
upsampling blocks (linear interpolation by 2, concatenation with the matching encoder features,
convolution, LeakyReLU) lead back; the input waveform is concatenated before a final 1×1 convolution.
Level i has ``growth × i`` feature channels. Convolutions use "same" padding, so the model maps any
length T to T: the input is zero-padded to a multiple of 2^L inside and the output cropped back.

Sizes: "original" is the published M4-style configuration (12 levels, 24 extra filters per level,
kernels 15 down and 5 up): 10.3 M parameters here for one mono source (Imort et al. quote 17 M for
the model they started from). "paper" keeps filters and kernels but has 5 levels: 0.97 M parameters,
the "about one million" Imort et al. reduced it to, to curb overfitting. The output layer is
linear (the published model's direct output), not tanh. Each example is normalised by its standard
deviation on the way in and scaled back on the way out (as Demucs v2 does around its model): clipped
inputs arrive at very different levels, and without it this LeakyReLU stack barely trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONFIGS: dict[str, dict] = {
    "paper": {"levels": 5, "growth": 24, "down_kernel": 15, "up_kernel": 5},
    "original": {"levels": 12, "growth": 24, "down_kernel": 15, "up_kernel": 5},
}


class WaveUNet(nn.Module):
    """Wave-U-Net mapping a waveform batch to a restored one.

    Args:
        channels: audio channels in and out.
        levels: number of down/upsampling levels L (the input is padded to a multiple of 2^L).
        growth: feature channels added per level (level i has growth × i channels).
        down_kernel: kernel size (samples) of the downsampling convolutions, odd.
        up_kernel: kernel size (samples) of the upsampling convolutions, odd.

    Shape:
        (B, C, T) -> (B, C, T), any T >= 1.
    """

    def __init__(self, channels: int = 1, levels: int = 12, growth: int = 24, down_kernel: int = 15,
                 up_kernel: int = 5) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("levels", levels), ("growth", growth)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("down_kernel", down_kernel), ("up_kernel", up_kernel)):
            if int(value) != value or value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer (same padding), got {value!r}")
        self.channels, self.levels = channels, levels
        self.down = nn.ModuleList()
        previous = channels
        for level in range(1, levels + 1):
            self.down.append(nn.Conv1d(previous, growth * level, down_kernel, padding=down_kernel // 2))
            previous = growth * level
        self.bottleneck = nn.Conv1d(previous, growth * (levels + 1), down_kernel, padding=down_kernel // 2)
        previous = growth * (levels + 1)
        self.up = nn.ModuleList()
        for level in range(levels, 0, -1):
            self.up.append(nn.Conv1d(previous + growth * level, growth * level, up_kernel, padding=up_kernel // 2))
            previous = growth * level
        self.output = nn.Conv1d(previous + channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(f"expected (batch, {self.channels}, samples), got {tuple(x.shape)}")
        length = x.shape[-1]
        # Normalise each example by its standard deviation (scaled back at the end): clipped inputs
        # arrive at very different levels, and without this the deep LeakyReLU stack trains poorly.
        scale = x.flatten(1).std(dim=1, unbiased=False).clamp(min=1e-5).view(-1, 1, 1)
        # Pad so that L halvings stay integral; cropped off at the end.
        multiple = 2**self.levels
        padded = F.pad(x / scale, (0, (-length) % multiple))
        skips = []
        h = padded
        for conv in self.down:
            # Convolve, keep the features for the skip, then decimate by 2.
            h = F.leaky_relu(conv(h), 0.2)
            skips.append(h)
            h = h[:, :, ::2]
        # Bottleneck at the coarsest time scale.
        h = F.leaky_relu(self.bottleneck(h), 0.2)
        for conv, skip in zip(self.up, reversed(skips), strict=True):
            # Upsample by 2 with linear interpolation, concatenate the skip, convolve.
            h = F.interpolate(h, size=skip.shape[-1], mode="linear", align_corners=True)
            h = F.leaky_relu(conv(torch.cat([h, skip], dim=1)), 0.2)
        # The input itself joins the last layer, as in the published model.
        return self.output(torch.cat([h, padded], dim=1))[..., :length] * scale


def build(size: str, channels: int) -> WaveUNet:
    """The "paper" (~1 M parameters) or "original" Wave-U-Net for ``channels`` channels."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return WaveUNet(channels, **CONFIGS[size])
