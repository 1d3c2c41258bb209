"""Streaming datagen corpora into training: aligned crops of (input, target) pairs, as torch batches.

:class:`PairStream` is an ``IterableDataset`` over one split of a datagen output folder. It is correct
with several DataLoader workers and several processes (torchrun):

- Training: each epoch deals the split, in an order drawn from ``(seed, epoch)``, to the
  ``world_size × num_workers`` readers: whole shards when there are enough of them, single examples
  otherwise; readers with fewer examples cycle theirs, so all take the same number of steps and none is
  ever empty. Each reader takes one aligned random crop per example (seeded by seed, epoch and key),
  avoids near-silent crops, and reads its rows in a random order over all its shards (a batch mixes
  recordings, not neighbouring segments of one).
- Validation and test (``training=False``): the examples in key order, dealt the same way; each one is
  yielded exactly once, whole (or cropped from its start when ``crop_seconds`` is given).

Online datasets (clean-only shards made with ``datagen build --online``) yield the clean target as
input too, with the effect parameter drawn per example; :class:`OnlineEffect` renders the effect on a
batch, in torch, on the training device.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from effects import online_effect_names, torch_batch
from manifests import DATASET_JSON, ManifestError, index_shard, read_json, read_manifests, stable_digest
from manifests.member_audio import MemberAudio, open_member
from manifests.storage import as_path, open_ranges, require_dataset

#: Crops quieter than this RMS (dBFS) carry no distortion worth learning from; tried again elsewhere.
SILENCE_DB = -60.0
_CROP_ATTEMPTS = 8
#: Slots of the epoch counter a stream shares with its DataLoader workers: base epoch, set_epoch calls,
#: passes counted since, the pass (DataLoader iterator) counted last. See :meth:`PairStream.next_epoch`.
_BASE, _GENERATION, _PASSES, _LAST_PASS = range(4)
_NO_PASS = -(2**63)
#: Shard indexes a reader keeps (each ~100 bytes per member), so cycling readers do not rescan headers.
_CACHED_INDEXES = 4096
#: Shards a reader keeps open while it reads its rows in random order.
_OPEN_SHARDS = 16


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class OnlineEffect:
    """An effect recorded in the dataset card for rendering at training time (any effect with a torch twin:
    clip-sdr, hardclip, softclip, overdrive), with the card's other parameters and dry gain."""

    effect: str
    parameter: str
    distribution: str
    low: float
    high: float
    values: tuple[float, ...] = ()
    effect_args: tuple[tuple[str, float], ...] = ()
    dry_gain: float = 0.0

    @classmethod
    def from_card(cls, out_dir: str | Path) -> OnlineEffect | None:
        card = read_json(as_path(out_dir) / DATASET_JSON)
        spec = card.get("online_effect")
        if not spec:
            return None
        if spec["effect"] not in online_effect_names():
            raise ValueError(f"{out_dir}: online effect {spec['effect']!r} has no torch implementation "
                             f"({', '.join(online_effect_names())} have)")
        return cls(spec["effect"], spec["parameter"], spec["distribution"], float(spec["low"]), float(spec["high"]),
                   tuple(spec.get("values") or ()), tuple(sorted((spec.get("effect_args") or {}).items())),
                   float(spec.get("dry_gain") or 0.0))

    def draw(self, rng: np.random.Generator) -> float:
        """One parameter value (dB) for one example."""
        if self.distribution == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.distribution == "list":
            return float(rng.choice(self.values))
        return float(rng.choice(np.linspace(self.low, self.high, max(len(self.values), 2))))

    def __call__(self, clean: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Render the effect on a batch (B, C, T) with one parameter per example (B,), on its device."""
        return torch_batch.render_online(self.effect, clean, values.to(clean.device), dict(self.effect_args),
                                         self.dry_gain)


class PairStream(torch.utils.data.IterableDataset):
    """(input, target) pairs of one split as dicts: ``input`` and ``target`` (C, T) float32 tensors,
    ``key`` (str) and ``parameter`` (float: the online effect's drawn value, NaN for offline datasets).

    Args:
        out_dir: a ``datagen build`` output folder.
        split: "train", "valid" or "test".
        crop_seconds: length of the aligned crops in seconds (2 s in the paper, 2.3 s for CRAFx); None
            yields whole examples (evaluation).
        training: shuffled epochs with random crops (True), or every example once in key order (False).
        seed: seed of every random choice; with ``epoch`` it fixes a run.
        shuffle_buffer: examples held for shuffling within a reader (training only).
    """

    def __init__(self, out_dir: str | Path, split: str = "train", crop_seconds: float | None = 2.0,
                 training: bool = True, seed: int = 0, shuffle_buffer: int = 256) -> None:
        super().__init__()
        self.out_dir = as_path(out_dir)  # a local Path, or a RemotePath for an object-store URL
        require_dataset(self.out_dir)
        rows = read_manifests(self.out_dir).get(split)
        if not rows:
            raise ValueError(f"{self.out_dir}: split {split!r} has no examples")
        self.rows = sorted(rows, key=lambda r: r["key"])
        self.sample_rate = int(self.rows[0]["sample_rate"])
        if crop_seconds is not None and not 0 < crop_seconds <= float(self.rows[0]["duration_seconds"]):
            raise ValueError(f"crop_seconds must be in (0, {self.rows[0]['duration_seconds']}] s, got {crop_seconds}")
        self.split = split
        self.crop_frames = None if crop_seconds is None else round(crop_seconds * self.sample_rate)
        self.training = training
        self.seed = seed
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.online = OnlineEffect.from_card(self.out_dir)
        # Shared memory, so that DataLoader workers (forked or spawned anew for each pass) count passes
        # into the main process's stream; see next_epoch.
        self._epochs = multiprocessing.Array("q", [0, 0, 0, _NO_PASS])
        self._generation, self._pass_id, self._first_epoch, self._repeats = 0, None, 0, 0
        self._shard_indexes: OrderedDict[Path, dict] = OrderedDict()
        self._index_lock = threading.Lock()

    def __getstate__(self) -> dict:
        # DataLoader workers started by "spawn" receive a pickled copy: without the lock and the cache.
        state = dict(self.__dict__)
        state["_shard_indexes"], state["_index_lock"] = OrderedDict(), None
        if multiprocessing.context.get_spawning_popen() is None:  # a plain pickle: the counts, not the memory
            state["_epochs"] = list(self._epochs)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._index_lock = threading.Lock()
        if isinstance(self._epochs, list):
            self._epochs = multiprocessing.Array("q", self._epochs)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next training pass (as with DistributedSampler): epochs differ, runs repeat.

        Calling it is optional: each training pass advances the epoch by one by itself, however the
        stream is read (see :meth:`next_epoch`), so a trainer that never calls it (Lightning) still gets a
        new, reproducible order every pass. When called, it wins: the next pass reads ``epoch``, in this
        process, in DataLoader workers started later, and in persistent workers too.
        """
        with self._epochs.get_lock():
            self._epochs[_BASE] = int(epoch)
            self._epochs[_GENERATION] += 1
            self._epochs[_PASSES] = 0
            self._epochs[_LAST_PASS] = _NO_PASS

    @property
    def epoch(self) -> int:
        """The epoch the next pass reads in this process (or in DataLoader workers started for it)."""
        with self._epochs.get_lock():
            return int(self._epochs[_BASE] + self._epochs[_PASSES])

    def __len__(self) -> int:
        """Examples per epoch over all readers (a reader count above it cycles examples)."""
        return len(self.rows)

    def assigned_rows(self, slot: int, slots: int, epoch: int | None = None) -> list[dict]:
        """The rows reader ``slot`` of ``slots`` handles in ``epoch`` (default: the current one), in reading order.

        Training deals whole shards (in a per-epoch order) when there are at least as many shards as
        readers, so each shard is read by one reader only; otherwise it deals single examples. Either way
        every reader gets the same number of rows, cycling its own rows where it has fewer, because
        distributed ranks must take the same number of steps.
        """
        if not self.training:
            return [self.rows[i] for i in range(slot, len(self.rows), slots)]
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        shards = sorted({r["shard"] for r in self.rows})
        if len(shards) >= slots:
            order = [shards[i] for i in rng.permutation(len(shards))]
            by_shard: dict[str, list[dict]] = {}
            for row in self.rows:
                by_shard.setdefault(row["shard"], []).append(row)
            dealt = [[row for shard in order[k::slots] for row in by_shard[shard]] for k in range(slots)]
        else:
            order = rng.permutation(len(self.rows))
            dealt = [[self.rows[i] for i in order[k::slots]] for k in range(slots)]
            if len(self.rows) < slots:  # more readers than examples: each takes one, cycling
                dealt = [[self.rows[order[k % len(order)]]] for k in range(slots)]
        mine, longest = dealt[slot], max(len(rows) for rows in dealt)
        mine = [mine[i % len(mine)] for i in range(longest)]
        # A random order over all of the reader's rows, not shard by shard: a shard holds neighbouring
        # segments of few recordings at all their gains, so reading shard by shard through a shuffle buffer
        # gave batches of one or two recordings, and consecutive batches of the same ones (paper-size
        # Demucs underfitted on such batches). Crops are read by byte range, and _examples keeps the
        # shards it reads from open, so a random order costs no re-reading.
        order = np.random.default_rng([self.seed, epoch, slot, 2]).permutation(len(mine))
        return [mine[i] for i in order]

    def __iter__(self) -> Iterator[dict]:
        rank, world = _rank_and_world()
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        yield from self.reader(rank * workers + worker, world * workers, self.next_epoch())

    def next_epoch(self) -> int:
        """The epoch of the pass starting now; a training pass advances the stream's epoch (see set_epoch).

        Evaluation stays at one fixed epoch (its online draws). In training, passes are counted in memory
        shared with every copy of the stream that DataLoader workers hold, so that all of them agree:

        - a pass in this process (no workers, or :class:`~training.threaded_loader.ThreadedLoader`)
          counts one;
        - DataLoader workers recognise the pass (the iterator) they serve by the base seed the
          DataLoader draws for each iterator and hands every worker (``worker_info.seed - id``): the
          first of them to start counts the pass, and all take the count before it. Workers started
          anew for each pass (``persistent_workers=False``, the default) thus read epoch after epoch;
        - persistent workers serve one iterator for ever, so each counts its further passes by itself.
        """
        info = torch.utils.data.get_worker_info()
        shared = self._epochs
        with shared.get_lock():
            if not self.training:
                return int(shared[_BASE])
            if info is None:  # read in this process
                epoch = shared[_BASE] + shared[_PASSES]
                shared[_PASSES] += 1
                shared[_LAST_PASS] = _NO_PASS
                return int(epoch)
            pass_id = info.seed - info.id
            if self._pass_id == pass_id and self._generation == shared[_GENERATION]:
                self._repeats += 1  # a persistent worker's next pass
                return self._first_epoch + self._repeats
            if shared[_LAST_PASS] != pass_id:  # the first worker of a new pass
                shared[_LAST_PASS] = pass_id
                shared[_PASSES] += 1
            self._generation, self._pass_id, self._repeats = shared[_GENERATION], pass_id, 0
            self._first_epoch = int(shared[_BASE] + shared[_PASSES] - 1)
            return self._first_epoch

    def reader(self, slot: int, slots: int, epoch: int) -> Iterator[dict]:
        """The examples reader ``slot`` of ``slots`` yields in ``epoch``: shuffled (training) or in key order."""
        items = self._examples(self.assigned_rows(slot, slots, epoch), epoch)
        if not self.training:
            yield from items
            return
        rng = np.random.default_rng([self.seed, epoch, slot, 1])
        buffer: list[dict] = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def _examples(self, rows: list[dict], epoch: int) -> Iterator[dict]:
        # One index of member offsets per shard (cached), each example's crop read by byte range. Training
        # rows come in a random order across shards: the shards read last stay open (a local fd, or range
        # requests through a bounded cache), so a reader with up to _OPEN_SHARDS shards opens each once.
        sources: OrderedDict[object, tuple] = OrderedDict()
        try:
            for row in rows:
                path = self.out_dir / row["shard"]
                if path in sources:
                    sources.move_to_end(path)
                else:
                    opener = open_ranges(path)
                    sources[path] = (opener, opener.__enter__(), *self._index(path))
                    while len(sources) > _OPEN_SHARDS:
                        sources.popitem(last=False)[1][0].__exit__(None, None, None)
                _, source, index, layouts = sources[path]
                members = index.get(row["key"])
                if members is None:
                    raise ManifestError(f"{path}: example {row['key']!r} of the manifest is missing")
                yield self._item(source, members, layouts, row, epoch, f"{path}: {row['key']}")
        finally:
            for opener, *_ in sources.values():
                opener.__exit__(None, None, None)

    def _index(self, path: Path) -> tuple[dict, dict]:
        """The shard's member offsets and member headers, remembered for the shards this reader saw last."""
        with self._index_lock:  # reader threads share the cache (see training.threaded_loader)
            cache = self._shard_indexes
            if path not in cache:
                cache[path] = index_shard(path), {}
                while len(cache) > _CACHED_INDEXES:
                    cache.popitem(last=False)
            return cache[path]

    def _item(self, fd: int, members: dict, layouts: dict, row: dict, epoch: int, where: str) -> dict:
        def member(role: str) -> MemberAudio | None:
            extension = next((e for e in members if e.startswith(f"{role}.")), None)
            return None if extension is None else open_member(fd, *members[extension], extension, where, layouts)

        rng = np.random.default_rng([self.seed, epoch, int(stable_digest(row["key"], 15), 16)])
        target = member("target")
        if target is None:
            raise ManifestError(f"{where}: no target member")
        start, clean = self._crop_start(target, rng)
        length = target.frames - start if self.crop_frames is None else self.crop_frames
        if clean is None:
            clean = target.read(start, length)
        source = member("input")
        if source is None and self.online is None:
            # Only clean-only (online) corpora lack inputs; elsewhere the pair is broken, and taking the
            # target as input would train the identity map.
            raise ManifestError(f"{where}: no input member (the dataset is not an online one)")
        noisy = clean if source is None else source.read(start, length)
        parameter = self.online.draw(rng) if self.online else math.nan
        return {"input": torch.from_numpy(noisy), "target": torch.from_numpy(clean),
                "key": row["key"], "parameter": parameter, "effect": row.get("effect", "")}

    def _crop_start(self, target: MemberAudio, rng: np.random.Generator) -> tuple[int, np.ndarray | None]:
        """Start of the crop, and the crop itself when it was already decoded to check its level.

        Training takes a random position whose crop is not near-silent; after a few silent tries the
        loudest crop tried is taken rather than dropping the example, so every reader yields the same
        number of examples (distributed ranks must take equal steps). Evaluation starts at 0.
        """
        if self.crop_frames is None:
            return 0, None
        latest = target.frames - self.crop_frames
        if latest < 0:
            raise ValueError(f"{target.where}: example shorter than the crop ({target.frames} frames)")
        if not self.training:
            return 0, None
        best, best_crop, best_level = 0, None, -math.inf
        for _ in range(_CROP_ATTEMPTS):
            start = int(rng.integers(latest + 1))
            crop = target.read(start, self.crop_frames)
            flat = crop.reshape(-1)
            level = 10 * math.log10(max(float(np.dot(flat, flat)) / flat.size, 1e-24))
            if level >= SILENCE_DB:
                return start, crop
            if level > best_level:
                best, best_crop, best_level = start, crop, level
        return best, best_crop


def check_batch_size(stream: PairStream, batch_size: int) -> None:
    """Refuse a batch size below 1, or above a training split's examples (an epoch that could train on nothing)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if stream.training and len(stream) < batch_size:
        raise ValueError(f"{stream.out_dir}: the {stream.split} split has {len(stream)} examples, fewer than one "
                         f"batch of {batch_size}; lower the batch size or add data")


def make_loader(stream: PairStream, batch_size: int = 16, num_workers: int = 0,
                persistent_workers: bool = False, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``stream`` in batches of ``batch_size``; each reader's last batch may be short.

    Short last batches, in training too, because every reader (rank × worker) makes its own batches
    from its share of the split: dropping the remainders would drop examples, and a share smaller than
    one batch (27 examples, batch 16, 2 readers) would leave whole epochs empty. Readers have equal
    shares, so every rank still takes the same number of steps. A training split smaller than one batch
    is refused (:func:`check_batch_size`).

    Each pass is a new epoch of the stream, with or without ``persistent_workers`` (which keeps the
    worker processes between passes, worth it when epochs are short); see :meth:`PairStream.next_epoch`.
    """
    check_batch_size(stream, batch_size)
    return torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=num_workers, drop_last=False,
                                       persistent_workers=persistent_workers and num_workers > 0,
                                       pin_memory=pin_memory)


def apply_online(batch: dict, stream: PairStream, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to ``device`` and render the online effect there if the dataset has one.

    Returns ``(input, target)`` of shape (B, C, T).
    """
    target = batch["target"].to(device)
    if stream.online is None:
        return batch["input"].to(device), target
    return stream.online(target, batch["parameter"].to(torch.float64)), target
