"""CRAFx: convolutional and recurrent audio effects modeling (Martínez Ramírez, Benetos, Reiss, DAFx 2019).

An end-to-end waveform model built for time-varying effects (Imort et al. 2022, Section IV-A): an
adaptive front-end (a Conv1D learnable frequency decomposition, ``|·|``, a depth-wise Conv1D filterbank
with softplus, max pooling), a latent space of three BLSTM layers whose output goes through a smooth
adaptive activation function (:class:`SAAF`), unpooling, a multiplicative residual with the first
convolution's output, and a synthesis back-end (DNN-SAAF-SE: dense layers, a SAAF, a squeeze-and-excitation
channel scaling) decoded by the transposed front-end convolution (tied weights).

Reference code: the authors' Keras implementation, ``mchijmma/DL-AFx`` at be887d1a74f1ea5af837efb3d9398caf9542ec68
(the last commit holding ``src/``; later commits removed it): ``src/Models.py`` (``CRAFx``), ``src/Layers.py``
(``GeneratorContext``, ``SAAF``, ``Conv1D_local``, ``Conv1D_tied``), ``src/Utils.py`` (``slicing``,
``overlap``), ``src/main.py``/``Config.py`` (4096-sample frames, hop 2048, ``kContext = 4``). Its framing is
followed here, for training and evaluation alike:

- the signal is cut into 4096-sample frames with hop 2048, centred (2048 zeros before the first), without
  a window (``slicing(..., windowing=False)``); 4 all-zero frames are added before the first and after the
  last, and each frame is modelled with its 4 previous and 4 next frames (``GeneratorContext``);
- the front-end (convolution, ``|·|``, depth-wise filterbank, softplus, max pooling by 64) runs on each of
  the 9 frames, and their pooled features are concatenated feature-wise at each of the 64 pooled steps;
- the BLSTMs run over those 64 steps; the multiplicative residual uses the centre frame's convolution
  output; the squeeze-and-excitation averages over the frame; the tied transposed convolution decodes it;
- the 4096-sample output frames are overlap-added with a periodic Hann window at hop 2048 (the windows sum
  to 1; ``overlap(..., windowing=True, rate=2)``) and the centring padding is cropped off.
So every output sample depends on the input within 4·2048 + 4096 samples of its frame, whatever the length
of the crop or signal it is part of (beyond a crop's edges the context is zeros, as at a recording's edges
in the original). The paper trained on 2.3 s crops (9 × 4096 samples at 16 kHz), see
:data:`PREFERRED_SEGMENT_SECONDS`.

Other departures from the Keras code, all small: the original's loss is the MAE of each unwindowed centre
frame, here the training loss (the paper's SDR) is on the overlap-added output; the last BLSTM uses
PyTorch's tanh cell (Keras: a linear cell) and no recurrent dropout; each SAAF has 25 equal intervals in
[-1, 1] as the paper describes and starts as the identity; the decoder is the exact transpose of the
front-end convolution (the Keras layer correlates with the unflipped kernel). There is no golden output
of the reference: it is TensorFlow-1 Keras code (``x.shape[-1].value``, ``tf.unstack`` in Lambda layers),
which no longer installs on the Python and TensorFlow versions of today.
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
    "frame_length": 4096,
    "hop_length": 2048,
    "context_frames": 4,
    "lstm_units": (64, 32, 16),
    "saaf_intervals": 25,
    "dense_units": (32, 16, 16),
    "se_units": 512,
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
    """Squeeze-and-excitation channel scaling as in CRAFx's back-end (``se_block``): one scale per frame.

    The squeeze is the mean of ``|x|`` over the frame (``GlobalAvgPool1D``), the excitation two dense
    layers (``units`` ReLU, then ``channels`` sigmoid); ``x`` is scaled channel-wise.

    Args:
        channels (int): number of channels (last input axis).
        units (int): width of the hidden dense layer (16 × channels in CRAFx).

    Shape:
        - Input: ``(N, T, channels)``, one frame per row
        - Output: ``(N, T, channels)``
    """

    def __init__(self, channels: int, units: int) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("units", units)):
            _check_positive_int(name, value)
        self.hidden = nn.Linear(channels, units)
        self.gate = nn.Linear(units, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = x.abs().mean(dim=1, keepdim=True)
        return x * torch.sigmoid(self.gate(F.relu(self.hidden(level))))


class CRAFx(nn.Module):
    """CRAFx (Martínez Ramírez, Benetos, Reiss, DAFx 2019) as used by Imort et al. (2022) for distortion removal.

    Maps a waveform to a waveform of the same length, frame by frame with the original's context (module
    docstring). Channels are processed independently (folded into the batch); any length works. Defaults
    are the original's (16 kHz audio); the paper used them unchanged.

    Args:
        channels (int): audio channels of the input (each one processed alone; no parameter depends on it).
        filters (int): filters of the front-end convolution (the learnable frequency decomposition).
        kernel_size (int): its kernel length in samples (also that of the tied transposed convolution).
        filterbank_kernel_size (int): kernel length in samples of the depth-wise filterbank convolution.
        pool_size (int): max-pooling (and unpooling) factor in samples; a frame has frame_length / pool_size
            latent steps.
        frame_length (int): samples per frame, a multiple of ``pool_size`` and of 2.
        hop_length (int): samples between frames; the periodic Hann windows of the overlap-add must sum to
            one, so it is ``frame_length // 2``.
        context_frames (int): frames ``k`` on each side whose features join each frame's (0: none).
        lstm_units (sequence of int): units per direction of each BLSTM layer; the last BLSTM's output
            (2 × its units) must equal ``filters``.
        saaf_intervals (int): polynomial pieces of each SAAF in [-1, 1].
        dense_units (sequence of int): widths of the back-end's tanh dense layers, followed by a linear
            dense layer back to ``filters`` channels.
        se_units (int): hidden width of the squeeze-and-excitation block.
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
        frame_length: int = 4096,
        hop_length: int = 2048,
        context_frames: int = 4,
        lstm_units: Sequence[int] = (64, 32, 16),
        saaf_intervals: int = 25,
        dense_units: Sequence[int] = (32, 16, 16),
        se_units: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("filters", filters), ("kernel_size", kernel_size),
                            ("filterbank_kernel_size", filterbank_kernel_size), ("pool_size", pool_size),
                            ("frame_length", frame_length), ("hop_length", hop_length),
                            ("saaf_intervals", saaf_intervals), ("se_units", se_units)):
            _check_positive_int(name, value)
        if not isinstance(context_frames, int) or isinstance(context_frames, bool) or context_frames < 0:
            raise ValueError(f"context_frames must be a non-negative integer, got {context_frames!r}")
        if frame_length % pool_size:
            raise ValueError(f"frame_length ({frame_length}) must be a multiple of pool_size ({pool_size})")
        if 2 * hop_length != frame_length:
            raise ValueError(f"hop_length must be half of frame_length (Hann overlap-add), got {hop_length} "
                             f"for frame_length {frame_length}")
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
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.context_frames = context_frames
        self.register_buffer("window", torch.hann_window(frame_length, periodic=True), persistent=False)

        # Adaptive front-end: frequency decomposition, then one smoothing filter per band.
        self.conv = nn.Conv1d(1, filters, kernel_size)
        self.filterbank = nn.Conv1d(filters, filters, filterbank_kernel_size, groups=filters)
        # Latent space: BLSTMs over the pooled envelopes of a frame and its context frames.
        sizes = [filters * (2 * context_frames + 1)] + [2 * units for units in lstm_units]
        self.lstms = nn.ModuleList(nn.LSTM(size, units, batch_first=True, bidirectional=True)
                                   for size, units in zip(sizes[:-1], lstm_units, strict=True))
        self.dropout = nn.Dropout(dropout)
        self.latent_saaf = SAAF(filters, saaf_intervals)
        # Synthesis back-end (DNN-SAAF-SE) and the transposed front-end convolution's bias.
        widths = (filters,) + dense_units + (filters,)
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.dense_saaf = SAAF(filters, saaf_intervals)
        self.excitation = SqueezeExcitation(filters, se_units)
        self.deconv_bias = nn.Parameter(torch.zeros(1))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The original's ``slicing``: ``(N, T)`` -> ``(N, frames, frame_length)``, centred, no window.

        ``frames = ceil(T / hop) + 1``, so that every sample lies under two windows of the overlap-add.
        """
        count = -(-x.shape[-1] // self.hop_length) + 1
        padded = F.pad(x, (self.hop_length, (count + 1) * self.hop_length - self.hop_length - x.shape[-1]))
        return padded.unfold(-1, self.frame_length, self.hop_length)

    def forward_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The network on framed input: ``(N, F, frame_length)`` -> ``(N, F, frame_length)``, frame f
        modelled with frames f - k .. f + k (zero frames beyond the ends, as ``GeneratorContext``)."""
        batch, count, length = frames.shape
        k = self.context_frames
        # Front-end on every frame, the k zero frames on each side included: (N·(F+2k), filters, length).
        y = F.pad(frames, (0, 0, k, k)).reshape(-1, 1, length)
        bands = self.conv(_pad_same(y, self.conv.kernel_size[0]))
        envelopes = F.softplus(self.filterbank(_pad_same(bands.abs(), self.filterbank.kernel_size[0])))
        pooled = F.max_pool1d(envelopes, self.pool_size)
        steps = pooled.shape[-1]
        pooled = pooled.reshape(batch, count + 2 * k, -1, steps)
        # Each frame's 2k+1 neighbours' features concatenated at each pooled step: (N·F, steps, filters·(2k+1)).
        z = pooled.unfold(1, 2 * k + 1, 1)  # (N, F, filters, steps, 2k+1)
        z = z.permute(0, 1, 3, 4, 2).reshape(batch * count, steps, -1)
        # Latent space: the BLSTMs (three) over the frame's pooled steps, the last one's output through a SAAF.
        for lstm in self.lstms:
            z, _ = lstm(self.dropout(z))
        z = self.latent_saaf(z)
        # Unpooling and the multiplicative residual with the centre frame's decomposition: (N·F, length, filters).
        centre = bands.reshape(batch, count + 2 * k, -1, length)[:, k:k + count].reshape(batch * count, -1, length)
        y = centre.transpose(1, 2) * z.repeat_interleave(self.pool_size, dim=1)
        # Back-end: dense layers (tanh, linear last), a SAAF, squeeze-and-excitation, added to the residual.
        d = y
        for index, dense in enumerate(self.dense):
            d = dense(d)
            d = torch.tanh(d) if index < len(self.dense) - 1 else d
        y = y + self.excitation(self.dense_saaf(d))
        # Decoder: the front-end kernel transposed (tied weights).
        return self._decode(y.transpose(1, 2), length).reshape(batch, count, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Process ``x`` of shape ``(B, C, T)``; returns ``(B, C, T)``."""
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] < 1:
            raise ValueError(f"expected a (B, {self.channels}, T) batch with T >= 1, got shape {tuple(x.shape)}")
        batch, channels, length = x.shape
        # Fold channels into the batch, cut into centred frames, model each frame with its context.
        out = self.forward_frames(self.frames(x.reshape(batch * channels, length)))
        # Overlap-add with a periodic Hann window (sums to one at hop frame/2), drop the centring padding.
        count = out.shape[1]
        total = (count + 1) * self.hop_length
        signal = F.fold((out * self.window).transpose(1, 2), (1, total), (1, self.frame_length),
                        stride=(1, self.hop_length))
        return signal.reshape(batch * channels, total)[:, self.hop_length:self.hop_length + length].reshape(
            batch, channels, length)

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


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def build(size: str, channels: int) -> CRAFx:
    """CRAFx in ``size`` "paper" or "original" (identical: the paper kept the original) for ``channels``."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return CRAFx(channels=channels, **CONFIGS[size])
