"""Evaluation side of the paper: SI-SDR against torchmetrics, the ideal ratio mask, evaluate with baselines,
the report."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

import effects  # noqa: E402
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from training.baselines.irm import ideal_ratio_mask, stft_size_for  # noqa: E402
from training.cli import main as dedistort_main  # noqa: E402
from training.losses import si_sdr as torch_si_sdr  # noqa: E402
from training.metrics import METRICS, match_level, parse_metric_names  # noqa: E402
from training.models.openunmix import stft  # noqa: E402


@pytest.mark.parametrize("sdr_db", [1.0, 10.0, 30.0])
def test_si_sdr_agrees_with_torchmetrics(guitar, sdr_db):
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    clipped, _ = effects.clip_to_sdr(guitar, sdr_db)
    noise = np.random.default_rng(0).normal(0, 0.01, guitar.shape).astype(np.float32)
    for estimate in (clipped, clipped * 3.0 + noise, 0.2 * guitar + noise):
        expected = float(scale_invariant_signal_distortion_ratio(torch.from_numpy(estimate).double(),
                                                                  torch.from_numpy(guitar).double()))
        assert effects.si_sdr_db(guitar, estimate) == pytest.approx(expected, abs=1e-3)
        ours_torch = float(torch_si_sdr(torch.from_numpy(estimate)[None].double(),
                                        torch.from_numpy(guitar)[None].double()))
        assert ours_torch == pytest.approx(expected, abs=1e-3)


def test_ideal_ratio_mask_gives_the_target_magnitude_with_the_input_phase(guitar):
    clipped, _ = effects.clip_to_sdr(guitar, 3.0)
    noisy = torch.from_numpy(clipped * 2.5)[None].double()  # louder than the target: the ratio is not bounded
    clean = torch.from_numpy(guitar)[None].double()
    estimate = ideal_ratio_mask(noisy, clean, 16000)
    assert estimate.shape == noisy.shape
    n_fft, hop = stft_size_for(16000)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    # Re-analysing the (consistent-ified) estimate comes close to the target magnitude...
    target_magnitude = stft(clean, n_fft, hop, window).abs()
    estimate_magnitude = stft(estimate, n_fft, hop, window).abs()
    relative = float((estimate_magnitude - target_magnitude).norm() / target_magnitude.norm())
    assert relative < 0.25
    # ...and the oracle beats the clipped input by a wide margin, while an identical input passes through.
    assert effects.si_sdr_db(guitar, estimate[0].numpy()) > effects.si_sdr_db(guitar, clipped) + 5
    assert torch.allclose(ideal_ratio_mask(clean, clean, 16000), clean, atol=1e-9)
    assert stft_size_for(44100) == (4096, 1024)
    with pytest.raises(ValueError, match="one shape"):
        ideal_ratio_mask(noisy[..., :100], clean, 16000)
    with pytest.raises(ValueError, match="finite"):
        ideal_ratio_mask(noisy * float("nan"), clean, 16000)


def test_metric_registry_and_level_matching(guitar):
    assert parse_metric_names("SI-SDR, peaq,si-sdr") == ("si-sdr", "peaq")
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric_names("pesq")
    louder = guitar * 7.0
    assert np.allclose(match_level(guitar, louder), guitar, atol=1e-6)
    assert METRICS["si-sdr"](guitar, louder, 16000) > 100
    assert METRICS["sdr"](guitar, guitar * 0.5, 16000) == pytest.approx(20 * np.log10(2), abs=1e-6)


@pytest.fixture(scope="module")
def clip_corpus(tmp_path_factory) -> Path:
    clean = tmp_path_factory.mktemp("clean")
    for i in range(6):
        sf.write(clean / f"take-{i}.wav", demo_guitar(2.0, 16000, seed=900 + i, peak=0.6).T, 16000)
    out = tmp_path_factory.mktemp("data") / "sdr"
    build(BuildConfig(source=str(clean), effect="clip-sdr", sweep="1,20", segment_seconds=2.0, name="sdr"), out,
          progress=False, log=lambda _: None)
    return out


def test_evaluate_baselines_and_report(clip_corpus, tmp_path, capsys):
    import pyarrow.parquet as pq

    from manifests import read_manifests

    results = []
    for method in ("input", "irm"):
        folder = tmp_path / method
        assert dedistort_main(["evaluate", "--method", method, "--data", str(clip_corpus), "--metrics", "si-sdr,sdr",
                               "-o", str(folder), "-q", "--workers", "2", "--save-examples", "2"]) == 0
        results.append(folder)
    keys = sorted(r["key"] for r in read_manifests(clip_corpus)["test"])
    rows = pq.read_table(tmp_path / "irm" / "scores.parquet").to_pylist()
    assert [r["key"] for r in rows] == keys  # every example once, in key order
    assert {r["nominal_input_sdr_db"] for r in rows} == {1.0, 20.0}
    for row in rows:
        assert row["input_sdr_db"] == pytest.approx(row["nominal_input_sdr_db"], abs=0.05)
        assert row["si_sdr_improvement_db"] == pytest.approx(row["output_si_sdr_db"] - row["input_si_sdr_db"])
        assert row["si_sdr_improvement_db"] > 0
    summary = json.loads((tmp_path / "irm" / "summary.json").read_text())
    assert summary["examples"] == len(keys) and summary["method"] == "irm"
    assert summary["metrics"]["output_si_sdr_db"]["median"] > summary["metrics"]["input_si_sdr_db"]["median"]
    assert len(list((tmp_path / "irm" / "audio").glob("*.wav"))) == 6
    # The input method scores the input as its output.
    plain = pq.read_table(tmp_path / "input" / "scores.parquet").to_pylist()
    assert all(r["output_si_sdr_db"] == r["input_si_sdr_db"] for r in plain)

    assert dedistort_main(["report", *map(str, results), "-o", str(tmp_path / "report")]) == 0
    for name in ("boxplots.png", "input_sdr.png", "spectrograms.png", "report.md"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| irm |" in markdown and "| input |" in markdown
    assert dedistort_main(["report", str(tmp_path / "irm"), str(tmp_path), "-o", str(tmp_path / "r2")]) == 2
    assert "not an evaluate results folder" in capsys.readouterr().err


def test_evaluate_refuses_what_it_cannot_do(clip_corpus, tmp_path, capsys):
    assert dedistort_main(["evaluate", "--data", str(clip_corpus), "-o", str(tmp_path / "r")]) == 2
    assert "exactly one of --checkpoint" in capsys.readouterr().err
    assert dedistort_main(["evaluate", "--method", "input", "--data", str(clip_corpus), "--metrics", "fad",
                           "-o", str(tmp_path / "r")]) == 2
    assert "--vggish" in capsys.readouterr().err
    noisy = tmp_path / "in.wav"
    sf.write(noisy, demo_guitar(1.0, 16000).T, 16000)
    assert dedistort_main(["run", str(noisy), "-o", str(tmp_path / "out.wav"), "--method", "irm"]) == 2
    assert "oracle" in capsys.readouterr().err


def _band_energies(audio: np.ndarray, rate: int) -> np.ndarray:
    """A tiny FAD embedder: log energies of 16 bands per 0.1-s frame, (frames, 16)."""
    frames = audio[: len(audio) // 1600 * 1600].reshape(-1, 1600)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(1600), axis=1)) ** 2
    return np.log(np.stack([band.sum(axis=1) for band in np.array_split(spectrum, 16, axis=1)], axis=1) + 1e-9)


def test_evaluate_computes_fad_of_input_and_output_sets(clip_corpus, tmp_path):
    from training.evaluate import evaluate

    summary = evaluate("irm", clip_corpus, "test", tmp_path / "irm", metrics=("si-sdr", "fad"),
                       fad_embedder=_band_energies, workers=0, progress=False)
    assert summary["fad"]["input"] > 0
    assert summary["fad"]["output"] < summary["fad"]["input"]  # the oracle's output sounds like the target
    assert json.loads((tmp_path / "irm" / "summary.json").read_text())["fad"] == pytest.approx(summary["fad"])
    (tmp_path / "weights.pth").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="weights.pth"):
        evaluate("input", clip_corpus, "test", tmp_path / "x", metrics=("fad",), vggish_path=tmp_path / "weights.pth",
                 workers=0, progress=False)


def test_aspade_through_evaluate_and_run(clip_corpus, tmp_path):
    import pyarrow.parquet as pq

    assert dedistort_main(["evaluate", "--method", "aspade", "--data", str(clip_corpus), "--metrics", "si-sdr",
                           "-o", str(tmp_path / "aspade"), "-q", "--workers", "0"]) == 0
    rows = pq.read_table(tmp_path / "aspade" / "scores.parquet").to_pylist()
    heavy = [r["si_sdr_improvement_db"] for r in rows if r["nominal_input_sdr_db"] == 1.0]
    assert np.median(heavy) > 1.0  # A-SPADE restores heavily clipped guitar
    assert json.loads((tmp_path / "aspade" / "summary.json").read_text())["unchanged_examples"] == 0
    # A file clipped at its own level, at 44.1 kHz: A-SPADE runs at the file's rate, chunk by chunk, with one
    # threshold for the whole file (a quiet chunk's own peak is not the clipping level).
    clean = np.concatenate([demo_guitar(3.0, 44100, seed=5, peak=0.9), demo_guitar(3.0, 44100, seed=6, peak=0.05)],
                           axis=1)
    clipped, _ = effects.clip_to_sdr(clean, 5.0)
    sf.write(tmp_path / "clipped.wav", clipped.T, 44100, subtype="FLOAT")
    assert dedistort_main(["run", str(tmp_path / "clipped.wav"), "-o", str(tmp_path / "restored.wav"), "--method",
                           "aspade", "--chunk-seconds", "2", "--overlap-seconds", "0.5"]) == 0
    restored, rate = sf.read(tmp_path / "restored.wav", dtype="float32", always_2d=True)
    assert rate == 44100 and restored.shape == clipped.T.shape
    assert effects.sdr_db(clean, restored.T) > effects.sdr_db(clean, clipped) + 2
    quiet = slice(3 * 44100 + 1000, 6 * 44100)  # never clipped: passes through
    np.testing.assert_allclose(restored.T[:, quiet], clipped[:, quiet], atol=1e-6)


def test_aspade_run_declips_each_channel_at_its_own_level_and_says_when_it_changes_nothing(tmp_path, capsys):
    # Stereo at 44.1 kHz, the channels clipped at their own levels: one threshold for both (the louder
    # channel's) found no clipped sample in the quieter channel, which came back unchanged without a word.
    clean = np.concatenate([demo_guitar(1.5, 44100, seed=21, peak=0.9), demo_guitar(1.5, 44100, seed=22, peak=0.3)])
    clipped = np.concatenate([effects.clip_to_sdr(channel[None], 5.0)[0] for channel in clean])
    assert np.abs(clipped[1]).max() < 0.5 * np.abs(clipped[0]).max()
    sf.write(tmp_path / "clipped.wav", clipped.T, 44100, subtype="FLOAT")
    assert dedistort_main(["run", str(tmp_path / "clipped.wav"), "-o", str(tmp_path / "restored.wav"), "--method",
                           "aspade"]) == 0
    restored, _ = sf.read(tmp_path / "restored.wav", dtype="float32", always_2d=True)
    for c in (0, 1):
        assert effects.sdr_db(clean[c], restored.T[c]) > effects.sdr_db(clean[c], clipped[c]) + 2
    assert "unchanged" not in capsys.readouterr().err
    # Audio without clipped samples (unclipped guitar) comes back as it was, and the user is told why.
    sf.write(tmp_path / "clean.wav", clean.T, 44100, subtype="FLOAT")
    assert dedistort_main(["run", str(tmp_path / "clean.wav"), "-o", str(tmp_path / "same.wav"), "--method",
                           "aspade"]) == 0
    same, _ = sf.read(tmp_path / "same.wav", dtype="float32", always_2d=True)
    assert np.array_equal(same.T, clean)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "clean.wav" in warnings[0] and "no clipped samples" in warnings[0]
    assert "44100 Hz" in warnings[0] and "in channel" not in warnings[0]  # both channels


def test_evaluate_counts_and_reports_examples_a_method_left_unchanged(clip_corpus, tmp_path):
    from training.evaluate import evaluate
    from training.methods import resolve

    said = []
    # A threshold above every sample: A-SPADE finds nothing to declip in any example.
    method = resolve("aspade", aspade_options={"threshold": 2.0})
    summary = evaluate(method, clip_corpus, "test", tmp_path / "r", metrics=("si-sdr",), workers=0, progress=False,
                       warn=said.append)
    assert summary["unchanged_examples"] == summary["examples"] > 0
    assert len(said) == 1 and f"{summary['examples']} of {summary['examples']}" in said[0]
    assert "no clipped samples" in said[0] and "no clipped samples" in summary["unchanged_reason"]
    written = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert written["unchanged_examples"] == len(written["unchanged_keys"]) == summary["examples"]
    # The input method is the identity by definition: counted, not warned about.
    said.clear()
    plain = evaluate("input", clip_corpus, "test", tmp_path / "i", metrics=("si-sdr",), workers=0, progress=False,
                     warn=said.append)
    assert plain["unchanged_examples"] == plain["examples"] and not said
