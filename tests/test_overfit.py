"""Evidence that training can work: batches that mix recordings, and each model fitting one fixed batch.

1. The loader's batches: a shard holds neighbouring segments of few recordings at all their gains, so a
   reader that went shard by shard through a small shuffle buffer made batches of one recording (the
   underfitting of paper-size Demucs on a real-guitar corpus). Batches must mix recordings whatever the
   shuffle buffer.
2. Each of the four models, in a tiny configuration of its own architecture, fits one fixed batch of
   overdriven guitar crops far above the input within a few hundred CPU steps: an architecture or loss
   that cannot learn the map fails here in seconds, not after hours of training.
"""

from __future__ import annotations

import collections
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import effects  # noqa: E402
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from training.data import PairStream  # noqa: E402
from training.losses import si_sdr  # noqa: E402
from training.threaded_loader import ThreadedLoader  # noqa: E402


@pytest.fixture(scope="module")
def long_recordings(tmp_path_factory, write_takes) -> Path:
    """4 training recordings of 8 s cut in 1-s segments at 2 gains (16 examples each), 8 examples a shard."""
    clean = write_takes(tmp_path_factory.mktemp("clean"), 6, 8.0, seed=700)
    splits = tuple((f"take-{i}.wav", "train" if i < 4 else "valid" if i == 4 else "test") for i in range(6))
    out = tmp_path_factory.mktemp("data") / "od"
    build(BuildConfig(source=str(clean), effect="hardclip", sweep="6,12", segment_seconds=1.0, name="od",
                      shard_max_examples=8, split_assignment=splits), out, progress=False, log=lambda _: None)
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_mix_recordings_whatever_the_shuffle_buffer(long_recordings, threads):
    stream = PairStream(long_recordings, "train", 0.25, training=True, seed=0, shuffle_buffer=1)
    assert len({row["shard"] for row in stream.rows}) == 8  # each shard: 4 segments × 2 gains of one recording
    loader = ThreadedLoader(stream, batch_size=8, threads=threads)
    try:
        recordings = [len({key.split("-wav-")[0] for key in batch["key"]}) for epoch in range(2) for batch in loader]
    finally:
        loader.close()
    # 8 examples drawn at random from 4 recordings of 16 examples each hold 3.6 recordings on average
    # (fewer with 2 readers, each dealt 4 whole shards); read shard by shard, every batch held exactly one.
    assert len(recordings) == 2 * 64 // 8
    assert np.mean(recordings) >= 2.5, recordings


#: Tiny configurations (each model's "paper" config with these changes): tens of thousands of parameters.
TINY = {
    "crafx": {"filters": 8, "kernel_size": 32, "filterbank_kernel_size": 64, "pool_size": 16, "frame_length": 1024,
              "hop_length": 512, "context_frames": 2, "lstm_units": (16, 8, 4), "dense_units": (8, 8, 8),
              "se_units": 16, "dropout": 0.0},
    "waveunet": {"levels": 3, "features": 8},
    "openunmix": {"n_fft": 512, "hop_length": 128, "hidden_size": 32, "nb_layers": 1, "dropout": 0.0},
    "demucs": {"depth": 2, "channels_first": 8},
}
CLASSES = {"crafx": "CRAFx", "waveunet": "WaveUNet", "openunmix": "OpenUnmix", "demucs": "Demucs"}
LEARNING_RATE = {"crafx": 1e-2, "waveunet": 1e-2, "openunmix": 1e-2, "demucs": 1e-2}
STEPS = 200


@pytest.fixture(scope="module")
def overdriven_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 0.25-s crops of guitar at 16 kHz through SoX's overdrive at 30 dB: (input, target), (2, 1, 4000)."""
    clean = np.stack([demo_guitar(0.25, 16000, seed=40 + i, peak=0.5) for i in range(2)])
    noisy = np.stack([effects.overdrive(c, gain_db=30.0) for c in clean])
    return torch.from_numpy(noisy), torch.from_numpy(clean)


def _magnitude_ceiling(noisy: torch.Tensor, clean: torch.Tensor, n_fft: int, hop: int) -> float:
    """Mean SI-SDR (dB) of the clean magnitude with the input's phase: the best a mask model can do."""
    window = torch.hann_window(n_fft, dtype=noisy.dtype)
    spectra = [torch.stft(x[:, 0], n_fft, hop, window=window, return_complex=True) for x in (noisy, clean)]
    estimate = torch.istft(spectra[1].abs() * torch.exp(1j * spectra[0].angle()), n_fft, hop, window=window,
                           length=noisy.shape[-1])
    return float(si_sdr(estimate[:, None], clean).mean())


@pytest.mark.skipif(not os.environ.get("DEDISTORT_SLOW_TESTS"),
                    reason="about 6 minutes on 2 cores (CRAFx alone 3.5); set DEDISTORT_SLOW_TESTS=1 to run it")
@pytest.mark.parametrize("name", list(TINY))
def test_model_overfits_one_batch_of_overdriven_crops(name, overdriven_batch):
    noisy, clean = overdriven_batch
    start = float(si_sdr(noisy, clean).mean())  # about 4 dB
    module = importlib.import_module(f"training.models.{name}")
    torch.manual_seed(0)
    model = getattr(module, CLASSES[name])(channels=1, **{**module.CONFIGS["paper"], **TINY[name]})
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE[name])
    scores = []
    with torch.random.fork_rng():
        for _ in range(STEPS):
            score = si_sdr(model(noisy), clean).mean()
            optimizer.zero_grad(set_to_none=True)
            (-score).backward()
            optimizer.step()
            scores.append(score.item())
    best = max(scores[-20:])
    history = collections.OrderedDict((step, round(scores[step], 1)) for step in range(0, STEPS, 50))
    if name == "openunmix":
        # A magnitude mask with the input's phase: overdrive's phase changes cap it near 10 dB here, below 20.
        ceiling = _magnitude_ceiling(noisy, clean, TINY[name]["n_fft"], TINY[name]["hop_length"])
        assert best > start + 3.0 and best > ceiling - 3.0, (start, ceiling, best, history)
    else:
        # Far above the input. (The goal of > 20 dB is not reached by tiny Demucs in a few
        # hundred steps: it has no input-to-output path and starts near -24 dB; see BENCHMARKS.md.)
        assert best > start + 6.0, (start, best, history)
