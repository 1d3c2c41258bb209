"""The ``dedistort`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from effects import sdr_db, si_sdr_db

from .methods import BUILTIN_METHODS


def _load(path: str) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(path, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{path}: not readable as audio ({error})") from None
    if audio.size == 0:
        raise ValueError(f"{path}: contains no samples")
    return audio.T, rate


def _cmd_score(args: argparse.Namespace) -> int:
    reference, reference_rate = _load(args.reference)
    estimate, estimate_rate = _load(args.estimate)
    if reference_rate != estimate_rate:
        raise ValueError(f"sample rates differ: {args.reference} is {reference_rate} Hz, "
                         f"{args.estimate} is {estimate_rate} Hz")
    if reference.shape != estimate.shape:
        raise ValueError(f"shapes differ: {args.reference} is {reference.shape}, "
                         f"{args.estimate} is {estimate.shape} (channels, samples)")
    print(f"SDR    {sdr_db(reference, estimate):8.3f} dB")
    print(f"SI-SDR {si_sdr_db(reference, estimate):8.3f} dB")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from . import models

    print(f"{'model':10s} {'paper':>12s} {'original':>12s}   parameters for {args.channels} channel(s)")
    for name in models.MODELS:
        counts = [models.parameter_count(models.create(name, size, args.channels)) for size in models.SIZES]
        print(f"{name:10s} {counts[0]:12,d} {counts[1]:12,d}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    config = TrainConfig(data=args.data, model=args.model, size=args.size, epochs=args.epochs,
                         batch_size=args.batch_size, learning_rate=args.learning_rate, loss=args.loss,
                         patience_epochs=args.patience, crop_seconds=args.crop_seconds, seed=args.seed,
                         num_workers=args.workers, loader=args.loader, max_batches_per_epoch=args.max_batches,
                         precision=args.precision, max_minutes=args.max_minutes)
    out = args.out or f"runs/{args.model}-{args.size}"
    _check_verbosity(args)
    if args.verbose:
        import dataclasses

        print(f"training into {out} with settings:\n"
              + json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True, default=str))
    summary = train(config, out, resume=args.resume, device=args.device, progress=not args.quiet)
    if summary.get("world_size", 1) > 1 and not _is_rank_zero():
        return 0  # rank 0 reports for the whole torchrun job
    best = summary.get("best_valid_si_sdr_db")  # None (null in summary.json) when no epoch gave a finite score
    print(f"{out}: best validation SI-SDR {'none' if best is None else f'{best:.2f} dB'} at epoch "
          f"{summary['best_epoch']}; checkpoint {summary.get('checkpoint', 'none')}; {summary['stopped']}")
    return 0


def _check_verbosity(args: argparse.Namespace) -> None:
    if args.quiet and args.verbose:
        raise ValueError("give -q/--quiet or -v/--verbose, not both")


def _print_scores(summary: dict, output: str) -> None:
    """-v: the method's description and each example's output scores, from the results just written."""
    import pyarrow.parquet as pq

    print(f"{summary['method']}: {summary.get('description') or 'a trained checkpoint'}")
    for row in pq.read_table(Path(output) / "scores.parquet").to_pylist():
        scores = ", ".join(f"{k[len('output_'):]} {v:.3f}" for k, v in row.items()
                           if k.startswith("output_") and isinstance(v, float))
        print(f"  {row['key']}: {scores}")


def _is_rank_zero() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _method_of(args: argparse.Namespace) -> str:
    if bool(args.checkpoint) == bool(args.method):
        raise ValueError("give exactly one of --checkpoint CKPT and --method NAME")
    return args.checkpoint or args.method


def _aspade_options(args: argparse.Namespace) -> dict:
    return {"window_samples": args.aspade_window, "hop_samples": args.aspade_hop, "epsilon": args.aspade_epsilon}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .methods import resolve
    from .metrics import parse_metric_names

    _check_verbosity(args)
    metrics = parse_metric_names(args.metrics)
    spec = _method_of(args)
    method = resolve(spec, aspade_options=_aspade_options(args)) if spec == "aspade" else spec
    summary = evaluate(method, args.data, args.split, args.output, metrics=metrics, vggish_path=args.vggish,
                       batch_size=args.batch_size, workers=args.workers, save_examples=args.save_examples,
                       progress=not args.quiet)
    if args.verbose:
        _print_scores(summary, args.output)
    print(f"{summary['method']} on {summary['examples']} {args.split} examples (median [q1, q3]):")
    for column, values in summary["metrics"].items():
        print(f"  {column:28s} {values['median']:8.3f} [{values['q1']:.3f}, {values['q3']:.3f}]")
    for role, value in summary.get("fad", {}).items():
        print(f"  FAD of the {role} set{'':14s} {value:8.3f}")
    speed = summary["speed"]
    print(f"{summary['method']} ran at {speed['times_real_time']:,.1f}x real time on {speed['device']}")
    print(f"wrote {args.output}/scores.parquet, {args.output}/summary.json and {args.output}/audio/")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .evaluate import run_file

    spec = _method_of(args)
    report = run_file(args.input, args.output, spec, args.chunk_seconds, args.overlap_seconds,
                      aspade_options=_aspade_options(args) if spec == "aspade" else None, progress=not args.quiet)
    print(f"{args.input} -> {args.output}: {report['audio_seconds']:.1f} s of audio in {report['wall_seconds']:.2f} s, "
          f"{report['times_real_time']:,.1f}x real time")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    names = {}
    for item in args.name:
        method, sep, label = item.partition("=")
        if not sep or not method.strip() or not label.strip():
            raise ValueError(f"--name takes METHOD=LABEL (e.g. demucs-paper=Demucs), got {item!r}")
        names[method.strip()] = label.strip()
    written = write_report(args.results, args.output, example_key=args.example, display_names=names)
    for path in written:
        print(f"wrote {path}")
    return 0


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="a .pt checkpoint written by dedistort train")
    parser.add_argument("--method", choices=BUILTIN_METHODS,
                        help="a baseline instead of a checkpoint: aspade (A-SPADE declipper), irm (ideal ratio mask "
                             "oracle; evaluate only), input (the distorted input unchanged)")
    parser.add_argument("--aspade-window", type=int, default=1024, help="A-SPADE window in samples (default 1024)")
    parser.add_argument("--aspade-hop", type=int, default=256, help="A-SPADE hop in samples (default 256)")
    parser.add_argument("--aspade-epsilon", type=float, default=0.1,
                        help="A-SPADE stopping tolerance on the residual norm (default 0.1)")




def _toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dedistort")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dedistort", description="Train, evaluate and run distortion-"
                                     "removal models (Imort et al. 2022).")
    parser.add_argument("--version", action="version", version=f"dedistort {_toolkit_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import models
    from .evaluate import DEFAULT_METRICS
    from .metrics import METRIC_NAMES

    listing = commands.add_parser("models", help="the models and their parameter counts in both sizes")
    listing.add_argument("--channels", type=int, default=1, help="audio channels (default 1)")
    listing.set_defaults(run=_cmd_models)

    train = commands.add_parser("train", help="train a model on a datagen corpus (the paper's procedure)")
    train.add_argument("--data", required=True,
                       help="a datagen build output folder, or its URL (s3://, gs://, az://, https://)")
    train.add_argument("--model", default="demucs", choices=list(models.MODELS), help="model (default demucs)")
    train.add_argument("--size", default="paper", choices=models.SIZES,
                       help="paper (Wave-U-Net and Demucs at ~1 M parameters) or original (default paper)")
    train.add_argument("--epochs", type=int, default=1000, help="passes over the training split (default 1000)")
    train.add_argument("--batch-size", type=int, default=16,
                       help="examples per step (default 16); under torchrun the global batch, split over the ranks")
    train.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the model's original)")
    train.add_argument("--loss", default="si-sdr", choices=("si-sdr", "sdr"), help="negative SI-SDR or SDR")
    train.add_argument("--patience", type=int, default=150,
                       help="epochs without validation improvement before the learning rate × 0.1 (default 150)")
    train.add_argument("--crop-seconds", type=float, help="training crop length in s (default 2; 2.3 for crafx)")
    train.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    train.add_argument("--workers", type=int, default=2,
                       help="parallel readers of the training data (default 2; 0 reads in the training loop)")
    train.add_argument("--loader", default="threads", choices=("threads", "processes"),
                       help="readers as threads of the training process (default: no copies between processes) "
                            "or as DataLoader worker processes")
    train.add_argument("--max-batches", type=int, default=0, help="cap batches per epoch, for trials (0: none)")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu); under "
                                        "torchrun, cuda gives each rank cuda:LOCAL_RANK")
    train.add_argument("--precision", default="32", choices=("32", "bf16", "16-mixed"),
                       help="32: float32; bf16: bfloat16 autocast (CPU or GPU); 16-mixed: float16 autocast with "
                            "gradient scaling (CUDA only). Weights stay float32 (default 32)")
    train.add_argument("--max-minutes", type=float, default=0.0,
                       help="time budget in minutes for this invocation: training stops after the epoch that "
                            "crosses it, with its checkpoint written (continue with --resume; default 0: none)")
    train.add_argument("--out", help="run folder (default runs/MODEL-SIZE)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.add_argument("-v", "--verbose", action="store_true", help="also print the resolved training settings")
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint or a baseline on every example of a split")
    _add_method_arguments(evaluate)
    evaluate.add_argument("--data", required=True,
                       help="a datagen build output folder, or its URL (s3://, gs://, az://, https://)")
    evaluate.add_argument("--split", default="test", choices=("train", "valid", "test"), help="(default test)")
    evaluate.add_argument("-o", "--output", default="results", help="results folder (default results)")
    evaluate.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                          help=f"comma-separated, from {', '.join(METRIC_NAMES)} "
                               f"(default {','.join(DEFAULT_METRICS)}); SDRs in dB, PEAQ as ODG in [-4, 0], "
                               "R_nonlin (our calibrated variant of Tan et al. 2004) in [0, 1], FAD per set")
    evaluate.add_argument("--vggish", help="VGGish weights for FAD (a state dict such as torchvggish's "
                                           "vggish-10086976.pth); nothing is downloaded")
    evaluate.add_argument("--batch-size", type=int, default=4, help="examples per batch (default 4)")
    evaluate.add_argument("--workers", type=int, help="processes scoring the metrics (default: one per core)")
    evaluate.add_argument("--save-examples", type=int, default=3,
                          help="examples written as WAV for the report's spectrograms (default 3)")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("-v", "--verbose", action="store_true",
                          help="also print the method's description and every example's scores")
    evaluate.set_defaults(run=_cmd_evaluate)

    run = commands.add_parser("run", help="restore one audio file (any length and sample rate)")
    run.add_argument("input", help="distorted audio file")
    run.add_argument("-o", "--output", required=True, help="restored file: .wav (32-bit float) or .flac (24-bit)")
    _add_method_arguments(run)
    run.add_argument("--chunk-seconds", type=float, default=10.0, help="chunk length in s (default 10)")
    run.add_argument("--overlap-seconds", type=float, default=1.0, help="cross-fade between chunks in s (default 1)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar over the chunks")
    run.set_defaults(run=_cmd_run)

    report = commands.add_parser("report", help="the paper's figures and tables from evaluate results")
    report.add_argument("results", nargs="+", help="results folders written by dedistort evaluate")
    report.add_argument("-o", "--output", default="report", help="report folder (default report)")
    report.add_argument("--example", help="key of the example whose spectrograms to draw (default: the first "
                                          "one every result saved)")
    report.add_argument("--name", action="append", default=[], metavar="METHOD=LABEL",
                        help="how a method is shown in the figures, e.g. demucs-paper='Demucs v2' (repeatable; "
                             "defaults: Demucs, Wave-U-Net, CRAFx, UMX, A-SPADE, IRM, input)")
    report.set_defaults(run=_cmd_report)

    score = commands.add_parser("score", help="SDR and SI-SDR (dB) of an estimate against a clean reference")
    score.add_argument("reference", help="clean reference audio file")
    score.add_argument("estimate", help="processed or restored audio file, same length and rate")
    score.set_defaults(run=_cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"dedistort {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
