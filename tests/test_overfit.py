"""Evidence that training can work: batches that mix recordings, and each model fitting one fixed batch.

1. The loader's batches: a shard holds neighbouring segments of few recordings at all their gains, so a
   reader that went shard by shard through a small shuffle buffer made batches of one recording (the
   underfitting of paper-size Demucs on a real-guitar corpus). Batches must mix recordings whatever the
   shuffle buffer.
2. Each of the four models, in a tiny configuration of its own architecture, fits one fixed batch of
   overdriven guitar crops far above the input within a few hundred CPU steps: the waveform models
   beyond 20 dB SI-SDR (Wave-U-Net, Demucs; CRAFx, whose fit depends on its start, beyond 15 dB), Open-Unmix (a
   magnitude mask with the input's phase) within 3 dB of the best any such mask does. An architecture
   or loss that cannot learn the map fails here in minutes, not after hours of training. The waveform
   models are opt-in (DEDISTORT_SLOW_TESTS=1): CRAFx's framing makes its 300 steps minutes on a busy
   machine. Measured figures: BENCHMARKS.md, "Training: does it learn".
"""

from __future__ import annotations

import collections
import importlib
import math
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


#: Tiny configurations (each model's "paper" config with these changes): tens of thousands of parameters, the
#: layers of the model's own architecture. CRAFx keeps 1024-sample frames with 2 context frames each side.
TINY = {
    "crafx": {"filters": 8, "kernel_size": 32, "filterbank_kernel_size": 64, "pool_size": 16, "frame_length": 1024,
              "hop_length": 512, "context_frames": 2, "lstm_units": (16, 8, 4), "dense_units": (8, 8, 8),
              "se_units": 16, "dropout": 0.0},
    "waveunet": {"levels": 3, "features": 16},
    "openunmix": {"n_fft": 512, "hop_length": 128, "hidden_size": 32, "nb_layers": 1, "dropout": 0.0},
    "demucs": {"depth": 2, "channels_first": 16},
}
CLASSES = {"crafx": "CRAFx", "waveunet": "WaveUNet", "openunmix": "OpenUnmix", "demucs": "Demucs"}
#: Adam's peak learning rate (reached after WARMUP_STEPS, then a cosine decay to 0 at the last step) and the
#: steps, per model. A constant 1e-2 was noisy at the end and slower: tiny Demucs got 15.7 dB in 200 steps.
LEARNING_RATE = {"crafx": 1e-2, "waveunet": 5e-3, "openunmix": 1e-2, "demucs": 2e-2}
STEPS = {"crafx": 300, "waveunet": 200, "openunmix": 200, "demucs": 200}
WARMUP_STEPS = 20
#: The bar for the waveform models, in dB of SI-SDR: the issue's 20 dB, but 15 dB for CRAFx, whose tiny fit
#: depends on its initialisation: this run reaches 26.6 dB, with init seeds 1 and 2 17.9 and 25.6 dB (peak
#: 2e-2: 29.7, 18.6, 30.7 dB), two crops 17.5 dB, each rising smoothly. (Before CRAFx's recurrent kernels
#: were drawn as Keras draws them, its fits spiked and collapsed: 6.4-25.4 dB.)
TARGET_DB = {"crafx": 15.0, "waveunet": 20.0, "demucs": 20.0}


@pytest.fixture(scope="module")
def overdriven_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A 0.125-s crop of guitar at 16 kHz through SoX's overdrive at 30 dB: (input, target), (1, 1, 2000).

    One short crop: 2,000 samples to fit exactly. Two crops (or 0.25 s) need more steps than a few hundred
    for CRAFx (17.5 dB after 300 steps on two 0.125-s crops at a peak rate of 3e-2) and cost twice as much.
    """
    clean = demo_guitar(0.125, 16000, seed=40, peak=0.5)[None]  # (1, 1, 2000)
    noisy = effects.overdrive(clean[0], gain_db=30.0)[None]
    return torch.from_numpy(noisy), torch.from_numpy(clean)


def _magnitude_ceiling(noisy: torch.Tensor, clean: torch.Tensor, n_fft: int, hop: int) -> float:
    """Mean SI-SDR (dB) of the clean magnitude with the input's phase: the best a mask model can do."""
    window = torch.hann_window(n_fft, dtype=noisy.dtype)
    spectra = [torch.stft(x[:, 0], n_fft, hop, window=window, return_complex=True) for x in (noisy, clean)]
    estimate = torch.istft(spectra[1].abs() * torch.exp(1j * spectra[0].angle()), n_fft, hop, window=window,
                           length=noisy.shape[-1])
    return float(si_sdr(estimate[:, None], clean).mean())


#: The waveform models take 30 s to minutes on a busy 2-core machine (CRAFx 5 min at load 7): opt-in.
#: Open-Unmix (12 s there) always runs.
_SLOW = pytest.mark.skipif(not os.environ.get("DEDISTORT_SLOW_TESTS"),
                           reason="30 s (Wave-U-Net, Demucs) to 5 min (CRAFx) on a busy 2-core machine; "
                                  "set DEDISTORT_SLOW_TESTS=1 to run it")


@pytest.mark.parametrize("name", [name if name == "openunmix" else pytest.param(name, marks=_SLOW) for name in TINY])
def test_model_overfits_one_batch_of_overdriven_crops(name, overdriven_batch):
    noisy, clean = overdriven_batch
    start = float(si_sdr(noisy, clean).mean())  # 5.75 dB
    module = importlib.import_module(f"training.models.{name}")
    torch.manual_seed(0)
    model = getattr(module, CLASSES[name])(channels=1, **{**module.CONFIGS["paper"], **TINY[name]})
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE[name])
    steps = STEPS[name]
    # Linear warm-up, then a cosine decay to 0: large early steps get the model past its poor start
    # (Demucs starts near -14 dB: no input-to-output path), small late ones let it settle on the fit.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS)
                                                 * 0.5 * (1.0 + math.cos(math.pi * step / steps)))
    scores = []
    threads = torch.get_num_threads()
    # One thread: at these sizes intra-op threads gain little, and on a busy machine they wait on each other.
    torch.set_num_threads(1)
    try:
        _fit(model, optimizer, schedule, noisy, clean, steps, scores)
    finally:
        torch.set_num_threads(threads)
    best = max(scores[-20:])
    history = collections.OrderedDict((step, round(scores[step], 1)) for step in range(0, steps, 50))
    print(f"{name}: input {start:.2f} dB, first step {scores[0]:.1f} dB, best of the last 20 steps {best:.2f} dB")
    if name == "openunmix":
        # A magnitude mask with the input's phase cannot reach 20 dB: overdrive changes the phase, and the
        # clean magnitude with the input's phase (the best any mask does) scores about 10 dB on these crops.
        ceiling = _magnitude_ceiling(noisy, clean, TINY[name]["n_fft"], TINY[name]["hop_length"])
        assert best > start + 3.0 and best > ceiling - 3.0, (start, ceiling, best, history)
    else:
        assert best > TARGET_DB[name], (start, best, history)


def _fit(model, optimizer, schedule, noisy: torch.Tensor, clean: torch.Tensor, steps: int, scores: list) -> None:
    """``steps`` Adam steps on −SI-SDR of one batch, appending each step's SI-SDR (dB) to ``scores``."""
    with torch.random.fork_rng():
        for _ in range(steps):
            score = si_sdr(model(noisy), clean).mean()
            optimizer.zero_grad(set_to_none=True)
            (-score).backward()
            optimizer.step()
            schedule.step()
            scores.append(score.item())
