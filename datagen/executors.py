"""Running render_shard over ShardSpecs: in-process, in a local process pool, or on a Dask cluster.

All three call the same pure function on the same specs, so they produce the same bytes; they differ
only in where the work runs. Results arrive in completion order; the caller orders them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
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


#: Seconds a Dask client waits for a scheduler at --dask tcp://HOST:PORT before giving up with one line.
DASK_CONNECT_SECONDS = 5.0
#: How often a worker checks that the build that started it is still alive.
_PARENT_POLL_SECONDS = 0.25
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Make this worker process exit as soon as the build process ``parent_pid`` is gone (even by kill -9).

    Two mechanisms, because either alone has gaps: Linux's PR_SET_PDEATHSIG delivers SIGKILL when the
    parent dies, and a daemon thread polls ``os.getppid()`` (a worker whose parent died is adopted by
    another process) for systems without prctl. Ctrl-C is left to the parent, which stops the workers
    itself: a worker that handled SIGINT too would print its own traceback.
    """
    with suppress(ValueError, OSError):  # not the main thread, or no SIGINT on this platform
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before this worker got here

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while this thread starts workers, then act on them.

    Two things can go wrong when Ctrl-C lands while a worker is being started: the worker gets it before
    :func:`die_with_parent` has told it to ignore SIGINT (it prints its own traceback), or the parent is
    interrupted halfway through handing the new worker its start-up data (the worker then dies printing
    "EOFError: Ran out of input"). The signal mask, inherited by the workers, covers the first; a handler
    that only records the signal covers the second (a signal can reach the process through any of its
    threads whatever this thread's mask). Afterwards the recorded signal gets its usual handler.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    received: list[int] = []
    handlers = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in held}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(held))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a pending signal is recorded here
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if received:
            handler = handlers[received[0]]
            if callable(handler):
                handler(received[0], None)  # e.g. KeyboardInterrupt, or the CLI's SIGTERM exception
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), received[0])


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool at once (interrupt or error): running shards are abandoned, their temporary files are
    removed by the next run; the workers are terminated and reaped, never left behind."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with suppress(Exception):
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


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
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                               initargs=(os.getpid(),))
    try:
        pending = set()
        queue = list(specs)
        # Bounded submission: at most 2 shards per worker in flight keeps memory flat on huge plans.
        while queue or pending:
            with _signals_blocked():  # submit starts the workers
                while queue and len(pending) < 2 * workers:
                    pending.add(pool.submit(_render_in_worker, queue.pop(0), str(out_dir)))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    except BaseException:  # an error, Ctrl-C, SIGTERM, or the caller closing the generator
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def run_dask(specs: Sequence[ShardSpec], out_dir: Path, address: str, workers: int) -> Iterator[ShardResult]:
    """Dask distributed: ``address`` "local" starts a LocalCluster of ``workers`` processes; otherwise
    it is a scheduler address such as tcp://HOST:8786 whose workers see ``out_dir`` (a shared filesystem)."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise RuntimeError("--dask needs Dask: pip install -e '.[dask]'") from None
    cluster = None
    if address == "local":
        with _signals_blocked():
            # A local cluster's own log lines (workers starting, stopping) are noise on a build's console:
            # failures reach us as exceptions from the futures.
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.CRITICAL)
        client = Client(cluster)
        # Dask's worker processes already exit with their nanny's process (this one); the watch thread adds
        # the same promise for kill -9 on systems where that pipe outlives the parent.
        client.run(die_with_parent, os.getpid())
    else:
        try:
            client = Client(address, timeout=DASK_CONNECT_SECONDS)
        except (OSError, TimeoutError, ValueError) as error:
            detail = " ".join(str(error).split()) or type(error).__name__
            raise RuntimeError(f"--dask {address}: no Dask scheduler answered within {DASK_CONNECT_SECONDS:g} s "
                               f"({detail}); start one with `dask scheduler`, or use --dask local") from None
    futures = []
    # An interrupt inside one of distributed's synchronous calls makes tornado log a traceback from the event
    # loop thread (distributed's own cancel callback failing): not ours to show. Errors of the shards themselves
    # still arrive as exceptions from future.result().
    loop_log = logging.getLogger("tornado.application")
    loop_level = loop_log.level
    loop_log.setLevel(logging.CRITICAL)
    try:
        futures = client.map(_render_in_worker, list(specs), out_dir=str(out_dir), pure=False)
        for future in as_completed(futures):
            yield future.result()
            future.release()
    except BaseException:
        # Stopping in the middle makes distributed and tornado log cancelled tasks and killed workers (with
        # tracebacks from their event loop): the caller reports the interruption in one line instead.
        for name in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        with suppress(Exception):
            client.cancel(futures)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        loop_log.setLevel(loop_level)


def make_runner(workers: int, dask: str | None) -> Callable[[Sequence[ShardSpec], Path], Iterator[ShardResult]]:
    """The executor for ``--workers`` / ``--dask``: serial for one worker, else processes, or Dask."""
    if dask:
        return lambda specs, out: run_dask(specs, out, dask, workers)
    if workers <= 1:
        return run_serial
    return lambda specs, out: run_processes(specs, out, workers)
