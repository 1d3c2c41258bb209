"""What the build says is what the build holds (issue 11, items 4-7, 10, 12, 16; issue 12, item 5).

Each source file is wholly in the corpus or wholly out, decided before rendering and listed once with its
reason; empty promised splits, contradictory effect flags and mixed channel counts are refused; verify reads
only regular files and checks the FLAC members' MD5.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen import plan as plan_module
from datagen import render as render_module
from datagen.audio_io import AudioFileError
from datagen.build import build
from datagen.cli import main as datagen_main
from datagen.config import BuildConfig
from datagen.demo import demo_guitar
from datagen.sources import SourceFile, check_source
from manifests import read_json, read_manifests, verify_dataset

RATE = 16000
QUIET = dict(workers=1, progress=False, log=lambda _: None)


def _good(folder: Path, count: int, seconds: float = 2.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sf.write(folder / f"take-{i}.wav", demo_guitar(seconds, RATE, seed=300 + i, peak=0.7).T, RATE,
                 subtype="PCM_16")


def _with_rate(path: Path, rate: int) -> None:
    """Rewrite a PCM_16 mono WAV's header to claim ``rate`` Hz (the samples stay)."""
    data = bytearray(path.read_bytes())
    data[24:28], data[28:32] = struct.pack("<I", rate), struct.pack("<I", rate * 2)
    path.write_bytes(bytes(data))


#: file name -> words its reason must hold
BAD = {
    "inf.wav": "non-finite samples (NaN or inf) between 1.50 s and 1.50 s",
    "cut.flac": "truncated or corrupt: header says 4.0 s",
    "short.wav": "shorter than one segment: 0.10 s",
    "rate-2ghz.wav": "implausible sample rate in its header: 2,000,000,000 Hz",
    "rate-1hz.wav": "implausible sample rate in its header: 1 Hz",
    "trunc.wav": "truncated: header says 7.6 s, file holds 3.8 s",
    "pipe.wav": "not a regular file",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Five good 2-s files and one of each kind of bad file (see BAD), a FIFO among them."""
    root = tmp_path_factory.mktemp("trust-corpus")
    _good(root, 5)
    audio = demo_guitar(3.0, RATE, seed=1, peak=0.7)[0]
    audio[int(1.5 * RATE)] = np.inf
    sf.write(root / "inf.wav", audio, RATE, subtype="FLOAT")
    sf.write(root / "cut.flac", demo_guitar(4.0, RATE, seed=2, peak=0.7)[0], RATE, subtype="PCM_24")
    data = (root / "cut.flac").read_bytes()
    (root / "cut.flac").write_bytes(data[:len(data) // 2])
    sf.write(root / "short.wav", demo_guitar(0.1, RATE, seed=3)[0], RATE, subtype="PCM_16")
    for name, rate in (("rate-2ghz.wav", 2_000_000_000), ("rate-1hz.wav", 1)):
        sf.write(root / name, demo_guitar(0.2, RATE, seed=4)[0], RATE, subtype="PCM_16")
        _with_rate(root / name, rate)
    long = demo_guitar(7.6, RATE, seed=5, peak=0.7)[0]
    sf.write(root / "trunc.wav", long, RATE, subtype="PCM_16")
    data = (root / "trunc.wav").read_bytes()
    (root / "trunc.wav").write_bytes(data[:44 + long.size])  # half of the 16-bit samples
    os.mkfifo(root / "pipe.wav")  # opening it would block discovery forever
    return root


def _within(seconds: float, function, *args):
    """``function(*args)`` run on a daemon thread: a call that hangs (reading a FIFO or /dev/zero) fails the test
    after ``seconds`` instead of hanging the suite (cheaper than a subprocess, which imports everything again)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} did not return within {seconds} s (blocked on a read?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("trust-built") / "out"
    command = ["build", "--source", str(corpus), "--segment-seconds", "1", "--gains", "20:50:2",
               "--shard-examples", "3", "--out", str(out), "-q", "--workers", "1"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = _within(300, datagen_main, command)  # a build that blocks on the FIFO fails here
    assert code == 0
    return out, printed.getvalue()


def test_bad_files_are_wholly_out_listed_once_with_their_reasons(built):
    out, stdout = built
    dataset = read_json(out / "dataset.json")
    skipped = dataset["skipped_files"]
    paths = [entry["path"] for entry in skipped]
    assert sorted(paths) == sorted(BAD), skipped
    for entry in skipped:
        assert BAD[entry["path"]] in entry["reason"], entry
        # Each has a line in the build's summary, with its reason.
        assert f"skipped {entry['path']}: {entry['reason']}" in stdout
    # Wholly out: no example of a bad file, every readable segment of every good one.
    rows = [row for rows in read_manifests(out).values() for row in rows]
    assert {row["source_id"] for row in rows} == {f"take-{i}.wav" for i in range(5)}
    assert len(rows) == 5 * 2 * 2  # 5 files x 2 segments x 2 gains
    card = (out / "README.md").read_text()
    assert f"Source files skipped: {len(BAD)} (" in card
    assert verify_dataset(out) == []


def test_strict_fails_on_any_file_left_out(corpus, tmp_path, capsys):
    code = datagen_main(["build", "--source", str(corpus), "--segment-seconds", "1", "--gains", "30",
                         "--out", str(tmp_path / "out"), "-q", "--strict", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--strict" in err and len(err.strip().splitlines()) == 1
    assert any(name in err for name in BAD)


def test_a_file_that_breaks_after_the_check_stops_the_build(corpus, tmp_path, monkeypatch):
    # A file that read whole when checked but fails half-way through rendering must not leave its first segments.
    original = render_module.load_region

    def failing(source, start_seconds, *args, **kwargs):
        if source.source_id == "take-1.wav" and start_seconds > 0:
            raise AudioFileError(f"{source.path}: cannot read frames (simulated)")
        return original(source, start_seconds, *args, **kwargs)

    monkeypatch.setattr(render_module, "load_region", failing)
    config = BuildConfig(source=str(corpus), segment_seconds=1.0, sweep="30", shard_max_examples=3, name="t")
    with pytest.raises(AudioFileError, match="take-1.wav"):
        build(config, tmp_path / "out", **QUIET)
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_check_source_reads_the_whole_file(tmp_path):
    path = tmp_path / "a.wav"
    audio = demo_guitar(3.0, RATE, seed=9)[0]
    audio[-10] = np.nan  # in the last block, past any segment a header check would look at
    sf.write(path, audio, RATE, subtype="FLOAT")
    source = SourceFile("a.wav", str(path), "a.wav", None, RATE, audio.size, 1)
    assert "non-finite" in check_source(source, 1.0)
    sf.write(path, np.nan_to_num(audio), RATE, subtype="FLOAT")
    assert check_source(source, 1.0) is None
    assert check_source(source, 8.0).startswith("shorter than one segment: 3.00 s")


# --- issue 12, item 5: --channels keep over mixed channel counts ---------------------------------------


def test_keep_channels_refuses_mixed_channel_counts(tmp_path, capsys):
    for name, channels in (("mono.wav", 1), ("stereo.wav", 2), ("six.wav", 6)):
        audio = np.repeat(demo_guitar(1.0, RATE, seed=channels), channels, axis=0)
        sf.write(tmp_path / name, audio.T, RATE, subtype="PCM_16")
    code = datagen_main(["build", "--source", str(tmp_path), "--channels", "keep", "--segment-seconds", "1",
                         "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    for words in ("1 channel (mono.wav)", "2 channels (stereo.wav)", "6 channels (six.wav)", "--channels mono"):
        assert words in err
    assert not (tmp_path / "out").exists()


# --- item 6: effect flags that contradict each other -----------------------------------------------------


@pytest.mark.parametrize(("flags", "words"), [
    (["--effect-arg", "gain_db=30"], ["gain_db", "--gains"]),
    (["--effect-arg", "colour=10", "--effect-arg", "colour=20"], ["colour given twice"]),
    (["--recipe", "ceg-hc", "--effect", "overdrive"], ["ceg-hc", "hardclip", "overdrive"]),
    (["--effect", "clip-sdr", "--effect-arg", "sdr_db=5"], ["sdr_db", "--sdr"]),
])
def test_contradictory_effect_flags_are_errors(tmp_path, capsys, flags, words):
    code = datagen_main(["build", "--segment-seconds", "1", "--out", str(tmp_path / "out"), "-q", *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
    assert not (tmp_path / "out").exists()


def test_the_swept_parameter_is_refused_in_effect_args_from_any_entry_point():
    config = BuildConfig(effect_args=(("gain_db", 30.0),))
    with pytest.raises(ValueError, match="gain_db"):
        config.validate()


# --- item 7: a promised split with no example --------------------------------------------------------------


def test_every_segment_silent_fails_build_and_verify(tmp_path, capsys, monkeypatch):
    source = tmp_path / "src"
    _good(source, 4)
    out = tmp_path / "out"
    code = datagen_main(["build", "--source", str(source), "--segment-seconds", "1", "--gains", "30",
                         "--silence-db", "100", "--out", str(out), "-q", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "split train has no examples" in err and "--silence-db" in err
    assert not (out / "dataset.json").exists()
    # A corpus built before this check (or tampered with) fails verify the same way.
    monkeypatch.setattr("datagen.build.check_rendered_splits", lambda *args: None)
    build(BuildConfig(source=str(source), segment_seconds=1.0, sweep="30", silence_db=100.0), out, **QUIET)
    problems = verify_dataset(out)
    assert any("split train is promised" in p and "no examples" in p for p in problems), problems
    assert datagen_main(["verify", str(out)]) == 1


def test_one_folder_grouped_by_parent_is_refused_before_rendering(tmp_path, capsys):
    source = tmp_path / "src"
    _good(source / "song", 4)
    out = tmp_path / "out"
    code = datagen_main(["build", "--source", str(source), "--group-by", "parent", "--segment-seconds", "1",
                         "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    # The one group went to one split (by its hash): the other two are named, with the ways out.
    assert "splits " in err and " would have no examples" in err and "the 1 group" in err, err
    assert "--group-by file" in err and "--splits " in err
    assert not out.exists()
    # Promising only what one group can fill builds.
    assert datagen_main(["build", "--source", str(source), "--group-by", "parent", "--segment-seconds", "1",
                         "--gains", "30", "--splits", "100:0:0", "--out", str(out), "-q", "--workers", "1"]) == 0
    assert verify_dataset(out) == []


# --- item 10: keys ---------------------------------------------------------------------------------------------


def test_key_prefixes_do_not_collide_where_slugs_end_alike():
    # 30 000 ids whose slugs share their last 40 characters: the prefix's digest alone tells them apart.
    ids = [f"{i}/{'x' * 50}.wav" for i in range(30_000)]
    prefixes = {plan_module.source_key(i) for i in ids}
    assert len(prefixes) == len(ids)


def test_a_key_collision_names_both_files(monkeypatch):
    monkeypatch.setattr(plan_module, "source_key", lambda source_id: "same-0123")
    sources = [SourceFile(name, f"/x/{name}", name, None, RATE, 2 * RATE, 1) for name in ("a b.wav", "a-b.wav")]
    with pytest.raises(plan_module.KeyCollisionError, match=r"a b\.wav and a-b\.wav"):
        plan_module.plan(BuildConfig(segment_seconds=1.0, sweep="30"), sources)


# --- item 12 and 16: verify reads only regular files, and checks the FLAC members' MD5 ---------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("trust-small")
    _good(source, 3)
    out = tmp_path_factory.mktemp("trust-small-out") / "out"
    build(BuildConfig(source=str(source), segment_seconds=1.0, sweep="30", name="t"), out, **QUIET)
    return out


def _copy(small: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(small, tmp_path / "copy")
    return tmp_path / "copy"


def _verify_within_a_minute(out: Path) -> list[str]:
    # A verify that reads /dev/zero or a FIFO never returns: the timeout turns that into a failure.
    return _within(60, verify_dataset, out)


def test_verify_does_not_read_devices_or_fifos(small, tmp_path):
    out = _copy(small, tmp_path)
    shard = sorted((out / "train").glob("*.tar"))[0]
    shard.unlink()
    shard.symlink_to("/dev/zero")
    (out / "valid" / "extra.tar").unlink(missing_ok=True)
    os.mkfifo(out / "test" / "pipe.tar")
    problems = "\n".join(_verify_within_a_minute(out))
    assert f"{shard}: is not a regular file" in problems
    assert f"{out / 'test' / 'pipe.tar'}: is not a regular file" in problems


def test_verify_refuses_a_manifest_pointing_outside_the_dataset(small, tmp_path):
    import pyarrow.parquet as pq

    out = _copy(small, tmp_path)
    path = out / "manifest" / "train.parquet"
    table = pq.read_table(path)
    shards = table.column("shard").to_pylist()
    table = table.set_column(table.schema.get_field_index("shard"), "shard",
                             __import__("pyarrow").array(["/dev/zero"] * len(shards)))
    pq.write_table(table, path)
    problems = _verify_within_a_minute(out)
    assert any("'/dev/zero' is not a path inside the dataset" in p for p in problems), problems


def test_verify_checks_the_md5_of_flac_members(small, tmp_path):
    import tarfile

    out = _copy(small, tmp_path)
    shard = sorted((out / "train").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".target.flac"))
    md5_at = member.offset_data + 4 + 4 + 18
    assert bytes(data[md5_at:md5_at + 16]) != bytes(16)  # our encoder writes it
    data[md5_at] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_dataset(out)
    assert any(member.name in p and "MD5" in p for p in problems), problems


def test_dataset_json_records_relative_skipped_paths(built):
    out, _ = built
    text = json.dumps(read_json(out / "dataset.json")["skipped_files"])
    assert "/tmp" not in text and str(Path.cwd()) not in text


def test_a_rebuild_names_a_changed_key_scheme(tmp_path):
    from datagen.rebuild import compare_with_card

    def card(keys, shard_sha):
        versions = {"flac_encoder": "2"} | ({"example_keys": keys} if keys else {})
        return {"config_hash": "c", "versions": versions, "splits": {"train": {"examples": 4}},
                "shards": {"train/a.tar": {"sha256": shard_sha, "pcm_sha256": shard_sha}}}

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(card(plan_module.KEY_SCHEME, "new")))
    (tmp_path / "old.json").write_text(json.dumps(card(None, "old")))  # a release from before the scheme was named
    problems = compare_with_card(tmp_path / "old.json", tmp_path / "out")
    assert any("example keys are made differently (scheme 1 published, 2 rebuilt" in p for p in problems), problems
    from datagen.build import library_versions

    assert library_versions()["example_keys"] == plan_module.KEY_SCHEME  # what every build records
