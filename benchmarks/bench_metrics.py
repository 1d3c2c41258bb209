"""Metric throughput: seconds of audio scored per second of wall time, on one core, against alternatives.

    python benchmarks/bench_metrics.py [--seconds 30] [--repeats 3] [--gstpeaq-plugins DIR]

Scores ``--seconds`` of 16 kHz demo guitar hard-clipped to an input SDR of 5 dB against the clean guitar:
- SI-SDR (``effects.si_sdr_db``) against torchmetrics' ``scale_invariant_signal_distortion_ratio``;
- R_nonlin (``training.metrics.rnonlin``) against the straightforward implementation: scipy's gammatone
  filters applied band by band with ``lfilter`` and the lagged correlations in a Python loop over frames;
- PEAQ (``training.metrics.peaq``), and, when ``--gstpeaq-plugins`` names a folder holding a built GstPEAQ
  plugin (github.com/HSU-ANT/gstpeaq; its ``peaq`` element run by ``gst-launch-1.0`` on WAV files), that C
  implementation on the same pair, with both ODGs;
- FAD: VGGish embedding throughput (random weights: the cost does not depend on them) and our Fréchet
  distance of two 128-dimensional Gaussians against the textbook ``scipy.linalg.sqrtm`` formula.
"""

from __future__ import annotations

import one_core  # the benchmarks' folder is on the path when run as a script

one_core.pin()

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from scipy import linalg, signal  # noqa: E402

import effects  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from training.metrics import fad, peaq, rnonlin, vggish  # noqa: E402

RATE = 16000


def rnonlin_straightforward(reference: np.ndarray, test: np.ndarray, rate: int) -> float:
    """R_nonlin as a first implementation would compute it: the same model, band by band, frame by frame."""
    fir = rnonlin.ear_filter(rate)
    reference, test = (signal.fftconvolve(x, fir, mode="same") for x in (reference, test))
    frame, hop, max_lag = round(rnonlin.FRAME_SECONDS * rate), round(rnonlin.FRAME_SECONDS * rate / 2), \
        round(rnonlin.MAX_LAG_SECONDS * rate)
    starts = range(max_lag, len(reference) - frame - max_lag, hop)
    correlations = np.zeros((len(starts), rnonlin.BANDS))
    energies = np.zeros((len(starts), rnonlin.BANDS))
    for band, centre in enumerate(rnonlin.centre_frequencies_hz(rate)):
        b, a = signal.gammatone(centre, "iir", fs=rate)
        r, t = signal.lfilter(b, a, reference), signal.lfilter(b, a, test)
        for index, start in enumerate(starts):
            segment = r[start:start + frame]
            energies[index, band] = segment @ segment
            best = 0.0
            for lag in range(-max_lag, max_lag + 1):
                shifted = t[start + lag:start + lag + frame]
                norm = np.sqrt((segment @ segment) * (shifted @ shifted))
                if norm > 0:
                    best = max(best, float(segment @ shifted) / norm)
            correlations[index, band] = best
    loud = energies.sum(axis=1) > energies.sum(axis=1).max() * 10 ** (-rnonlin.SILENCE_DB / 10)
    weights = energies[loud] ** rnonlin.WEIGHT_EXPONENT
    return float(np.mean((weights * correlations[loud]).sum(axis=1) / weights.sum(axis=1)))


def gstpeaq_odg(plugins: Path, reference: np.ndarray, test: np.ndarray, rate: int) -> float:
    """GstPEAQ's basic-version ODG for one pair (48 kHz float WAVs through gst-launch-1.0)."""
    import soxr

    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / name for name in ("ref.wav", "test.wav")]
        for path, audio in zip(paths, (reference, test), strict=True):
            sf.write(path, soxr.resample(audio.astype(np.float64), rate, 48000, quality="VHQ"), 48000,
                     subtype="FLOAT")
        command = ["gst-launch-1.0", "-q", "filesrc", f"location={paths[0]}", "!", "wavparse", "!", "audioconvert",
                   "!", "peaq.ref", "filesrc", f"location={paths[1]}", "!", "wavparse", "!", "audioconvert", "!",
                   "peaq.test", "peaq", "name=peaq", "console-output=true"]
        output = subprocess.run(command, capture_output=True, text=True, check=True,
                                env={**os.environ, "GST_PLUGIN_PATH": str(plugins), "LC_ALL": "C"}).stdout
    line = next(line for line in output.splitlines() if "Objective Difference Grade" in line)
    return float(line.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio scored per call, s (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    parser.add_argument("--gstpeaq-plugins", type=Path, help="folder with a built GstPEAQ plugin (optional)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    clean = demo_guitar(args.seconds, RATE, seed=0, peak=0.9)[0]
    clipped, _ = effects.clip_to_sdr(clean, 5.0)
    seconds = clean.size / RATE
    rows: list[tuple[str, float, str]] = []

    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio
    ours, value = one_core.timed(lambda: effects.si_sdr_db(clean, clipped), args.repeats)
    pair = torch.from_numpy(clipped).double(), torch.from_numpy(clean).double()
    theirs, their_value = one_core.timed(lambda: float(scale_invariant_signal_distortion_ratio(*pair)), args.repeats)
    rows.append(("SI-SDR", ours, f"{theirs / ours:.1f}x torchmetrics ({seconds / theirs:,.0f}x rt); "
                                 f"{value:.4f} vs {their_value:.4f} dB"))

    ours, value = one_core.timed(lambda: rnonlin.rnonlin(clean, clipped, RATE), args.repeats)
    short = slice(0, min(clean.size, 5 * RATE))  # the loop is slow: time it on 5 s and scale
    theirs, their_value = one_core.timed(lambda: rnonlin_straightforward(clean[short], clipped[short], RATE), 1)
    theirs *= clean.size / clean[short].size
    ours_short = rnonlin.rnonlin(clean[short], clipped[short], RATE)
    rows.append(("R_nonlin", ours, f"{theirs / ours:.1f}x a band-by-band scipy loop ({seconds / theirs:,.1f}x rt); "
                                   f"{value:.3f}; on the first 5 s {ours_short:.3f} vs the loop's {their_value:.3f}"))

    ours, value = one_core.timed(lambda: peaq.peaq_odg(clean, clipped, RATE), args.repeats)
    note = f"ODG {value:.3f}"
    if args.gstpeaq_plugins and shutil.which("gst-launch-1.0"):
        theirs, their_value = one_core.timed(lambda: gstpeaq_odg(args.gstpeaq_plugins, clean, clipped, RATE),
                                             args.repeats)
        note += f"; {theirs / ours:.1f}x GstPEAQ via gst-launch ({seconds / theirs:,.0f}x rt, ODG {their_value:.3f})"
    rows.append(("PEAQ basic", ours, note))

    model = vggish.VGGish().eval()
    embed = vggish.VGGishEmbedder(model)
    ours, embeddings = one_core.timed(lambda: embed(clean, RATE), args.repeats)
    rows.append(("VGGish embedding (FAD)", ours, f"{embeddings.shape[0]} examples of 0.96 s"))

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 128)), rng.normal(size=(2000, 128)) @ rng.normal(size=(128, 128)) * 0.1
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    ours, value = one_core.timed(lambda: fad.frechet_distance(*stats[0], *stats[1]), args.repeats)

    def textbook() -> float:
        (mean_a, cov_a), (mean_b, cov_b) = stats
        root = linalg.sqrtm(cov_a @ cov_b).real
        return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))

    theirs, their_value = one_core.timed(textbook, args.repeats)
    print(f"{seconds:g} s of 16 kHz demo guitar clipped to 5 dB input SDR, one core, median of {args.repeats} runs")
    print(f"{'metric':26s} {'wall s':>8s} {'x real time':>12s}  comparison")
    for name, wall, note in rows:
        print(f"{name:26s} {wall:8.4f} {seconds / wall:12,.1f}  {note}")
    print(f"{'Fréchet distance (D=128)':26s} {ours:8.4f} {'':>12s}  {theirs / ours:.1f}x scipy.linalg.sqrtm "
          f"({their_value:.4f} vs {value:.4f})")


if __name__ == "__main__":
    main()
