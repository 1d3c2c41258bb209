"""Shared fixtures: music-like signals from the demo guitar, and the sox binary as an oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

from datagen.demo import demo_guitar

# No test may depend on the machine's speed: hypothesis's default 200-ms deadline fails a test whose first
# example compiles numba kernels (tens of seconds on a loaded machine). Loaded here, before any test module is
# imported, so every @settings(...) that does not name a deadline inherits None.
settings.register_profile("dedistort", deadline=None)
settings.load_profile("dedistort")


@pytest.fixture(scope="session")
def guitar() -> np.ndarray:
    """Three seconds of the synthetic guitar at 16 kHz, shape (1, 48000), float32, peak 0.9."""
    return demo_guitar(3.0, 16000, seed=7, peak=0.9)


def _write_takes(folder: Path, count: int, seconds: float, seed: int, peak: float = 0.5,
                 sample_rate: int = 16000) -> Path:
    """Write ``count`` mono guitar takes ``take-{i}.wav`` of ``seconds`` s (seeds ``seed + i``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sf.write(folder / f"take-{i}.wav", demo_guitar(seconds, sample_rate, seed=seed + i, peak=peak).T,
                 sample_rate)
    return folder


@pytest.fixture(scope="session")
def write_takes():
    """The source folders of the build and training tests: ``write_takes(folder, count, seconds, seed)``."""
    return _write_takes


@pytest.fixture(scope="session")
def stereo_guitar() -> np.ndarray:
    """Two different guitar takes as left/right channels, shape (2, 32000), float32."""
    left = demo_guitar(2.0, 16000, seed=11, peak=0.8)
    right = demo_guitar(2.0, 16000, seed=12, peak=0.6)
    return np.concatenate([left, right])


def _oracle_binary(name: str, purpose: str) -> str:
    """Path of an oracle binary (Debian package of the same name): skipped locally when absent, a failure
    in CI, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        message = f"the {name} binary (Debian package '{name}') is needed for {purpose}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sox_binary() -> str:
    """Path of the sox binary, the oracle of the overdrive tests."""
    return _oracle_binary("sox", "the SoX parity tests")


@pytest.fixture(scope="session")
def flac_binary() -> str:
    """Path of the flac binary (libFLAC's command line), the oracle of the FLAC codec tests."""
    return _oracle_binary("flac", "the libFLAC oracle tests")


@pytest.fixture()
def run_sox(sox_binary: str, tmp_path: Path):
    """run_sox(x, *effect) -> SoX's float32 output for x (channels, samples) at 16 kHz."""

    def run(x: np.ndarray, *effect: str) -> np.ndarray:
        source, target = tmp_path / "in.wav", tmp_path / "out.wav"
        sf.write(source, x.T, 16000, subtype="FLOAT")
        subprocess.run([sox_binary, "-D", str(source), "-e", "floating-point", "-b", "32", str(target),
                        *effect], check=True, capture_output=True)
        out, rate = sf.read(target, dtype="float32", always_2d=True)
        assert rate == 16000
        return out.T

    return run


@pytest.fixture()
def small_paper_models(monkeypatch):
    """Size "paper" builds small models of the same architectures for this test (see ``small_models``)."""
    pytest.importorskip("torch")
    from small_models import use_small_paper_configs

    use_small_paper_configs(monkeypatch.setitem)
