import numpy as np
import pytest

torch = pytest.importorskip("torch")

import effects  # noqa: E402
from effects import torch_batch  # noqa: E402


@pytest.fixture(scope="module")
def batch(guitar, stereo_guitar):
    """Four stereo examples of different loudness, shape (4, 2, 16000)."""
    examples = [stereo_guitar[:, :16000], stereo_guitar[:, 16000:] * 0.3,
                np.repeat(guitar[:, :16000], 2, axis=0), np.repeat(guitar[:, 16000:32000], 2, axis=0) * 0.05]
    return np.stack(examples).astype(np.float32)


def test_hard_and_soft_clip_match_numpy(batch):
    gains = np.array([0.0, 12.5, 30.0, 55.0])
    x = torch.from_numpy(batch)
    hard = torch_batch.hard_clip(x, torch.from_numpy(gains), threshold=0.8)
    soft = torch_batch.soft_clip(x, torch.from_numpy(gains))
    for b, gain_db in enumerate(gains):
        np.testing.assert_allclose(hard[b].numpy(), effects.hard_clip(batch[b], gain_db, 0.8), atol=1e-5)
        np.testing.assert_allclose(soft[b].numpy(), effects.soft_clip(batch[b], gain_db), atol=1e-5)
    assert hard.dtype == torch.float32 and hard.shape == x.shape
    same_gain = torch_batch.hard_clip(x, 20.0).numpy()
    for b in range(len(batch)):
        np.testing.assert_allclose(same_gain[b], effects.hard_clip(batch[b], 20.0), atol=1e-5)


def test_clip_to_sdr_matches_numpy(batch):
    sdrs = np.array([1.0, 5.0, 20.0, 60.0])
    clipped, gains = torch_batch.clip_to_sdr(torch.from_numpy(batch), torch.from_numpy(sdrs))
    for b, sdr in enumerate(sdrs):
        expected, gain_db = effects.clip_to_sdr(batch[b], sdr)
        np.testing.assert_allclose(clipped[b].numpy(), expected, atol=1e-5)
        assert gains[b].item() == pytest.approx(gain_db, abs=1e-5)
        assert effects.sdr_db(batch[b], clipped[b].numpy()) == pytest.approx(sdr, abs=0.01)


def test_sort_path_matches_numpy(batch):
    # The accelerator path (full sort), run here on the CPU so it is tested without a GPU.
    sdrs = torch.tensor([1.0, 7.0, 20.0, 60.0], dtype=torch.float64)
    thresholds = torch_batch._thresholds_by_sort(torch.from_numpy(batch), sdrs)
    for b in range(4):
        expected = effects.clipping_threshold_for_sdr(batch[b], sdrs[b].item())
        assert thresholds[b].item() == pytest.approx(expected, rel=1e-9)


def test_clip_to_sdr_random_targets_are_exact(batch):
    generator = torch.Generator().manual_seed(0)
    sdrs = torch.empty(4, dtype=torch.float64).uniform_(1, 20, generator=generator)
    clipped, _ = torch_batch.clip_to_sdr(torch.from_numpy(batch), sdrs)
    for b in range(4):
        assert effects.sdr_db(batch[b], clipped[b].numpy()) == pytest.approx(sdrs[b].item(), abs=0.01)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_gpu(batch):
    x = torch.from_numpy(batch).cuda()
    clipped, _ = torch_batch.clip_to_sdr(x, torch.tensor([1.0, 5.0, 10.0, 20.0]))
    assert clipped.is_cuda
    cpu, _ = torch_batch.clip_to_sdr(x.cpu(), torch.tensor([1.0, 5.0, 10.0, 20.0]))
    torch.testing.assert_close(clipped.cpu(), cpu, atol=1e-5, rtol=0)


def test_bad_input_rejected(batch):
    x = torch.from_numpy(batch)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        torch_batch.hard_clip(x[0], 10.0)
    with pytest.raises(ValueError, match="shape"):
        torch_batch.soft_clip(x, torch.zeros(3))
    with pytest.raises(ValueError, match="sdr_db"):
        torch_batch.clip_to_sdr(x, torch.tensor([1.0, 0.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="gain_db"):
        torch_batch.hard_clip(x, 200.0)
    silent = x.clone()
    silent[2] = 0
    with pytest.raises(ValueError, match=r"example 2: x is silent"):
        torch_batch.clip_to_sdr(silent, 10.0)
    with pytest.raises(ValueError, match=r"example 2: x is silent"):
        torch_batch._thresholds_by_sort(silent, torch.full((4,), 10.0, dtype=torch.float64))
    nan = x.clone()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        torch_batch.soft_clip(nan, 10.0)


def _overdrive_batch() -> np.ndarray:
    """Three stereo examples, 40,000 samples (five blocks of the DC blocker's scan): loud with full-scale
    runs, quiet, and so quiet that SoX's 32-bit quantisation matters at 100 dB of gain."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 40000)) * np.array([0.3, 0.01, 1e-3])[:, None, None]
    x[0, 0, :100], x[0, 1, 100:200] = 1.0, -1.0
    return np.clip(x, -1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overdrive_matches_numpy(dtype):
    x = _overdrive_batch().astype(dtype)
    gains, colours = np.array([0.0, 35.0, 100.0]), np.array([40.0, 20.0, 100.0])
    y = torch_batch.overdrive(torch.from_numpy(x), torch.from_numpy(gains), torch.from_numpy(colours))
    assert y.dtype == torch.from_numpy(x).dtype and y.shape == x.shape
    for b in range(3):
        np.testing.assert_allclose(y[b].numpy(), effects.overdrive(x[b], gains[b], colours[b]), atol=1e-6, rtol=0)
    assert torch.equal(y[0], torch.from_numpy(x[0]))  # 0 dB: SoX's null effect, the input unchanged
    # One number for the whole batch, colour 0 (the paper's Eq. 6).
    same = torch_batch.overdrive(torch.from_numpy(x), 20.0)
    for b in range(3):
        np.testing.assert_allclose(same[b].numpy(), effects.overdrive(x[b], 20.0), atol=1e-6, rtol=0)


def test_overdrive_scan_equals_the_recursion():
    u = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 20000)))
    d, expected = torch_batch._one_pole(u, 0.995).numpy(), np.empty((2, 20000))
    state = np.zeros(2)
    for k in range(20000):
        state = u[:, k].numpy() + 0.995 * state
        expected[:, k] = state
    np.testing.assert_allclose(d, expected, atol=1e-11, rtol=0)


def test_overdrive_rejects_bad_parameters(batch):
    x = torch.from_numpy(batch)
    with pytest.raises(ValueError, match="gain_db"):
        torch_batch.overdrive(x, 101.0)
    with pytest.raises(ValueError, match="colour"):
        torch_batch.overdrive(x, 20.0, torch.tensor([0.0, 0.0, -1.0, 0.0]))
    with pytest.raises(TypeError, match="float32 or float64"):
        torch_batch.overdrive(x.half(), 20.0)


def test_every_registered_effect_renders_online_like_the_build(batch):
    # What datagen build --online records (effect_args, dry_gain) is what the loader renders.
    x = torch.from_numpy(batch)
    cases = {"overdrive": ([10.0, 20.0, 30.0, 45.0], {"colour": 20.0}), "hardclip": ([3.0, 6.0, 9.0, 12.0],
             {"threshold": 0.5}), "softclip": ([3.0, 6.0, 9.0, 12.0], {}), "clip-sdr": ([3.0, 6.0, 9.0, 12.0], {})}
    assert set(cases) == set(effects.online_effect_names())
    for name, (values, fixed) in cases.items():
        y = torch_batch.render_online(name, x, torch.tensor(values, dtype=torch.float64), fixed, dry_gain=0.5)
        for b, value in enumerate(values):
            spec = effects.get_effect(name)
            wet, _ = spec.apply(batch[b], {**fixed, spec.primary: value})
            expected = effects.mix(wet, batch[b], 1.0, 0.5)
            np.testing.assert_allclose(y[b].numpy(), expected, atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_overdrive_on_gpu(dtype):
    x = torch.from_numpy(_overdrive_batch()).to(dtype)
    gains = torch.tensor([10.0, 35.0, 100.0])
    y = torch_batch.overdrive(x.cuda(), gains.cuda(), 20.0)
    assert y.is_cuda and y.dtype == dtype
    for b in range(3):
        np.testing.assert_allclose(y[b].cpu().numpy(), effects.overdrive(x[b].numpy(), gains[b].item(), 20.0),
                                   atol=1e-6, rtol=0)
