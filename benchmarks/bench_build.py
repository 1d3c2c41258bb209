"""Speed and memory of ``datagen build`` on a CEG-OD-sized corpus, against a straightforward script.

    python benchmarks/bench_build.py [--hours 1.68] [--workdir DIR]

Makes ~1.7 hours of clean 44.1 kHz 16-bit WAV (the synthetic demo guitar, in 60-second files, like
the paper's CEG), then times, each in its own process:
- ``datagen build --recipe ceg-od`` (16 kHz, overdrive at 5 gains: 8.4 hours of pairs) with 1 and 2
  workers, on the full corpus and on half of it (memory must not grow with the corpus);
- the script a researcher would otherwise write: for each file, ``librosa.load(sr=16000)``, cut 10 s
  segments, ``effects.overdrive`` at the 5 gains, FLAC-encode input and target, ``webdataset.ShardWriter``.
Reports x real time (output audio seconds per wall second), output bytes, and the peak RSS of the whole
process tree (sampled from /proc every 20 ms). The straightforward script needs librosa
(``pip install librosa``); without it that row is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datagen.demo import demo_guitar  # noqa: E402

SOURCE_RATE = 44100
FILE_SECONDS = 60.0


def make_corpus(folder: Path, hours: float) -> float:
    """Write ``hours`` of clean guitar as 60-s 16-bit WAV files; returns the seconds written."""
    folder.mkdir(parents=True, exist_ok=True)
    files = int(round(hours * 3600 / FILE_SECONDS))
    for i in range(files):
        path = folder / f"take-{i:04d}.wav"
        if not path.exists():
            sf.write(path, demo_guitar(FILE_SECONDS, SOURCE_RATE, seed=i)[0], SOURCE_RATE, subtype="PCM_16")
    return files * FILE_SECONDS


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, from /proc."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/task/{current}/children") as children:
                stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_measured(command: list[str]) -> tuple[float, int]:
    """Run ``command``; returns (wall seconds, peak RSS of its process tree in bytes)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, _tree_rss_bytes(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, errors = process.communicate()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{errors.decode()[-2000:]}")
    return time.perf_counter() - started, peak


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


STRAIGHTFORWARD = textwrap.dedent('''
    import io, sys, pathlib
    import librosa, numpy as np, soundfile as sf, webdataset as wds
    import effects
    source, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    def flac(x):
        buffer = io.BytesIO(); sf.write(buffer, x, 16000, format="FLAC", subtype="PCM_24"); return buffer.getvalue()
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxsize=256 * 1024 * 1024) as sink:
        for path in sorted(source.glob("*.wav")):
            audio, _ = librosa.load(path, sr=16000, mono=True)
            for s, start in enumerate(range(0, len(audio) - 160000 + 1, 160000)):
                clean = audio[start:start + 160000].astype(np.float32)
                for v, gain in enumerate(np.linspace(20, 50, 5)):
                    sink.write({"__key__": f"{path.stem}-{s:05d}-{v:02d}",
                                "input.flac": flac(effects.overdrive(clean, gain)), "target.flac": flac(clean)})
''')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1.68, help="clean audio in hours (default 1.68, as CEG)")
    parser.add_argument("--workdir", help="folder for the corpus and outputs (default: a temporary folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-build-"))
    rows = []
    for fraction in (0.5, 1.0):
        corpus = workdir / f"clean-{fraction:g}"
        seconds_in = make_corpus(corpus, args.hours * fraction)
        seconds_out = seconds_in * 5  # five gains per segment
        for workers in (1, 2):
            out = workdir / f"out-{fraction:g}-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            wall, rss = run_measured([sys.executable, "-m", "datagen.cli", "build", "--recipe", "ceg-od", "--source",
                                      str(corpus), "--out", str(out), "--workers", str(workers), "-q"])
            rows.append((f"datagen build, {workers} worker{'s' if workers > 1 else ''}", seconds_in, seconds_out, wall,
                         folder_bytes(out), rss))
        if fraction == 1.0:
            out = workdir / "out-straightforward"
            shutil.rmtree(out, ignore_errors=True)
            try:
                import librosa  # noqa: F401
            except ImportError:
                print("librosa is not installed (pip install librosa): skipping the straightforward script")
            else:
                wall, rss = run_measured([sys.executable, "-c", STRAIGHTFORWARD, str(corpus), str(out)])
                rows.append(("librosa + ShardWriter script", seconds_in, seconds_out, wall, folder_bytes(out), rss))
    print(f"{'run':34s} {'clean h':>8s} {'pairs h':>8s} {'wall s':>8s} {'x real time':>12s} {'GB out':>7s} "
          f"{'peak RSS MB':>12s}")
    for name, seconds_in, seconds_out, wall, size, rss in rows:
        print(f"{name:34s} {seconds_in / 3600:8.2f} {seconds_out / 3600:8.2f} {wall:8.1f} {seconds_out / wall:12,.0f} "
              f"{size / 1e9:7.2f} {rss / 2**20:12.0f}")
    full = [r for r in rows if r[1] == max(r[1] for r in rows)]
    ours = next(r for r in full if r[0].endswith("2 workers"))
    theirs = next((r for r in full if r[0].startswith("librosa")), None)
    if theirs:
        print(f"datagen build with 2 workers is {theirs[3] / ours[3]:.1f}x faster than the straightforward script")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
