"""Small configurations of each model's own architecture, for the tests of the training machinery.

Resume, determinism, time budgets, data parallelism and the commands need a model that trains, not one of
the paper's size: paper-size Wave-U-Net (1.1 M parameters, valid convolutions with input context) made those
tests the slowest of the suite. Tests that use :func:`use_small_paper_configs` build these under the name
"paper", so configs and checkpoints stay the ones users see; tests of the models themselves use the real
sizes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

#: Changes to each model's "paper" config: the same architecture, tens of thousands of parameters.
SMALL_PAPER_CHANGES: dict[str, dict] = {
    "waveunet": {"levels": 3, "features": 8},
    "openunmix": {"n_fft": 512, "hop_length": 128, "hidden_size": 32, "nb_layers": 1},
    "demucs": {"depth": 2, "channels_first": 8},
}


def use_small_paper_configs(set_item: Callable[[dict, str, dict], None]) -> None:
    """Make size "paper" build the small configs, through ``set_item`` (``monkeypatch.setitem`` in a test)."""
    for name, changes in SMALL_PAPER_CHANGES.items():
        module = importlib.import_module(f"training.models.{name}")
        set_item(module.CONFIGS, "paper", {**module.CONFIGS["paper"], **changes})
