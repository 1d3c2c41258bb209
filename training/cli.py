"""The ``dedistort`` command line."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import soundfile as sf

from effects import sdr_db, si_sdr_db


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dedistort", description="Train, evaluate and run distortion-"
                                     "removal models (Imort et al. 2022).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
