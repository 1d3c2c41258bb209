"""Reference ODGs and MOVs of P. Kabal's MATLAB PQevalAudio for the pairs of ``tests/test_peaq.py``.

    python benchmarks/reference/peaq_kabal.py --kabal-dir PATH [--octave octave-cli] [--compare] [--pairs ...]

``PATH`` is a checkout of a repository holding Kabal's MATLAB code with the ``PQevalAudio_fn.m`` wrapper
(tested with github.com/NikolajAndersson/PEAQ at bfa9b80a5faf90a143241744538967107b65a1d6: PQevalAudio
revision 1.2 of 2004-02-05; the copy under ``Evaluation_algorithms/PEAQ`` of the declipping survey's toolbox,
github.com/rajmic/declipping2020_codes, is the same code). GNU Octave runs it (Debian: ``apt-get install
octave``). The script writes each pair of ``tests.test_peaq.oracle_signals`` as 32-bit float WAV files
(soundfile, subtype FLOAT) into a temporary folder, runs

    octave-cli --eval "[odg, movb] = PQevalAudio_fn('ref.wav', 'test.wav')"

with the checkout's folders on Octave's path, and prints ``KABAL_MATLAB``'s entries as Python literals (ODG,
then the 11 MOVs in ``MOV_NAMES`` order, 10 significant digits). ``--compare`` also prints our values from
``training.metrics.peaq.peaq(..., ehs_peak="largest")`` and the largest differences.

Nothing of Kabal's code is kept in this repository; only the numbers it printed are (tests/test_peaq.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for tests.test_peaq

from tests.test_peaq import KABAL_MATLAB, ORACLE_RATE, oracle_signals  # noqa: E402
from training.metrics.peaq import MOV_NAMES, peaq  # noqa: E402

_SCRIPT = """
addpath(genpath('{kabal}'));
[odg, movb] = PQevalAudio_fn('{ref}', '{test}');
printf('RESULT %.10g', odg); printf(' %.10g', movb); printf('\\n');
"""


def fail(message: str) -> None:
    """Print ``message`` as one line on stderr and exit 2 (a user error: a missing or wrong file or argument)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def find_wrapper(kabal_dir: Path) -> Path:
    """The folder holding ``PQevalAudio_fn.m`` under ``kabal_dir``; exits 2 naming the folder when absent."""
    hits = sorted(kabal_dir.rglob("PQevalAudio_fn.m"))
    if not hits:
        fail(f"{kabal_dir}: no PQevalAudio_fn.m below it (a checkout of NikolajAndersson/PEAQ?)")
    return hits[0].parent


def run_kabal(octave: str, kabal_dir: Path, reference: np.ndarray, test: np.ndarray, folder: Path) -> list[float]:
    """ODG and the 11 MOVs of Kabal's code for one pair of (samples,) or (channels, samples) float32 arrays."""
    ref_path, test_path = folder / "ref.wav", folder / "test.wav"
    for path, audio in ((ref_path, reference), (test_path, test)):
        sf.write(path, np.atleast_2d(audio).T, ORACLE_RATE, subtype="FLOAT")
    script = _SCRIPT.format(kabal=kabal_dir, ref=ref_path, test=test_path)
    done = subprocess.run([octave, "--no-gui", "--quiet", "--eval", script], capture_output=True, text=True,
                          cwd=folder, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        fail(f"{octave} failed on {kabal_dir}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return [float(v) for v in lines[-1].split()[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kabal-dir", type=Path, required=True, help="checkout holding PQevalAudio_fn.m")
    parser.add_argument("--octave", default="octave-cli", help="the Octave executable (default octave-cli)")
    parser.add_argument("--compare", action="store_true", help="also print our values and the differences")
    parser.add_argument("--pairs", nargs="+", choices=sorted(KABAL_MATLAB), default=sorted(KABAL_MATLAB),
                        help="the pairs to run (default all)")
    args = parser.parse_args()
    if not args.kabal_dir.is_dir():
        fail(f"{args.kabal_dir}: not a folder")
    kabal_dir = find_wrapper(args.kabal_dir.resolve())
    version = subprocess.run([args.octave, "--version"], capture_output=True, text=True, check=False)
    print(f"# {version.stdout.splitlines()[0] if version.stdout else args.octave}; Kabal's code from {kabal_dir}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.pairs:
            reference, test = oracle_signals(name)
            values = run_kabal(args.octave, kabal_dir, reference, test, Path(folder))
            print(f'    "{name}": ({", ".join(f"{v:.10g}" for v in values)}),', flush=True)
            if args.compare:
                ours = peaq(reference, test, ORACLE_RATE, ehs_peak="largest")
                mine = [ours.odg, *(ours.movs[m] for m in MOV_NAMES)]
                relative = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(mine[1:], values[1:], strict=True))
                print(f"    # ours: ODG {mine[0]:.10g}, |ΔODG| {abs(mine[0] - values[0]):.2e}, "
                      f"largest relative MOV difference {relative:.2e}")


if __name__ == "__main__":
    main()
