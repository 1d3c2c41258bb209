"""The ``datagen`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

import soundfile as sf

from effects import effect_names, get_effect
from manifests.storage import as_path

from .apply import apply_file
from .audio_io import AudioFileError, atomic_output
from .build import BuildError, build
from .config import CODECS, RECIPES, BuildConfig, default_out_name, source_kind
from .executors import default_workers


def parse_effect_args(pairs: list[str]) -> dict[str, str]:
    """``["gain_db=30", "colour=20"]`` -> ``{"gain_db": "30", "colour": "20"}``; values are validated later."""
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--effect-arg expects NAME=VALUE, got {pair!r}")
        if name.strip() in values:  # the last one winning silently would hide a typo
            raise ValueError(f"--effect-arg {name.strip()} given twice ({values[name.strip()]} and {value.strip()})")
        values[name.strip()] = value.strip()
    return values


def _describe_effects() -> str:
    lines = []
    for name in effect_names():
        effect = get_effect(name)
        lines.append(f"{name}: {effect.summary}" + (" [--online: rendered in torch at training time]"
                                                     if effect.online else ""))
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



_SIZE_SUFFIXES = {"k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``"256M"`` -> 268435456 bytes; plain numbers are bytes; suffixes K, M, G are powers of 1024."""
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = _SIZE_SUFFIXES.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _SIZE_SUFFIXES else text
    try:
        return int(float(number) * factor)
    except ValueError:
        raise ValueError(f"--shard-size expects bytes like 500000000, 256M or 1G, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """Defaults, then the recipe, then --from's config, then every flag given explicitly."""
    settings: dict = {}
    if args.from_card:
        from manifests import read_json

        card = read_json(args.from_card)
        settings.update(BuildConfig.from_dict(card["config"]).to_dict())
        published_kind = settings["source"]
        if source_kind(args.source) != published_kind:
            raise ValueError(f"{args.from_card} was built from a {published_kind} source; --source {args.source} "
                             f"is a {source_kind(args.source)} source")
    if args.recipe:
        recipe_effect = RECIPES[args.recipe]["effect"]
        if args.effect is not None and args.effect != recipe_effect:
            raise ValueError(f"--recipe {args.recipe} renders {recipe_effect}, --effect says {args.effect}: "
                             "give one or the other")
        settings.update(RECIPES[args.recipe], recipe=args.recipe, name=args.name or args.recipe)
    explicit = {
        "name": args.name, "source": args.source, "group_by": args.group_by, "sample_rate": args.sample_rate,
        "segment_seconds": args.segment_seconds, "silence_db": args.silence_db, "split_salt": args.split_salt,
        "effect": args.effect, "dry_gain": args.dry_gain, "seed": args.seed, "codec": args.codec,
        "shard_max_examples": args.shard_examples,
    }
    settings.update({k: v for k, v in explicit.items() if v is not None})
    if args.channels is not None:
        settings["keep_channels"] = args.channels == "keep"
    if args.resplit:
        settings["resplit"] = True
    if args.online:
        settings["online"] = True
    if args.splits is not None:
        from .splits import parse_ratios

        settings["split_ratios"] = parse_ratios(args.splits)
    if args.shard_size is not None:
        settings["shard_max_bytes"] = parse_size(args.shard_size)
    if args.gains is not None and args.sdr is not None:
        raise ValueError("give --gains or --sdr, not both")
    sweep = args.gains if args.gains is not None else args.sdr
    if sweep is not None:
        settings["sweep"] = sweep
    if args.effect_arg:
        settings["effect_args"] = parse_effect_args(args.effect_arg)
    effect = get_effect(settings.get("effect", BuildConfig.effect))
    if args.gains is not None and effect.primary != "gain_db":
        raise ValueError(f"--gains sets gain_db, but {effect.name} is swept by {effect.primary}: use --sdr")
    if args.sdr is not None and effect.primary != "sdr_db":
        raise ValueError(f"--sdr sets sdr_db, but {effect.name} is swept by {effect.primary}: use --gains")
    if "effect_args" in settings:
        settings["effect_args"] = {k: effect.parameter(k).validate(v) for k, v in dict(settings["effect_args"]).items()}
    if args.split_file and Path(args.split_file).exists():
        from .splits import read_split_file

        settings["split_assignment"] = read_split_file(args.split_file)
    if args.source is None and not args.from_card and "source" not in settings:
        settings["source"] = "demo"
    return BuildConfig.from_dict(settings).validate()


def _cmd_build(args: argparse.Namespace) -> int:
    if args.from_card and args.source is None:
        raise ValueError("--from rebuilds from your own copy of the sources: give --source DIR too")
    if args.quiet and args.verbose:
        raise ValueError("give -q/--quiet or -v/--verbose, not both")
    config = config_from_args(args)
    # Without --out: out/NAME for a named build or a recipe, else a name from the effect and its settings, so
    # that builds with different settings do not land in one folder.
    named = args.name or args.recipe or args.from_card
    out = as_path(args.out or f"out/{config.name if named else default_out_name(config)}")
    if args.verbose:
        print(f"building {out} with settings:\n{json.dumps(config.to_dict(), indent=2, sort_keys=True)}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers} (omit it to use all "
                         f"{default_workers()} cores)")
    workers = args.workers or default_workers()
    report = build(config, out, workers=workers, dask=args.dask, overwrite=args.overwrite, strict=args.strict,
                   progress=not args.quiet, allow_large=args.allow_large)
    if args.split_file and not Path(args.split_file).exists():
        from manifests import read_json

        from .splits import write_split_file

        write_split_file(args.split_file, read_json(out / "dataset.json")["split_assignment"])
        print(f"froze the split assignment in {args.split_file}")
    shown = len(report.skipped) if args.verbose else 10
    for entry in report.skipped[:shown]:
        print(f"skipped {entry['path']}: {entry['reason']}")
    if len(report.skipped) > shown:
        print(f"... and {len(report.skipped) - 10} more skipped files, listed in {out / 'dataset.json'}")
    total = sum(report.split_hours.values()) or 1.0
    print("splits by duration: " + ", ".join(f"{split} {100 * hours / total:.1f}%"
                                             for split, hours in report.split_hours.items()))
    print(f"{out}: {report.summary()}")
    if args.from_card:
        from .rebuild import compare_with_card

        problems = compare_with_card(args.from_card, out)
        for problem in problems:
            print(f"mismatch: {problem}")
        if problems:
            return 1
        print(f"{out} matches {args.from_card}: every shard checksum is identical")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from manifests import verify_dataset

    problems = verify_dataset(args.out)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.out}: {len(problems)} problems")
        return 1
    print(f"{args.out}: checksums, members, counts and durations all verified")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from .inspect_stats import check_plotting, corpus_stats, format_stats, plot_input_sdr

    if args.plot:
        check_plotting()  # before printing: the error is the last line, not lost above the table
    print(format_stats(corpus_stats(args.out)))
    if args.plot:
        plot_input_sdr(args.out, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect_stats import inspect_example

    row, written = inspect_example(args.out, args.key, args.output_dir)
    print(json.dumps(row, indent=2, sort_keys=True))
    for path in written:
        print(f"wrote {path}")
    return 0


def _add_build(commands) -> None:
    workers = default_workers()
    build_parser = commands.add_parser(
        "build", help="build a sharded corpus of distorted/clean pairs (default: the demo guitar, overdrive)",
        description="Build a reproducible WebDataset corpus: clean audio is resampled, cut into segments, split "
                    "80/10/10 by group, and rendered through an effect at several settings. Same sources, config and "
                    "seed give byte-identical output for any --workers and executor. Interrupted builds resume.")
    source = build_parser.add_argument_group("sources")
    source.add_argument("--source", help="DIR (any folder of audio, recursive), signaltrain:DIR, idmt:DIR, or "
                        "omitted for the built-in demo guitar corpus; DIR may be a URL (s3://bucket/audio, "
                        "downloaded for the build)")
    source.add_argument("--group-by", choices=("file", "parent"), help="split unit: each file, or each folder "
                        "(default file)")
    source.add_argument("--resplit", action="store_true", help="ignore a layout's own split (SignalTrain)")
    source.add_argument("--sample-rate", type=int, help="output sample rate in Hz (default 16000)")
    source.add_argument("--channels", choices=("mono", "keep"), help="mix to mono (default) or keep channels")
    source.add_argument("--segment-seconds", type=float, help="segment length in seconds (default 10)")
    source.add_argument("--silence-db", type=float, help="drop segments whose RMS is below this, dBFS (default -60)")
    splits = build_parser.add_argument_group("splits")
    splits.add_argument("--splits", help="train:valid:test proportions (default 80:10:10)")
    splits.add_argument("--split-salt", help="salt of the stable hash that assigns groups (default dedistort)")
    splits.add_argument("--split-file", help="JSON {group: split}: used if it exists, else written after the build")
    effect = build_parser.add_argument_group("effect")
    effect.add_argument("--recipe", choices=sorted(RECIPES), help="the paper's settings: " + "; ".join(
        f"{k}: {v['effect']} {v['sweep']}" + (" online" if v.get("online") else "")
        + (f" dry {v['dry_gain']}" if v.get("dry_gain") else "") for k, v in RECIPES.items()))
    effect.add_argument("--effect", choices=effect_names(), help="effect (default overdrive; see datagen effects)")
    effect.add_argument("--gains", help="gain_db per segment: LOW:HIGH:COUNT evenly spaced (default 20:50:5), "
                        "uniform:LOW:HIGH:COUNT random, or a list 20,30,40 (dB)")
    effect.add_argument("--sdr", help="sdr_db for clip-sdr: a list like 1,3,5,7,10,15,20 or uniform:1:20:N (dB)")
    effect.add_argument("--effect-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="another effect parameter, e.g. colour=20; repeatable")
    effect.add_argument("--dry-gain", type=float, help="superimpose the clean signal with this linear weight")
    effect.add_argument("--online", action="store_true", help="clean-only shards; the effect distribution is "
                        "recorded for rendering at training time")
    effect.add_argument("--seed", type=int, help="seed of every random draw (default 0)")
    output = build_parser.add_argument_group("output")
    output.add_argument("--out", help="output folder, or a URL: s3://, gs://, az:// (built locally, then uploaded; "
                        "see README, Object storage) (default out/NAME)")
    output.add_argument("--name", help="dataset name used in shard file names (default dedistort or the recipe)")
    output.add_argument("--codec", choices=sorted(CODECS), help="audio format in the shards (default flac24)")
    output.add_argument("--shard-size", help="maximum shard size in bytes, e.g. 256M (default 256M)")
    output.add_argument("--shard-examples", type=int, help="maximum examples per shard (default: no cap)")
    output.add_argument("--overwrite", action="store_true", help="replace an earlier build with another config: "
                        "the new build is written beside it and replaces it once complete; only files the earlier "
                        "build's records list are deleted (a folder holding anything else is refused)")
    output.add_argument("--allow-large", action="store_true", help="build plans of more than 10 million examples, "
                        "1000 variants per segment or 1000x the sources' size (refused as likely mistakes)")
    output.add_argument("--from", dest="from_card", metavar="DATASET_JSON",
                        help="rebuild a published release from its dataset.json and check its checksums")
    run = build_parser.add_argument_group("execution")
    run.add_argument("--workers", type=int, help=f"local worker processes (default: all {workers} cores)")
    run.add_argument("--dask", metavar="local|tcp://HOST:PORT", help="run on Dask: a LocalCluster, or a scheduler")
    run.add_argument("--strict", action="store_true", help="fail on the first unreadable file instead of skipping")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also print the resolved settings, the output folder and every skipped file")
    build_parser.set_defaults(run=_cmd_build)

    verify = commands.add_parser("verify", help="check a corpus: checksums, every member decodes, counts, durations")
    verify.add_argument("out", help="the build's output folder, or its URL (s3://, gs://, az://, https://)")
    verify.set_defaults(run=_cmd_verify)
    stats = commands.add_parser("stats", help="hours and examples per split and per gain/SDR; input-SDR spread")
    stats.add_argument("out", help="the build's output folder, or its URL (s3://, gs://, az://, https://)")
    stats.add_argument("--plot", metavar="FILE.png", help="also draw the input-SDR histogram")
    stats.set_defaults(run=_cmd_stats)
    inspect = commands.add_parser("inspect", help="print one example's metadata; write its input and target")
    inspect.add_argument("out", help="the build's output folder, or its URL (s3://, gs://, az://, https://)")
    inspect.add_argument("key", help="the example's key (see the manifests or datagen stats)")
    inspect.add_argument("-o", "--output-dir", help="write KEY.input.wav and KEY.target.wav here")
    inspect.set_defaults(run=_cmd_inspect)

def _toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dedistort")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datagen", description="Distortion corpora for training "
                                     "de-distortion models (Imort et al. 2022).")
    parser.add_argument("--version", action="version", version=f"datagen (dedistort) {_toolkit_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_build(commands)

    from .export_lhotse import add_export_parser

    add_export_parser(commands)
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


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so the build unwinds (workers stopped, temporary files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    with_handler = threading.current_thread() is threading.main_thread()
    if with_handler:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    hint = "; finished shards are kept: rerun the same command to resume" if args.command == "build" else ""
    try:
        return args.run(args)
    except (AudioFileError, BuildError, ValueError, TypeError, RuntimeError) as error:
        print(f"datagen {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"datagen {args.command}: error: {error.filename or ''}{': ' if error.filename else ''}"
              f"{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"datagen {args.command}: interrupted (SIGINT){hint}", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"datagen {args.command}: stopped ({signal.Signals(stop.signum).name}){hint}", file=sys.stderr)
        return 128 + stop.signum
    finally:
        if with_handler:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
