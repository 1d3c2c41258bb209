"""Training losses on waveform batches (B, C, T): negative SI-SDR (the paper's) and negative SDR."""

from __future__ import annotations

import torch

_EPS = 1e-8


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB per example, over channels and time: (B, C, T) -> (B,).

    The reference is scaled by α = ⟨ŝ, s⟩ / ‖s‖² (Le Roux et al. 2019; the paper's Eq. 9).
    """
    _check(estimate, reference)
    s = reference.flatten(1)
    s_hat = estimate.flatten(1)
    alpha = (s_hat * s).sum(1, keepdim=True) / (s.square().sum(1, keepdim=True) + _EPS)
    target = alpha * s
    return 10 * torch.log10((target.square().sum(1) + _EPS) / ((target - s_hat).square().sum(1) + _EPS))


def sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Plain SDR in dB per example: 10·log10(‖s‖² / ‖s − ŝ‖²), (B, C, T) -> (B,)."""
    _check(estimate, reference)
    s = reference.flatten(1)
    return 10 * torch.log10((s.square().sum(1) + _EPS) / ((s - estimate.flatten(1)).square().sum(1) + _EPS))


def _check(estimate: torch.Tensor, reference: torch.Tensor) -> None:
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in shape")


LOSSES = {"si-sdr": lambda e, r: -si_sdr(e, r).mean(), "sdr": lambda e, r: -sdr(e, r).mean()}
