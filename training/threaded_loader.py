"""Batches from a :class:`~training.data.PairStream` read by threads of the training process.

Why threads, where torch's DataLoader uses processes: what a reader does per example is a few
``os.pread`` calls and our FLAC decoder, a numba kernel that releases the GIL, so threads run it in
parallel; and a batch made in a thread is already in the training process. DataLoader workers pass each
batch through shared memory (4 MB for 16 two-second pairs), which on two cores cost more than reading
the audio (see benchmarks/bench_training.py).

Semantics are DataLoader's with ``num_workers=threads``: readers are slots ``rank × threads + k`` of
``world_size × threads`` (so the dealing of :meth:`PairStream.assigned_rows` applies unchanged), each reader
makes its own batches, and batches are taken from the readers in turn (reader 0's first batch, reader
1's first, ..., reader 0's second, ...), which makes the order fixed whatever the threads' timing. Each
reader's last batch may be short, in training too (dropping it would drop examples, or whole epochs when
a reader's share is below one batch); readers have equal shares, so all ranks take the same number of
steps. A training split smaller than one batch is refused.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch

from .data import PairStream, _rank_and_world, check_batch_size

#: Batches a reader may hold ready ahead of the consumer.
_PREFETCH_BATCHES = 2
_EPOCH_END = object()


class ThreadedLoader:
    """Iterate batches (dicts as DataLoader's default collation makes them) read by ``threads`` threads.

    Args:
        stream: the split to read.
        batch_size: examples per batch.
        threads: reader threads (at least 1).

    Each pass (``iter``) starts a new epoch of the stream, as DataLoader with persistent workers does.
    The reader threads persist between passes too, and when a training pass is done they go on with the
    next epoch's reading while the consumer finishes the pass (a pass does not wait for readers to start
    up and fill their shuffle buffers). What a pass yields is the same as without that: a pass whose
    epoch is not the one read ahead (after :meth:`PairStream.set_epoch`), or that follows a pass cut
    short, restarts the readers. ``close()`` (or dropping the loader) stops them.
    """

    def __init__(self, stream: PairStream, batch_size: int = 16, threads: int = 2) -> None:
        check_batch_size(stream, batch_size)
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.stream, self.batch_size, self.threads = stream, batch_size, threads
        self.dataset = stream  # as DataLoader has it
        self._readers: _Readers | None = None

    def __iter__(self) -> Iterator[dict]:
        epoch = self.stream.next_epoch()
        readers = self._readers
        if readers is None or readers.next_epoch != epoch:
            self.close()
            rank, world = _rank_and_world()
            readers = self._readers = _Readers(self.stream, self.batch_size, self.threads, rank, world, epoch)
        readers.next_epoch = epoch + 1 if self.stream.training else None  # see _read
        finished = False
        try:
            live = list(range(self.threads))
            while live:
                for k in list(live):
                    batch = readers.queues[k].get()
                    if batch is _EPOCH_END:
                        live.remove(k)
                    elif isinstance(batch, BaseException):
                        raise batch
                    else:
                        yield batch
            finished = True
        finally:
            if not finished:  # a pass cut short (break, an error): its readers are mid-epoch
                self.close()

    def close(self) -> None:
        """Stop the reader threads (a later pass starts new ones)."""
        if self._readers is not None:
            self._readers.stop()
            self._readers = None

    def __del__(self) -> None:
        if getattr(self, "_readers", None) is not None:  # not when __init__ raised
            self.close()


class _Readers:
    """The reader threads of a loader, reading epoch after epoch from ``epoch`` on into one queue each.

    Kept apart from :class:`ThreadedLoader` so that the threads hold no reference to the loader, which
    can then be collected (and stop them) when its owner drops it.
    """

    def __init__(self, stream: PairStream, batch_size: int, threads: int, rank: int, world: int, epoch: int) -> None:
        self.next_epoch: int | None = epoch
        self.queues = [queue.Queue(_PREFETCH_BATCHES) for _ in range(threads)]
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=_read, args=(stream, batch_size, rank * threads + k, world * threads,
                                                              epoch, self.queues[k], self._stop),
                                          daemon=True, name=f"reader-{k}")
                         for k in range(threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for q in self.queues:  # unblock readers waiting to put
            while not q.empty():
                q.get_nowait()
        for worker in self._workers:
            worker.join()


def _read(stream: PairStream, batch_size: int, slot: int, slots: int, epoch: int, out: queue.Queue,
          stop: threading.Event) -> None:
    """One reader: its batches of ``epoch``, then an end mark; in training the same for the next epochs
    until stopped. An error is handed to the consumer."""
    try:
        while True:
            pending: list[dict] = []
            for item in stream.reader(slot, slots, epoch):
                pending.append(item)
                if len(pending) == batch_size:
                    if not _put(out, torch.utils.data.default_collate(pending), stop):
                        return
                    pending = []
            if pending:  # a short last batch: every example of the reader's share is seen
                if not _put(out, torch.utils.data.default_collate(pending), stop):
                    return
            if not _put(out, _EPOCH_END, stop) or not stream.training:
                return  # evaluation passes are not read ahead: one may never come, and reading costs
            epoch += 1
    except BaseException as error:
        _put(out, error, stop)


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless the readers were stopped; False when they were."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
