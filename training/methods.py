"""Restoration methods by name: trained checkpoints, the A-SPADE baseline, the ideal ratio mask, the input.

``dedistort evaluate`` and ``dedistort run`` take a method and call it on batches: every method maps a
distorted batch ``(B, C, T)`` (and, for the oracle only, the clean target) to a restored batch of the same
shape, on the device it was given.

- a path to a checkpoint written by ``dedistort train``: the trained model;
- ``aspade``: the A-SPADE declipper (Kitić et al. 2015), per example and channel on the CPU;
- ``irm``: the ideal ratio mask oracle (needs the target, so it works in ``evaluate`` only);
- ``input``: the distorted input unchanged, which scores the input itself (the report's reference line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

#: Method names that are not checkpoints.
BUILTIN_METHODS = ("aspade", "irm", "input")


@dataclass
class Method:
    """A named restorer.

    Attributes:
        name: what results call it ("demucs-paper", "aspade", "irm", "input").
        needs_target: an oracle that reads the clean target (cannot restore a file on its own).
        sample_rate: the rate the method works at in Hz, or None when it works at any rate (it then
            runs at the file's own rate: A-SPADE must, as resampling smears the clipped plateaus).
        channels: channels the method takes at once, or None for any number.
        description: what it is, with its settings, for the results' summary.
        unchanged_reason: why the method may return an input exactly as given, said to the user whenever
            it does (see :func:`unchanged_examples`); None for a method that is the identity by definition.
    """

    name: str
    needs_target: bool = False
    sample_rate: int | None = None
    channels: int | None = None
    description: str = ""
    unchanged_reason: str | None = "the method returned its input exactly"
    _restore: object = field(default=None, repr=False)

    def __call__(self, noisy: torch.Tensor, clean: torch.Tensor | None, sample_rate: int) -> torch.Tensor:
        """Restore ``noisy`` ``(B, C, T)``; ``clean`` (same shape) is read by oracles only."""
        if self.needs_target and clean is None:
            raise ValueError(f"{self.name} is an oracle: it needs the clean target, so it only runs in evaluate")
        return self._restore(noisy, clean, sample_rate)


def resolve(spec: str | Path, device: torch.device | str = "cpu", aspade_options: dict | None = None) -> Method:
    """The method called ``spec``: one of :data:`BUILTIN_METHODS` or the path of a checkpoint."""
    spec = str(spec)
    if spec == "input":
        return Method("input", description="the distorted input, unprocessed", unchanged_reason=None,
                      _restore=lambda noisy, clean, rate: noisy)
    if spec == "irm":
        from .baselines.irm import ideal_ratio_mask, stft_size_for

        def irm(noisy: torch.Tensor, clean: torch.Tensor, rate: int) -> torch.Tensor:
            return ideal_ratio_mask(noisy, clean, rate)

        return Method("irm", needs_target=True, _restore=irm,
                      description=f"ideal ratio mask oracle, Open-Unmix STFT (n_fft, hop at 16 kHz: "
                                  f"{stft_size_for(16000)})")
    if spec == "aspade":
        return _aspade_method(aspade_options or {})
    if not Path(spec).is_file():
        raise ValueError(f"{spec}: neither a checkpoint file nor a method ({', '.join(BUILTIN_METHODS)})")
    from .checkpoints import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(spec, device)
    model, config = model_from_checkpoint(state, device)

    @torch.no_grad()
    def run_model(noisy: torch.Tensor, clean: torch.Tensor | None, rate: int) -> torch.Tensor:
        return model(noisy.to(device))

    return Method(f"{config['model']}-{config['size']}", sample_rate=int(state["sample_rate"]),
                  channels=int(state["channels"]), _restore=run_model,
                  description=f"{config['model']} ({config['size']} size) from {spec}, epoch {state['epoch']}")


def unchanged_examples(noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Which examples of a batch a method returned exactly as given: (B,) bool for (B, C, T) batches."""
    if noisy.shape != output.shape:
        return torch.zeros(noisy.shape[0], dtype=torch.bool)
    return (noisy.detach().cpu() == output.detach().cpu()).flatten(1).all(dim=1)


#: Why A-SPADE returns audio unchanged (it then has nothing to declip).
ASPADE_UNCHANGED = ("A-SPADE found no clipped samples: it declips only samples at the clipping level θ (the peak "
                    "magnitude, in a run of at least two when θ is estimated), at the audio's own sample rate; "
                    "silence, unclipped audio and soft distortion such as overdrive have no such plateau")


def _aspade_method(options: dict) -> Method:
    from .baselines.aspade import aspade

    def declip(example: np.ndarray) -> np.ndarray:
        # Digital silence (a quiet chunk of a long file) has nothing to declip: returned as is, not refused.
        return example if not np.any(example) else aspade(example, **options)

    def run_aspade(noisy: torch.Tensor, clean: torch.Tensor | None, rate: int) -> torch.Tensor:
        # A-SPADE is numpy and frame-parallel within a signal; examples go one by one.
        restored = [declip(example) for example in noisy.detach().cpu().numpy()]
        return torch.from_numpy(np.stack(restored)).to(noisy.device)

    settings = ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "defaults"
    return Method("aspade", _restore=run_aspade, description=f"A-SPADE declipper ({settings})",
                  unchanged_reason=ASPADE_UNCHANGED)
