"""A-SPADE on one core: our vectorised solver against the frame-wise loop; and, opt-in, the declipping survey's check.

    python benchmarks/bench_aspade.py [--seconds 10] [--sdrs 1 3 5 7 10 15 20] [--seed 0] [--peak 0.9]
                                      [--wav FILE] [--window-samples 1024] [--hop-samples 256]
                                      [--sparsity-every 1] [--repeats 1] [--no-loop]
    python benchmarks/bench_aspade.py --survey-dir CHECKOUT [--excerpts NAME ...] [--sdrs ...] [--rnonlin]
                                      [--tolerance-db 0.01]

Speed (the first form). The clean signal is ``--seconds`` of the 16 kHz demo guitar
(``datagen.demo.demo_guitar``) at peak ``--peak``, or the recording ``--wav``, in float64, hard-clipped with
``effects.clip_to_sdr`` to each input SDR. Both implementations run with the defaults of
``training.baselines.aspade`` (window 1024, hop 256, redundancy 2, s = r = 1, ε = 0.1) unless told otherwise.
One table:

- clip %: the share of clipped samples;
- ours x RT: audio seconds per wall second of :func:`aspade` (median over ``--repeats``), ΔSDR (output SDR
  minus input SDR over the whole signal) and ΔSDR_c (the same on the clipped samples only, the survey's
  ΔSDR_c), mean ADMM iterations per clipped frame;
- loop x RT and ΔSDR of :func:`aspade_framewise` (one frame at a time, full complex numpy DFTs, as the
  toolbox's aspade.m), the speed ratio ours / loop measured in the same run, and the largest sample
  difference between the two outputs.

These ΔSDRs are not comparable with the survey's: other material (synthetic guitar), another rate (16 kHz)
and another window (1024).

The survey's check (``--survey-dir``, the second form). ``CHECKOUT`` is a checkout of the toolbox of Záviška,
Rajmic, Ozerov & Rencker (IEEE JSTSP 2021, github.com/rajmic/declipping2020_codes; its ``Sounds/*.wav``
excerpts and ``Numerical_results/*.mat`` are read, nothing is copied). Each excerpt (44.1 kHz) is clipped
as its ``Tools/clip_sdr.m`` does (the threshold θ solving SDR(x, clip(x, θ)) = input SDR by root finding),
declipped by :func:`aspade` with its ``main_spade_SQAM.m`` settings (window 8192, hop 2048, redundancy 2,
s = 1, r = 2, ε = 0.1, θ known), and our ΔSDR is printed beside the survey's ``dSDR_all_aspade`` for that
excerpt and input SDR. ``--rnonlin`` also scores our restoration with ``training.metrics.rnonlin`` beside
the survey's ``Rnonlin_calc_aspade``: a validation of R_nonlin's calibrated band weights on outputs that
took no part in their fit (``benchmarks/reference/fit_rnonlin_gamma.py`` fits them on the clipped inputs).
The run exits 1 when a ΔSDR differs from the survey's by more than ``--tolerance-db``. The whole survey
(10 excerpts x 7 input SDRs) takes hours on one core; ``--excerpts`` and ``--sdrs`` pick a part.
"""

from __future__ import annotations

import one_core  # the benchmarks' folder is on the path when run as a script

one_core.pin()

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy import io, optimize  # noqa: E402

import effects  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from training.baselines.aspade import aspade, aspade_framewise  # noqa: E402
from training.metrics.rnonlin import rnonlin  # noqa: E402

RATE = 16000
SURVEY_SDRS_DB = (1, 3, 5, 7, 10, 15, 20)
#: The survey's excerpts, in the row order of its result matrices (main_spade_SQAM.m's ``sounds``).
SURVEY_EXCERPTS = ("a08_violin", "a16_clarinet", "a18_bassoon", "a25_harp", "a35_glockenspiel", "a41_celesta",
                   "a42_accordion", "a58_guitar_sarasate", "a60_piano_schubert", "a66_wind_ensemble_stravinsky")
#: main_spade_SQAM.m's A-SPADE settings.
SURVEY_SETTINGS = {"window_samples": 8192, "hop_samples": 2048, "redundancy": 2, "sparsity_step": 1,
                   "sparsity_every": 2, "epsilon": 0.1}


def fail(message: str) -> None:
    """Print ``message`` as one line on stderr and exit 2 (a user error: a missing or wrong file or argument)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def delta_sdr_db(clean: np.ndarray, clipped: np.ndarray, restored: np.ndarray, mask: np.ndarray | None = None
                 ) -> float:
    """Output SDR minus input SDR in dB, over the samples of ``mask`` (all when None): the signal energy cancels."""
    clean, clipped, restored = (np.asarray(a, dtype=np.float64) for a in (clean, clipped, restored))
    if mask is not None:
        clean, clipped, restored = clean[mask], clipped[mask], restored[mask]
    return float(10 * np.log10(np.sum((clean - clipped) ** 2) / np.sum((clean - restored) ** 2)))


def survey_clip(clean: np.ndarray, sdr_db: float) -> tuple[np.ndarray, float]:
    """The toolbox's clip_sdr.m: θ in (eps, 0.99·max|x|) with SDR(x, clip(x, θ)) = ``sdr_db``, found by root
    finding (MATLAB's fzero there, Brent's method here, both to machine precision); returns (clipped, θ)."""
    def miss(theta: float) -> float:
        return 20 * np.log10(np.linalg.norm(clean) / np.linalg.norm(clean - np.clip(clean, -theta, theta))) - sdr_db
    theta = optimize.brentq(miss, np.finfo(float).eps, 0.99 * np.abs(clean).max(), xtol=1e-15, rtol=1e-15)
    return np.clip(clean, -theta, theta), float(theta)


def load_survey_matrix(survey_dir: Path, file: str, name: str) -> np.ndarray:
    """The (excerpts, input SDRs) matrix ``name`` of ``Numerical_results/file``; exits 2 naming a missing file."""
    path = survey_dir / "Numerical_results" / file
    if not path.is_file():
        fail(f"{path}: not found (is --survey-dir a checkout of rajmic/declipping2020_codes?)")
    matrix = np.asarray(io.loadmat(path)[name], dtype=np.float64)
    if matrix.shape != (len(SURVEY_EXCERPTS), len(SURVEY_SDRS_DB)):
        fail(f"{path}: {name} has shape {matrix.shape}, expected "
                 f"({len(SURVEY_EXCERPTS)}, {len(SURVEY_SDRS_DB)})")
    return matrix


def survey_check(args: argparse.Namespace) -> int:
    """Reproduce the survey's per-excerpt A-SPADE ΔSDR (and, with --rnonlin, R_nonlin); 1 when off by more
    than --tolerance-db, else 0."""
    survey_dir = args.survey_dir
    delta_sdr = load_survey_matrix(survey_dir, "dSDR_all_declippingResults.mat", "dSDR_all_aspade")
    scores = (load_survey_matrix(survey_dir, "Rnonlin_calc_declippingResults.mat", "Rnonlin_calc_aspade")
              if args.rnonlin else None)
    unknown = [e for e in args.excerpts if e not in SURVEY_EXCERPTS]
    if unknown:
        fail(f"unknown excerpt(s) {', '.join(unknown)}; the survey's are {', '.join(SURVEY_EXCERPTS)}")
    sdrs = [s for s in args.sdrs if s in SURVEY_SDRS_DB]
    if len(sdrs) != len(args.sdrs):
        fail(f"the survey's input SDRs are {', '.join(map(str, SURVEY_SDRS_DB))} dB")
    print(f"A-SPADE on the survey's excerpts ({survey_dir}), its settings: {SURVEY_SETTINGS}, one core")
    header = (f"{'excerpt':<30} {'in SDR':>6} | {'dSDR':>7} {'survey':>7} {'diff':>7} | {'xRT':>5}"
              + (f" | {'Rnonlin':>7} {'survey':>7} {'diff':>7}" if args.rnonlin else ""))
    print(header)
    print("-" * len(header))
    worst = 0.0
    for excerpt in args.excerpts:
        path = survey_dir / "Sounds" / f"{excerpt}.wav"
        if not path.is_file():
            fail(f"{path}: not found")
        clean, rate = sf.read(path, dtype="float64")
        if clean.ndim != 1:
            fail(f"{path}: expected a mono excerpt, got {clean.shape[1]} channels")
        row_index = SURVEY_EXCERPTS.index(excerpt)
        for sdr in sdrs:
            column = SURVEY_SDRS_DB.index(sdr)
            clipped, theta = survey_clip(clean, sdr)
            seconds, restored = one_core.timed(lambda c=clipped, t=theta: aspade(c, threshold=t, **SURVEY_SETTINGS),
                                               1, warm_up=False)
            ours, theirs = delta_sdr_db(clean, clipped, restored), delta_sdr[row_index, column]
            worst = max(worst, abs(ours - theirs))
            row = (f"{excerpt:<30} {sdr:6g} | {ours:7.3f} {theirs:7.3f} {ours - theirs:+7.3f} | "
                   f"{clean.size / rate / seconds:5.2f}")
            if scores is not None:
                score = rnonlin(clean, restored, rate)
                row += f" | {score:7.3f} {scores[row_index, column]:7.3f} {score - scores[row_index, column]:+7.3f}"
            print(row, flush=True)
    verdict = "within" if worst <= args.tolerance_db else "NOT within"
    print(f"largest |dSDR - survey| {worst:.4f} dB: {verdict} {args.tolerance_db:g} dB")
    return 0 if worst <= args.tolerance_db else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of demo guitar (default 10)")
    parser.add_argument("--sdrs", type=float, nargs="+", default=list(SURVEY_SDRS_DB), help="input SDRs in dB")
    parser.add_argument("--seed", type=int, default=0, help="demo guitar seed")
    parser.add_argument("--peak", type=float, default=0.9, help="peak of the clean signal before clipping")
    parser.add_argument("--wav", type=Path, help="declip this recording (all channels, its own rate) instead of "
                        "the demo guitar")
    parser.add_argument("--window-samples", type=int, default=1024)
    parser.add_argument("--hop-samples", type=int, default=256)
    parser.add_argument("--sparsity-every", type=int, default=1, help="r: k grows every r iterations")
    parser.add_argument("--repeats", type=int, default=1, help="runs of our solver per level (median time)")
    parser.add_argument("--no-loop", action="store_true", help="skip the slow frame-wise loop")
    parser.add_argument("--survey-dir", type=Path, help="a checkout of rajmic/declipping2020_codes: reproduce its "
                        "per-excerpt A-SPADE dSDR with its settings instead (see the module docstring)")
    parser.add_argument("--excerpts", nargs="+", default=list(SURVEY_EXCERPTS),
                        help="with --survey-dir: the excerpts to check (default all ten)")
    parser.add_argument("--rnonlin", action="store_true", help="with --survey-dir: also compare R_nonlin of our "
                        "restorations with the survey's (out-of-sample check of R_nonlin's calibration)")
    parser.add_argument("--tolerance-db", type=float, default=0.01,
                        help="with --survey-dir: largest allowed |dSDR - survey| in dB (default 0.01)")
    args = parser.parse_args()
    if args.survey_dir is not None:
        if not args.survey_dir.is_dir():
            fail(f"{args.survey_dir}: not a folder")
        sys.exit(survey_check(args))

    if args.wav is None:
        clean = demo_guitar(args.seconds, RATE, seed=args.seed, peak=args.peak).astype(np.float64)
        rate, source = RATE, f"demo guitar (seed {args.seed}, peak {args.peak:g})"
    else:
        audio, rate = sf.read(args.wav, dtype="float64", always_2d=True)
        clean, source = audio.T, str(args.wav)
    seconds = clean.shape[-1] / rate
    options = {"window_samples": args.window_samples, "hop_samples": args.hop_samples,
               "sparsity_every": args.sparsity_every}
    print(f"A-SPADE on {seconds:.3g} s of {rate} Hz {source}, one core; window {args.window_samples}, hop "
          f"{args.hop_samples}, redundancy 2, s = 1, r = {args.sparsity_every}, eps = 0.1")
    header = (f"{'in SDR':>6} {'clip %':>6} | {'ours xRT':>8} {'dSDR':>6} {'dSDR_c':>6} {'iters':>6} | "
              f"{'loop xRT':>8} {'dSDR':>6} {'ratio':>6} {'max|diff|':>9}")
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
            row += f"{'-':>8} {'-':>6} {'-':>6} {'-':>9}"
        else:
            loop_seconds, loop = one_core.timed(lambda c=clipped: aspade_framewise(c, **options), 1, warm_up=False)
            row += (f"{seconds / loop_seconds:8.2f} {delta_sdr_db(clean, clipped, loop):6.2f} "
                    f"{loop_seconds / ours_seconds:6.2f} {float(np.max(np.abs(ours - loop))):9.2e}")
        print(row, flush=True)


if __name__ == "__main__":
    main()
