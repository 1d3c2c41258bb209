"""Quality metrics of a restored signal against its clean reference (Imort et al. 2022, Sec. V-C).

Per-example metrics take ``(reference, estimate, sample_rate)`` with audio shaped ``(channels, samples)``
or ``(samples,)`` and return one float: SDR and SI-SDR in dB (:mod:`effects.measure`), PEAQ's Objective
Difference Grade in [-4, 0] (:mod:`.peaq`) and R_nonlin, our calibrated variant, in [0, 1] (:mod:`.rnonlin`).
FAD (:mod:`.fad`) is a distance between two whole sets and has its own accumulating interface.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A per-example metric.

    Attributes:
        name: its name on the command line ("si-sdr").
        column: its column in results, prefixed ``input_`` or ``output_`` there ("si_sdr_db").
        label: axis label for plots.
        function: "module:function" computing ``f(reference, estimate, sample_rate) -> float``, or
            ``f(reference, estimate)`` when ``uses_rate`` is False (the SDRs do not depend on it).
        level_matched: the estimate is scaled by the least-squares gain onto the reference first. PEAQ
            needs this: it models a listener, for whom a louder copy is a different sound, while a
            hard clipper's gain (Eq. 3) or a model trained on the scale-invariant SI-SDR leaves the
            level arbitrary.
    """

    name: str
    column: str
    label: str
    function: str
    level_matched: bool = False
    uses_rate: bool = True

    def resolve(self) -> Callable[[np.ndarray, np.ndarray, int], float]:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __call__(self, reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        if self.level_matched:
            estimate = match_level(reference, estimate)
        function = self.resolve()
        return float(function(reference, estimate, sample_rate) if self.uses_rate else function(reference, estimate))


#: The per-example metrics, in report order. FAD is a set metric: see :mod:`.fad`.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("si-sdr", "si_sdr_db", "SI-SDR (dB)", "effects.measure:si_sdr_db", uses_rate=False),
    Metric("sdr", "sdr_db", "SDR (dB)", "effects.measure:sdr_db", uses_rate=False),
    Metric("peaq", "peaq_odg", "PEAQ ODG", "training.metrics.peaq:peaq_odg", level_matched=True),
    Metric("rnonlin", "rnonlin", "R_nonlin", "training.metrics.rnonlin:rnonlin"),
)}
#: Every metric name ``--metrics`` accepts, the set metric FAD included.
METRIC_NAMES = (*METRICS, "fad")


def match_level(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """``estimate`` times the gain ⟨s, ŝ⟩ / ‖ŝ‖² that brings it closest to ``reference`` (least squares).

    A silent estimate, or one orthogonal to the reference, is returned as it is.
    """
    s = np.asarray(reference, dtype=np.float64)
    h = np.asarray(estimate, dtype=np.float64)
    energy = float(np.sum(h * h))
    gain = float(np.sum(s * h)) / energy if energy > 0 else 0.0
    return h * gain if gain > 0 else h


def parse_metric_names(text: str) -> tuple[str, ...]:
    """``"si-sdr,peaq"`` -> ("si-sdr", "peaq"), checked against :data:`METRIC_NAMES`."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join(METRIC_NAMES)}")
    return names
