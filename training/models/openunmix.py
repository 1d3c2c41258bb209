"""Open-Unmix (Stöter, Uhlich, Liutkus, Mitsufuji 2019) as a waveform-to-waveform distortion remover.

The spectrogram model of ``sigsep/open-unmix-pytorch`` (``openunmix/model.py``), rewritten: magnitude
STFT, per-bin input shift and scale, a dense bottleneck with batch norm and tanh, a three-layer BLSTM with
a skip concatenation, two dense layers with batch norm back to the number of bins, per-bin output scale
and shift, and a ReLU giving a non-negative mask (Imort et al. 2022, Section IV-B). The mask multiplies
the input's complex STFT, i.e. the estimated magnitude gets the input's phase, and an inverse STFT
returns a waveform of the input's length.

Reference code: ``sigsep/open-unmix-pytorch`` at fb672c9584997c2b05e148eeaa65b4c23ed4693b (= the
``openunmix`` 1.3.0 package): ``openunmix/model.py`` (``OpenUnmix``, the network, whose state dict ours
matches key for key) and ``scripts/train.py`` (``get_statistics``, the data-dependent initialisation of
``input_mean``/``input_scale``, here :meth:`OpenUnmix.prepare_from_batches`, which ``dedistort train``
calls before the first epoch). tests/test_model_parity.py loads the same weights into both.

Intended differences, and why:

- waveform in, waveform out (the mask applied to the input's complex STFT, inverse STFT inside the
  model): the training loop and the metrics work on waveforms; UMX's ``Separator`` does the same outside;
- one target, and a plain ratio mask with the input's phase (no multichannel Wiener filter): the paper
  (Sec. IV-B) reconstructs with the input phase;
- the STFT is centred with zero padding, in training too (UMX's ``Separator`` centres, its training script
  does not), so that any length maps onto itself and training and inference see the same frames;
- "paper" runs at 16 kHz with n_fft 2048 / hop 512 (see CONFIGS), the paper's sample rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Hyper-parameters per size. "original": UMX's defaults (44.1 kHz, n_fft 4096, hop 1024, bins up to
#: 16 kHz, i.e. max_bin 1487). "paper": Imort et al. (2022) ran UMX on 16 kHz audio and do not give its
#: STFT; we assume the same window and hop in seconds rounded to powers of two (n_fft 2048, hop 512) and
#: all bins (the 16 kHz bandwidth is above the 8 kHz Nyquist frequency). The network is UMX's in both.
CONFIGS: dict[str, dict] = {
    "original": {"sample_rate": 44100.0, "n_fft": 4096, "hop_length": 1024, "bandwidth_hz": 16000.0,
                 "hidden_size": 512, "nb_layers": 3, "dropout": 0.4},
    "paper": {"sample_rate": 16000.0, "n_fft": 2048, "hop_length": 512, "bandwidth_hz": 16000.0,
              "hidden_size": 512, "nb_layers": 3, "dropout": 0.4},
}


class OpenUnmix(nn.Module):
    """Open-Unmix: a BLSTM that estimates a magnitude mask, applied with the input's phase.

    The channels are modelled jointly, as in UMX (the first dense layer sees every channel's bins).
    The length is zero-padded internally to a multiple of ``hop_length`` and cropped back, so any length
    works; in training mode batch norm needs more than one STFT frame in the batch (``B · frames > 1``).

    Args:
        channels (int): audio channels of the input.
        sample_rate (float): sample rate in Hz the model is meant for (sets the bins kept, below).
        n_fft (int): STFT size in samples (Hann window of that length).
        hop_length (int): STFT hop in samples, at most ``n_fft // 2``.
        bandwidth_hz (float or None): highest frequency in Hz the network sees; bins above are cropped
            from its input (the mask still covers every bin). None: all bins.
        hidden_size (int): width of the dense bottleneck; each BLSTM direction has half of it.
        nb_layers (int): number of BLSTM layers.
        dropout (float): dropout between BLSTM layers, in [0, 1).

    Shape:
        - Input: ``(B, C, T)`` with ``C == channels``, any ``T >= 1``
        - Output: ``(B, C, T)``

    >>> model = OpenUnmix(channels=2, **CONFIGS["paper"]).eval()
    >>> model(torch.randn(1, 2, 777)).shape
    torch.Size([1, 2, 777])
    """

    def __init__(
        self,
        channels: int = 2,
        sample_rate: float = 44100.0,
        n_fft: int = 4096,
        hop_length: int = 1024,
        bandwidth_hz: float | None = 16000.0,
        hidden_size: int = 512,
        nb_layers: int = 3,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("n_fft", n_fft), ("hop_length", hop_length),
                            ("hidden_size", hidden_size), ("nb_layers", nb_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if n_fft < 2 or hop_length > n_fft // 2:
            raise ValueError(f"need n_fft >= 2 and hop_length <= n_fft // 2 (window overlap for the inverse STFT), "
                             f"got n_fft={n_fft}, hop_length={hop_length}")
        if hidden_size % 2:
            raise ValueError(f"hidden_size must be even (two BLSTM directions), got {hidden_size}")
        if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
        if bandwidth_hz is not None and not (isinstance(bandwidth_hz, (int, float)) and bandwidth_hz > 0):
            raise ValueError(f"bandwidth_hz must be a positive number of Hz or None, got {bandwidth_hz!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.channels = channels
        self.sample_rate = float(sample_rate)
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.nb_output_bins = n_fft // 2 + 1
        self.nb_bins = self.nb_output_bins if bandwidth_hz is None else _max_bin(sample_rate, n_fft, bandwidth_hz)
        self.hidden_size = hidden_size
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

        # Per-bin input shift and scale (UMX initialises them from the training set's statistics).
        self.input_mean = nn.Parameter(torch.zeros(self.nb_bins))
        self.input_scale = nn.Parameter(torch.ones(self.nb_bins))
        self.fc1 = nn.Linear(self.nb_bins * channels, hidden_size, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=nb_layers, bidirectional=True,
                            dropout=dropout if nb_layers > 1 else 0.0)
        self.fc2 = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden_size)
        self.fc3 = nn.Linear(hidden_size, self.nb_output_bins * channels, bias=False)
        self.bn3 = nn.BatchNorm1d(self.nb_output_bins * channels)
        self.output_scale = nn.Parameter(torch.ones(self.nb_output_bins))
        self.output_mean = nn.Parameter(torch.ones(self.nb_output_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Process ``x`` of shape ``(B, C, T)``; returns ``(B, C, T)``."""
        length = x.shape[-1]
        # Complex STFT of the input, (B, C, bins, frames).
        spec = self.stft(x)
        # The estimated magnitude |X|·mask with the input's phase is X·mask.
        return self.istft(spec * self.mask_from_magnitude(spec.abs()), length)

    @torch.no_grad()
    def prepare_from_batches(self, batches: Iterable[torch.Tensor]) -> dict[str, np.ndarray]:
        """Set ``input_mean``/``input_scale`` from the statistics of the input spectra of ``batches``.

        UMX's ``get_statistics`` (``scripts/train.py``): every STFT frame of every training example is
        one sample of a per-bin ``StandardScaler``; the magnitudes are averaged over the channels first
        ("downmix to mono"); the scale is the population standard deviation, 1 for a bin that does not
        vary (as ``StandardScaler``), and at least 1e-4 of the largest. Then, as ``OpenUnmix(input_mean=
        mean, input_scale=scale)``: ``input_mean = -mean`` and ``input_scale = 1 / scale`` over the bins
        the network sees.

        Args:
            batches: waveform batches ``(B, C, T)`` (whole training examples, as UMX uses whole tracks).

        Returns:
            ``{"mean": (n_fft // 2 + 1,), "scale": (n_fft // 2 + 1,), "frames": ()}`` float64 arrays.
        """
        count, reference, total, squares = 0, None, None, None
        for x in batches:
            # Magnitudes averaged over channels, every frame one sample: (frames·B, bins), float64.
            magnitude = self.stft(x).abs().mean(dim=1).transpose(1, 2).reshape(-1, self.nb_output_bins)
            magnitude = magnitude.to(torch.float64).cpu()
            if reference is None:
                # Sums of squares around a first guess of the mean keep the variance exact in one pass.
                reference = magnitude.mean(dim=0)
                total, squares = torch.zeros_like(reference), torch.zeros_like(reference)
            count += magnitude.shape[0]
            total += magnitude.sum(dim=0)
            squares += ((magnitude - reference) ** 2).sum(dim=0)
        if count == 0:
            raise ValueError("no training examples to compute Open-Unmix's input statistics from")
        mean = total / count
        variance = (squares / count - (mean - reference) ** 2).clamp(min=0.0)
        scale = variance.sqrt()
        # StandardScaler leaves bins that do not vary unscaled, then UMX floors the scale at 1e-4 of the largest.
        scale = torch.where(variance <= (count * torch.finfo(torch.float64).eps * mean) ** 2, 1.0, scale)
        scale = torch.maximum(scale, 1e-4 * scale.max())
        self.input_mean.copy_(-mean[: self.nb_bins].to(self.input_mean))
        self.input_scale.copy_(1.0 / scale[: self.nb_bins].to(self.input_scale))
        return {"mean": mean.numpy(), "scale": scale.numpy(), "frames": np.asarray(count)}

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The non-negative magnitude mask for ``x`` ``(B, C, T)``: ``(B, C, n_fft // 2 + 1, frames)``."""
        return self.mask_from_magnitude(self.stft(x).abs())

    def mask_from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """UMX's network: magnitude ``(B, C, bins, frames)`` -> mask of the same shape."""
        batch, channels, bins, frames = magnitude.shape
        if channels != self.channels or bins != self.nb_output_bins:
            raise ValueError(f"expected a (B, {self.channels}, {self.nb_output_bins}, frames) magnitude, "
                             f"got shape {tuple(magnitude.shape)}")
        # Frames first, as the BLSTM wants them: (frames, B, C, bins); crop to the bins the network sees.
        x = magnitude.permute(3, 0, 1, 2)[..., :self.nb_bins]
        # Shift and scale every bin.
        x = (x + self.input_mean) * self.input_scale
        # Dense bottleneck over all channels' bins, batch norm, tanh: (frames, B, hidden).
        x = self.fc1(x.reshape(frames * batch, channels * self.nb_bins))
        x = torch.tanh(self.bn1(x)).reshape(frames, batch, self.hidden_size)
        # Three BLSTM layers, their output concatenated with their input (UMX's skip connection).
        x = torch.cat([x, self.lstm(x)[0]], dim=-1)
        # Dense, batch norm, ReLU; dense back to every channel's bins, batch norm.
        x = F.relu(self.bn2(self.fc2(x.reshape(frames * batch, 2 * self.hidden_size))))
        x = self.bn3(self.fc3(x)).reshape(frames, batch, channels, self.nb_output_bins)
        # Per-bin output scale and shift, ReLU: a non-negative mask, back to (B, C, bins, frames).
        return F.relu(x * self.output_scale + self.output_mean).permute(1, 2, 3, 0)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """Complex STFT of ``x`` ``(B, C, T)``, zero-padded to a multiple of the hop: ``(B, C, bins, frames)``."""
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[-1] < 1:
            raise ValueError(f"expected a (B, {self.channels}, T) batch with T >= 1, got shape {tuple(x.shape)}")
        return stft(x, self.n_fft, self.hop_length, self.window)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`stft`: ``(B, C, bins, frames)`` -> ``(B, C, length)``."""
        return istft(spec, self.n_fft, self.hop_length, self.window, length)


def stft(x: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """UMX's analysis: complex STFT of ``x`` ``(B, C, T)`` zero-padded to a multiple of ``hop_length``.

    Centred frames with zeros past both ends (reflection needs more samples than short inputs have).
    Returns ``(B, C, n_fft // 2 + 1, frames)``; :func:`istft` inverts it exactly.
    """
    batch, channels, length = x.shape
    padded = math.ceil(length / hop_length) * hop_length
    x = F.pad(x.reshape(batch * channels, length), (0, padded - length))
    spec = torch.stft(x, n_fft, hop_length, window=window, center=True, pad_mode="constant", return_complex=True)
    return spec.reshape(batch, channels, *spec.shape[-2:])


def istft(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: ``(B, C, bins, frames)`` -> ``(B, C, length)``."""
    batch, channels, bins, frames = spec.shape
    padded = (frames - 1) * hop_length
    y = torch.istft(spec.reshape(batch * channels, bins, frames), n_fft, hop_length, window=window, center=True,
                    length=padded)
    return y[..., :length].reshape(batch, channels, length)


def _max_bin(sample_rate: float, n_fft: int, bandwidth_hz: float) -> int:
    """Number of STFT bins at or below ``bandwidth_hz`` (as UMX's ``bandwidth_to_max_bin``)."""
    bin_hz = sample_rate / n_fft
    return min(n_fft // 2 + 1, int(math.floor(bandwidth_hz / bin_hz + 1e-9)) + 1)


def build(size: str, channels: int) -> OpenUnmix:
    """Open-Unmix in ``size`` "paper" (16 kHz) or "original" (44.1 kHz) for ``channels`` audio channels."""
    if size not in CONFIGS:
        raise ValueError(f"size must be one of {', '.join(CONFIGS)}, got {size!r}")
    return OpenUnmix(channels=channels, **CONFIGS[size])
