"""Fault injection: `datagen build` killed at random moments, with each executor, then resumed.

The resumed output must equal an uninterrupted build (SHA256SUMS identical), and no process and no
``.partial`` file may be left behind; SIGINT and SIGTERM stop a build with one line and exit 130 / 143.
The builds run as real processes (``python -m datagen.cli``) so that kill -9 means what it says.
"""

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import soundfile as sf

from datagen.build import build
from datagen.config import BuildConfig
from datagen.demo import demo_guitar
from manifests import verify_dataset

_MARKER = "DEDISTORT_FAULT_TEST"
_ARGS = ["--segment-seconds", "1", "--gains", "20:50:3", "--shard-examples", "2", "--name", "t"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-corpus")
    for i in range(4):
        sf.write(root / f"take-{i}.wav", demo_guitar(3.0, 16000, seed=300 + i, peak=0.7).T, 16000, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """The same build as the command line's, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("fault-reference") / "out"
    build(BuildConfig(source=str(corpus), segment_seconds=1.0, sweep="20:50:3", shard_max_examples=2, name="t"), out,
          progress=False, log=lambda _: None)
    return out


def _start(corpus: Path, out: Path, token: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, _MARKER: token, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "datagen.cli", "build", "--source", str(corpus), "--out", str(out), "-q",
               *_ARGS, *extra]
    # A session of its own: a signal to its process group reaches the build and its workers, like Ctrl-C in
    # a terminal, and nothing else.
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _marked(token: str) -> list[int]:
    """Live processes (not zombies) started with this test's marker in their environment."""
    found = []
    needle = f"{_MARKER}={token}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, IndexError):
            continue
    return found


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _journal(out: Path) -> int:
    folder = out / ".build" / "journal"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def _partials(out: Path) -> list[Path]:
    return sorted(out.rglob("*.partial")) if out.exists() else []


def _assert_no_process_left(token: str) -> None:
    assert _wait_for(lambda: not _marked(token), 15), f"processes left behind: {_marked(token)}"


@pytest.fixture()
def token():
    value = uuid.uuid4().hex
    yield value
    for pid in _marked(value):  # never leave anything running, whatever the test found
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the workers")
def test_builds_killed_at_random_moments_resume_to_identical_bytes(corpus, reference, tmp_path, token):
    pytest.importorskip("distributed")
    rng = random.Random(20261206)
    out = tmp_path / "out"
    executors = [("--workers", "2"), ("--workers", "1"), ("--dask", "local", "--workers", "1")]
    for extra in executors:
        process = _start(corpus, out, token, *extra)
        # A random moment: after a random number of finished shards (0: while starting up), plus a random delay.
        more = rng.randint(0, 3)
        if more == 0:
            time.sleep(rng.uniform(0.5, 2.0))  # while it starts, discovers, plans or compiles
        else:
            done = _journal(out) + more
            _wait_for(lambda p=process, n=done: p.poll() is not None or _journal(out) >= n, 60)
            time.sleep(rng.uniform(0.0, 0.3))
        if process.poll() is None:  # on a quiet machine the build may already have finished: a moment too
            os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        _assert_no_process_left(token)
    report = build(BuildConfig(source=str(corpus), segment_seconds=1.0, sweep="20:50:3", shard_max_examples=2,
                               name="t"), out, progress=False, log=lambda _: None)
    assert report.reused_shards + report.rendered_shards == report.shards
    assert (out / "SHA256SUMS").read_text() == (reference / "SHA256SUMS").read_text()
    assert _partials(out) == [] and verify_dataset(out) == []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_worker_build_with_one_line(corpus, tmp_path, token, how):
    out = tmp_path / "out"
    process = _start(corpus, out, token, "--workers", "2")
    # Signal once the workers exist (the build process and at least two children carry the marker).
    assert _wait_for(lambda: process.poll() is not None or len(_marked(token)) >= 3, 60)
    if how == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    else:
        os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the build finished before the signal arrived")
    assert process.returncode == (130 if how == "SIGINT" else 143), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and how in lines[0] and "Traceback" not in err, err
    _assert_no_process_left(token)
    # Nothing that looks complete, nothing half-written (resuming is tested above).
    assert _partials(out) == [] and not (out / "SHA256SUMS").exists()
