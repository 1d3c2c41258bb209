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
