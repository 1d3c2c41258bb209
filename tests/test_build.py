"""datagen build end to end: determinism across executors, resume, bad input, CLI commands."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import datagen.build as build_module
from datagen.build import BuildError, build
from datagen.cli import main as datagen_main
from datagen.config import BuildConfig
from datagen.demo import demo_guitar
from manifests import read_manifests, verify_dataset


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Eight short recordings in two folders (44.1 kHz stereo and 22.05 kHz mono), plus bad files."""
    root = tmp_path_factory.mktemp("corpus")
    for i in range(8):
        folder = root / ("band-a" if i < 4 else "band-b")
        folder.mkdir(exist_ok=True)
        audio = demo_guitar(5.0, 44100 if i % 2 else 22050, seed=100 + i, peak=0.7)
        stereo = np.concatenate([audio, 0.8 * audio]) if i % 2 else audio
        sf.write(folder / f"take-{i}.{'wav' if i % 2 else 'flac'}", stereo.T, 44100 if i % 2 else 22050)
    return root


def _config(corpus: Path, **changes) -> BuildConfig:
    settings = dict(source=str(corpus), segment_seconds=2.0, sweep="20:50:3", shard_max_examples=4, name="test")
    settings.update(changes)
    return BuildConfig(**settings)


def _sums(out: Path) -> str:
    return (out / "SHA256SUMS").read_text()


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out"
    build(_config(corpus), out, workers=1, progress=False, log=lambda _: None)
    return out


def test_reference_build_is_complete_and_verifies(reference):
    assert verify_dataset(reference) == []
    dataset = json.loads((reference / "dataset.json").read_text())
    # 8 files of 5 s -> 2 full segments + 1 overlapping last segment each; 3 gains per segment.
    total = sum(split["examples"] for split in dataset["splits"].values())
    assert total == 8 * 3 * 3
    assert set(dataset["splits"]) == {"train", "valid", "test"}
    rows = [row for rows in read_manifests(reference).values() for row in rows]
    assert sorted(json.loads(r["parameters"])["gain_db"] for r in rows[:3]) == [20.0, 35.0, 50.0]
    assert all(r["sample_rate"] == 16000 and r["channels"] == 1 for r in rows)
    # One recording is never in two splits.
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["group_id"], r["split"]) == r["split"]
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=reference, check=True)
    card = (reference / "README.md").read_text()
    assert card.startswith("---\n") and "train/*.tar" in card


def test_same_bytes_for_any_worker_count_and_executor(corpus, reference, tmp_path):
    build(_config(corpus), tmp_path / "processes", workers=2, progress=False, log=lambda _: None)
    assert _sums(tmp_path / "processes") == _sums(reference)
    build(_config(corpus), tmp_path / "dask", workers=2, dask="local", progress=False, log=lambda _: None)
    assert _sums(tmp_path / "dask") == _sums(reference)


def test_same_bytes_on_a_running_dask_scheduler(corpus, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        build(_config(corpus), tmp_path / "remote", dask=cluster.scheduler_address, progress=False,
              log=lambda _: None)
    assert _sums(tmp_path / "remote") == _sums(reference)


def test_resume_rerenders_only_missing_or_damaged_shards(corpus, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    shards = sorted(out.glob("*/*.tar"))
    shards[0].unlink()
    damaged = bytearray(shards[1].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    shards[1].write_bytes(bytes(damaged))
    report = build(_config(corpus), out, workers=1, progress=False, log=lambda _: None)
    assert report.rendered_shards == 2 and report.reused_shards == len(shards) - 2
    assert _sums(out) == _sums(reference)


def test_interrupted_build_resumes_to_identical_bytes(corpus, reference, tmp_path, monkeypatch):
    original = build_module.make_runner

    def crashing_runner(workers, dask):
        def run(specs, out):
            for done, result in enumerate(original(workers, dask)(specs, out)):
                if done == 3:
                    raise KeyboardInterrupt("power cut")
                yield result
        return run

    monkeypatch.setattr(build_module, "make_runner", crashing_runner)
    with pytest.raises(KeyboardInterrupt):
        build(_config(corpus), tmp_path / "out", workers=1, progress=False, log=lambda _: None)
    assert not (tmp_path / "out" / "SHA256SUMS").exists()
    monkeypatch.setattr(build_module, "make_runner", original)
    report = build(_config(corpus), tmp_path / "out", workers=1, progress=False, log=lambda _: None)
    assert report.reused_shards == 3
    assert _sums(tmp_path / "out") == _sums(reference)


def test_other_config_refused_without_overwrite(corpus, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    with pytest.raises(BuildError, match="different config"):
        build(_config(corpus, sweep="10:20:2"), out, progress=False, log=lambda _: None)
    assert _sums(out) == _sums(reference)  # nothing was touched
    build(_config(corpus, sweep="10:20:2"), out, overwrite=True, progress=False, log=lambda _: None)
    assert verify_dataset(out) == [] and _sums(out) != _sums(reference)


def test_foreign_folder_is_never_overwritten(corpus, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(BuildError, match="not written by datagen build"):
        build(_config(corpus), tmp_path, overwrite=True, progress=False, log=lambda _: None)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_two_builds_cannot_write_one_output(corpus, tmp_path):
    lock = build_module._Lock(tmp_path / "out")
    try:
        with pytest.raises(BuildError, match="another build"):
            build(_config(corpus), tmp_path / "out", progress=False, log=lambda _: None)
    finally:
        lock.release()


def test_bad_files_are_skipped_with_reasons_and_good_ones_kept(corpus, reference, tmp_path):
    source = tmp_path / "corpus"
    shutil.copytree(corpus, source)
    (source / "band-a" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    sf.write(source / "band-b" / "empty.wav", np.zeros((0, 1)), 16000)
    nan = demo_guitar(3.0, 16000, seed=5)
    nan[0, 20000] = np.nan
    sf.write(source / "band-b" / "nan.wav", nan.T, 16000, subtype="FLOAT")
    report = build(_config(source), tmp_path / "out", progress=False, log=lambda _: None)
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    assert set(reasons) == {"broken.wav", "empty.wav", "nan.wav"}
    assert "non-finite" in reasons["nan.wav"]
    rows = [row for rows in read_manifests(tmp_path / "out").values() for row in rows]
    reference_rows = [row for rows in read_manifests(reference).values() for row in rows]
    good = {r["key"] for r in rows if not r["source_id"].startswith(("band-a/broken", "band-b/empty", "band-b/nan"))}
    assert {r["key"] for r in reference_rows} <= good | {r["key"] for r in rows}
    assert len(good) == len(reference_rows)
    with pytest.raises(Exception, match="broken.wav"):
        build(_config(source), tmp_path / "strict", strict=True, progress=False, log=lambda _: None)


def test_group_by_parent_keeps_folders_together(corpus, tmp_path):
    # Two folders are two groups: promise two splits (a test split could not be filled and would be an error).
    build(_config(corpus, group_by="parent", split_ratios=(0.2, 0.8, 0.0)), tmp_path / "out", progress=False,
          log=lambda _: None)
    rows = [row for rows in read_manifests(tmp_path / "out").values() for row in rows]
    for folder in ("band-a", "band-b"):
        assert len({r["split"] for r in rows if r["source_id"].startswith(folder)}) == 1


def test_clip_sdr_hits_its_targets_and_online_is_clean_only(corpus, tmp_path):
    build(_config(corpus, effect="clip-sdr", sweep="1,5,20", codec="flac24"), tmp_path / "sdr", progress=False,
          log=lambda _: None)
    rows = [row for rows in read_manifests(tmp_path / "sdr").values() for row in rows]
    for row in rows:
        assert row["input_sdr_db"] == pytest.approx(json.loads(row["parameters"])["sdr_db"], abs=0.02)
    build(_config(corpus, effect="clip-sdr", sweep="uniform:1:20:1", online=True), tmp_path / "online",
          progress=False, log=lambda _: None)
    dataset = json.loads((tmp_path / "online" / "dataset.json").read_text())
    assert dataset["online_effect"]["distribution"] == "uniform" and dataset["online_effect"]["high"] == 20
    assert verify_dataset(tmp_path / "online") == []
    rows = [row for rows in read_manifests(tmp_path / "online").values() for row in rows]
    assert all(r["input_pcm_sha256"] is None for r in rows)


def test_silent_segments_are_dropped_and_counted(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    audio = demo_guitar(4.0, 16000, seed=1)
    audio[:, :32000] = 0.0  # the first two 1-s... segments of 2 s: the first is silent
    sf.write(source / "a.wav", audio.T, 16000)
    # One file fills one split: promise only train.
    report = build(BuildConfig(source=str(source), segment_seconds=2.0, sweep="30", split_ratios=(1.0, 0.0, 0.0)),
                   tmp_path / "out", progress=False, log=lambda _: None)
    assert report.silent_segments == 1 and report.examples == 1


def test_cli_build_verify_stats_inspect_and_rebuild(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert datagen_main(["build", "--source", str(corpus), "--out", str(out), "--recipe", "ceg-hc",
                         "--gains", "20:40:2", "--segment-seconds", "2", "--workers", "1", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "h in" in printed and "x real time" in printed
    assert datagen_main(["verify", str(out)]) == 0
    assert datagen_main(["stats", str(out), "--plot", str(tmp_path / "sdr.png")]) == 0
    printed = capsys.readouterr().out
    assert "gain_db=20" in printed and (tmp_path / "sdr.png").stat().st_size > 1000
    key = read_manifests(out)["train"][0]["key"]
    assert datagen_main(["inspect", str(out), key, "-o", str(tmp_path / "ex")]) == 0
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == [f"{key}.input.wav", f"{key}.target.wav"]
    # Rebuilding from the card alone gives the same checksums.
    assert datagen_main(["build", "--from", str(out / "dataset.json"), "--source", str(corpus), "--out",
                         str(tmp_path / "again"), "--workers", "1", "-q"]) == 0
    assert "matches" in capsys.readouterr().out
    # A flipped byte is found and named.
    shard = sorted(out.glob("train/*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01
    shard.write_bytes(bytes(data))
    assert datagen_main(["verify", str(out)]) == 1
    assert shard.name in capsys.readouterr().out


def test_rebuild_comparison_names_a_changed_overdrive_kernel(tmp_path):
    from datagen.rebuild import compare_with_card

    def card(kernel, shard_sha, pcm_sha="p"):
        versions = {"flac_encoder": "1"} | ({"overdrive_kernel": kernel} if kernel else {})
        return {"config_hash": "c", "versions": versions, "splits": {"train": {"examples": 4}},
                "shards": {"train/a.tar": {"sha256": shard_sha, "pcm_sha256": pcm_sha}}}

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(card("2", "new-bytes", "new-pcm")))
    for published, explained in ((card(None, "old-bytes"), True), (card("2", "old-bytes"), False)):
        (tmp_path / "old.json").write_text(json.dumps(published))
        problems = compare_with_card(tmp_path / "old.json", tmp_path / "out")
        assert "train/a.tar: sha256 new-bytes differs" in problems[0]
        assert any("overdrive kernel differs (version 1 published, 2 rebuilt)" in p for p in problems) == explained
    (tmp_path / "old.json").write_text(json.dumps(card("1", "new-bytes", "new-pcm")))
    assert compare_with_card(tmp_path / "old.json", tmp_path / "out") == []  # same bytes: nothing to explain


def test_cli_rejects_bad_parameters(corpus, tmp_path, capsys):
    assert datagen_main(["build", "--source", str(corpus), "--out", str(tmp_path / "o"), "--gains", "20:500:3"]) == 2
    assert "gain_db must be in" in capsys.readouterr().err
    assert datagen_main(["build", "--effect", "clip-sdr", "--gains", "1:2:2", "--out", str(tmp_path / "o")]) == 2
    assert "use --sdr" in capsys.readouterr().err
    assert datagen_main(["build", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("codec", ["flac24", "flac16", "wav32"])
def test_encode_returns_exactly_what_decoders_read(codec):
    import io

    from datagen.render import encode
    from manifests import pcm_sha256
    from manifests.flac import decode_flac, to_float32

    audio = demo_guitar(1.0, 16000, seed=3, peak=0.8)
    audio[0, :50] = -1e-9  # rounds to the integer 0: a decoder returns +0.0, never -0.0
    audio[0, 50:100] = np.linspace(-1.2, 1.2, 50)  # clamped to full scale
    data, decoded = encode(audio, 16000, codec)
    theirs = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T
    assert pcm_sha256(decoded) == pcm_sha256(theirs)
    if codec != "wav32":
        samples, rate, bits = decode_flac(data)
        assert rate == 16000 and pcm_sha256(to_float32(samples, bits)) == pcm_sha256(decoded)
