"""The ideal ratio mask oracle (Imort et al. 2022, Sec. IV-B; Narayanan and Wang 2013).

The mask is the ratio of the target's STFT magnitude to the input's, applied to the input's complex STFT:
the estimate has exactly the target's magnitude and the input's phase. It needs the clean target, so it
is not a restorer but the upper bound of every model that predicts a magnitude and reuses the input
phase, such as Open-Unmix; its STFT is Open-Unmix's (:func:`training.models.openunmix.stft`), with the
window of the Open-Unmix configuration made for the nearest sample rate (2048 points at 16 kHz, 4096 at
44.1 kHz).
"""

from __future__ import annotations

import torch

from ..models.openunmix import CONFIGS, istft, stft

#: Input bins quieter than this magnitude carry no usable phase; the estimate is zero there.
_MAGNITUDE_FLOOR = 1e-12


def stft_size_for(sample_rate: float) -> tuple[int, int]:
    """(n_fft, hop_length) in samples of the Open-Unmix configuration nearest to ``sample_rate`` Hz."""
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    config = min(CONFIGS.values(), key=lambda c: abs(c["sample_rate"] - sample_rate))
    return config["n_fft"], config["hop_length"]


@torch.no_grad()
def ideal_ratio_mask(noisy: torch.Tensor, clean: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """The oracle estimate ``iSTFT(|S| / |Y| · Y)`` for input ``noisy`` (Y) and target ``clean`` (S).

    Args:
        noisy: distorted input, ``(B, C, T)`` float tensor.
        clean: clean target of the same shape, on the same device.
        sample_rate: in Hz; chooses the STFT size (see :func:`stft_size_for`).

    Returns:
        ``(B, C, T)`` float tensor: the target's magnitude with the input's phase. The ratio is not
        bounded: the paper's oracle reproduces the target magnitude exactly, however much louder the
        target is than the (e.g. attenuated) input.
    """
    if noisy.shape != clean.shape or noisy.dim() != 3:
        raise ValueError(f"need two (B, C, T) tensors of one shape, got {tuple(noisy.shape)} and {tuple(clean.shape)}")
    if not (torch.isfinite(noisy).all() and torch.isfinite(clean).all()):
        raise ValueError("input and target must be finite (no NaN or inf)")
    n_fft, hop_length = stft_size_for(sample_rate)
    window = torch.hann_window(n_fft, dtype=noisy.dtype, device=noisy.device)
    noisy_spec = stft(noisy, n_fft, hop_length, window)
    clean_magnitude = stft(clean, n_fft, hop_length, window).abs()
    noisy_magnitude = noisy_spec.abs()
    audible = noisy_magnitude > _MAGNITUDE_FLOOR
    mask = torch.where(audible, clean_magnitude / torch.where(audible, noisy_magnitude, 1.0), 0.0)
    return istft(noisy_spec * mask, n_fft, hop_length, window, noisy.shape[-1])
