"""Wave-U-Net and Demucs: shapes for any length, parameter counts, gradients, learning, determinism."""

import pytest

torch = pytest.importorskip("torch")

from training import models  # noqa: E402
from training.models import demucs, waveunet  # noqa: E402

COUNTS = {("waveunet", "paper"): 1_079_521, ("waveunet", "original"): 17_477_345,
          ("demucs", "paper"): 1_029_953, ("demucs", "original"): 265_675_393}


@pytest.mark.parametrize("name", ["waveunet", "demucs"])
@pytest.mark.parametrize("channels", [1, 2])
def test_shapes_for_any_length(name, channels):
    torch.manual_seed(0)
    for size in ("paper", "original"):
        model = models.create(name, size, channels).eval()
        lengths = (1, 777, 16000) if size == "paper" else (1, 777)
        with torch.no_grad():
            for length in lengths:
                out = model(torch.randn(2, channels, length) * 0.1)
                assert out.shape == (2, channels, length) and out.dtype == torch.float32
                assert torch.isfinite(out).all()


@pytest.mark.parametrize("key", sorted(COUNTS))
def test_parameter_counts(key):
    count = models.parameter_count(models.create(*key))
    assert count == pytest.approx(COUNTS[key], rel=0.01)
    if key[1] == "paper":
        assert 0.7e6 <= count <= 1.3e6  # "about one million", as the paper reduced them


@pytest.mark.parametrize("name", ["waveunet", "demucs"])
def test_gradients_reach_every_parameter_and_it_learns_declipping(name):
    torch.manual_seed(0)
    model = models.create(name, "paper")
    t = torch.arange(8000) / 16000
    clean = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.2 * torch.sin(2 * torch.pi * 330 * t)).view(1, 1, -1)
    noisy = torch.clamp(clean * 4, -0.5, 0.5)
    loss = torch.nn.functional.mse_loss(model(noisy), clean)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = loss.item()
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(noisy), clean)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("name", ["waveunet", "demucs"])
def test_deterministic_in_eval_mode(name):
    model = models.create(name, "paper").eval()
    x = torch.randn(1, 1, 5000)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_bad_configurations_and_names():
    with pytest.raises(ValueError, match="levels"):
        waveunet.WaveUNet(levels=0)
    with pytest.raises(ValueError, match="odd"):
        waveunet.WaveUNet(kernel=14)
    with pytest.raises(ValueError, match="multiple of 8"):
        waveunet.WaveUNet(features=12)
    with pytest.raises(ValueError, match="stride"):
        demucs.Demucs(kernel=4, stride=8)
    with pytest.raises(ValueError, match=r"expected \(batch, 1, samples\)"):
        models.create("demucs", "paper")(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="unknown model"):
        models.create("transformer")
    with pytest.raises(ValueError, match="size"):
        models.create("demucs", "huge")


def test_demucs_valid_length_is_the_least_padding():
    # An input of valid_length(n) samples gives at least n output samples inside the network, one sample
    # less does not (v2's valid_length: whole strided windows, context convolutions, ×2 resampling).
    model = demucs.Demucs(depth=3, channels_first=8)

    def inner_length(samples: int) -> int:
        samples *= 2  # resample ×2
        for _ in range(model.depth):
            samples = (samples - model.kernel) // model.stride + 1
        for _ in range(model.depth):
            samples = (samples - model.context + 1 - 1) * model.stride + model.kernel
        return samples // 2

    for length in (1, 100, 12345):
        valid = model.valid_length(length)
        assert valid >= length and inner_length(valid) >= length
