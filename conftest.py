"""Doctest collection over the packages (pyproject's ``--doctest-modules``): skip modules an absent extra needs.

pytest imports every module of ``effects``, ``datagen``, ``manifests`` and ``training`` to find its ``>>>``
examples. A module whose import fails because an optional package (torch, julius, matplotlib, fsspec, ...)
is not installed is left out of the collection, as the tests that need such a package skip themselves with
``pytest.importorskip``; any other import error still fails the run.
"""

from __future__ import annotations

import importlib
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
_PACKAGES = ("effects", "datagen", "manifests", "training")


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if collection_path.suffix != ".py" or not config.getoption("doctestmodules", False):
        return None
    try:
        relative = collection_path.resolve().relative_to(_ROOT)
    except ValueError:
        return None
    if relative.parts[0] not in _PACKAGES:
        return None
    module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing and missing not in _PACKAGES:
            return True  # an optional dependency is absent: nothing of this module can run
        raise
    return None
