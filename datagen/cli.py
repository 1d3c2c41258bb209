"""The ``datagen`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import soundfile as sf

from effects import effect_names, get_effect

from .apply import apply_file
from .audio_io import AudioFileError, atomic_output


def parse_effect_args(pairs: list[str]) -> dict[str, str]:
    """``["gain_db=30", "colour=20"]`` -> ``{"gain_db": "30", "colour": "20"}``; values are validated later."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--effect-arg expects NAME=VALUE, got {pair!r}")
        values[name.strip()] = value.strip()
    return values


def _describe_effects() -> str:
    lines = []
    for name in effect_names():
        effect = get_effect(name)
        lines.append(f"{name}: {effect.summary}")
        for p in effect.parameters:
            default = "required" if p.default is None else f"default {p.default:g}"
            marker = " (swept by --gains/--sdr)" if p.name == effect.primary else ""
            lines.append(f"    {p.name:10s} {p.range_text():24s} {default:14s} {p.description}{marker}")
    return "\n".join(lines)


def _cmd_effects(args: argparse.Namespace) -> int:
    print(_describe_effects())
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    effect_args = parse_effect_args(args.effect_arg)
    get_effect(args.effect).resolve(effect_args)  # refuse bad parameters before generating anything
    source = args.input
    if source is None:
        from .demo import demo_guitar

        output = Path(args.output)
        source = output.with_name(f"{output.stem}.clean.wav")
        clean = demo_guitar(args.demo_seconds, args.sample_rate, seed=args.seed)
        with atomic_output(source) as temporary:
            sf.write(temporary, clean.T, args.sample_rate, subtype="FLOAT", format="WAV")
        print(f"wrote the clean demo guitar ({args.demo_seconds:g} s) to {source}")
    report = apply_file(source, args.output, args.effect, effect_args, dry_gain=args.dry_gain,
                        progress=not args.quiet)
    if report.compile_seconds > 0.5:
        print(f"compiled the effect's kernels in {report.compile_seconds:.1f} s (once per machine; cached)")
    settings = ", ".join(f"{k}={v:g}" for k, v in {**report.parameters, **report.extras}.items())
    print(f"{report.effect} ({settings}) -> {args.output}: {report.audio_seconds:.1f} s of audio in "
          f"{report.wall_seconds:.2f} s, {report.times_real_time:,.0f}x real time")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datagen", description="Distortion corpora for training "
                                     "de-distortion models (Imort et al. 2022).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("effects", help="list the effects with their parameters, units and ranges")
    listing.set_defaults(run=_cmd_effects)

    apply = commands.add_parser(
        "apply", help="apply one effect to an audio file (or to a generated demo guitar)",
        description="Apply one effect to an audio file. Without INPUT, a synthetic guitar is generated and "
                    "written beside OUTPUT as NAME.clean.wav.\n\n" + _describe_effects(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_argument("input", nargs="?", help="audio file to process (default: the generated demo guitar)")
    apply.add_argument("-o", "--output", required=True, help="output file: .wav (32-bit float) or .flac (24-bit)")
    apply.add_argument("--effect", required=True, choices=effect_names(), help="effect name")
    apply.add_argument("--effect-arg", action="append", default=[], metavar="NAME=VALUE",
                       help="an effect parameter, e.g. gain_db=30 (dB) or colour=20; repeatable")
    apply.add_argument("--dry-gain", type=float, default=0.0, metavar="G",
                       help="add the clean input with this linear weight (Eq. 1 g_dry; default 0: wet only)")
    apply.add_argument("--demo-seconds", type=float, default=10.0, help="demo length in seconds (default 10)")
    apply.add_argument("--sample-rate", type=int, default=16000, help="demo sample rate in Hz (default 16000)")
    apply.add_argument("--seed", type=int, default=0, help="demo seed (default 0)")
    apply.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    apply.set_defaults(run=_cmd_apply)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (AudioFileError, ValueError, TypeError) as error:
        print(f"datagen {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
