"""Shared argument checks for every effect, so that all of them refuse bad input the same way."""

from __future__ import annotations

import math

import numpy as np


class NonFiniteAudioError(ValueError):
    """Audio with NaN or inf samples; callers that know the file can catch it and name the file."""


def check_audio(x: np.ndarray, name: str = "x", require_finite: bool = True) -> np.ndarray:
    """Return ``x`` as an ndarray after checking it is finite float audio.

    Accepted shapes: ``(samples,)`` or ``(channels, samples)``. Accepted dtypes: float32 (the
    toolkit's convention) and float64; the effects return the dtype they were given.
    ``require_finite=False`` skips the scan for NaN/inf, for kernels that detect them in their own pass
    (then call :func:`non_finite_error` for the message).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64 audio, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (samples,) or (channels, samples), got shape {x.shape}")
    if require_finite and x.size and not np.isfinite(x).all():
        raise non_finite_error(x, name)
    return x


def non_finite_error(x: np.ndarray, name: str = "x") -> NonFiniteAudioError:
    """The ValueError for audio with NaN or inf samples, saying how many and where the first is."""
    bad = ~np.isfinite(x)
    first = np.unravel_index(int(np.argmax(bad)), x.shape)
    return NonFiniteAudioError(f"{name} contains {int(np.count_nonzero(bad))} non-finite samples (NaN or inf), the "
                      f"first at index {tuple(int(i) for i in first)}; effects need finite audio")


def check_number(value: float, name: str, low: float | None = None, high: float | None = None,
                 low_inclusive: bool = True) -> float:
    """Return ``value`` as a float after checking it is finite and within ``[low, high]``.

    ``low_inclusive=False`` makes the lower bound open, as for SDR targets in (0, 60] dB.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    below = low is not None and (number < low or (number == low and not low_inclusive))
    if below or (high is not None and number > high):
        opening = "[" if low_inclusive else "("
        low_text = "-inf" if low is None else f"{low:g}"
        high_text = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in {opening}{low_text}, {high_text}], got {number:g}")
    return number


def db_to_amplitude(gain_db: float) -> float:
    """Linear amplitude factor of a gain in dB: 10^(gain_db / 20)."""
    return 10.0 ** (gain_db / 20.0)
