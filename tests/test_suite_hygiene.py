"""The test suite itself: nothing in it may depend on the speed of the machine that runs it."""

from __future__ import annotations

import importlib
from pathlib import Path

import hypothesis
import pytest


def test_default_hypothesis_profile_has_no_deadline():
    # A deadline turns a first call that compiles numba kernels (16-65 s on a loaded 2-core machine) into a
    # failure; conftest.py loads a profile without one.
    assert hypothesis.settings().deadline is None


def _hypothesis_tests():
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if "@given" not in text:
            continue
        module = importlib.import_module(f"tests.{path.stem}" if (Path(__file__).parent / "__init__.py").exists()
                                         else path.stem)
        for name in dir(module):
            test = getattr(module, name)
            inner = getattr(getattr(test, "hypothesis", None), "inner_test", None)
            if name.startswith("test_") and inner is not None:
                yield f"{path.name}::{name}", test


@pytest.mark.parametrize("module", ["test_clipping", "test_clip_sdr", "test_splits", "test_manifests"])
def test_every_given_test_runs_without_a_deadline(module):
    found = [(name, test) for name, test in _hypothesis_tests() if name.startswith(module + ".py")]
    assert found, f"no @given tests found in {module}"
    for name, test in found:
        # The settings a @given test runs with, explicit @settings(...) merged over the loaded profile.
        assert test._hypothesis_internal_use_settings.deadline is None, name
