"""Speed of manifests.flac against libsndfile (soundfile) on one core: encoding, and 2-s crop decoding.

    python benchmarks/bench_flac.py [--seconds 60] [--member-seconds 10] [--repeats 15] [--crops 600]

Encode: ``--seconds`` of 16 kHz 24-bit demo guitar (mono), ``encode_flac`` against
``soundfile.write(BytesIO, format="FLAC", subtype="PCM_24")`` (libsndfile's default compression, with
LPC); M samples/s, x real time, the speed ratio, and the size relative to raw 24-bit PCM.

Crop decode: a random 2-s crop as float32 (what the training loader reads) from a ``--member-seconds``
24-bit member: ``decode_flac_range(..., dtype=np.float32)`` against
``SoundFile(BytesIO(member)).seek(start).read(frames, dtype="float32")``, both on our stream; for
reference also soundfile on its own stream and ours on soundfile's (no seek table there: frames are
found by scanning for frame headers). Full decode of the member: ``decode_flac`` against ``soundfile.read``.

The two sides alternate in blocks (a block of ours, a block of theirs, ...) so that load changes on a
shared machine hit both alike; figures are medians per call.
"""

from __future__ import annotations

import os

# One core: pin the process and stop every thread pool before numpy loads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datagen.demo import demo_guitar  # noqa: E402
from manifests import flac as flac_module  # noqa: E402
from manifests.flac import decode_flac, decode_flac_range, encode_flac  # noqa: E402

RATE = 16000
BITS = 24


def alternating(ours, theirs, calls: int, block: int) -> tuple[float, float]:
    """Median wall seconds per call of ``ours(i)`` and ``theirs(i)``, run in alternating blocks of calls."""
    ours(0)
    theirs(0)
    times_ours, times_theirs = [], []
    for start in range(0, calls, block):
        for function, times in ((ours, times_ours), (theirs, times_theirs)):
            for i in range(start, min(calls, start + block)):
                began = time.perf_counter()
                function(i)
                times.append(time.perf_counter() - began)
    return statistics.median(times_ours), statistics.median(times_theirs)


def quantise(x: np.ndarray) -> np.ndarray:
    """float audio -> int32 in the 24-bit range (round to nearest, clamp)."""
    full_scale = 2.0 ** (BITS - 1)
    return np.clip(np.rint(x.astype(np.float64) * full_scale), -full_scale, full_scale - 1).astype(np.int32)


def soundfile_encode(pcm: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, (pcm << (32 - BITS)).T, RATE, format="FLAC", subtype="PCM_24")  # top bits of int32
    return buffer.getvalue()


def _encode_without_md5(pcm: np.ndarray) -> bytes:
    """encode_flac with STREAMINFO's MD5 left at zero ("not computed"), as encoder version 1 wrote it."""
    original = flac_module.pcm_md5
    flac_module.pcm_md5 = lambda samples, bits: bytes(16)
    try:
        return encode_flac(pcm, RATE, BITS)
    finally:
        flac_module.pcm_md5 = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="encoded signal length (default 60)")
    parser.add_argument("--member-seconds", type=float, default=10.0, help="member length for crops (default 10)")
    parser.add_argument("--repeats", type=int, default=15, help="encodes per side (default 15)")
    parser.add_argument("--crops", type=int, default=600, help="crops per side (default 600)")
    args = parser.parse_args()

    pcm = quantise(demo_guitar(args.seconds, RATE, seed=1, peak=0.9))
    samples = pcm.size
    raw_bytes = samples * BITS // 8
    ours_bytes, theirs_bytes = encode_flac(pcm, RATE, BITS), soundfile_encode(pcm)
    ours, theirs = alternating(lambda i: encode_flac(pcm, RATE, BITS), lambda i: soundfile_encode(pcm),
                               args.repeats, 3)
    print(f"Encode {args.seconds:g} s of 16 kHz 24-bit mono demo guitar, one core, median of {args.repeats}")
    print(f"{'encoder':26s} {'ms':>8s} {'M samples/s':>12s} {'x real time':>12s} {'size/raw':>9s}")
    for name, wall, size in (("ours (encode_flac)", ours, len(ours_bytes)),
                             ("libsndfile (soundfile)", theirs, len(theirs_bytes))):
        print(f"{name:26s} {wall * 1e3:8.2f} {samples / wall / 1e6:12.1f} {args.seconds / wall:12,.0f} "
              f"{size / raw_bytes:9.3f}")
    print(f"ours is {theirs / ours:.2f}x faster; size {len(ours_bytes) / len(theirs_bytes):.3f}x libsndfile's")
    # The MD5 of the samples in STREAMINFO (encoder version 2; libFLAC computes it too): its cost, measured by
    # encoding with and without it, alternating.
    with_md5, without_md5 = alternating(lambda i: encode_flac(pcm, RATE, BITS), lambda i: _encode_without_md5(pcm),
                                        args.repeats, 3)
    print(f"the STREAMINFO MD5 costs {(with_md5 - without_md5) * 1e3:.2f} ms of {with_md5 * 1e3:.2f} "
          f"({100 * (with_md5 - without_md5) / with_md5:.0f}%); without it ours is {theirs / without_md5:.2f}x "
          "faster than libsndfile (encoder version 1)\n")

    member_pcm = quantise(demo_guitar(args.member_seconds, RATE, seed=2, peak=0.9))
    member_ours, member_theirs = encode_flac(member_pcm, RATE, BITS), soundfile_encode(member_pcm)
    crop = 2 * RATE
    rng = np.random.default_rng(0)
    starts = [int(s) for s in rng.integers(0, member_pcm.shape[1] - crop + 1, args.crops)]

    def ours_crop(member):
        return lambda i: decode_flac_range(member, starts[i], crop, dtype=np.float32)

    def soundfile_crop(member):
        def read(i):
            with sf.SoundFile(io.BytesIO(member)) as handle:
                handle.seek(starts[i])
                return handle.read(crop, dtype="float32", always_2d=True)
        return read

    print(f"Decode a random 2-s crop (float32) of a {args.member_seconds:g}-s 24-bit member, one core, "
          f"median of {args.crops}")
    print(f"{'decoder':40s} {'us/crop':>9s}  comparison")
    ours, theirs = alternating(ours_crop(member_ours), soundfile_crop(member_ours), args.crops, 50)
    print(f"{'ours, our stream (seek table)':40s} {ours * 1e6:9.1f}  {theirs / ours:.2f}x faster than soundfile")
    print(f"{'soundfile, our stream':40s} {theirs * 1e6:9.1f}")
    ours, theirs = alternating(ours_crop(member_theirs), soundfile_crop(member_theirs), args.crops, 50)
    print(f"{'ours, libsndfile stream (no seek table)':40s} {ours * 1e6:9.1f}  {theirs / ours:.2f}x faster "
          "than soundfile")
    print(f"{'soundfile, libsndfile stream':40s} {theirs * 1e6:9.1f}")

    full_ours, full_theirs = alternating(lambda i: decode_flac(member_ours),
                                         lambda i: sf.read(io.BytesIO(member_ours), dtype="int32"), 60, 10)
    print(f"{'full decode, ours (decode_flac)':40s} {full_ours * 1e6:9.1f}  {full_theirs / full_ours:.2f}x faster "
          f"than soundfile.read ({member_pcm.size / full_ours / 1e6:.0f} M samples/s)")


if __name__ == "__main__":
    main()
