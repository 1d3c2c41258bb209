"""The dataset card: ``OUT/README.md`` with YAML front matter that Hugging Face ``datasets`` understands.

The front matter declares a WebDataset repository (one config, one ``data_files`` entry per split that
has shards); the body says what the corpus is, how it was made, how big it is, how to load, verify
and rebuild it. The text is a pure function of ``info`` (no dates), so rebuilding gives the same card.
The YAML is written by hand to avoid a PyYAML dependency; every string goes through :func:`_yaml_string`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .dataset_info import atomic_write_bytes
from .shards import SPLITS

__all__ = ["HF_SPLIT_NAMES", "render_card", "write_card"]

#: Our split folder -> the split name Hugging Face expects.
HF_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}

_TAGS = ("audio", "distortion", "declipping", "webdataset")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Hugging Face's size_categories buckets: (upper bound on examples, label).
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def _yaml_string(value: object) -> str:
    """A YAML scalar for ``value``: plain when unambiguous, else double-quoted (JSON escapes are valid YAML)."""
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "y", "n"):
        return text
    return json.dumps(text, ensure_ascii=True)


def _hours(hours: float) -> str:
    # Two decimals hide a small corpus entirely; four significant digits keep it visible.
    hours = float(hours)
    return f"{hours:,.2f}" if hours >= 1 else f"{hours:.4g}"


def _ordered_splits(splits: dict) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(s for s in splits if s not in SPLITS)


def _size_category(examples: int) -> str:
    for bound, label in _SIZE_CATEGORIES:
        if examples < bound:
            return label
    return "n>1T" if examples >= 10**12 else "1B<n<10B"


def _front_matter(info: dict, splits: dict) -> list[str]:
    lines = ["---", f"pretty_name: {_yaml_string(info.get('name', 'dataset'))}",
             f"license: {_yaml_string(info.get('license', 'other'))}",
             "task_categories:", "- audio-to-audio",
             f"tags: [{', '.join(_TAGS)}]"]
    total = sum(int(entry.get("examples", 0)) for entry in splits.values())
    lines += ["size_categories:", f"- {_yaml_string(_size_category(total))}"]
    with_shards = [s for s in _ordered_splits(splits) if int(splits[s].get("shards", 0)) > 0]
    if with_shards:
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for split in with_shards:
            lines += [f"  - split: {_yaml_string(HF_SPLIT_NAMES.get(split, split))}",
                      f"    path: {json.dumps(f'{split}/*.tar')}"]
    lines.append("---")
    return lines


def _member_layout(info: dict) -> tuple[list[str], str]:
    """Markdown lines describing the members, and the target's extension (e.g. "target.flac")."""
    members = info.get("members") or {"input": "KEY.input.flac", "target": "KEY.target.flac", "metadata": "KEY.json"}
    meaning = {"input": "the distorted signal (the model's input)",
               "target": "the clean signal (the model's target)",
               "metadata": "this example's manifest row as JSON (source, offsets, effect parameters, SDR, checksums)"}
    lines = []
    for role in sorted(members, key=lambda r: (list(meaning).index(r) if r in meaning else len(meaning), r)):
        name = members[role]
        if name is None:
            if role == "input":
                lines.append("- no `KEY.input.*`: inputs are rendered at training time from the targets")
            continue
        lines.append(f"- `{name}`: {meaning.get(role, role)}")
    target = members.get("target") or "KEY.target.flac"
    return lines, target.partition(".")[2] or "target.flac"


def _loading_section(info: dict, splits: dict, target_extension: str) -> list[str]:
    """The "Loading" section: two snippets that run as written from this card's folder (the tests execute them
    verbatim from a built card), in a CPU-only environment: webdataset with our soundfile decode handler, and
    Hugging Face datasets with the audio members as binary features (datasets >= 4 would decode audio through
    torchcodec, which a CPU-only torch cannot load)."""
    with_shards = [s for s in _ordered_splits(splits) if int(splits[s].get("shards", 0)) > 0] or ["train"]
    first = with_shards[0]
    members = info.get("members") or {"input": "KEY.input.flac", "target": "KEY.target.flac"}
    audio = [m.partition(".")[2] for m in (members.get("input"), members.get("target")) if m]
    hf_files = ", ".join(f'"{HF_SPLIT_NAMES.get(s, s)}": f"{{OUT}}/{s}/*.tar"' for s in with_shards)
    binary = ", ".join(f'"{name}": Value("binary")' for name in audio)
    hf_first = HF_SPLIT_NAMES.get(first, first)
    return ["## Loading", "",
            "Both snippets run as written from the folder holding this card (or set `OUT` to it); they need "
            "`pip install dedistort` for its soundfile-based decoder (`manifests.wds_audio`, "
            "`manifests.decode_audio`), which returns float32 audio shaped `(channels, samples)` and the sample "
            "rate in Hz. No torchaudio or torchcodec is needed.", "",
            "With webdataset:", "", "```python", "import glob", "",
            "import webdataset as wds", "from manifests import wds_audio", "",
            'OUT = "."  # the folder holding this card',
            f'shards = sorted(glob.glob(f"{{OUT}}/{first}/*.tar"))',
            "dataset = wds.WebDataset(shards, shardshuffle=False).decode(wds_audio)",
            "sample = next(iter(dataset))",
            f'target, sample_rate = sample["{target_extension}"]  # float32 (channels, samples), Hz',
            'print(sample["__key__"], target.shape, sample_rate, sample["json"]["parameters"])', "```", "",
            "With Hugging Face datasets (3.x and later): the audio members are loaded as bytes and decoded with "
            "`decode_audio`. datasets 3 also loads the shards without `features=` (decoding audio with "
            "soundfile); datasets 4 and later decode audio with torchcodec, which fails with a CPU-only torch, "
            "so declare the audio members binary as here. The metadata's column types come from the manifest.",
            "", "```python", "import pyarrow.parquet as pq", "from datasets import Features, Value, load_dataset",
            "", "from manifests import decode_audio", "",
            'OUT = "."  # the folder holding this card',
            f'metadata = Features.from_arrow_schema(pq.read_schema(f"{{OUT}}/manifest/{first}.parquet"))',
            f'features = Features({{{binary}, "json": dict(metadata),',
            '                     "__key__": Value("string"), "__url__": Value("string")})',
            f"data_files = {{{hf_files}}}",
            'dataset = load_dataset("webdataset", data_files=data_files, features=features)',
            f'example = dataset["{hf_first}"][0]',
            f'target, sample_rate = decode_audio(example["{target_extension}"])  # float32 (channels, samples), Hz',
            'print(example["__key__"], target.shape, sample_rate, example["json"]["parameters"])', "```", ""]


def render_card(info: dict) -> str:
    """The card's full text for ``info`` (dataset.json's content plus a ``description``)."""
    name = str(info.get("name", "dataset"))
    config = info.get("config") or {}
    splits = info.get("splits") or {}
    versions = info.get("versions") or {}
    seed = info.get("seed", config.get("seed"))
    source = info.get("source", config.get("source", "unknown"))
    lines = _front_matter(info, splits)
    lines += ["", f"# {name}", "", str(info.get("description") or "A corpus for removing distortion from music."), ""]

    lines += ["## How it was made", "",
              f"- Effect: `{config.get('effect', info.get('effect', 'unknown'))}`"]
    if "sweep" in config:
        lines.append(f"- Parameter sweep: `{config['sweep']}`")
    if config.get("effect_args"):
        lines.append(f"- Fixed effect parameters: `{json.dumps(config['effect_args'], sort_keys=True)}`")
    if "dry_gain" in config:
        lines.append(f"- Dry gain (clean signal mixed into the input): {config['dry_gain']}")
    online = info.get("online_effect")
    if online:
        lines.append(f"- Online: only clean targets are stored; inputs are made at training time with "
                     f"`{json.dumps(online, sort_keys=True)}`")
    lines.append(f"- Recipe: {'`' + config['recipe'] + '`' if config.get('recipe') else 'none (custom settings)'}")
    lines.append(f"- Seed: {seed}")
    lines.append(f"- Source: {source}")
    for label, field, unit in (("Sample rate", "sample_rate", " Hz"), ("Segment length", "segment_seconds", " s"),
                               ("Codec", "codec", "")):
        if field in config:
            lines.append(f"- {label}: {config[field]}{unit}")
    lines.append(f"- Toolkit: dedistort {versions.get('dedistort', 'unknown')}")
    others = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k != "dedistort")
    if others:
        lines.append(f"- Libraries: {others}")
    if info.get("config_hash"):
        lines.append(f"- Config hash (sha256): `{info['config_hash']}`")
    if "skipped_files" in info:
        lines.append(f"- Source files skipped: {len(info['skipped_files'])} (unreadable, truncated, non-finite, "
                     "implausible header or shorter than one segment; each with its reason in dataset.json, "
                     "`skipped_files`)")
    if config:
        lines += ["", "The full build config (also in `dataset.json`):", "", "```json",
                  json.dumps(config, sort_keys=True, indent=2, ensure_ascii=False), "```"]
    lines.append("")

    lines += ["## Size", "", "| split | examples | shards | hours in | hours out |", "|---|---:|---:|---:|---:|"]
    for split in _ordered_splits(splits):
        entry = splits[split]
        lines.append(f"| {split} | {int(entry.get('examples', 0))} | {int(entry.get('shards', 0))} | "
                     f"{_hours(entry.get('hours_in', 0.0))} | {_hours(entry.get('hours_out', 0.0))} |")
    lines += ["", "Hours in: clean audio read from the sources; hours out: audio stored (each clean segment "
              "can yield several examples).", ""]

    layout, target_extension = _member_layout(info)
    lines += ["## Layout", "",
              "Shards are uncompressed tar files (WebDataset), `SPLIT/NAME-SPLIT-000000.tar`; each example is a "
              "group of members sharing a key (`[a-z0-9-]+`):", "", *layout, "",
              "`manifest/SPLIT.parquet` holds one row per example; `dataset.json` the full config, versions, "
              "counts and checksums.", ""]

    lines += _loading_section(info, splits, target_extension)

    source_arg = "demo" if source == "demo" else "DIR"
    lines += ["## Verifying", "", "```sh", "cd OUT && sha256sum -c SHA256SUMS", "datagen verify OUT", "```", "",
              "`datagen verify` also decodes every member and checks durations, decoded-audio checksums and counts "
              "against the manifests.", "",
              "## Rebuilding", "", "```sh", f"datagen build --from OUT/dataset.json --source {source_arg} --out NEW",
              "```", ""]
    if source_arg == "DIR":
        lines += [f"`DIR` is your own copy of the source recordings ({source}). The rebuild compares every shard "
                  "checksum with this card's `dataset.json`.", ""]
    else:
        lines += ["The rebuild compares every shard checksum with this card's `dataset.json`.", ""]
    return "\n".join(lines)


def write_card(out_dir: str | os.PathLike, info: dict) -> None:
    """Write ``OUT/README.md`` for ``info`` (dataset.json's content plus ``description``), atomically."""
    atomic_write_bytes(Path(out_dir) / "README.md", render_card(info).encode("utf-8"))
