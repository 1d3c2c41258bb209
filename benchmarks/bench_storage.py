"""Loader throughput from object storage (a local S3 server) against local disk, in the same run.

    python benchmarks/bench_storage.py [--gains 2] [--epochs 2] [--rounds 2] [--threads 2] [--many-threads 8]

A demo corpus (overdrive, 10-s examples, FLAC, 20 examples per shard) is built on local disk and to a
moto S3 server on 127.0.0.1 (the S3 API over HTTP, served by a Python process of its own; the tests run
the same server in-process); the build times are printed too. Then ``training.data.PairStream`` with the
threaded loader (2-s crops, batches of 16, as ``dedistort train`` reads) runs over each, rounds alternating:

- disk: the local folder (``os.pread`` of the crop's FLAC frames);
- s3 first epoch: a new stream and an empty block cache; it also reads every shard's tar headers
  (1-MiB range requests) before its first crop;
- s3 64-MiB cache: later epochs with the default block cache (``DEDISTORT_RANGE_CACHE_MB``);
- s3 no cache: later epochs with the cache off, so every crop is range requests to the server, with
  the usual 2 reader threads and with 8 (requests are waited on, not computed: more threads overlap them).

Examples per second are medians over rounds; the ratio is against disk. Requests and bytes fetched per
example come from the block cache's counters.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from manifests import storage  # noqa: E402
from training.data import PairStream  # noqa: E402
from training.threaded_loader import ThreadedLoader  # noqa: E402

BUCKET = "bench"


def start_s3() -> subprocess.Popen:
    """moto's S3 server in its own process on a free loopback port (as a real endpoint is another program),
    the environment pointing at it, and one bucket."""
    import s3fs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto's S3 server did not start (pip install 'moto[server]')") from None
            time.sleep(0.2)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    s3fs.S3FileSystem(endpoint_url=f"http://127.0.0.1:{port}", skip_instance_cache=True).mkdir(BUCKET)
    return server


def epochs_per_second(loader: ThreadedLoader, epochs: int) -> tuple[float, int]:
    """(examples read per second, examples read) over ``epochs`` passes.

    Counted as the readers read them (each reader's share, padded to equal lengths), not as batches come
    out: a reader's incomplete last batch is read and dropped, which in a small corpus is a large part.
    """
    stream, readers = loader.stream, loader.threads
    per_pass = sum(len(stream.assigned_rows(k, readers, 0)) for k in range(readers))
    started = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    return epochs * per_pass / (time.perf_counter() - started), epochs * per_pass


def measure(location: str, epochs: int, threads: int, many_threads: int, cache_bytes: int) -> dict[str, float]:
    """One new stream over ``location``: its cold first epoch, warm epochs with the block cache, then epochs
    with the cache off (``threads`` and ``many_threads`` readers); requests and kB per example of each."""
    gc.collect()
    cache = storage.BLOCK_CACHE
    cache.clear()
    cache.max_bytes = cache_bytes
    stream = PairStream(location, "train", 2.0)
    result: dict[str, float] = {}
    for name, readers, cached, passes in (("cold", threads, True, 1), ("warm", threads, True, epochs),
                                          ("uncached", threads, False, epochs),
                                          ("uncached many", many_threads, False, epochs)):
        if name.startswith("uncached") and not storage.is_remote(location):
            continue  # local files have no block cache
        cache.max_bytes = cache_bytes if cached else 0
        if not cached:
            cache.clear()
        loader = ThreadedLoader(stream, 16, readers)
        try:
            result[name], _ = epochs_per_second(loader, passes)
        finally:
            loader.close()
        if name in ("warm", "uncached") and storage.is_remote(location):
            # Requests and bytes per example from one more pass by one reader: the threaded loader reads the
            # next epoch ahead, so its own counts would include part of an epoch nobody asked for.
            with cache._lock:
                cache.requests = cache.fetched_bytes = 0
            count = sum(1 for _ in stream.reader(0, 1, stream.next_epoch()))
            result[f"{name} requests"], result[f"{name} kb"] = cache.requests / count, cache.fetched_bytes / count / 1e3
    cache.max_bytes = cache_bytes
    for field in ("requests", "kb"):  # the same reads, only more of them at once
        result[f"uncached many {field}"] = result.get(f"uncached {field}", 0.0)
    return result


def request_ms(location: str, repeats: int = 50) -> float:
    """Median milliseconds of one 64-KiB range request to the server (no cache)."""
    remote = storage.as_path(location)
    shard = next(f for f in remote.files() if f.endswith(".tar"))
    times = []
    for k in range(repeats):
        started = time.perf_counter()
        (remote / shard).read_range(k * 65536, (k + 1) * 65536)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gains", type=int, default=2, help="gains per segment (about 29 training examples "
                        "each; default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the first (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating the locations (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="reader threads, as dedistort train (default 2)")
    parser.add_argument("--many-threads", type=int, default=8, help="reader threads of the latency row (default 8)")
    args = parser.parse_args()
    server = start_s3()
    default_cache = storage.BLOCK_CACHE.max_bytes
    try:
        with tempfile.TemporaryDirectory() as folder:
            os.environ["DEDISTORT_STAGING_DIR"] = str(Path(folder) / "staging")
            config = BuildConfig(effect="overdrive", sweep=f"20:50:{args.gains}", name="bench", shard_max_examples=20)
            local, remote = Path(folder) / "bench", f"s3://{BUCKET}/bench"
            timings = {}
            for where in (local, remote):
                started = time.perf_counter()
                report = build(config, where, workers=2, progress=False, log=lambda _: None)
                timings[str(where)] = time.perf_counter() - started
            size_mb = sum(p.stat().st_size for p in local.rglob("*.tar")) / 1e6
            print(f"corpus: {report.examples} examples ({size_mb:.0f} MB of shards); build to disk "
                  f"{timings[str(local)]:.1f} s, to S3 {timings[remote]:.1f} s (staging, then upload)")
            results: dict[str, list[dict]] = {"disk": [], "s3": []}
            for _ in range(args.rounds):
                results["disk"].append(measure(str(local), args.epochs, args.threads, args.many_threads,
                                               default_cache))
                results["s3"].append(measure(remote, args.epochs, args.threads, args.many_threads, default_cache))
            latency = request_ms(remote)
    finally:
        storage.BLOCK_CACHE.max_bytes = default_cache
        server.terminate()
        server.wait()

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    disk = median("disk", "warm")
    print(f"\nloader: 2-s crops, batches of 16, reader threads; medians of {args.rounds} rounds; "
          f"one 64-KiB range request to the server: {latency:.1f} ms (median)")
    print(f"{'source':34s} {'examples/s':>11s} {'vs disk':>8s} {'requests/ex':>12s} {'kB fetched/ex':>14s}")
    rows = [(f"disk, {args.threads} threads", "disk", "warm"),
            (f"s3 first epoch, {args.threads} threads", "s3", "cold"),
            (f"s3 64-MiB cache, {args.threads} threads", "s3", "warm"),
            (f"s3 no cache, {args.threads} threads", "s3", "uncached"),
            (f"s3 no cache, {args.many_threads} threads", "s3", "uncached many")]
    for label, name, field in rows:
        rate = median(name, field)
        extra = "" if name == "disk" or field == "cold" else (f"{median(name, f'{field} requests'):12.2f} "
                                           f"{median(name, f'{field} kb'):14.1f}")
        print(f"{label:34s} {rate:11.1f} {rate / disk:7.2f}x {extra}")


if __name__ == "__main__":
    main()
