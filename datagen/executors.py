"""Running render_shard over ShardSpecs: in-process, in a local process pool, or on a Dask cluster.

All three call the same pure function on the same specs, so they produce the same bytes; they differ
only in where the work runs. Results arrive in completion order; the caller orders them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import suppress
from pathlib import Path

from .plan import ShardSpec
from .render import ShardResult, render_shard


def default_workers() -> int:
    """All the cores this process may use."""
    with suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _render_in_worker(spec: ShardSpec, out_dir: str) -> ShardResult:
    # Keep each worker single-threaded: parallelism comes from the shards, and nested BLAS or numba
    # thread pools would only oversubscribe the cores.
    with suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    return render_shard(spec, out_dir)


def run_serial(specs: Sequence[ShardSpec], out_dir: Path) -> Iterator[ShardResult]:
    for spec in specs:
        yield render_shard(spec, out_dir)


def run_processes(specs: Sequence[ShardSpec], out_dir: Path, workers: int) -> Iterator[ShardResult]:
    """A local pool of ``workers`` processes (spawned, so no thread or lock state leaks in by fork)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = set()
        queue = list(specs)
        # Bounded submission: at most 2 shards per worker in flight keeps memory flat on huge plans.
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                pending.add(pool.submit(_render_in_worker, queue.pop(0), str(out_dir)))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


def run_dask(specs: Sequence[ShardSpec], out_dir: Path, address: str, workers: int) -> Iterator[ShardResult]:
    """Dask distributed: ``address`` "local" starts a LocalCluster of ``workers`` processes; otherwise
    it is a scheduler address such as tcp://HOST:8786 whose workers see ``out_dir`` (a shared filesystem)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise RuntimeError("--dask needs Dask: pip install -e '.[dask]'") from None
    cluster = None
    if address == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(address)
    try:
        futures = client.map(_render_in_worker, list(specs), out_dir=str(out_dir), pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def make_runner(workers: int, dask: str | None) -> Callable[[Sequence[ShardSpec], Path], Iterator[ShardResult]]:
    """The executor for ``--workers`` / ``--dask``: serial for one worker, else processes, or Dask."""
    if dask:
        return lambda specs, out: run_dask(specs, out, dask, workers)
    if workers <= 1:
        return run_serial
    return lambda specs, out: run_processes(specs, out, workers)
