"""``datagen build``: plan, render (resuming what is done), then write manifests, card and checksums.

Output layout (the contract lives in :mod:`manifests`)::

    OUT/{train,valid,test}/NAME-SPLIT-000000.tar   KEY.input.flac, KEY.target.flac, KEY.json
    OUT/manifest/{split}.parquet                   one row per example
    OUT/dataset.json                               config, seed, versions, counts, shard checksums
    OUT/README.md                                  dataset card (Hugging Face front matter)
    OUT/SHA256SUMS                                 sha256sum -c compatible
    OUT/.build/                                    lock, config, one journal entry per finished shard
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

import manifests
from effects import get_effect
from manifests import SPLITS, config_hash, read_json, sha256_file, write_json

from .config import CODECS, BuildConfig, source_kind
from .executors import make_runner
from .plan import ShardSpec, plan
from .render import ShardResult
from .sources import discover

_BUILD_DIR = ".build"
#: What a build writes at the top of OUT; --overwrite removes exactly these and nothing else.
_OUTPUTS = (*SPLITS, "manifest", manifests.DATASET_JSON, "README.md", "SHA256SUMS", _BUILD_DIR)


class BuildError(RuntimeError):
    """A build that cannot proceed: locked output, config clash, a strict failure."""


@dataclass
class BuildReport:
    out_dir: Path
    examples: int
    shards: int
    seconds_in: float
    seconds_out: float
    wall_seconds: float
    rendered_shards: int
    reused_shards: int
    skipped: list[dict] = field(default_factory=list)
    silent_segments: int = 0
    split_hours: dict = field(default_factory=dict)

    def summary(self) -> str:
        rate = self.seconds_out / max(self.wall_seconds, 1e-9)
        line = (f"{self.seconds_in / 3600:.2f} h in, {self.seconds_out / 3600:.2f} h out, {self.examples} examples, "
                f"{self.shards} shards ({self.reused_shards} reused) in {self.wall_seconds:.1f} s: "
                f"{rate:,.0f}x real time")
        if self.silent_segments:
            line += f"; {self.silent_segments} near-silent segments dropped"
        if self.skipped:
            line += f"; {len(self.skipped)} files skipped (see dataset.json)"
        return line


def library_versions() -> dict[str, str]:
    """Versions that decide the bytes, recorded in dataset.json (FLAC members come from our own encoder)."""
    import numpy
    import pyarrow
    import soundfile
    import soxr

    from effects.overdrive import KERNEL_VERSION
    from manifests.flac import ENCODER_VERSION

    try:
        from importlib.metadata import version

        toolkit = version("dedistort")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        toolkit = "unknown"
    return {"dedistort": toolkit, "flac_encoder": ENCODER_VERSION, "overdrive_kernel": KERNEL_VERSION,
            "numpy": numpy.__version__, "soundfile": soundfile.__version__,
            "libsndfile": soundfile.__libsndfile_version__,
            "soxr": soxr.__version__, "pyarrow": pyarrow.__version__, "python": platform.python_version()}


class _Lock:
    """An exclusive flock on OUT/.build/lock: a second build on the same OUT fails at once."""

    def __init__(self, out_dir: Path) -> None:
        (out_dir / _BUILD_DIR).mkdir(parents=True, exist_ok=True)
        self.path = out_dir / _BUILD_DIR / "lock"
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise BuildError(f"{out_dir} is being written by another build ({holder}); wait for it to finish") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {platform.node()}\n")
        self.handle.flush()

    def release(self) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _prepare_out(out_dir: Path, config_digest: str, overwrite: bool) -> None:
    """Refuse to mix configs in one OUT; with --overwrite, clear only what a build writes."""
    recorded = out_dir / _BUILD_DIR / "config.json"
    if recorded.exists():
        if read_json(recorded).get("config_hash") == config_digest:
            return
        if not overwrite:
            raise BuildError(f"{out_dir} holds a build with a different config; use --overwrite to replace it, "
                             "or choose another --out")
    elif out_dir.exists() and any(p.name not in (_BUILD_DIR,) for p in out_dir.iterdir()):
        ours = {p.name for p in out_dir.iterdir()} <= set(_OUTPUTS)
        if not (overwrite and ours):
            raise BuildError(f"{out_dir} is not empty and was not written by datagen build; choose an empty or new "
                             "--out" + ("" if ours else " (--overwrite only replaces a datagen build)"))
    if overwrite:
        for name in _OUTPUTS:
            target = out_dir / name
            if name == _BUILD_DIR:
                for child in target.glob("*"):
                    if child.name != "lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def _journal_path(out_dir: Path, spec: ShardSpec) -> Path:
    return out_dir / _BUILD_DIR / "journal" / f"{spec.split}-{spec.index:06d}.json"


def _reusable(out_dir: Path, spec: ShardSpec) -> ShardResult | None:
    """A finished shard from an earlier run, if its journal matches the spec and its bytes check out."""
    journal, shard = _journal_path(out_dir, spec), out_dir / spec.relpath
    if not (journal.exists() and shard.exists()):
        return None
    try:
        entry = read_json(journal)
    except manifests.ManifestError:
        return None
    if entry.get("spec_digest") != spec.digest() or sha256_file(shard) != entry["result"]["sha256"]:
        return None
    return ShardResult(**entry["result"])


def build(config: BuildConfig, out_dir: str | os.PathLike, workers: int = 1, dask: str | None = None,
          overwrite: bool = False, strict: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> BuildReport:
    """Build the corpus described by ``config`` into ``out_dir``; see the module docstring for the layout."""
    started = time.perf_counter()
    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = _Lock(out_dir)
    try:
        config_dict = config.to_dict()
        digest = config_hash(config_dict)
        _prepare_out(out_dir, digest, overwrite)
        write_json(out_dir / _BUILD_DIR / "config.json", {"config": config_dict, "config_hash": digest})

        sources, skipped_files = discover(config.source, config.group_by, sample_rate=config.sample_rate)
        skipped = [{"path": s.path, "reason": s.reason} for s in skipped_files]
        if strict and skipped:
            raise BuildError(f"{skipped[0]['path']}: {skipped[0]['reason']}")
        specs, info = plan(config, sources, strict=strict)
        if not specs:
            raise BuildError("nothing to build: no source is long enough for one segment of "
                             f"{config.segment_seconds:g} s")

        results: dict[str, ShardResult] = {}
        todo = []
        for spec in specs:
            reused = _reusable(out_dir, spec)
            if reused is not None:
                results[spec.relpath] = reused
            else:
                todo.append(spec)
        reused_count = len(results)
        if reused_count:
            log(f"resuming: {reused_count} of {len(specs)} shards already done")
        bar = tqdm(total=len(specs), initial=reused_count, unit="shard", desc="rendering", disable=not progress)
        by_relpath = {spec.relpath: spec for spec in specs}
        for result in make_runner(workers, dask)(todo, out_dir):
            spec = by_relpath[result.relpath]
            write_json(_journal_path(out_dir, spec), {"spec_digest": spec.digest(), "result": asdict(result)})
            results[result.relpath] = result
            bar.update(1)
        bar.close()

        report = _finish(config, config_dict, digest, out_dir, specs, results, info, skipped)
        report.reused_shards = reused_count
        report.rendered_shards = len(todo)
        report.wall_seconds = time.perf_counter() - started
        return report
    finally:
        lock.release()


def _finish(config: BuildConfig, config_dict: dict, digest: str, out_dir: Path, specs: list[ShardSpec],
            results: dict[str, ShardResult], info: dict, skipped: list[dict]) -> BuildReport:
    """Manifests, dataset.json, card and SHA256SUMS from the shard results (all in memory: rows are small)."""
    ordered = [results[spec.relpath] for spec in specs]
    for result in ordered:
        skipped.extend(s for s in result.skipped if s not in skipped)
    skipped.sort(key=lambda s: s["path"])
    splits: dict[str, dict] = {}
    relpaths: dict[str, str] = {}
    pcm_digests: dict[str, str] = {}
    for split in SPLITS:
        split_results = [r for r, spec in zip(ordered, specs, strict=True) if spec.split == split]
        rows = [row for r in split_results for row in r.rows]
        if not split_results:
            continue
        manifests.write_manifest(manifests.manifest_path(out_dir, split), rows)
        splits[split] = {"examples": len(rows), "shards": len(split_results),
                         "hours_in": round(sum(r.seconds_in for r in split_results) / 3600, 6),
                         "hours_out": round(sum(r.seconds_out for r in split_results) / 3600, 6)}
        for r in split_results:
            relpaths[r.relpath] = r.sha256
            # The decoded audio's checksums too: a rebuild with another FLAC encoder version changes the
            # bytes (it stamps its version) but must not change the samples.
            pcm_digests[r.relpath] = pcm_digest(r.rows)
    total_in = sum(r.seconds_in for r in ordered)
    achieved = {split: (splits.get(split, {}).get("hours_in", 0.0) * 3600 / total_in if total_in else 0.0)
                for split in SPLITS}
    dataset = {
        "name": config.name, "config": config_dict, "config_hash": digest, "seed": config.seed,
        "versions": library_versions(), "splits": splits, "achieved_split_ratios": achieved,
        "split_assignment": info["assignment"],
        "shards": {p: {"sha256": relpaths[p], "pcm_sha256": pcm_digests[p]} for p in sorted(relpaths)},
        "skipped_files": skipped, "silent_segments": sum(r.silent_segments for r in ordered),
        "members": {"input": None if config.online else f"KEY.input.{_ext(config)}",
                    "target": f"KEY.target.{_ext(config)}", "metadata": "KEY.json"},
    }
    if config.online:
        sweep = config.effect_sweep
        dataset["online_effect"] = {"effect": config.effect, "parameter": _primary(config),
                                    "distribution": sweep.kind, "low": sweep.low, "high": sweep.high,
                                    "values": list(sweep.values), "effect_args": dict(config.effect_args),
                                    "dry_gain": config.dry_gain}
    write_json(out_dir / manifests.DATASET_JSON, dataset)
    manifests.write_card(out_dir, {**dataset, "description": _describe(config)})
    listed = dict(relpaths)
    for extra in [f"manifest/{split}.parquet" for split in splits] + [manifests.DATASET_JSON, "README.md"]:
        listed[extra] = sha256_file(out_dir / extra)
    manifests.write_sha256sums(out_dir, sorted(listed), known=listed)
    return BuildReport(out_dir, sum(s["examples"] for s in splits.values()), len(ordered), total_in,
                       sum(r.seconds_out for r in ordered), 0.0, 0, 0, skipped,
                       dataset["silent_segments"], {k: v["hours_in"] for k, v in splits.items()})


def pcm_digest(rows: list[dict]) -> str:
    """One checksum over the decoded-PCM checksums of a shard's examples, in key order."""
    text = "\n".join(f"{r['key']} {r['input_pcm_sha256']} {r['target_pcm_sha256']}" for r in sorted(
        rows, key=lambda r: r["key"]))
    return hashlib.sha256(text.encode()).hexdigest()


def _ext(config: BuildConfig) -> str:
    return CODECS[config.codec][2]


def _primary(config: BuildConfig) -> str:
    return get_effect(config.effect).primary


def _describe(config: BuildConfig) -> str:
    effect = get_effect(config.effect)
    what = f"{effect.summary}, {effect.primary} {config.sweep}"
    if config.online:
        what = f"clean audio only; at training time: {what}"
    if config.dry_gain:
        what += f", clean signal superimposed with weight {config.dry_gain:g}"
    # The kind of source only: where the files lie on this machine must not change the card's bytes.
    kind = source_kind(config.source)
    source = {"demo": "the built-in synthetic guitar demo corpus", "signaltrain": "SignalTrain LA2A v1.1 (its "
              "clean inputs)", "idmt": "IDMT-SMT-Audio-Effects (its NoFX recordings)"}.get(kind, "a folder of audio")
    return (f"Pairs of distorted input and clean target made by datagen from {source}: {what}. "
            f"{config.segment_seconds:g}-second segments at {config.sample_rate} Hz.")
