"""What the single-core benchmarks share: pinning the process to one core, and timing a call.

Import it first and call :func:`pin` before numpy, numba or torch load, since their thread pools read
the environment when they start.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: The repository root, so that the benchmarks import the checkout they sit in.
ROOT = Path(__file__).resolve().parents[1]


def pin(last: bool = False) -> None:
    """Run on one core (the first, or the ``last``) with every thread pool at one thread; put ROOT on the path."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[variable] = "1"
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[-1] if last else cores[0]})
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def timed(function: Callable[[], object], repeats: int, warm_up: bool = True) -> tuple[float, object]:
    """Median wall seconds of ``function()`` over ``repeats`` runs (after one untimed run), and its last result."""
    result = function() if warm_up else None
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def alternating(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each function, the functions taking turns run by run (after one untimed round)."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}
