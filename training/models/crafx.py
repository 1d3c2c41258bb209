"""CRAFx: convolutional and recurrent audio effects modeling (Martínez Ramírez, Benetos, Reiss, DAFx 2019).

An end-to-end waveform model built for time-varying effects (Imort et al. 2022, Section IV-A): an
adaptive front-end (a Conv1D learnable frequency decomposition, ``|·|``, a depth-wise Conv1D filterbank
with softplus, max pooling), a latent space of three BLSTM layers whose output goes through a smooth
adaptive activation function (:class:`SAAF`), unpooling, a multiplicative residual with the first
convolution's output, and a synthesis back-end (DNN-SAAF-SE: dense layers, a SAAF, a squeeze-and-excitation
channel scaling) decoded by the transposed front-end convolution (tied weights).

The original sees a 4096-sample frame plus ``k = 4`` past and future frames (hop 2048) and predicts the
centre frame. Here the whole signal is one sequence: the pooled features of the frames ``±m·hop`` away
are stacked onto each pooled step (exactly the features the original concatenates), and the BLSTMs run
over the whole signal rather than over one frame. The paper trained on 2.3 s crops (9 × 4096 samples at
16 kHz), see :data:`PREFERRED_SEGMENT_SECONDS`.

Other departures from the authors' Keras code (``mchijmma/DL-AFx``, ``src/Models.py``), all small:
the last BLSTM uses PyTorch's tanh cell (Keras: a linear cell) and no recurrent dropout; each SAAF has 25
equal intervals in [-1, 1] as the paper describes and starts as the identity; the squeeze averages over a
sliding 4096-sample window instead of the frame; the decoder is the exact transpose of the front-end
convolution (the Keras layer correlates with the unflipped kernel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Training crop length the paper used for CRAFx (Imort et al. 2022, Section V-B), in seconds.
PREFERRED_SEGMENT_SECONDS = 2.3

_ORIGINAL = {
    "filters": 32,
    "kernel_size": 64,
    "filterbank_kernel_size": 128,
    "pool_size": 64,
    "context_frames": 4,
    "context_hop": 2048,
    "lstm_units": (64, 32, 16),
    "saaf_intervals": 25,
    "dense_units": (32, 16, 16),
    "se_units": 512,
    "se_window": 4096,
    "dropout": 0.1,
}

#: Hyper-parameters per size. Imort et al. (2022) did not shrink CRAFx, so "paper" equals "original"
#: (Martínez Ramírez et al. 2019, 16 kHz audio).
CONFIGS: dict[str, dict] = {"original": dict(_ORIGINAL), "paper": dict(_ORIGINAL)}


class SAAF(nn.Module):
    """Smooth adaptive activation function (Hou et al. 2017): a learnable piecewise quadratic.

    ``f(x) = bias + slope·x + Σ_k weight_k·B_k(x)``, where ``B_k`` is the boxcar of the k-th of
    ``intervals`` equal intervals of ``[x_min, x_max]`` integrated twice: 0 left of the interval,
    ``(x − a_k)²/2`` inside, and the linear continuation ``h·(x − a_{k+1}) + h²/2`` right of it
    (``h`` the interval width). ``f`` is continuous with a continuous derivative everywhere, quadratic on
    each interval and linear outside ``[x_min, x_max]``. Every channel has its own parameters
    (``3 + intervals`` of them). At initialisation ``f`` is the identity.

    Args:
        channels (int): number of channels (the size of the last input axis).
        intervals (int): number of polynomial pieces in ``[x_min, x_max]`` (default 25, as in CRAFx).
        x_min (float): left end of the polynomial range (default -1).
        x_max (float): right end of the polynomial range (default 1).

    Shape:
        - Input: ``(*, channels)``
        - Output: ``(*, channels)``

    >>> saaf = SAAF(4)
    >>> x = torch.randn(2, 10, 4)
    >>> torch.equal(saaf(x), x)
    True
    """

    def __init__(self, channels: int, intervals: int = 25, x_min: float = -1.0, x_max: float = 1.0) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("intervals", intervals)
        if not (math.isfinite(x_min) and math.isfinite(x_max) and x_min < x_max):
            raise ValueError(f"need finite x_min < x_max, got x_min={x_min!r}, x_max={x_max!r}")
        self.channels = channels
        self.intervals = intervals
        self.x_min = float(x_min)
        self.x_max = float(x_max)
        self.register_buffer("knots", torch.linspace(x_min, x_max, intervals + 1), persistent=False)
        self.weight = nn.Parameter(torch.zeros(intervals, channels))
        self.slope = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.channels:
            raise ValueError(f"SAAF expects {self.channels} channels on the last axis, got shape {tuple(x.shape)}")
        knots, zero = self.knots, self.weight.new_zeros(1, self.channels)
        widths = (knots[1:] - knots[:-1])[:, None]
        # Pieces completed left of x sum to x·cum_w[i] + cum_c[i] for x in interval i (0..intervals), with
        # cum_w[i] = Σ_{k<i} w_k·h_k and cum_c[i] = Σ_{k<i} w_k·(h_k²/2 − h_k·a_{k+1}).
        cum_w = torch.cat([zero, (self.weight * widths).cumsum(0)])
        cum_c = torch.cat([zero, (self.weight * widths * (0.5 * widths - knots[1:, None])).cumsum(0)])
        # The piece x lies in (none right of the last knot); widths padded to match.
        weight, widths = torch.cat([self.weight, zero]), torch.cat([widths, zero[:, :1]])
        # The interval of each sample, from the knots themselves so that index and knots agree exactly.
        with torch.no_grad():
            index = (torch.bucketize(x.contiguous(), knots, right=True) - 1).clamp_(0, self.intervals)
        flat = index * self.channels + torch.arange(self.channels, device=x.device)
        inside = torch.minimum((x - knots[index]).clamp(min=0.0), widths.flatten()[index])
        pieces = x * cum_w.flatten()[flat] + cum_c.flatten()[flat] + 0.5 * weight.flatten()[flat] * inside**2
        return self.bias + self.slope * x + pieces

    def extra_repr(self) -> str:
        return f"channels={self.channels}, intervals={self.intervals}, range=[{self.x_min:g}, {self.x_max:g}]"


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation channel scaling as in CRAFx's back-end, over a sliding window.

    The squeeze is the mean of ``|x|`` over ``window`` samples around each position (CRAFx averages over
    its 4096-sample frame; a sliding window keeps the output independent of the signal's length), the
    excitation two dense layers (``units`` ReLU, then ``channels`` sigmoid); ``x`` is scaled channel-wise.
    The window is evaluated on a grid of ``pool_size`` samples (scales are constant over each block).

    Args:
        channels (int): number of channels (last input axis).
        units (int): width of the hidden dense layer (16 × channels in CRAFx).
        window (int): averaging window in samples, a multiple of ``pool_size``.
        pool_size (int): grid step in samples; the input length must be a multiple of it.

    Shape:
        - Input: ``(N, T, channels)`` with ``T`` a multiple of ``pool_size``
        - Output: ``(N, T, channels)``
    """

    def __init__(self, channels: int, units: int, window: int, pool_size: int) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("units", units), ("window", window), ("pool_size", pool_size)):
            _check_positive_int(name, value)
        if window % pool_size:
            raise ValueError(f"se_window ({window}) must be a multiple of pool_size ({pool_size})")
        self.pool_size = pool_size
        self.steps = window // pool_size
        self.hidden = nn.Linear(channels, units)
        self.gate = nn.Linear(units, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1] // self.pool_size
        # Squeeze: mean |x| per pool_size block, then a centred moving average over window samples.
        level = F.avg_pool1d(x.abs().transpose(1, 2), self.pool_size)
        level = F.avg_pool1d(level, self.steps, stride=1, padding=self.steps // 2, count_include_pad=False)
        level = level[..., :length].transpose(1, 2)
        # Excitation: one scale in (0, 1) per channel and block, held over the block.
        scale = torch.sigmoid(self.gate(F.relu(self.hidden(level))))
        return x * scale.repeat_interleave(self.pool_size, dim=1)


class CRAFx(nn.Module):
    """CRAFx (Martínez Ramírez, Benetos, Reiss, DAFx 2019) as used by Imort et al. (2022) for distortion removal.

    Maps a waveform to a waveform of the same length. Channels are processed independently (folded into
    the batch); the length is zero-padded internally to a multiple of ``pool_size`` and cropped back, so
    any length works. Defaults are the original's (16 kHz audio); the paper used them unchanged.

    Args:
        channels (int): audio channels of the input (each one processed alone; no parameter depends on it).
        filters (int): filters of the front-end convolution (the learnable frequency decomposition).
        kernel_size (int): its kernel length in samples (also that of the tied transposed convolution).
        filterbank_kernel_size (int): kernel length in samples of the depth-wise filterbank convolution.
        pool_size (int): max-pooling (and unpooling) factor in samples; the latent rate is fs / pool_size.
        context_frames (int): frames ``k`` of context stacked on each side of each pooled step (0: none).
        context_hop (int): distance in samples between context frames (the original's 50 % frame hop),
            a multiple of ``pool_size``.
        lstm_units (sequence of int): units per direction of each BLSTM layer; the last BLSTM's output
            (2 × its units) must equal ``filters``.
        saaf_intervals (int): polynomial pieces of each SAAF in [-1, 1].
        dense_units (sequence of int): widths of the back-end's tanh dense layers, followed by a linear
            dense layer back to ``filters`` channels.
        se_units (int): hidden width of the squeeze-and-excitation block.
        se_window (int): its averaging window in samples (the original's frame length), a multiple of
            ``pool_size``.
        dropout (float): dropout on the input of every BLSTM layer, in [0, 1).

    Shape:
        - Input: ``(B, C, T)`` with ``C == channels``, any ``T >= 1``
        - Output: ``(B, C, T)``

    >>> model = CRAFx()
    >>> model(torch.randn(2, 1, 777)).shape
    torch.Size([2, 1, 777])
    """

    def __init__(
        self,
        channels: int = 1,
        filters: int = 32,
        kernel_size: int = 64,
        filterbank_kernel_size: int = 128,
        pool_size: int = 64,
        context_frames: int = 4,
        context_hop: int = 2048,
        lstm_units: Sequence[int] = (64, 32, 16),
        saaf_intervals: int = 25,
        dense_units: Sequence[int] = (32, 16, 16),
        se_units: int = 512,
        se_window: int = 4096,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("filters", filters), ("kernel_size", kernel_size),
                            ("filterbank_kernel_size", filterbank_kernel_size), ("pool_size", pool_size),
                            ("context_hop", context_hop), ("saaf_intervals", saaf_intervals),
                            ("se_units", se_units), ("se_window", se_window)):
            _check_positive_int(name, value)
        if not isinstance(context_frames, int) or isinstance(context_frames, bool) or context_frames < 0:
            raise ValueError(f"context_frames must be a non-negative integer, got {context_frames!r}")
        if context_hop % pool_size:
            raise ValueError(f"context_hop ({context_hop}) must be a multiple of pool_size ({pool_size})")
        lstm_units = tuple(lstm_units)
        dense_units = tuple(dense_units)
        if not lstm_units:
            raise ValueError("lstm_units must name at least one BLSTM layer")
        for units in lstm_units + dense_units:
            _check_positive_int("lstm_units and dense_units entries", units)
        if 2 * lstm_units[-1] != filters:
            raise ValueError(f"the last BLSTM's output (2 × {lstm_units[-1]}) must equal filters ({filters}): "
                             "it multiplies the front-end's output")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.channels = channels
        self.pool_size = pool_size
        self.context_frames = context_frames
        self.context_steps = context_hop // pool_size

        # Adaptive front-end: frequency decomposition, then one smoothing filter per band.
        self.conv = nn.Conv1d(1, filters, kernel_size)
        self.filterbank = nn.Conv1d(filters, filters, filterbank_kernel_size, groups=filters)
        # Latent space: BLSTMs over the pooled envelopes, stacked with their context frames.
        sizes = [filters * (2 * context_frames + 1)] + [2 * units for units in lstm_units]
        self.lstms = nn.ModuleList(nn.LSTM(size, units, batch_first=True, bidirectional=True)
                                   for size, units in zip(sizes[:-1], lstm_units, strict=True))
        self.dropout = nn.Dropout(dropout)
        self.latent_saaf = SAAF(filters, saaf_intervals)
        # Synthesis back-end (DNN-SAAF-SE) and the transposed front-end convolution's bias.
        widths = (filters,) + dense_units + (filters,)
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.dense_saaf = SAAF(filters, saaf_intervals)
        self.excitation = SqueezeExcitation(filters, se_units, se_window, pool_size)
        self.deconv_bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Process ``x`` of shape ``(B, C, T)``; returns ``(B, C, T)``."""
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] < 1:
            raise ValueError(f"expected a (B, {self.channels}, T) batch with T >= 1, got shape {tuple(x.shape)}")
        batch, channels, length = x.shape
        # Fold channels into the batch; zero-pad the length to a multiple of the pool size.
        padded = math.ceil(length / self.pool_size) * self.pool_size
        y = F.pad(x.reshape(batch * channels, 1, length), (0, padded - length))
        # Front-end: learnable frequency decomposition (kept for the residual), |·|, filterbank, softplus.
        bands = self.conv(_pad_same(y, self.conv.kernel_size[0]))
        envelopes = F.softplus(self.filterbank(_pad_same(bands.abs(), self.filterbank.kernel_size[0])))
        # Max pooling to the latent rate, then the context frames stacked onto each step: (N, L, F·(2k+1)).
        z = _stack_context(F.max_pool1d(envelopes, self.pool_size), self.context_frames, self.context_steps)
        z = z.transpose(1, 2)
        # Latent space: the BLSTMs (three), the last one's output through a SAAF.
        for lstm in self.lstms:
            z, _ = lstm(self.dropout(z))
        z = self.latent_saaf(z)
        # Unpooling back to the sample rate and the multiplicative residual with the decomposition: (N, T, F).
        y = bands.transpose(1, 2) * z.repeat_interleave(self.pool_size, dim=1)
        # Back-end: dense layers (tanh, linear last), a SAAF, squeeze-and-excitation, added to the residual.
        d = y
        for index, dense in enumerate(self.dense):
            d = dense(d)
            d = torch.tanh(d) if index < len(self.dense) - 1 else d
        y = y + self.excitation(self.dense_saaf(d))
        # Decoder: the front-end kernel transposed (tied weights), cropped back to T; unfold the channels.
        return self._decode(y.transpose(1, 2), length).reshape(batch, channels, length)

    def _decode(self, y: torch.Tensor, length: int) -> torch.Tensor:
        """(N, filters, T') -> (N, 1, length): the adjoint of the "same" front-end convolution, plus a bias.

        The reference Keras code correlates with the unflipped kernel; this is the true transpose.
        """
        out = F.conv_transpose1d(y, self.conv.weight, self.deconv_bias)
        left = (self.conv.kernel_size[0] - 1) // 2
        return out[..., left:left + length]


def _pad_same(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero padding for a "same" convolution: (k - 1) // 2 on the left, the rest on the right (as Keras)."""
    left = (kernel_size - 1) // 2
    return F.pad(x, (left, kernel_size - 1 - left))


def _stack_context(z: torch.Tensor, frames: int, steps: int) -> torch.Tensor:
    """(N, F, L) -> (N, F·(2·frames+1), L): z shifted by m·steps for m = -frames..frames, zeros past the ends."""
    if frames == 0:
        return z
    length = z.shape[-1]
    padded = F.pad(z, (frames * steps, frames * steps))
    return torch.cat([padded[..., (frames + m) * steps:(frames + m) * steps + length]
                      for m in range(-frames, frames + 1)], dim=1)


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def build(size: str, channels: int) -> CRAFx:
    """CRAFx in ``size`` "paper" or "original" (identical: the paper kept the original) for ``channels``."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return CRAFx(channels=channels, **CONFIGS[size])
