"""A-SPADE on one core: our vectorised solver against the frame-wise loop, at the declipping survey's input SDRs.

    python benchmarks/bench_aspade.py [--seconds 10] [--sdrs 1 3 5 7 10 15 20] [--seed 0] [--peak 0.9]
                                      [--wav FILE] [--window-samples 1024] [--hop-samples 256]
                                      [--sparsity-every 1] [--repeats 1] [--no-loop]

The clean signal is ``--seconds`` of the 16 kHz demo guitar (``datagen.demo.demo_guitar``) at peak ``--peak``,
or the recording ``--wav``, in float64, hard-clipped with ``effects.clip_to_sdr`` to each input SDR. Both
implementations run with the defaults of ``training.baselines.aspade`` (window 1024, hop 256, redundancy 2,
s = r = 1, ε = 0.1) unless told otherwise. The survey's own setting on its 44.1 kHz excerpts is
``--wav a58_guitar_sarasate.wav --window-samples 8192 --hop-samples 2048 --sparsity-every 2``. One table:

- clip %: the share of clipped samples;
- ours x RT: audio seconds per wall second of :func:`aspade` (median over ``--repeats``), ΔSDR (output SDR
  minus input SDR over the whole signal) and ΔSDR_c (the same on the clipped samples only, the survey's
  ΔSDR_c), mean ADMM iterations per clipped frame;
- loop x RT and ΔSDR of :func:`aspade_framewise` (one frame at a time, full complex numpy DFTs, as the
  toolbox's aspade.m), the speed ratio ours / loop measured in the same run, and the largest sample
  difference between the two outputs;
- survey: the mean A-SPADE ΔSDR over the survey's ten SQAM excerpts at that input SDR (Záviška, Rajmic,
  Ozerov & Rencker, IEEE JSTSP 2021; the means of ``dSDR_all_aspade`` in the toolbox's
  ``Numerical_results/dSDR_all_declippingResults.mat``; 44.1 kHz, window 8192, hop 2048, redundancy 2,
  s = 1, r = 2 per its ``main_spade_SQAM.m``). For A-SPADE, a consistent method, ΔSDR_c equals ΔSDR.
"""

from __future__ import annotations

import one_core  # the benchmarks' folder is on the path when run as a script

one_core.pin()

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import effects  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from training.baselines.aspade import aspade, aspade_framewise  # noqa: E402

RATE = 16000
SURVEY_SDRS_DB = (1, 3, 5, 7, 10, 15, 20)
#: Mean A-SPADE ΔSDR (dB) of the survey's ten excerpts per input SDR above (its dSDR_all_aspade, averaged here).
SURVEY_ASPADE_DELTA_SDR_DB = (11.88, 13.88, 15.06, 15.98, 17.28, 19.43, 20.27)


def delta_sdr_db(clean: np.ndarray, clipped: np.ndarray, restored: np.ndarray, mask: np.ndarray | None = None
                 ) -> float:
    """Output SDR minus input SDR in dB, over the samples of ``mask`` (all when None): the signal energy cancels."""
    clean, clipped, restored = (np.asarray(a, dtype=np.float64) for a in (clean, clipped, restored))
    if mask is not None:
        clean, clipped, restored = clean[mask], clipped[mask], restored[mask]
    return float(10 * np.log10(np.sum((clean - clipped) ** 2) / np.sum((clean - restored) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of demo guitar (default 10)")
    parser.add_argument("--sdrs", type=float, nargs="+", default=list(SURVEY_SDRS_DB), help="input SDRs in dB")
    parser.add_argument("--seed", type=int, default=0, help="demo guitar seed")
    parser.add_argument("--peak", type=float, default=0.9, help="peak of the clean signal before clipping")
    parser.add_argument("--wav", type=Path, help="declip this recording (all channels, its own rate) instead of "
                        "the demo guitar, e.g. one of the survey's excerpts")
    parser.add_argument("--window-samples", type=int, default=1024)
    parser.add_argument("--hop-samples", type=int, default=256)
    parser.add_argument("--sparsity-every", type=int, default=1, help="r: k grows every r iterations")
    parser.add_argument("--repeats", type=int, default=1, help="runs of our solver per level (median time)")
    parser.add_argument("--no-loop", action="store_true", help="skip the slow frame-wise loop")
    args = parser.parse_args()

    if args.wav is None:
        clean = demo_guitar(args.seconds, RATE, seed=args.seed, peak=args.peak).astype(np.float64)
        rate, source = RATE, f"demo guitar (seed {args.seed}, peak {args.peak:g})"
    else:
        audio, rate = sf.read(args.wav, dtype="float64", always_2d=True)
        clean, source = audio.T, str(args.wav)
    seconds = clean.shape[-1] / rate
    options = {"window_samples": args.window_samples, "hop_samples": args.hop_samples,
               "sparsity_every": args.sparsity_every}
    survey = dict(zip(SURVEY_SDRS_DB, SURVEY_ASPADE_DELTA_SDR_DB, strict=True))
    print(f"A-SPADE on {seconds:.3g} s of {rate} Hz {source}, one core; window {args.window_samples}, hop "
          f"{args.hop_samples}, redundancy 2, s = 1, r = {args.sparsity_every}, eps = 0.1")
    header = (f"{'in SDR':>6} {'clip %':>6} | {'ours xRT':>8} {'dSDR':>6} {'dSDR_c':>6} {'iters':>6} | "
              f"{'loop xRT':>8} {'dSDR':>6} {'ratio':>6} {'max|diff|':>9} | {'survey':>6}")
    print(header)
    print("-" * len(header))
    for sdr in args.sdrs:
        # float64 throughout, so that max|diff| shows the two solvers' rounding, not float32's.
        clipped, _ = effects.clip_to_sdr(clean, sdr)
        mask = np.abs(clipped) >= np.abs(clipped).max()
        ours_seconds, (ours, stats) = one_core.timed(lambda c=clipped: aspade(c, return_stats=True, **options),
                                                     args.repeats, warm_up=False)
        row = (f"{sdr:6g} {100 * mask.mean():6.2f} | {seconds / ours_seconds:8.2f} "
               f"{delta_sdr_db(clean, clipped, ours):6.2f} {delta_sdr_db(clean, clipped, ours, mask):6.2f} "
               f"{stats.mean_iterations:6.1f} | ")
        if args.no_loop:
            row += f"{'-':>8} {'-':>6} {'-':>6} {'-':>9} | "
        else:
            loop_seconds, loop = one_core.timed(lambda c=clipped: aspade_framewise(c, **options), 1, warm_up=False)
            row += (f"{seconds / loop_seconds:8.2f} {delta_sdr_db(clean, clipped, loop):6.2f} "
                    f"{loop_seconds / ours_seconds:6.2f} {float(np.max(np.abs(ours - loop))):9.2e} | ")
        row += f"{survey[sdr]:6.2f}" if sdr in survey else f"{'-':>6}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
