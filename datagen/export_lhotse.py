"""``datagen export lhotse OUT DIR``: a built corpus as a Lhotse CutSet, for Lhotse and NeMo's audio-to-audio data.

One cut per example: the distorted input is the cut's ``recording`` and the clean target its custom
``target_recording`` (Lhotse's convention for paired audio, read with
``collate_audio(cuts, recording_field="target_recording")``); every manifest value (effect, its parameters
and extras as separate fields, dry gain, input SDRs, source and group ids, offsets, checksums) is a custom
field of the cut. Written with lhotse itself, twice per split:

- ``DIR/cuts_SPLIT.jsonl.gz``: a CutSet manifest whose recordings are FLAC files under
  ``DIR/audio/SPLIT/`` (our members, copied byte for byte; paths are absolute, so move the folder with
  ``CutSet.with_recording_path_prefix`` or use the Shar form);
- ``DIR/shar/SPLIT/``: Lhotse Shar (``cuts.NNNNNN.jsonl.gz``, ``recording.NNNNNN.tar``,
  ``target_recording.NNNNNN.tar``), self-contained, read with ``CutSet.from_shar(in_dir=DIR/shar/SPLIT)``.

The audio is never re-encoded (Lhotse's own Shar writer would decode and re-encode it, through torchaudio),
so the samples Lhotse reads are exactly those of the corpus. Online corpora (``--online``) hold no inputs and
are refused.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from manifests import DATASET_JSON, ManifestError, read_json, read_manifests, read_shard

#: Cuts per Shar shard (Lhotse's default is 1000).
SHAR_SHARD_SIZE = 1000
#: Manifest columns that become the cut itself rather than custom fields.
_STRUCTURAL = ("key", "parameters", "extras")


def _custom_fields(row: dict) -> dict:
    """Every manifest value as a custom field: parameters and extras flattened (``gain_db``, ``colour`` ...)."""
    custom = {k: v for k, v in row.items() if k not in _STRUCTURAL}
    parameters = json.loads(row.get("parameters") or "{}")
    extras = json.loads(row.get("extras") or "{}")
    custom.update(parameters)
    # An extra measured under a parameter's name (clip-sdr's equivalent gain_db) keeps a prefix.
    custom.update({(f"extra_{k}" if k in parameters else k): v for k, v in extras.items()})
    custom["parameters"], custom["extras"] = parameters, extras
    return custom


def export_lhotse(out_dir: str | os.PathLike, dest: str | os.PathLike, splits: list[str] | None = None,
                  shard_size: int = SHAR_SHARD_SIZE, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the CutSets of ``out_dir`` (a ``datagen build`` folder) to ``dest``; returns cuts per split.

    Args:
        out_dir: the corpus.
        dest: the export folder (created; files of an earlier export are replaced).
        splits: which splits (default: all that have examples).
        shard_size: cuts per Shar shard.
        progress: called with the number of examples done after each one.
    """
    from lhotse import AudioSource, CutSet, MonoCut, MultiCut, Recording, fastcopy
    from lhotse.shar.utils import to_shar_placeholder
    from lhotse.shar.writers import JsonlShardWriter, TarWriter

    out_dir, dest = Path(out_dir), Path(dest).resolve()
    card = read_json(out_dir / DATASET_JSON)
    if card.get("online_effect") or not (card.get("members") or {}).get("input", True):
        raise ValueError(f"{out_dir}: an online corpus holds no inputs (they are rendered at training time); "
                         "export a corpus built without --online")
    manifests = read_manifests(out_dir)
    chosen = splits or [s for s in ("train", "valid", "test") if manifests.get(s)]
    counts = {}
    for split in chosen:
        rows = {r["key"]: r for r in manifests.get(split) or []}
        if not rows:
            raise ValueError(f"{out_dir}: split {split!r} has no examples")
        audio_dir = dest / "audio" / split
        shar_dir = dest / "shar" / split
        audio_dir.mkdir(parents=True, exist_ok=True)
        shar_dir.mkdir(parents=True, exist_ok=True)
        for stale in shar_dir.glob("*.*"):
            stale.unlink()
        cuts = []
        writers = {"cuts": JsonlShardWriter(f"{shar_dir}/cuts.%06d.jsonl.gz", shard_size=shard_size),
                   "recording": TarWriter(f"{shar_dir}/recording.%06d.tar", shard_size=shard_size),
                   "target_recording": TarWriter(f"{shar_dir}/target_recording.%06d.tar", shard_size=shard_size)}
        for writer in writers.values():
            writer.__enter__()
        try:
            for shard in sorted({r["shard"] for r in rows.values()}):
                for member in read_shard(out_dir / shard):
                    row = rows.get(member.key)
                    if row is None:
                        raise ManifestError(f"{out_dir / shard}: {member.key} is not in manifest/{split}.parquet")
                    recordings = {}
                    for role, field in (("input", "recording"), ("target", "target_recording")):
                        name = next((n for n in member.files if n.startswith(f"{role}.")), None)
                        if name is None:
                            raise ManifestError(f"{out_dir / shard}: {member.key} has no {role} member")
                        path = audio_dir / f"{member.key}.{name}"
                        tmp = path.with_name(path.name + ".tmp")
                        tmp.write_bytes(member.files[name])
                        os.replace(tmp, path)
                        channels = int(row["channels"])
                        samples = round(float(row["duration_seconds"]) * int(row["sample_rate"]))
                        recordings[field] = (Recording(
                            id=f"{member.key}-{role}", sources=[AudioSource("file", list(range(channels)), str(path))],
                            sampling_rate=int(row["sample_rate"]), num_samples=samples,
                            duration=samples / int(row["sample_rate"])), member.files[name], name.rpartition(".")[2])
                    recording = recordings["recording"][0]
                    custom = {**_custom_fields(row), "target_recording": recordings["target_recording"][0]}
                    if recording.num_channels == 1:
                        cut = MonoCut(member.key, 0.0, recording.duration, 0, recording=recording, custom=custom)
                    else:
                        cut = MultiCut(member.key, 0.0, recording.duration, recording.channel_ids,
                                       recording=recording, custom=custom)
                    cuts.append(cut)
                    # The Shar copy: each audio field's tar holds KEY.EXT (our bytes) and KEY.json (its manifest
                    # with a placeholder source), as lhotse's AudioTarWriter lays it out.
                    placeholders = {}
                    for field, (manifest, data, extension) in recordings.items():
                        placeholders[field] = to_shar_placeholder(manifest, cut)
                        writers[field].write(f"{cut.id}.{extension}", io.BytesIO(data))
                        writers[field].write(f"{cut.id}.json", io.BytesIO(
                            json.dumps(placeholders[field].to_dict()).encode()), count=False)
                    writers["cuts"].write(fastcopy(cut, recording=placeholders["recording"], custom={
                        **custom, "target_recording": placeholders["target_recording"]}))
                    if progress:
                        progress(1)
        finally:
            for writer in writers.values():
                writer.close()
        missing = sorted(set(rows) - {c.id for c in cuts})
        if missing:
            raise ManifestError(f"{out_dir}: {len(missing)} examples of manifest/{split}.parquet are in no shard "
                                f"(first: {missing[0]})")
        CutSet.from_cuts(sorted(cuts, key=lambda c: c.id)).to_file(dest / f"cuts_{split}.jsonl.gz")
        counts[split] = len(cuts)
    return counts


def add_export_parser(commands) -> None:
    """``datagen export lhotse OUT DIR`` (hooked into datagen's subcommands)."""
    export = commands.add_parser(
        "export", help="export a corpus for another toolkit: lhotse (CutSet manifests and Lhotse Shar)",
        description="Write the corpus OUT as Lhotse CutSets in DIR: cuts_SPLIT.jsonl.gz (recordings are FLAC files "
                    "under DIR/audio) and DIR/shar/SPLIT (Lhotse Shar). The input is each cut's recording, the clean "
                    "target its custom 'target_recording'; every manifest value is a custom field. Needs the "
                    "'lhotse' extra.")
    export.add_argument("format", choices=("lhotse",), help="target toolkit")
    export.add_argument("out", help="the build's output folder")
    export.add_argument("dest", metavar="DIR", help="export folder (created)")
    export.add_argument("--splits", help="comma-separated splits (default: all with examples)")
    export.add_argument("--shard-size", type=int, default=SHAR_SHARD_SIZE, help="cuts per Shar shard (default 1000)")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    export.set_defaults(run=_cmd_export)


def _cmd_export(args) -> int:
    try:
        import lhotse  # noqa: F401
    except ImportError:
        raise RuntimeError("datagen export lhotse needs lhotse: pip install 'dedistort[lhotse]'") from None
    from tqdm import tqdm

    from manifests import read_manifests as _read

    splits = [s.strip() for s in args.splits.split(",")] if args.splits else None
    total = sum(len(rows) for split, rows in _read(args.out).items() if splits is None or split in splits)
    with tqdm(total=total, unit="cut", desc="export", disable=args.quiet) as bar:
        counts = export_lhotse(args.out, args.dest, splits, args.shard_size, bar.update)
    print(f"{args.dest}: " + ", ".join(f"{split} {n} cuts" for split, n in counts.items())
          + " (cuts_SPLIT.jsonl.gz and shar/SPLIT)")
    return 0
