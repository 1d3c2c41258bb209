"""The paper's four distortion-removal models, built by name.

Every model maps a waveform batch ``(B, C, T)`` to ``(B, C, T)`` and exists in two sizes: ``"paper"``
(Imort et al. 2022; Wave-U-Net and Demucs reduced to about one million parameters) and ``"original"``
(the published architecture). ``create("demucs", size="paper")`` builds one.
"""

from __future__ import annotations

import importlib

import torch

#: name -> module under training.models; each module provides build(size, channels) and CONFIGS.
MODELS = {"crafx": "crafx", "waveunet": "waveunet", "openunmix": "openunmix", "demucs": "demucs"}
SIZES = ("paper", "original")


def create(name: str, size: str = "paper", channels: int = 1) -> torch.nn.Module:
    """Build model ``name`` (crafx, waveunet, openunmix, demucs) in ``size`` "paper" or "original"."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if int(channels) != channels or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    module = importlib.import_module(f".{MODELS[name]}", __name__)
    return module.build(size, int(channels))


def parameter_count(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
