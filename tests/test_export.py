"""datagen export lhotse: CutSets (manifests and Lhotse Shar) that Lhotse reads back to our exact samples."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

lhotse = pytest.importorskip("lhotse")
pytest.importorskip("torch")

from lhotse.dataset.collation import collate_audio  # noqa: E402

from datagen.cli import main as datagen_main  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from manifests import decode_audio, read_manifests, read_shard  # noqa: E402


def _sources(folder: Path, count: int) -> Path:
    for i in range(count):
        sf.write(folder / f"take-{i}.wav", demo_guitar(1.0, 16000, seed=80 + i, peak=0.5).T, 16000)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    clean = _sources(tmp_path_factory.mktemp("clean"), 6)
    out = tmp_path_factory.mktemp("data") / "od"
    assert datagen_main(["build", "--source", str(clean), "--out", str(out), "--effect", "overdrive",
                         "--gains", "10,30", "--effect-arg", "colour=20", "--segment-seconds", "1",
                         "--splits", "50:25:25", "--shard-examples", "3", "--workers", "1", "-q"]) == 0
    return out


def _members(out: Path) -> dict[str, dict]:
    return {m.key: m.files for shard in sorted(out.glob("*/*.tar")) for m in read_shard(shard)}


def test_export_reads_back_through_shar_and_manifests(corpus, tmp_path):
    dest = tmp_path / "lhotse"
    assert datagen_main(["export", "lhotse", str(corpus), str(dest), "--shard-size", "2", "-q"]) == 0
    rows = read_manifests(corpus)
    members = _members(corpus)
    for split, split_rows in rows.items():
        shar = lhotse.CutSet.from_shar(in_dir=dest / "shar" / split)
        cuts = sorted(shar, key=lambda c: c.id)
        assert [c.id for c in cuts] == sorted(r["key"] for r in split_rows)
        assert len(list((dest / "shar" / split).glob("recording.*.tar"))) == -(-len(cuts) // 2)
        targets, lengths = collate_audio(lhotse.CutSet.from_cuts(cuts), recording_field="target_recording")
        inputs, _ = collate_audio(lhotse.CutSet.from_cuts(cuts))
        assert targets.shape == (len(cuts), 16000) and lengths.tolist() == [16000] * len(cuts)
        for b, cut in enumerate(cuts):
            row = next(r for r in split_rows if r["key"] == cut.id)
            np.testing.assert_array_equal(targets[b].numpy(), decode_audio(members[cut.id]["target.flac"])[0][0])
            np.testing.assert_array_equal(inputs[b].numpy(), decode_audio(members[cut.id]["input.flac"])[0][0])
            assert cut.effect == "overdrive" and cut.colour == 20.0 and cut.gain_db in (10.0, 30.0)
            assert cut.input_sdr_db == row["input_sdr_db"] and cut.source_id == row["source_id"]
        # The manifest form: recordings are the FLAC files beside it.
        manifest = lhotse.CutSet.from_file(dest / f"cuts_{split}.jsonl.gz")
        again, _ = collate_audio(manifest, recording_field="target_recording")
        assert [c.id for c in manifest] == [c.id for c in cuts]
        np.testing.assert_array_equal(again.numpy(), targets.numpy())


def test_online_corpus_is_refused(tmp_path, capsys):
    (tmp_path / "clean").mkdir()
    clean = _sources(tmp_path / "clean", 2)
    out = tmp_path / "online"
    assert datagen_main(["build", "--source", str(clean), "--out", str(out), "--effect", "overdrive", "--online",
                         "--segment-seconds", "1", "--splits", "100:0:0", "--workers", "1", "-q"]) == 0
    capsys.readouterr()
    assert datagen_main(["export", "lhotse", str(out), str(tmp_path / "x"), "-q"]) == 2
    error = capsys.readouterr().err
    assert "online corpus holds no inputs" in error and error.count("\n") == 1
