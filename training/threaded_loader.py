"""Batches from a :class:`~training.data.PairStream` read by threads of the training process.

Why threads, where torch's DataLoader uses processes: what a reader does per example is a few
``os.pread`` calls and our FLAC decoder, a numba kernel that releases the GIL, so threads run it in
parallel; and a batch made in a thread is already in the training process. DataLoader workers pass each
batch through shared memory (4 MB for 16 two-second pairs), which on two cores cost more than reading
the audio (see benchmarks/bench_training.py).

Semantics are DataLoader's with ``num_workers=threads``: readers are slots ``rank × threads + k`` of
``world_size × threads`` (so the dealing of :meth:`PairStream.assigned_rows` applies unchanged), each reader
makes its own batches, and batches are taken from the readers in turn (reader 0's first batch, reader
1's first, ..., reader 0's second, ...), which makes the order fixed whatever the threads' timing. A
training pass drops each reader's incomplete last batch (readers have equal lengths, so all ranks take
the same number of steps); evaluation keeps it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch

from .data import PairStream, _rank_and_world

#: Batches a reader may hold ready ahead of the consumer.
_PREFETCH_BATCHES = 2
_DONE = object()


class ThreadedLoader:
    """Iterate batches (dicts as DataLoader's default collation makes them) read by ``threads`` threads.

    Args:
        stream: the split to read.
        batch_size: examples per batch.
        threads: reader threads (at least 1).

    Each pass (``iter``) starts a new epoch of the stream, as DataLoader with persistent workers does.
    """

    def __init__(self, stream: PairStream, batch_size: int = 16, threads: int = 2) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.stream, self.batch_size, self.threads = stream, batch_size, threads
        self.dataset = stream  # as DataLoader has it

    def __iter__(self) -> Iterator[dict]:
        rank, world = _rank_and_world()
        epoch = self.stream.next_epoch()
        stop = threading.Event()
        queues = [queue.Queue(_PREFETCH_BATCHES) for _ in range(self.threads)]
        workers = [threading.Thread(target=self._read, args=(rank * self.threads + k, world * self.threads, epoch,
                                                             queues[k], stop), daemon=True, name=f"reader-{k}")
                   for k in range(self.threads)]
        for worker in workers:
            worker.start()
        try:
            live = list(range(self.threads))
            while live:
                for k in list(live):
                    batch = queues[k].get()
                    if batch is _DONE:
                        live.remove(k)
                    elif isinstance(batch, BaseException):
                        raise batch
                    else:
                        yield batch
        finally:
            stop.set()  # an abandoned pass (break, an error) ends the readers
            for q in queues:  # unblock readers waiting to put
                while not q.empty():
                    q.get_nowait()
            for worker in workers:
                worker.join()

    def _read(self, slot: int, slots: int, epoch: int, out: queue.Queue, stop: threading.Event) -> None:
        try:
            pending: list[dict] = []
            for item in self.stream.reader(slot, slots, epoch):
                pending.append(item)
                if len(pending) == self.batch_size:
                    if not _put(out, torch.utils.data.default_collate(pending), stop):
                        return
                    pending = []
            if pending and not self.stream.training:
                if not _put(out, torch.utils.data.default_collate(pending), stop):
                    return
            _put(out, _DONE, stop)
        except BaseException as error:  # handed to the consumer, which raises it
            _put(out, error, stop)


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` unless the pass was abandoned; False when it was."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
