"""datagen build as a careful and a hostile user would run it: what it deletes, when it refuses, how it fails.

Every test here reproduces a defect of issue 11 (items 1-3, 8, 9, 11, 14, 15, 18) on a tiny corpus.
"""

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import datagen.build as build_module
from datagen.build import BuildError, build
from datagen.cli import main as datagen_main
from datagen.config import BuildConfig
from datagen.demo import demo_guitar
from manifests import read_json, verify_dataset
from manifests.paths import path_problem

QUIET = {"progress": False, "log": lambda _: None}


def _write_corpus(root: Path, files: int = 4, seconds: float = 3.0) -> Path:
    for i in range(files):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"take-{i}.wav", demo_guitar(seconds, 16000, seed=200 + i, peak=0.7).T, 16000,
                 subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four 3-s recordings at 16 kHz (no resampling: fast) in two folders."""
    return _write_corpus(tmp_path_factory.mktemp("safety-corpus"))


def _config(source: Path, **changes) -> BuildConfig:
    settings = dict(source=str(source), segment_seconds=1.0, sweep="20:50:2", shard_max_examples=4, name="t")
    settings.update(changes)
    return BuildConfig(**settings)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety-reference") / "out"
    build(_config(corpus), out, **QUIET)
    return out


def _sums(out: Path) -> str:
    return (out / "SHA256SUMS").read_text()


def _files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".build" not in p.parts}


def _crash_after(monkeypatch, count: int) -> None:
    """Make the next build's runner raise after ``count`` finished shards (a crash mid-build)."""
    original = build_module.make_runner

    def crashing(workers, dask):
        def run(specs, out):
            if count == 0:
                raise RuntimeError("simulated crash before the first shard")
            for done, result in enumerate(original(workers, dask)(specs, out), start=1):
                yield result
                if done == count:
                    raise RuntimeError("simulated crash")
        return run

    monkeypatch.setattr(build_module, "make_runner", crashing)


# --- 1. never delete what datagen did not write ---------------------------------------------------------


def test_overwrite_refuses_a_folder_that_only_looks_like_a_build(corpus, tmp_path, capsys):
    out = tmp_path / "u"
    for split in ("train", "valid", "test"):
        (out / split).mkdir(parents=True)
    (out / "train" / "sample_1.npy").write_text("d")
    (out / "README.md").write_text("notes")
    code = datagen_main(["build", "--source", str(corpus), "--segment-seconds", "2", "--out", str(out),
                         "--overwrite", "-q", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "train/sample_1.npy" in err and "README.md" in err and len(err.strip().splitlines()) == 1
    assert (out / "train" / "sample_1.npy").read_text() == "d" and (out / "README.md").read_text() == "notes"


def test_overwrite_refuses_foreign_files_beside_a_real_build(corpus, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / "train" / "mine.tar").write_text("user data")
    (out / "notes.txt").write_text("user notes")
    with pytest.raises(BuildError, match=r"notes\.txt.*train/mine\.tar|train/mine\.tar.*notes\.txt"):
        build(_config(corpus, sweep="10:20:2"), out, overwrite=True, **QUIET)
    assert (out / "train" / "mine.tar").exists() and (out / "notes.txt").exists()
    assert _sums(out) == _sums(reference)


def test_overwrite_deletes_only_listed_files_and_leaves_no_stale_shard(corpus, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    build(_config(corpus, sweep="30", shard_max_examples=8), out, overwrite=True, **QUIET)
    dataset = read_json(out / "dataset.json")
    assert verify_dataset(out) == []
    listed = set(dataset["shards"]) | {"dataset.json", "README.md", "SHA256SUMS"}
    listed |= {f"manifest/{split}.parquet" for split in dataset["splits"]}
    assert _files(out) == listed
    assert not (out / ".build" / "next").exists()


# --- 2. validate and plan before touching the old output; build beside, swap at the end -----------------


def test_overwrite_with_a_mistyped_source_leaves_the_old_build_intact(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = _files(out)
    code = datagen_main(["build", "--source", str(tmp_path / "typo"), "--out", str(out), "--overwrite", "-q"])
    assert code == 2 and "typo" in capsys.readouterr().err
    assert _files(out) == before and _sums(out) == _sums(reference) and verify_dataset(out) == []


def test_a_crashed_overwrite_keeps_the_old_build_and_resumes(corpus, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    _crash_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(_config(corpus, sweep="10:20:2"), out, overwrite=True, **QUIET)
    assert _sums(out) == _sums(reference) and verify_dataset(out) == []  # the old build is whole
    monkeypatch.undo()
    report = build(_config(corpus, sweep="10:20:2"), out, overwrite=True, **QUIET)
    assert report.reused_shards == 2
    fresh = tmp_path / "fresh"
    build(_config(corpus, sweep="10:20:2"), fresh, **QUIET)
    assert _sums(out) == _sums(fresh) and _files(out) == _files(fresh)


def test_a_swap_cut_off_is_finished_by_the_next_run(corpus, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference, out)

    def cut(out_dir):
        raise KeyboardInterrupt("power cut while swapping")

    monkeypatch.setattr(build_module, "_complete_swap", cut)
    with pytest.raises(KeyboardInterrupt):
        build(_config(corpus, sweep="30"), out, overwrite=True, **QUIET)
    assert (out / ".build" / "swap.json").is_file() and (out / ".build" / "next" / "SHA256SUMS").is_file()
    monkeypatch.undo()
    lines = []
    report = build(_config(corpus, sweep="30"), out, overwrite=True, progress=False, log=lines.append)
    assert any("swapping" in line for line in lines) and report.rendered_shards == 0
    fresh = tmp_path / "fresh"
    build(_config(corpus, sweep="30"), fresh, **QUIET)
    assert _sums(out) == _sums(fresh) and _files(out) == _files(fresh)


# --- 3. a failed build leaves nothing behind -------------------------------------------------------------


def test_a_build_that_never_wrote_a_shard_leaves_nothing(corpus, tmp_path, monkeypatch):
    out = tmp_path / "new" / "out"
    _crash_after(monkeypatch, 0)
    with pytest.raises(RuntimeError):
        build(_config(corpus), out, **QUIET)
    assert not out.exists()
    monkeypatch.undo()
    build(_config(corpus, sweep="30"), out, **QUIET)  # another config, same folder: not refused
    assert verify_dataset(out) == []


def test_an_unfinished_build_names_itself_and_can_be_replaced(corpus, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _crash_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        build(_config(corpus), out, **QUIET)
    monkeypatch.undo()
    assert not (out / "SHA256SUMS").exists()
    with pytest.raises(BuildError, match="unfinished build"):
        build(_config(corpus, sweep="30"), out, **QUIET)
    build(_config(corpus, sweep="30"), out, overwrite=True, **QUIET)
    assert verify_dataset(out) == []


def test_temporary_files_left_by_a_kill_are_removed_by_the_next_run(corpus, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    left = [out / "train" / ".t-train-000000.tar.x1y2.partial", out / ".dataset.json.abcd.partial",
            out / ".build" / "journal" / ".train-000000.json.zz.partial"]
    for path in left:
        path.write_bytes(b"half")
    lines = []
    build(_config(corpus), out, progress=False, log=lines.append)
    assert not any(path.exists() for path in left) and any("temporary files" in line for line in lines)
    assert _sums(out) == _sums(reference)


# --- 8. shard reuse follows the sources' content; a rebuild leaves no shard it does not list -------------


def test_a_source_edited_in_place_is_rendered_again(corpus, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(corpus, source)
    out = tmp_path / "out"
    build(_config(source), out, **QUIET)
    edited = source / "a" / "take-1.wav"
    stamp = edited.stat()
    # Same length, same size, same mtime: only the samples differ.
    sf.write(edited, demo_guitar(3.0, 16000, seed=999, peak=0.7).T, 16000, subtype="PCM_16")
    os.utime(edited, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert edited.stat().st_size == stamp.st_size
    report = build(_config(source), out, **QUIET)
    assert report.rendered_shards >= 1
    fresh = tmp_path / "fresh"
    build(_config(source), fresh, **QUIET)
    assert _sums(out) == _sums(fresh)


def test_removed_sources_leave_no_stale_shard(corpus, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(corpus, source)
    out = tmp_path / "out"
    build(_config(source, shard_max_examples=2), out, **QUIET)
    # One file removed, not two: two files cannot fill the three promised splits (an error of its own).
    (source / "a" / "take-1.wav").unlink()
    build(_config(source, shard_max_examples=2), out, **QUIET)
    dataset = read_json(out / "dataset.json")
    assert {p for p in _files(out) if p.endswith(".tar")} == set(dataset["shards"])
    fresh = tmp_path / "fresh"
    build(_config(source, shard_max_examples=2), fresh, **QUIET)
    assert _sums(out) == _sums(fresh) and _files(out) == _files(fresh)
    assert verify_dataset(out) == []


# --- 9. a release does not depend on where the sources lie -----------------------------------------------


def test_release_is_the_same_wherever_the_sources_lie(corpus, tmp_path):
    for place in ("here", "there/deeper"):
        shutil.copytree(corpus, tmp_path / place / "src")
        (tmp_path / place / "src" / "a" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
        nan = demo_guitar(3.0, 16000, seed=5)
        nan[0, 20000] = np.nan
        sf.write(tmp_path / place / "src" / "b" / "nan.wav", nan.T, 16000, subtype="FLOAT")
        build(_config(tmp_path / place / "src"), tmp_path / place / "out", **QUIET)
    assert _sums(tmp_path / "here" / "out") == _sums(tmp_path / "there/deeper" / "out")
    text = (tmp_path / "here" / "out" / "dataset.json").read_text()
    assert str(tmp_path) not in text
    skipped = {entry["path"] for entry in read_json(tmp_path / "here" / "out" / "dataset.json")["skipped_files"]}
    assert {"a/broken.wav", "b/nan.wav"} <= skipped


# --- 11. absurd plans are refused before anything is allocated or written ---------------------------------


@pytest.mark.parametrize("gains", ["20:50:1000000000", "20:50:100000"])
def test_absurd_plans_are_refused_with_the_estimate_and_the_flag(corpus, tmp_path, capsys, gains):
    out = tmp_path / "out"
    code = datagen_main(["build", "--source", str(corpus), "--gains", gains, "--segment-seconds", "1",
                         "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--allow-large" in err and "examples" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_tampered_card_is_bounded_too(reference, corpus, tmp_path, capsys):
    card = read_json(reference / "dataset.json")
    card["config"]["sweep"] = "20:50:1000000000"
    (tmp_path / "card.json").write_text(json.dumps(card))
    code = datagen_main(["build", "--from", str(tmp_path / "card.json"), "--source", str(corpus), "--out",
                         str(tmp_path / "out"), "-q"])
    assert code == 2 and "--allow-large" in capsys.readouterr().err


def test_a_header_claiming_a_tiny_rate_is_not_planned_for_hours(tmp_path, capsys):
    source = tmp_path / "src"
    _write_corpus(source, files=3)  # three: two files cannot fill three promised splits
    # 100 000 frames at 1 Hz: 27.8 hours of planned output from a 200-kB file.
    sf.write(source / "a" / "liar.wav", np.zeros((100_000, 1), dtype=np.int16), 1, subtype="PCM_16")
    code = datagen_main(["build", "--source", str(source), "--segment-seconds", "1", "--out",
                         str(tmp_path / "out"), "-q", "--workers", "1"])
    captured = capsys.readouterr()
    # Either the file is skipped as implausible (inputs check) or the plan is refused as absurd.
    if code == 0:
        assert "liar.wav" in captured.out
        dataset = read_json(tmp_path / "out" / "dataset.json")
        assert sum(s["hours_in"] for s in dataset["splits"].values()) < 0.01
    else:
        assert code == 2 and "liar.wav" in captured.err and "--allow-large" in captured.err


def test_one_source_out_of_proportion_is_named_by_the_bound(tmp_path):
    from datagen.bounds import PlanTooLarge, check_plan_size
    from datagen.sources import SourceFile

    path = tmp_path / "liar.wav"
    path.write_bytes(b"x" * 200_000)
    liar = SourceFile("liar.wav", str(path), "liar.wav", None, 1, 100_000, 1)  # 27.8 h claimed at 1 Hz
    config = BuildConfig(source=str(tmp_path), segment_seconds=1.0)
    with pytest.raises(PlanTooLarge, match=r"liar\.wav: .*1 Hz \(27\.8 h\).*--allow-large"):
        check_plan_size(config, [liar])
    assert check_plan_size(config, [liar], allow_large=True).examples == 100_000 * 5


# --- 14. disk full ----------------------------------------------------------------------------------------


def _no_partials(out: Path) -> bool:
    return not [p for p in out.rglob("*.partial")] if out.exists() else True


def test_disk_full_is_one_line_and_leaves_nothing_that_looks_complete(corpus, tmp_path, monkeypatch, capsys):
    import manifests.shards as shards

    original = shards._HashingWriter.write
    written = {"bytes": 0}

    def filling_write(self, data):
        written["bytes"] += len(data)
        if written["bytes"] > 300_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    monkeypatch.setattr(shards._HashingWriter, "write", filling_write)
    out = tmp_path / "out"
    code = datagen_main(["build", "--source", str(corpus), "--segment-seconds", "1", "--gains", "20:50:2",
                         "--out", str(out), "-q", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no space left" in err.lower() and str(out) in err and "free" in err
    assert not (out / "SHA256SUMS").exists() and not (out / "dataset.json").exists() and _no_partials(out)


def test_disk_full_on_a_real_small_filesystem(corpus, tmp_path, capsys):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root and mount permission")
    try:
        out = mount_point / "out"
        code = datagen_main(["build", "--source", str(corpus), "--segment-seconds", "1", "--out", str(out),
                             "-q", "--workers", "1"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "free" in err and str(out) in err
        assert not (out / "SHA256SUMS").exists() and not (out / "dataset.json").exists() and _no_partials(out)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


# --- 15. error messages that point the right way ---------------------------------------------------------


def test_messages_point_the_right_way(corpus, reference, tmp_path, capsys):
    def error(*argv) -> str:
        assert datagen_main(["build", "-q", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    a_file = next(corpus.rglob("*.wav"))
    assert "is a file, not a folder" in error("--source", str(a_file), "--out", str(tmp_path / "o"))
    assert "COUNT must be at least 1" in error("--gains", "20:50:0", "--out", str(tmp_path / "o"))
    (tmp_path / "plain").write_text("x")
    assert "is a file, not a folder" in error("--out", str(tmp_path / "plain"))
    assert "--workers must be at least 1" in error("--workers", "0", "--out", str(tmp_path / "o"))
    started = time.monotonic()
    message = error("--source", str(corpus), "--segment-seconds", "1", "--dask", "tcp://127.0.0.1:9", "--out",
                    str(tmp_path / "o"))
    assert "tcp://127.0.0.1:9" in message and time.monotonic() - started < 25
    assert not (tmp_path / "o").exists()


def test_a_symlink_loop_is_named_not_a_system_error(corpus, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(corpus, source)
    (source / "a" / "loop.wav").symlink_to(source / "a" / "loop.wav")
    report = build(_config(source), tmp_path / "out", **QUIET)
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    assert "symlink loop" in reasons["loop.wav"] and "System error" not in reasons["loop.wav"]


def test_path_problem_words():
    assert path_problem("/nonexistent-folder/x", "folder") == "does not exist (nor does its folder /nonexistent-folder)"
    assert path_problem("/", "file") == "is a folder, not a file"
    assert path_problem("/dev/zero", "file") == "is a character device, not a regular file"
    assert path_problem("/", "folder") is None


# --- 18. the first build says it is compiling ----------------------------------------------------------------


def test_the_build_says_when_it_is_compiling_kernels(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "_COMPILE_NOTICE_SECONDS", 0.0)
    lines = []
    build(_config(corpus), tmp_path / "out", progress=False, log=lines.append)
    assert any("compiling kernels" in line and "first run only" in line for line in lines)
    monkeypatch.setattr(build_module, "_COMPILE_NOTICE_SECONDS", 1e9)
    lines.clear()
    build(_config(corpus, sweep="40"), tmp_path / "out3", progress=False, log=lines.append)
    assert not any("compiling" in line for line in lines)
