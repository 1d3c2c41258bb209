"""CRAFx: convolutional and recurrent audio effects modeling (Martínez Ramírez, Benetos, Reiss, DAFx 2019).

An end-to-end waveform model built for time-varying effects (Imort et al. 2022, Section IV-A): an
adaptive front-end (a Conv1D learnable frequency decomposition, ``|·|``, a depth-wise Conv1D filterbank
with softplus, max pooling), a latent space of three BLSTM layers whose output goes through a smooth
adaptive activation function (:class:`SAAF`), unpooling, a multiplicative residual with the first
convolution's output, and a synthesis back-end (DNN-SAAF-SE: dense layers, a SAAF, a squeeze-and-excitation
channel scaling) decoded by a convolution with the front-end's kernel (tied weights).

Reference code: the authors' Keras implementation (Keras 2.2.4, TensorFlow 1.11), ``mchijmma/DL-AFx`` at
c7de3b46ba98acd90c3e2deff49e8e62ea14cf83, the last commit holding all of ``src/`` (the following commits
deleted it file by file; be887d1 still has ``Models.py`` but no longer ``Layers.py``): ``src/Models.py``
(``CRAFx``, ``se_block``), ``src/Layers.py`` (``GeneratorContext``, ``SAAF``, ``Conv1D_local``,
``Conv1D_tied``), ``src/Utils.py`` (``slicing``, ``overlap``), ``src/main.py``/``Config.py``/``Evaluate.py``
(4096-sample frames, hop 2048, ``kContext = 4``). The network computes what the reference computes, layer
for layer: :class:`BLSTM` is Keras 2.2.4's LSTM (hard-sigmoid gates, one bias, the last BLSTM's linear
cell, per-sequence dropout masks), :class:`SAAF` the reference's (12 segments between 25 break points in
[-0.2, 0.2], magnitude 100, no constant term), the decoder the reference's ``Conv1D_tied`` (a correlation
with the front-end kernel, not its flipped adjoint). The trainable parameters are the reference's one for
one (275,073 at full size). tests/test_model_parity.py::test_crafx_matches_the_keras_golden loads the
weights of a small reference model into this one and compares the outputs frame by frame (to 1e-5; float32)
and after the overlap-add; tests/golden/make_crafx.py generated that golden file with the reference code.
Its framing is followed here, for training and evaluation alike:

- the signal is cut into 4096-sample frames with hop 2048, centred (2048 zeros before the first), without
  a window (``slicing(..., windowing=False)``); 4 all-zero frames are added before the first and after the
  last, and each frame is modelled with its 4 previous and 4 next frames (``GeneratorContext``);
- the front-end (convolution, ``|·|``, depth-wise filterbank, softplus, max pooling by 64) runs on each of
  the 9 frames, and their pooled features are concatenated feature-wise at each of the 64 pooled steps
  (computed here once per frame, and once for the all-zero frame, then gathered: ``CRAFx.context_features``);
- the BLSTMs run over those 64 steps; the multiplicative residual uses the centre frame's convolution
  output; the squeeze-and-excitation averages over the frame; the tied decoder (a convolution with the
  front-end's kernel) decodes it;
- the 4096-sample output frames are overlap-added with a periodic Hann window at hop 2048 (the windows sum
  to 1; ``overlap(..., windowing=True, rate=2)``) and the centring padding is cropped off. ``overlap`` leaves
  out the last frame, so in the original the last 2048 samples fade out under half a window (they were
  zero padding there); here that frame is added and the windows sum to one up to the end.
So every output sample depends on the input within 4·2048 + 4096 samples of its frame, whatever the length
of the crop or signal it is part of (beyond a crop's edges the context is zeros, as at a recording's edges
in the original). The paper trained on 2.3 s crops (9 × 4096 samples at 16 kHz), see
:data:`PREFERRED_SEGMENT_SECONDS`.

Intended departures, in training only: the original's loss is the MAE of each unwindowed centre frame,
here the training loss (the paper's SDR) is on the overlap-added output, as for the paper's other models;
the original first pre-trains the front-end and decoder as an autoencoder (``pretrainingModel``), here
training starts from the initialisation. The initialisers are Keras's: ``lecun_uniform`` front-end,
``glorot_uniform`` dense and LSTM kernels, one orthogonal recurrent kernel for the four gates of each
direction (blocks drawn orthogonal gate by gate doubled the recurrent gain, and the linear last cell then
ran away in training mode), forget-gate bias one, other biases zero, SAAF parameters from N(0, 0.05²).
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
    "saaf_break_points": 25,
    "saaf_break_range": 0.2,
    "saaf_magnitude": 100.0,
    "dense_units": (32, 16, 16),
    "se_units": 512,
    "dropout": 0.1,
}

#: Hyper-parameters per size. Imort et al. (2022) did not shrink CRAFx, so "paper" equals "original"
#: (Martínez Ramírez et al. 2019, 16 kHz audio).
CONFIGS: dict[str, dict] = {"original": dict(_ORIGINAL), "paper": dict(_ORIGINAL)}


class SAAF(nn.Module):
    """Smooth adaptive activation function (Hou et al. 2017) as the CRAFx reference builds it (``Layers.SAAF``).

    ``f(x) = slope·x + magnitude · Σ_k weight_k·B_k(x)``. The reference places ``break_points`` equally
    spaced points ``p_0 .. p_{B-1}`` in ``[-break_range, break_range]`` and uses ``B // 2`` segments
    ``[p_{2k}, p_{2k+1}]`` (every other gap between points: the segments do not touch). ``B_k`` is the
    boxcar of segment k integrated twice: 0 left of it, ``(x − s_k)²/2`` inside, and the linear
    continuation ``h·(x − e_k) + h²/2`` right of it (``h = e_k − s_k``). ``f`` is continuous with a
    continuous derivative everywhere, quadratic inside each segment and linear elsewhere. Every channel has
    its own ``B // 2 + 1`` parameters (the reference's ``kernel``, ``tied_feamap=True``: rows
    ``0 .. B//2 − 1`` are ``weight``, the last row is ``slope``); there is no constant term. All of them
    start from N(0, 0.05²), as in the reference.

    Args:
        channels (int): number of channels (the size of the last input axis).
        break_points (int): points spanning the polynomial range, >= 2 (CRAFx: 25, so 12 segments).
        break_range (float): the points span ``[-break_range, break_range]`` (CRAFx: 0.2).
        magnitude (float): the factor on every basis function (CRAFx: 100).

    Shape:
        - Input: ``(*, channels)``
        - Output: ``(*, channels)``

    >>> saaf = SAAF(4)
    >>> saaf(torch.randn(2, 10, 4)).shape
    torch.Size([2, 10, 4])
    """

    def __init__(self, channels: int, break_points: int = 25, break_range: float = 0.2,
                 magnitude: float = 100.0) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        if not isinstance(break_points, int) or isinstance(break_points, bool) or break_points < 2:
            raise ValueError(f"break_points must be an integer >= 2, got {break_points!r}")
        if not (math.isfinite(break_range) and break_range > 0):
            raise ValueError(f"break_range must be finite and > 0, got {break_range!r}")
        if not math.isfinite(magnitude):
            raise ValueError(f"magnitude must be finite, got {magnitude!r}")
        self.channels = channels
        self.segments = break_points // 2
        self.break_points = break_points
        self.break_range = float(break_range)
        self.magnitude = float(magnitude)
        # The reference's np.linspace(..., dtype=float32): computed in float64, rounded once.
        points = torch.linspace(-break_range, break_range, break_points, dtype=torch.float64).float()
        self.register_buffer("starts", points[0:2 * self.segments:2].clone(), persistent=False)
        self.register_buffer("ends", points[1:2 * self.segments:2].clone(), persistent=False)
        self.weight = nn.Parameter(torch.empty(self.segments, channels))
        self.slope = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's start: every parameter, slope included, from N(0, 0.05²)."""
        with torch.no_grad():
            self.weight.normal_(0.0, 0.05)
            self.slope.normal_(0.0, 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.channels:
            raise ValueError(f"SAAF expects {self.channels} channels on the last axis, got shape {tuple(x.shape)}")
        starts, ends = self.starts[:, None], self.ends[:, None]
        widths = ends - starts
        weight = self.magnitude * self.weight
        zero = weight.new_zeros(1, self.channels)
        # Segments finished left of x sum to x·cum_w[j] + cum_c[j], j the last segment starting at or
        # before x (rows shifted by one: row 0 is "no segment started"), with cum_w[j] = Σ_{k<j} w_k·h_k and
        # cum_c[j] = Σ_{k<j} w_k·(h_k²/2 − h_k·e_k); segment j itself gives w_j·(min(x − s_j, h_j)²/2 + h_j·(x − e_j)⁺).
        cum_w = torch.cat([zero, zero, (weight * widths).cumsum(0)[:-1]])
        cum_c = torch.cat([zero, zero, (weight * widths * (0.5 * widths - ends)).cumsum(0)[:-1]])
        weight = torch.cat([zero, weight])
        starts, ends, widths = (torch.cat([v[:1], v]) for v in (starts, ends, widths))
        with torch.no_grad():  # the reference's test is s <= x: bucketize(right=True) counts starts <= x
            index = torch.bucketize(x.contiguous(), self.starts, right=True)
        flat = index * self.channels + torch.arange(self.channels, device=x.device)
        s, e, h = starts.flatten()[index], ends.flatten()[index], widths.flatten()[index]
        own = 0.5 * torch.minimum(x - s, h) ** 2 + h * (x - e).clamp(min=0.0)
        pieces = x * cum_w.flatten()[flat] + cum_c.flatten()[flat] + weight.flatten()[flat] * own
        return self.slope * x + pieces

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, segments={self.segments}, break_points={self.break_points}, "
                f"range=[{-self.break_range:g}, {self.break_range:g}], magnitude={self.magnitude:g}")


class BLSTM(nn.Module):
    """A bidirectional LSTM as the CRAFx reference runs it: Keras 2.2.4's ``Bidirectional(LSTM(...))``.

    Keras 2.2.4's LSTM differs from :class:`torch.nn.LSTM` in ways that change the output: the gates use
    ``hard_sigmoid`` (``clip(0.2·x + 0.5, 0, 1)``, Keras 2.2.4's default ``recurrent_activation``), the
    cell's ``activation`` may be other than tanh (the reference's last BLSTM is ``linear``), there is one
    bias vector, and dropout masks are drawn once per sequence (``dropout`` on the inputs and
    ``recurrent_dropout`` on the previous output, one mask per gate). Gate order i, f, c, o, as both
    libraries. The two directions run together, one step at a time; outputs are ``[forward, backward]``
    concatenated (``merge_mode='concat'``), the backward one in time order.

    Args:
        input_size (int): features per step.
        units (int): units per direction.
        activation (str): "tanh" or "linear", for the cell input and output.
        dropout (float): input dropout in training, in [0, 1).
        recurrent_dropout (float): dropout of the previous output in training, in [0, 1).

    Shape:
        - Input: ``(N, T, input_size)``
        - Output: ``(N, T, 2·units)``
    """

    def __init__(self, input_size: int, units: int, activation: str = "tanh", dropout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("units", units)
        if activation not in ("tanh", "linear"):
            raise ValueError(f"activation must be 'tanh' or 'linear', got {activation!r}")
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        self.units = units
        self.activation = activation
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        # Per direction: Keras's kernel, recurrent_kernel and bias, transposed to PyTorch's (4·units, in).
        self.weight_ih = nn.Parameter(torch.empty(2, 4 * units, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2, 4 * units, units))
        self.bias = nn.Parameter(torch.empty(2, 4 * units))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras's initialisers: glorot_uniform kernel, orthogonal recurrent kernel, zero bias but the
        forget gate's at one (``unit_forget_bias``)."""
        units = self.units
        with torch.no_grad():
            for direction in range(2):
                nn.init.xavier_uniform_(self.weight_ih[direction])
                # Keras draws one orthogonal (units, 4·units) matrix for all four gates: each gate's block then
                # has singular values of about 1/2. Blocks drawn orthogonal one by one (singular values 1)
                # double the recurrent gain, and the linear last cell then ran away in training mode (output
                # 10^3-10^5 times its evaluation-mode output; the reference's stays within a few per cent).
                nn.init.orthogonal_(self.weight_hh[direction])  # (4·units, units): Keras's matrix transposed
            self.bias.zero_()
            self.bias[:, units:2 * units] = 1.0

    def _masks(self, rate: float, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
        if not self.training or rate == 0.0:
            return None
        return torch.bernoulli(like.new_full(shape, 1.0 - rate)) / (1.0 - rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, features = x.shape
        units = self.units
        # Gates reordered i, f, o, c, and hard_sigmoid's 0.2·a + 0.5 folded into the i, f, o weights and
        # biases, so that a step is one baddbmm, one clamp (hardtanh to [0, 1]) and the cell update.
        order = [0, 1, 3, 2]
        scale = x.new_tensor([0.2, 0.2, 0.2, 1.0]).view(1, 4, 1, 1)
        offset = x.new_tensor([0.5, 0.5, 0.5, 0.0]).view(1, 4, 1)
        weight_ih = self.weight_ih.view(2, 4, units, features)[:, order] * scale
        weight_hh = self.weight_hh.view(2, 4, units, units)[:, order] * scale
        bias = self.bias.view(2, 4, units)[:, order] * scale[..., 0] + offset
        # Input projections of every step at once: (2 directions, 4 gates, N, T, units).
        masks = self._masks(self.dropout, (2, 4, batch, 1, features), x)
        if masks is None:
            gates_x = torch.einsum("ntk,dguk->dgntu", x, weight_ih)
        else:
            gates_x = torch.einsum("dgntk,dguk->dgntu", x * masks, weight_ih)
        gates_x = gates_x + bias[:, :, None, None, :]
        # The backward direction reads the sequence reversed: (T, 2, N, 4·units).
        gates_x = torch.stack([gates_x[0], gates_x[1].flip(2)]).permute(3, 0, 2, 1, 4).reshape(steps, 2, batch, -1)
        recurrent = self._masks(self.recurrent_dropout, (2, 4, batch, units), x)
        if recurrent is None:
            weight_hh_t = weight_hh.reshape(2, 4 * units, units).transpose(1, 2)  # (2, units, 4·units)
        else:
            weight_hh_t = weight_hh.transpose(2, 3).reshape(8, units, units)  # per direction and gate
        h = x.new_zeros(2, batch, units)
        c = x.new_zeros(2, batch, units)
        linear = self.activation == "linear"
        outputs = []
        for t in range(steps):
            if recurrent is None:
                gates = torch.baddbmm(gates_x[t], h, weight_hh_t)  # (2, N, 4·units)
            else:
                gates_h = torch.bmm((h[:, None] * recurrent).reshape(8, batch, units), weight_hh_t)
                gates = gates_x[t] + gates_h.view(2, 4, batch, units).transpose(1, 2).reshape(2, batch, -1)
            ifo = F.hardtanh(gates[..., :3 * units], 0.0, 1.0)
            i, f, o = ifo.chunk(3, dim=-1)
            candidate = gates[..., 3 * units:]
            c = torch.addcmul(f * c, i, candidate if linear else torch.tanh(candidate))
            h = o * (c if linear else torch.tanh(c))
            outputs.append(h)
        out = torch.stack(outputs, dim=2)  # (2, N, T, units)
        return torch.cat([out[0], out[1].flip(1)], dim=-1)

    def extra_repr(self) -> str:
        return (f"{self.weight_ih.shape[-1]}, {self.units}, activation={self.activation}, "
                f"dropout={self.dropout:g}, recurrent_dropout={self.recurrent_dropout:g}")


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
        kernel_size (int): its kernel length in samples (also that of the tied decoder).
        filterbank_kernel_size (int): kernel length in samples of the depth-wise filterbank convolution.
        pool_size (int): max-pooling (and unpooling) factor in samples; a frame has frame_length / pool_size
            latent steps.
        frame_length (int): samples per frame, a multiple of ``pool_size`` and of 2.
        hop_length (int): samples between frames; the periodic Hann windows of the overlap-add must sum to
            one, so it is ``frame_length // 2``.
        context_frames (int): frames ``k`` on each side whose features join each frame's (0: none).
        lstm_units (sequence of int): units per direction of each BLSTM layer; the last BLSTM's output
            (2 × its units) must equal ``filters``.
        saaf_break_points (int): break points of each SAAF (``saaf_break_points // 2`` quadratic segments).
        saaf_break_range (float): the SAAFs' break points span ``[-saaf_break_range, saaf_break_range]``.
        saaf_magnitude (float): the factor on the SAAFs' basis functions.
        dense_units (sequence of int): widths of the back-end's tanh dense layers, followed by a linear
            dense layer back to ``filters`` channels.
        se_units (int): hidden width of the squeeze-and-excitation block.
        dropout (float): the BLSTMs' dropout in training, in [0, 1): on their inputs and on their previous
            outputs (Keras's ``dropout`` and ``recurrent_dropout``, both 0.1 in the reference).

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
        saaf_break_points: int = 25,
        saaf_break_range: float = 0.2,
        saaf_magnitude: float = 100.0,
        dense_units: Sequence[int] = (32, 16, 16),
        se_units: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("filters", filters), ("kernel_size", kernel_size),
                            ("filterbank_kernel_size", filterbank_kernel_size), ("pool_size", pool_size),
                            ("frame_length", frame_length), ("hop_length", hop_length),
                            ("se_units", se_units)):
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
        # The reference's last BLSTM has a linear cell (its output feeds a SAAF), the others tanh.
        activations = ["tanh"] * (len(lstm_units) - 1) + ["linear"]
        self.lstms = nn.ModuleList(BLSTM(size, units, activation, dropout, dropout)
                                   for size, units, activation in zip(sizes[:-1], lstm_units, activations, strict=True))
        saaf = {"break_points": saaf_break_points, "break_range": saaf_break_range, "magnitude": saaf_magnitude}
        self.latent_saaf = SAAF(filters, **saaf)
        # Synthesis back-end (DNN-SAAF-SE) and the tied decoder's bias.
        widths = (filters,) + dense_units + (filters,)
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.dense_saaf = SAAF(filters, **saaf)
        self.excitation = SqueezeExcitation(filters, se_units)
        self.deconv_bias = nn.Parameter(torch.zeros(1))
        self._keras_initialisation()

    def _keras_initialisation(self) -> None:
        """The reference's initialisers: ``lecun_uniform`` for both front-end convolutions, Keras's default
        ``glorot_uniform`` for the dense layers, zero biases (the BLSTMs and SAAFs initialise themselves, as the
        reference's do)."""
        with torch.no_grad():
            for conv in (self.conv, self.filterbank):
                fan_in = conv.weight.shape[1] * conv.weight.shape[2]
                conv.weight.uniform_(-math.sqrt(3.0 / fan_in), math.sqrt(3.0 / fan_in))
                conv.bias.zero_()
            for dense in [*self.dense, self.excitation.hidden, self.excitation.gate]:
                nn.init.xavier_uniform_(dense.weight)
                dense.bias.zero_()

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
        # Front-end of every frame, and each frame's context features: (N·F, filters, length), (N·F, steps, ·).
        bands, z = self.context_features(frames)
        # Latent space: the BLSTMs (three) over the frame's pooled steps, the last one's output through a SAAF.
        for lstm in self.lstms:
            z = lstm(z)
        z = self.latent_saaf(z)
        # Unpooling and the multiplicative residual with the centre frame's decomposition: (N·F, length, filters).
        y = _unpool_times(bands, z, self.pool_size)
        # Back-end: dense layers (tanh, linear last), a SAAF, squeeze-and-excitation, added to the residual.
        d = y
        for index, dense in enumerate(self.dense):
            d = dense(d)
            d = torch.tanh(d) if index < len(self.dense) - 1 else d
        y = y + self.excitation(_recomputed(self.dense_saaf, d))
        # Decoder: the front-end kernel, channel-transposed (tied weights).
        return self._decode(y.transpose(1, 2), length).reshape(batch, count, length)

    def context_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The front-end of every frame, and every frame's features with its context (``GeneratorContext``).

        ``frames`` ``(N, F, frame_length)`` -> ``bands`` ``(N·F, filters, frame_length)``, each frame's
        frequency decomposition (the first convolution's output), and ``z`` ``(N·F, steps, filters·(2k+1))``
        with ``steps = frame_length / pool_size``: at each pooled step, the pooled envelopes of frames
        f - k .. f + k concatenated (frame-major), all-zero frames beyond the ends.

        The front-end runs once per frame and once for the all-zero frame, and the features are gathered from
        there: the same as running it on each of the 2k+1 frames of every frame's context (as the original
        does), without computing and keeping each frame's activations 2k+1 times (nor the zero frames'
        once per signal).
        """
        batch, count, length = frames.shape
        k = self.context_frames
        bands, pooled = self._front_end(frames.reshape(batch * count, 1, length))
        steps = pooled.shape[-1]
        pooled = pooled.reshape(batch, count, -1, steps)
        if k:
            _, zero = self._front_end(frames.new_zeros(1, 1, length))
            zero = zero.expand(batch, k, -1, -1)
            pooled = torch.cat([zero, pooled, zero], dim=1)
        z = pooled.unfold(1, 2 * k + 1, 1)  # (N, F, filters, steps, 2k+1)
        return bands, z.permute(0, 1, 3, 4, 2).reshape(batch * count, steps, -1)

    def _front_end(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 1, length) -> bands (M, filters, length), pooled envelopes (M, filters, length / pool_size).

        Convolution, ``|·|``, depth-wise filterbank, softplus, max pooling. Softplus increases, so it is
        applied after the pooling (the max of the softplus is the softplus of the max): on 1/pool_size of the
        samples, and the pooling keeps only its argmax for the backward pass, not a full-rate input.
        """
        bands = self.conv(_pad_same(y, self.conv.kernel_size[0]))
        envelopes = self.filterbank(_pad_same(bands.abs(), self.filterbank.kernel_size[0]))
        pooled = envelopes.unflatten(-1, (-1, self.pool_size)).max(dim=-1).values
        return bands, F.softplus(pooled)

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
        """(N, filters, length) -> (N, 1, length): the reference's tied decoder (``Conv1D_tied``), plus a bias.

        A "same" convolution of the filters back to one channel with the front-end kernel, transposed
        channel-wise but not flipped in time (the reference correlates with it, as the front-end does); the
        exact adjoint of the front-end would flip it.
        """
        kernel = self.conv.weight.transpose(0, 1)  # (1, filters, kernel_size)
        return F.conv1d(_pad_same(y, self.conv.kernel_size[0]), kernel, self.deconv_bias)[..., :length]


def _unpool_times(bands: torch.Tensor, z: torch.Tensor, pool_size: int) -> torch.Tensor:
    """``bands`` ``(N, C, S·pool_size)`` times ``z`` ``(N, S, C)`` unpooled (each step repeated pool_size times):
    ``(N, S·pool_size, C)``. By broadcasting, so that no full-rate copy of ``z`` is made and kept for the
    backward pass (``bands.transpose(1, 2) * z.repeat_interleave(pool_size, 1)`` gives the same values)."""
    return (bands.unflatten(-1, (-1, pool_size)) * z.transpose(1, 2)[..., None]).flatten(-2).transpose(1, 2)


def _recomputed(module: nn.Module, x: torch.Tensor, chunk_elements: int = 1 << 21) -> torch.Tensor:
    """``module(x)`` for a ``module`` that maps each row ``x[i]`` alone with element-wise operations (such as
    :class:`SAAF`), computed in chunks of rows of about ``chunk_elements`` values and recomputed chunk by chunk
    in the backward pass.

    A SAAF's dozen full-size intermediates would otherwise all exist at once and be kept for the backward pass
    (at batch 16 and 2.3-s crops, 16 times its 150-MB input: 2.4 GB). This way only ``x`` is kept and the
    intermediates exist for one chunk at a time, in training and inference; the output is written into one
    tensor as the chunks are computed, so that no chunk outlives its turn (kept chunk outputs between freed
    intermediates fragment the heap and the resident memory stays high). Same values and gradients (to float
    rounding of the parameters' gradient sums), for one more forward of the layer in the backward pass.
    """
    rows = max(1, chunk_elements // max(1, x[0].numel())) if x.dim() else 1
    if x.dim() == 0 or x.shape[0] <= rows:
        return module(x)
    params = tuple(module.parameters())
    return _RowChunks.apply(module, rows, x, *params)


class _RowChunks(torch.autograd.Function):
    """The chunked, recomputed ``module(x)`` of :func:`_recomputed`; ``params`` are the module's parameters."""

    @staticmethod
    def forward(ctx, module: nn.Module, rows: int, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        ctx.module, ctx.rows = module, rows
        ctx.save_for_backward(x)
        out = None
        for start in range(0, x.shape[0], rows):
            part = module(x[start:start + rows])
            if out is None:
                out = part.new_empty((x.shape[0],) + part.shape[1:])
            out[start:start + rows] = part
            del part
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        params = tuple(ctx.module.parameters())
        need_x, need_params = ctx.needs_input_grad[2], ctx.needs_input_grad[3:]
        grad_x = torch.empty_like(x) if need_x else None
        grad_params = [torch.zeros_like(p) if need else None for p, need in zip(params, need_params, strict=True)]
        wanted = [p for p, need in zip(params, need_params, strict=True) if need]
        for start in range(0, x.shape[0], ctx.rows):
            chunk = x[start:start + ctx.rows].detach().requires_grad_(need_x)
            with torch.enable_grad():
                out = ctx.module(chunk)
            grads = list(torch.autograd.grad(out, ([chunk] if need_x else []) + wanted,
                                             grad[start:start + ctx.rows], allow_unused=True))
            if need_x:
                grad_x[start:start + ctx.rows] = grads.pop(0)
            for index, need in enumerate(need_params):
                if need:
                    value = grads.pop(0)
                    if value is not None:
                        grad_params[index] += value
        return (None, None, grad_x, *grad_params)


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
