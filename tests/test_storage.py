"""Datasets on object storage (manifests.storage): a real S3 API served by moto on 127.0.0.1.

Built to S3, a corpus has the same SHA256SUMS as the same build on local disk; it verifies, its stats and
examples read back, the loader yields the same crops from it as from disk, and a model trains an epoch
from it. The lock object keeps a second build out; an interrupted build never looks complete and resumes
from the shards it uploaded; unsupported or mistyped URLs are one-line errors, never local folders.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen.build import BuildError, build
from datagen.cli import main as datagen_main
from datagen.config import BuildConfig
from datagen.demo import demo_guitar
from manifests import read_manifests, storage, verify_dataset
from manifests.storage import BlockCache, RangeReader, RemotePath, StorageError, as_path

BUCKET = "corpora"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3 server (moto) on a free loopback port, the environment pointing at it, and one bucket."""
    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL", "DEDISTORT_STAGING_DIR", "AWS_SESSION_TOKEN")}
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                      DEDISTORT_STAGING_DIR=str(tmp_path_factory.mktemp("staging")))
    os.environ.pop("AWS_SESSION_TOKEN", None)
    s3fs.S3FileSystem(endpoint_url=f"http://127.0.0.1:{port}", skip_instance_cache=True).mkdir(BUCKET)
    yield f"s3://{BUCKET}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    for i in range(8):
        sf.write(folder / f"take-{i}.wav", demo_guitar(3.0, 16000, seed=500 + i, peak=0.5).T, 16000)
    return folder


def _config(clean, **changes) -> BuildConfig:
    settings = dict(source=str(clean), effect="hardclip", sweep="6,12", segment_seconds=1.0, name="hc",
                    shard_max_examples=6)
    settings.update(changes)
    return BuildConfig(**settings)


@pytest.fixture(scope="module")
def local_and_remote(s3, clean, tmp_path_factory):
    local = tmp_path_factory.mktemp("local") / "hc"
    build(_config(clean), local, progress=False, log=lambda _: None)
    remote = f"{s3}/hc"
    report = build(_config(clean), remote, progress=False, log=lambda _: None)
    assert report.out_dir == RemotePath(remote)
    return local, remote


# --- locations -------------------------------------------------------------------------------------------


def test_locations_local_file_urls_and_refusals(tmp_path, monkeypatch):
    assert as_path("data/ceg") == Path("data/ceg")
    assert as_path(f"file://{tmp_path}/ceg") == tmp_path / "ceg"
    assert isinstance(as_path("memory://bucket/ceg"), RemotePath)
    assert str(as_path("memory://bucket/ceg/") / "manifest" / "train.parquet") == "memory://bucket/ceg/manifest/train.parquet"
    with pytest.raises(StorageError, match="unsupported URL scheme 'ftp'"):
        as_path("ftp://host/ceg")
    with pytest.raises(StorageError, match="without its '//'"):
        as_path("s3:/bucket/ceg")
    with pytest.raises(StorageError, match="file:///"):
        as_path("file://relative/ceg")
    real_find_spec = storage.importlib.util.find_spec
    monkeypatch.setattr(storage.importlib.util, "find_spec",
                        lambda name, *a: None if name == "s3fs" else real_find_spec(name, *a))
    with pytest.raises(StorageError, match="needs the s3fs"):
        as_path("s3://bucket/ceg")


@pytest.mark.parametrize("out", ["ftp://host/ceg", "s3:/bucket/ceg", "gs:bucket/ceg"])
def test_build_to_a_bad_url_is_one_line_and_makes_no_folder(out, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert datagen_main(["build", "-q", "--out", out, "--segment-seconds", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and out in error, error
    assert list(tmp_path.iterdir()) == []


def test_read_only_http_cannot_be_an_output(clean):
    pytest.importorskip("aiohttp")
    with pytest.raises(StorageError, match="read-only"):
        build(_config(clean), "http://127.0.0.1:9/ceg", progress=False, log=lambda _: None)


# --- range reads ------------------------------------------------------------------------------------------


def test_range_reader_matches_the_bytes_and_stays_within_its_cache():
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    remote = as_path("memory://range-test/object.bin")
    remote.write_bytes(data)
    cache = BlockCache(4 * 4096)
    reader = RangeReader(remote, block_bytes=4096, cache=cache)
    rng = np.random.default_rng(1)
    for _ in range(200):
        offset, count = int(rng.integers(0, len(data) + 100)), int(rng.integers(0, 20_000))
        assert reader.pread(count, offset) == data[offset:offset + count]
        assert cache.size_bytes <= cache.max_bytes
    requests = cache.requests
    assert reader.pread(100, 10) == data[10:110]
    assert reader.pread(100, 20) == data[20:120] and cache.requests == requests + 1  # the second read: cached
    buffer = np.empty(1000, dtype=np.uint8)
    assert storage.preadv(reader, [buffer], 5000) == 1000 and buffer.tobytes() == data[5000:6000]
    remote.write_bytes(data[::-1])  # replaced: the old blocks must not be served for the new object
    assert RangeReader(remote, block_bytes=4096, cache=cache).pread(100, 10) == data[::-1][10:110]


# --- S3 end to end ----------------------------------------------------------------------------------------


def test_s3_build_has_the_local_checksums_and_verifies(local_and_remote, capsys):
    local, remote = local_and_remote
    url = as_path(remote)
    assert (url / "SHA256SUMS").read_bytes() == (local / "SHA256SUMS").read_bytes()
    assert (url / "dataset.json").read_bytes() == (local / "dataset.json").read_bytes()
    files = set(url.files())
    assert ".build/lock" not in files and {"SHA256SUMS", "dataset.json", "README.md"} <= files
    assert not any("staging" in f or f.endswith(".partial") for f in files)
    assert verify_dataset(remote) == []
    assert datagen_main(["verify", remote]) == 0
    assert datagen_main(["stats", remote]) == 0
    assert "examples" in capsys.readouterr().out


def test_s3_verify_names_a_damaged_object(local_and_remote, s3, tmp_path):
    local, _ = local_and_remote
    copy = f"{s3}/damaged"
    for relpath in sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()):
        if not relpath.startswith(".build/"):
            (as_path(copy) / relpath).put_file(local / relpath)
    shard = sorted(p for p in as_path(copy).files() if p.endswith(".tar"))[0]
    data = bytearray((as_path(copy) / shard).read_bytes())
    data[3000] ^= 0xFF
    (as_path(copy) / shard).write_bytes(bytes(data))
    problems = verify_dataset(copy)
    assert problems and all(str(tmp_path) not in p for p in problems)
    assert any(p.startswith(f"{copy}/{shard}: checksum mismatch") for p in problems), problems


def test_loader_reads_the_same_crops_from_s3_as_from_disk(local_and_remote, tmp_path):
    torch = pytest.importorskip("torch")
    from datagen.cli import main as datagen_cli
    from training.data import PairStream

    local, remote = local_and_remote
    for training in (True, False):
        crop = 0.5 if training else None
        here = list(PairStream(local, "train", crop, training=training, seed=3))
        there = list(PairStream(remote, "train", crop, training=training, seed=3))
        assert [x["key"] for x in here] == [x["key"] for x in there] and len(here) > 0
        for a, b in zip(here, there, strict=True):
            assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    # DataLoader worker processes (forked after the stream read its manifests) make their own connections.
    from training.data import make_loader

    batches = list(make_loader(PairStream(remote, "valid", None, training=False), batch_size=4, num_workers=1))
    expected = [x["key"] for x in PairStream(local, "valid", None, training=False)]
    assert [key for batch in batches for key in batch["key"]] == expected
    with pytest.raises(StorageError, match="no dataset there"):
        PairStream(remote + "-typo", "train")
    key = here[0]["key"]
    assert datagen_cli(["inspect", remote, key, "-o", str(tmp_path)]) == 0
    written, _ = sf.read(tmp_path / f"{key}.target.wav", dtype="float32", always_2d=True)
    assert np.array_equal(written.T, here[0]["target"].numpy())


@pytest.mark.usefixtures("small_paper_models")  # the training path, not the model size
def test_train_and_evaluate_from_s3(local_and_remote, tmp_path):
    pytest.importorskip("torch")
    from training.cli import main as dedistort_main

    _, remote = local_and_remote
    run = tmp_path / "run"
    assert dedistort_main(["train", "--data", remote, "--model", "waveunet", "--epochs", "1", "--batch-size", "4",
                           "--crop-seconds", "0.5", "--max-batches", "2", "--out", str(run), "-q"]) == 0
    assert (run / "best.pt").exists() and np.isfinite(json.loads((run / "summary.json").read_text())
                                                        ["best_valid_si_sdr_db"])
    results = tmp_path / "results"
    assert dedistort_main(["evaluate", "--method", "input", "--data", remote, "--metrics", "sdr", "-o", str(results),
                           "--workers", "1", "-q"]) == 0
    summary = json.loads((results / "summary.json").read_text())
    assert summary["examples"] == len(read_manifests(remote)["test"]) > 0


def test_lock_object_keeps_a_second_build_out(s3, clean):
    out = f"{s3}/locked"
    (as_path(out) / ".build" / "lock").write_bytes(b'{"host": "elsewhere", "owner": "x", "pid": 7, "since": "then"}')
    with pytest.raises(StorageError, match="being written by another build .*pid 7 on elsewhere"):
        build(_config(clean), out, progress=False, log=lambda _: None)
    assert as_path(out).files() == [".build/lock"]  # untouched


def test_interrupted_build_never_looks_complete_and_resumes_elsewhere(s3, clean, local_and_remote, monkeypatch):
    import datagen.build as build_module

    local, _ = local_and_remote
    out = f"{s3}/resume"
    real_finish = build_module._finish

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        build(_config(clean), out, progress=False, log=lambda _: None)
    files = set(as_path(out).files())
    assert not files & {"SHA256SUMS", "dataset.json", ".build/lock"}
    assert any(f.endswith(".tar") for f in files) and any(f.startswith(".build/journal/") for f in files)
    assert verify_dataset(out)  # incomplete: verify says so

    # Another machine: an empty staging folder. The finished shards come from the bucket, none is rendered.
    storage.shutil.rmtree(storage.staging_folder(as_path(out)))
    monkeypatch.setattr(build_module, "_finish", real_finish)
    lines: list[str] = []
    report = build(_config(clean), out, progress=False, log=lines.append)
    assert report.rendered_shards == 0 and report.reused_shards == report.shards, lines
    assert (as_path(out) / "SHA256SUMS").read_bytes() == (local / "SHA256SUMS").read_bytes()
    assert verify_dataset(out) == []


def test_overwrite_on_s3_replaces_only_what_the_records_list(s3, clean, local_and_remote, tmp_path):
    _, remote = local_and_remote
    out = f"{s3}/replace"
    build(_config(clean), out, progress=False, log=lambda _: None)
    with pytest.raises(BuildError, match=f"{out} holds a finished build with a different config"):
        build(_config(clean, sweep="3"), out, progress=False, log=lambda _: None)
    assert verify_dataset(out) == [] and (as_path(out) / "SHA256SUMS").exists()  # a refused build changes nothing
    build(_config(clean, sweep="3"), out, overwrite=True, progress=False, log=lambda _: None)
    expected = tmp_path / "expected"
    build(_config(clean, sweep="3"), expected, progress=False, log=lambda _: None)
    assert (as_path(out) / "SHA256SUMS").read_bytes() == (expected / "SHA256SUMS").read_bytes()
    assert verify_dataset(out) == []  # no shard of the old build is left over
    (as_path(out) / "notes.txt").write_bytes(b"mine")
    with pytest.raises(StorageError, match="not written by datagen build"):
        build(_config(clean), out, overwrite=True, progress=False, log=lambda _: None)


def test_source_on_s3_gives_the_local_build(s3, clean, local_and_remote, tmp_path):
    local, _ = local_and_remote
    source = f"{s3}/sources/guitar"
    for path in sorted(clean.iterdir()):
        (as_path(source) / path.name).put_file(path)
    out = tmp_path / "from-s3"
    build(_config(clean, source=source), out, progress=False, log=lambda _: None)
    assert (out / "SHA256SUMS").read_bytes() == (local / "SHA256SUMS").read_bytes()


def test_http_is_read_only_and_serves_ranges(local_and_remote):
    """The same objects over plain HTTP (moto serves the bucket path-style): read by range requests."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("aiohttp")
    from training.data import PairStream

    local, remote = local_and_remote
    bucket = as_path(remote)
    for relpath in bucket.files():  # anonymous readers (plain HTTP) need public objects
        bucket.fs.chmod((bucket / relpath).path, acl="public-read")
    url = f"{os.environ['AWS_ENDPOINT_URL']}/{BUCKET}/hc"
    here = list(PairStream(local, "valid", 0.5, training=True, seed=5))
    there = list(PairStream(url, "valid", 0.5, training=True, seed=5))
    assert [x["key"] for x in here] == [x["key"] for x in there]
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(here, there, strict=True))
    assert verify_dataset(url) == []
    with pytest.raises(StorageError, match="read-only"):
        build(BuildConfig(), url, progress=False, log=lambda _: None)
