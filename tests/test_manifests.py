"""The on-disk contract: keys, deterministic atomic shards, parquet manifests, checksums, card, verify."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import manifests
from manifests import (
    DATASET_JSON,
    KEY_PATTERN,
    MANIFEST_SCHEMA,
    SPLITS,
    ManifestError,
    ShardMember,
    check_sha256sums,
    config_hash,
    manifest_path,
    pcm_sha256,
    read_json,
    read_manifest,
    read_manifests,
    read_sha256sums,
    read_shard,
    sha256_file,
    shard_name,
    shard_relpath,
    slugify,
    stable_digest,
    validate_key,
    verify_dataset,
    write_card,
    write_json,
    write_manifest,
    write_sha256sums,
    write_shard,
)

SAMPLE_RATE = 8000
DURATION_SECONDS = 0.25
FRAMES = int(SAMPLE_RATE * DURATION_SECONDS)


# ---------------------------------------------------------------------------------------------------------------
# A tiny dataset built by hand: 3 train examples in 2 shards, 1 valid example (stereo) in 1 shard.


def _encode(audio: np.ndarray) -> tuple[bytes, np.ndarray]:
    """FLAC bytes of (channels, samples) audio, and the audio as a decoder returns it."""
    buffer = io.BytesIO()
    sf.write(buffer, audio.T, SAMPLE_RATE, format="FLAC", subtype="PCM_24")
    data = buffer.getvalue()
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return data, decoded.T


def _row(key: str, split: str, shard: str, channels: int, input_pcm: str, target_pcm: str, index: int) -> dict:
    return {
        "key": key, "split": split, "shard": shard, "source_id": f"src-{index}", "source_path": f"src/{index}.wav",
        "group_id": f"group-{index}", "segment_index": index, "start_seconds": 0.5 * index,
        "duration_seconds": DURATION_SECONDS, "sample_rate": SAMPLE_RATE, "channels": channels, "effect": "hardclip",
        "parameters": json.dumps({"gain_db": 10.0 + index, "threshold": 1.0}, sort_keys=True),
        "extras": "{}", "dry_gain": 0.0, "input_sdr_db": 12.5 + index, "input_si_sdr_db": None,
        "input_pcm_sha256": input_pcm, "target_pcm_sha256": target_pcm, "codec": "flac24",
    }


def _example(key: str, split: str, shard: str, channels: int, seed: int, index: int) -> tuple[ShardMember, dict]:
    rng = np.random.default_rng(seed)
    clean = (0.3 * rng.standard_normal((channels, FRAMES))).astype(np.float32)
    noisy = np.clip(clean * 3.0, -1.0, 1.0).astype(np.float32)
    input_bytes, input_decoded = _encode(noisy)
    target_bytes, target_decoded = _encode(clean)
    row = _row(key, split, shard, channels, pcm_sha256(input_decoded), pcm_sha256(target_decoded), index)
    files = {"input.flac": input_bytes, "target.flac": target_bytes, "json": json.dumps(row, sort_keys=True).encode()}
    return ShardMember(key, files), row


LAYOUT = {  # shard relpath -> [(key, channels)]
    shard_relpath("tiny", "train", 0): [("song-a-0000", 1), ("song-a-0001", 1)],
    shard_relpath("tiny", "train", 1): [("song-b-0000", 1)],
    shard_relpath("tiny", "valid", 0): [("song-c-0000", 2)],
}


def build_tiny(out: Path) -> dict:
    """Write the tiny dataset into ``out``; returns {relpath: [ShardMember]} for the tests' reference."""
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    written: dict[str, list[ShardMember]] = {}
    known: dict[str, str] = {}
    index = 0
    for relpath, examples in LAYOUT.items():
        split = relpath.split("/")[0]
        members = []
        for key, channels in examples:
            member, row = _example(key, split, relpath, channels, seed=index, index=index)
            members.append(member)
            rows[split].append(row)
            index += 1
        info = write_shard(out / relpath, members)
        known[relpath] = info.sha256
        written[relpath] = members
    splits = {}
    for split, split_rows in rows.items():
        if not split_rows:
            continue
        write_manifest(manifest_path(out, split), split_rows)
        shards = sum(1 for relpath in LAYOUT if relpath.startswith(f"{split}/"))
        hours = len(split_rows) * DURATION_SECONDS / 3600
        splits[split] = {"examples": len(split_rows), "shards": shards, "hours_in": hours, "hours_out": hours}
    info = {"name": "tiny", "seed": 3, "config": {"effect": "hardclip", "sweep": "10:12:3", "seed": 3, "recipe": "",
                                                  "source": "folder", "sample_rate": SAMPLE_RATE},
            "versions": {"dedistort": "0.1.0", "numpy": np.__version__}, "splits": splits,
            "members": {"input": "KEY.input.flac", "target": "KEY.target.flac", "metadata": "KEY.json"}}
    write_json(out / DATASET_JSON, info)
    write_card(out, {**info, "description": "Hard-clipped noise, for tests."})
    listed = [*LAYOUT, *(f"manifest/{s}.parquet" for s in splits), DATASET_JSON, "README.md"]
    write_sha256sums(out, listed, known=known)
    return written


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "out"
    return out, build_tiny(out)


@pytest.fixture()
def copy(tiny, tmp_path) -> Path:
    """A private copy of the tiny dataset, free to corrupt."""
    target = tmp_path / "copy"
    shutil.copytree(tiny[0], target)
    return target


def _names_file(problems: list[str], path: Path, *words: str) -> bool:
    return any(p.startswith(str(path)) and all(w in p for w in words) for p in problems)


# ---------------------------------------------------------------------------------------------------------------
# Keys


def test_validate_key_accepts_and_rejects():
    assert validate_key("song-a-0001") == "song-a-0001"
    for bad in ["song.a", "Song", "", "-lead", "a_b", "a/b", "a b", "é"]:
        with pytest.raises(ManifestError, match="invalid key"):
            validate_key(bad)
    with pytest.raises(ManifestError, match="no dots"):
        validate_key("take.1")


def test_slugify_and_stable_digest():
    assert slugify("Band A/Take 1.WAV") == "band-a-take-1-wav"
    assert slugify("--__--") == "x"
    assert slugify("") == "x"
    # RFC 7693's blake2b test vector for "abc" starts ba80a53f981c4d0d.
    assert stable_digest("abc") == "ba80a53f"
    assert stable_digest("abc", 16) == "ba80a53f981c4d0d"
    assert stable_digest("abd") != stable_digest("abc")


@given(st.text())
def test_slugify_always_gives_a_valid_key(text):
    slug = slugify(text)
    assert KEY_PATTERN.fullmatch(slug)
    assert slugify(slug) == slug


def test_shard_names():
    assert shard_name("tiny", "train", 7) == "tiny-train-000007.tar"
    assert shard_relpath("tiny", "valid", 0) == "valid/tiny-valid-000000.tar"
    with pytest.raises(ValueError, match="split"):
        shard_name("tiny", "validation", 0)


# ---------------------------------------------------------------------------------------------------------------
# Shards


def _members() -> list[ShardMember]:
    return [ShardMember("b-key", {"json": b"{}", "target.flac": b"B" * 700, "input.flac": b"b" * 10}),
            ShardMember("a-key", {"target.flac": b"A" * 1500, "json": b'{"x": 1}'}),
            ShardMember("c-key", {"json": b""})]


def test_write_shard_is_deterministic_and_order_independent(tmp_path):
    members = _members()
    first = write_shard(tmp_path / "one" / "s.tar", members)
    second = write_shard(tmp_path / "two" / "s.tar", list(reversed(members)))
    assert first.sha256 == second.sha256 == sha256_file(tmp_path / "one" / "s.tar")
    assert (tmp_path / "one" / "s.tar").read_bytes() == (tmp_path / "two" / "s.tar").read_bytes()
    assert first.size_bytes == os.path.getsize(tmp_path / "one" / "s.tar") and first.count == 3
    assert first.path == str(tmp_path / "one" / "s.tar")
    with tarfile.open(tmp_path / "one" / "s.tar") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == ["a-key.json", "a-key.target.flac", "b-key.input.flac", "b-key.json",
                                       "b-key.target.flac", "c-key.json"]
    assert all((i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) == (0, 0, 0, "", "", 0o644) for i in infos)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "one" / "s.tar").st_mode & 0o777 == 0o644 & ~umask


def test_read_shard_round_trip(tmp_path):
    write_shard(tmp_path / "s.tar", _members())
    read = list(read_shard(tmp_path / "s.tar"))
    assert read == sorted(_members(), key=lambda m: m.key)


def test_long_keys_survive(tmp_path):
    key = "k" + "-0123456789" * 15  # 151 characters: more than a ustar name holds
    write_shard(tmp_path / "s.tar", [ShardMember(key, {"target.flac": b"xyz"})])
    assert list(read_shard(tmp_path / "s.tar")) == [ShardMember(key, {"target.flac": b"xyz"})]


def test_webdataset_reads_our_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    long_key = "z" + "-long" * 40
    members = [*_members(), ShardMember(long_key, {"input.flac": b"\x00\x01" * 300, "json": b"[]"})]
    write_shard(tmp_path / "s.tar", members)
    samples = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["a-key", "b-key", "c-key", long_key]
    by_key = {m.key: m.files for m in members}
    for sample in samples:
        stored = {k: v for k, v in sample.items() if not k.startswith("__")}
        assert stored == by_key[sample["__key__"]]


_keys = st.from_regex(KEY_PATTERN, fullmatch=True).filter(lambda k: len(k) < 300)
_files = st.dictionaries(st.sampled_from(["json", "input.flac", "target.flac", "txt"]), st.binary(max_size=1200),
                         min_size=1)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(_keys, _files, max_size=6), st.randoms(use_true_random=False))
def test_shard_round_trip_property(examples, random):
    members = [ShardMember(key, files) for key, files in examples.items()]
    shuffled = list(members)
    random.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as folder:
        first = write_shard(Path(folder) / "a.tar", members)
        second = write_shard(Path(folder) / "b.tar", shuffled)
        assert first.sha256 == second.sha256 and first.count == len(members)
        assert list(read_shard(Path(folder) / "b.tar")) == sorted(members, key=lambda m: m.key)


@pytest.mark.parametrize("bad, message", [
    ([ShardMember("a.b", {"json": b"{}"})], "no dots"),
    ([ShardMember("A", {"json": b"{}"})], "invalid key"),
    ([ShardMember("a", {"json": b"{}"}), ShardMember("a", {"txt": b""})], "duplicate key 'a'"),
    ([ShardMember("a", {})], "no files"),
    ([ShardMember("a", {".flac": b""})], "invalid extension"),
    ([ShardMember("a", {"x/y": b""})], "invalid extension"),
])
def test_write_shard_rejects_bad_members(tmp_path, bad, message):
    with pytest.raises(ManifestError, match=message) as caught:
        write_shard(tmp_path / "s.tar", bad)
    assert str(tmp_path / "s.tar") in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_the_old_shard(tmp_path):
    path = tmp_path / "s.tar"
    write_shard(path, _members())
    before = path.read_bytes()
    # The second key's content is not bytes: the failure comes after the first key's members were written.
    broken = [ShardMember("a-key", {"json": b"{}"}), ShardMember("b-key", {"json": "not bytes"})]
    with pytest.raises(ManifestError, match=r"b-key\.json: expected bytes"):
        write_shard(path, broken)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tar"]  # no .partial left behind
    with pytest.raises(ManifestError):
        write_shard(tmp_path / "new.tar", broken)
    assert not (tmp_path / "new.tar").exists()


def _raw_tar(path: Path, names: list[str]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))


@pytest.mark.parametrize("names, message", [
    (["nodot"], "no extension"),
    (["Upper.json"], "invalid key"),
    (["a.json", "b.json", "a.flac"], "not contiguous"),
    (["a.json", "a.json"], "appears twice"),
])
def test_read_shard_rejects_bad_member_names(tmp_path, names, message):
    _raw_tar(tmp_path / "s.tar", names)
    with pytest.raises(ManifestError, match=message) as caught:
        list(read_shard(tmp_path / "s.tar"))
    assert str(tmp_path / "s.tar") in str(caught.value)


def test_read_shard_detects_damage(tmp_path):
    path = tmp_path / "s.tar"
    with pytest.raises(ManifestError, match="no such shard"):
        list(read_shard(path))
    write_shard(path, _members())
    good = path.read_bytes()
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
    second_header = infos[1].offset
    end = infos[-1].offset_data + -(-infos[-1].size // 512) * 512  # where the two zero blocks start
    cuts = {"inside a member's data": infos[0].offset_data + 100, "inside a header": second_header + 200,
            "at a header boundary": second_header, "without the end marker": end,
            "half the end marker": end + 512, "to nothing": 0}
    for where, cut in cuts.items():
        path.write_bytes(good[:cut])
        with pytest.raises(ManifestError) as caught:
            list(read_shard(path))
        assert str(path) in str(caught.value), where
    # A flipped byte in a header breaks its checksum; tarfile alone would stop quietly there.
    damaged = bytearray(good)
    damaged[second_header + 10] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(ManifestError, match="corrupt"):
        list(read_shard(path))
    path.write_bytes(b"this is not a tar file" * 100)
    with pytest.raises(ManifestError, match="tar"):
        list(read_shard(path))


# ---------------------------------------------------------------------------------------------------------------
# Manifests


def _rows() -> list[dict]:
    return [_row(f"key-{i}", "train", "train/t-train-000000.tar", 1, None if i == 2 else f"{i:064x}", f"{i:064x}", i)
            for i in (3, 1, 2)]


def test_manifest_round_trip_and_deterministic_bytes(tmp_path):
    rows = _rows()
    write_manifest(tmp_path / "a.parquet", rows)
    write_manifest(tmp_path / "b.parquet", list(reversed(rows)))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    read = read_manifest(tmp_path / "a.parquet")
    assert read == sorted(rows, key=lambda r: r["key"])
    assert read[1]["input_pcm_sha256"] is None
    assert pq.read_schema(tmp_path / "a.parquet").names == MANIFEST_SCHEMA.names
    assert pq.read_table(tmp_path / "a.parquet").column("key").to_pylist() == ["key-1", "key-2", "key-3"]


def test_read_manifests_and_paths(tmp_path):
    assert manifest_path(tmp_path, "valid") == tmp_path / "manifest" / "valid.parquet"
    write_manifest(manifest_path(tmp_path, "train"), _rows())
    tables = read_manifests(tmp_path)
    assert list(tables) == ["train"] and len(tables["train"]) == 3
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(manifest_path(tmp_path, "test"))
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(ManifestError, match="junk.parquet"):
        read_manifest(tmp_path / "junk.parquet")


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("codec"), "row 'key-1': missing column.*codec"),
    (lambda r: r.update(colour=1.0), "row 'key-1': unknown column.*colour"),
    (lambda r: r.update(target_pcm_sha256=None), "target_pcm_sha256 must not be null"),
    (lambda r: r.update(key="key.1"), "invalid key"),
    (lambda r: r.update(split="validation"), "split must be one of"),
    (lambda r: r.update(shard="valid/x.tar"), "not in the train/ folder"),
    (lambda r: r.update(parameters="[1, 2]"), "parameters must be a JSON object"),
    (lambda r: r.update(extras='{"b": 1, "a": 2}'), "extras must have sorted keys"),
    (lambda r: r.update(segment_index="three"), "column segment_index"),
    (lambda r: r.update(key="key-2"), "duplicate key 'key-2'"),
])
def test_write_manifest_rejects_bad_rows(tmp_path, change, message):
    rows = _rows()
    change(rows[1])  # rows[1] is key-1
    with pytest.raises(ManifestError, match=message) as caught:
        write_manifest(tmp_path / "m.parquet", rows)
    assert str(tmp_path / "m.parquet") in str(caught.value)
    assert not (tmp_path / "m.parquet").exists()


# ---------------------------------------------------------------------------------------------------------------
# Checksums and JSON


def test_pcm_sha256_hashes_float32_channels_first():
    audio = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    expected = hashlib.sha256(audio.astype("<f4").tobytes()).hexdigest()
    assert pcm_sha256(audio) == expected == pcm_sha256(np.asfortranarray(audio.astype(np.float32)))
    assert pcm_sha256(audio.T.copy()) != expected  # interleaved is not the same audio layout
    with pytest.raises(ValueError, match="channels, samples"):
        pcm_sha256(audio.ravel())


def test_sha256sums_round_trip_and_problems(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tar").write_bytes(b"aaa")
    (tmp_path / "b.json").write_bytes(b"{}\n")
    fake = "f" * 64
    write_sha256sums(tmp_path, ["train/a.tar", "b.json", "train/a.tar"], known={"b.json": fake})
    text = (tmp_path / "SHA256SUMS").read_text()
    assert text == f"{fake}  b.json\n{hashlib.sha256(b'aaa').hexdigest()}  train/a.tar\n"
    assert read_sha256sums(tmp_path) == {"b.json": fake, "train/a.tar": hashlib.sha256(b"aaa").hexdigest()}
    problems = check_sha256sums(tmp_path)  # the fake "known" digest is now a mismatch
    assert len(problems) == 1 and _names_file(problems, tmp_path / "b.json", "checksum mismatch")
    (tmp_path / "train" / "a.tar").unlink()
    assert _names_file(check_sha256sums(tmp_path), tmp_path / "train" / "a.tar", "missing")
    (tmp_path / "SHA256SUMS").write_text("not a checksum line\n")
    assert _names_file(check_sha256sums(tmp_path), tmp_path / "SHA256SUMS", "malformed")
    with pytest.raises(ManifestError, match="malformed"):
        read_sha256sums(tmp_path)
    (tmp_path / "SHA256SUMS").unlink()
    assert _names_file(check_sha256sums(tmp_path), tmp_path / "SHA256SUMS", "missing")
    with pytest.raises(ManifestError, match="not a plain relative path"):
        write_sha256sums(tmp_path, ["../escape"])
    with pytest.raises(ManifestError, match="missing file"):
        write_sha256sums(tmp_path, ["gone.tar"])


def test_json_is_canonical_and_errors_name_the_file(tmp_path):
    write_json(tmp_path / "d.json", {"b": 1, "a": {"z": "ü", "y": [1, 2]}})
    assert (tmp_path / "d.json").read_text(encoding="utf-8") == (
        '{\n  "a": {\n    "y": [\n      1,\n      2\n    ],\n    "z": "ü"\n  },\n  "b": 1\n}\n')
    assert read_json(tmp_path / "d.json") == {"a": {"y": [1, 2], "z": "ü"}, "b": 1}
    with pytest.raises(ManifestError, match="missing.json: no such file"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ManifestError, match="bad.json: invalid JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ManifestError, match="list.json: expected a JSON object"):
        read_json(tmp_path / "list.json")
    with pytest.raises(ManifestError, match="nan.json"):
        write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


def test_config_hash():
    digest = config_hash({"seed": 1, "effect": "overdrive"})
    assert digest == config_hash({"effect": "overdrive", "seed": 1})
    assert digest == hashlib.sha256(b'{"effect":"overdrive","seed":1}').hexdigest()
    assert digest != config_hash({"effect": "overdrive", "seed": 2})


# ---------------------------------------------------------------------------------------------------------------
# Card


def _front_matter(text: str) -> str:
    assert text.startswith("---\n")
    return text[4:text.index("\n---\n", 4)]


def test_card_front_matter_and_body(tiny):
    out, _ = tiny
    text = (out / "README.md").read_text(encoding="utf-8")
    front = _front_matter(text)
    assert "pretty_name: tiny\n" in front and "license: other\n" in front
    assert "task_categories:\n- audio-to-audio\n" in front
    assert "tags: [audio, distortion, declipping, webdataset]" in front
    assert ('configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: "train/*.tar"\n'
            '  - split: validation\n    path: "valid/*.tar"') in front
    assert "test/*.tar" not in front  # no test shards in the tiny dataset
    body = text[len(front) + 8:]
    for needle in ["# tiny", "Hard-clipped noise, for tests.", "hardclip", "`10:12:3`", "Seed: 3", "dedistort 0.1.0",
                   "| train | 3 | 2 | 0.0002083 | 0.0002083 |", "| valid | 1 | 1 |",
                   "`KEY.input.flac`", "`KEY.target.flac`", "`KEY.json`",
                   "wds.WebDataset", 'load_dataset("webdataset"', "sha256sum -c SHA256SUMS", "datagen verify OUT",
                   "datagen build --from OUT/dataset.json --source DIR --out NEW"]:
        assert needle in body, needle


def test_card_is_valid_yaml_and_deterministic(tmp_path):
    info = {"name": 'a "quoted": name', "license": "cc-by-4.0", "description": "x",
            "splits": {"train": {"examples": 5, "shards": 1, "hours_in": 0.1, "hours_out": 0.5},
                       "valid": {"examples": 0, "shards": 0, "hours_in": 0.0, "hours_out": 0.0},
                       "test": {"examples": 2, "shards": 1, "hours_in": 0.01, "hours_out": 0.05}}}
    write_card(tmp_path / "a", info)
    write_card(tmp_path / "b", dict(reversed(list(info.items()))))
    text = (tmp_path / "a" / "README.md").read_text()
    assert text == (tmp_path / "b" / "README.md").read_text()
    front = _front_matter(text)
    assert "valid/*.tar" not in front and "- split: test" in front
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load(front)
    assert meta["pretty_name"] == 'a "quoted": name' and meta["license"] == "cc-by-4.0"
    assert meta["task_categories"] == ["audio-to-audio"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train/*.tar"}, {"split": "test", "path": "test/*.tar"}]}]


# ---------------------------------------------------------------------------------------------------------------
# The whole dataset


def test_tiny_dataset_verifies_and_rewrites_identically(tiny, tmp_path):
    out, written = tiny
    assert verify_dataset(out) == []
    for relpath, members in written.items():
        assert list(read_shard(out / relpath)) == members
    again = tmp_path / "again"
    build_tiny(again)
    for relpath in read_sha256sums(out):
        assert (again / relpath).read_bytes() == (out / relpath).read_bytes(), relpath
    assert (again / "SHA256SUMS").read_bytes() == (out / "SHA256SUMS").read_bytes()


def test_sha256sum_binary_accepts_our_file(tiny):
    binary = shutil.which("sha256sum")
    if binary is None:
        pytest.skip("no sha256sum binary")
    done = subprocess.run([binary, "-c", "SHA256SUMS"], cwd=tiny[0], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len(read_sha256sums(tiny[0]))


def test_verify_flipped_byte(copy):
    shard = copy / "train/tiny-train-000000.tar"
    with tarfile.open(shard) as tar:
        target = tar.getmember("song-a-0000.target.flac")
    data = bytearray(shard.read_bytes())
    data[target.offset_data + target.size // 2] ^= 0x55
    shard.write_bytes(bytes(data))
    problems = verify_dataset(copy)
    assert _names_file(problems, shard, "checksum mismatch")
    # FLAC frames carry CRCs: the damage shows up as a decode failure or a decoded-PCM mismatch too.
    assert _names_file(problems, shard, "song-a-0000.target.flac")


def test_verify_truncated_shard(copy):
    shard = copy / "train/tiny-train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    problems = verify_dataset(copy)
    assert _names_file(problems, shard, "checksum mismatch")
    assert _names_file(problems, shard, "truncated")


def test_verify_deleted_shard(copy):
    shard = copy / "valid/tiny-valid-000000.tar"
    shard.unlink()
    problems = verify_dataset(copy)
    assert _names_file(problems, shard, "listed in SHA256SUMS but missing")
    assert _names_file(problems, shard, "missing (the manifest lists 1 examples")


def test_verify_missing_member(copy, tiny):
    relpath = "train/tiny-train-000000.tar"
    members = tiny[1][relpath]
    stripped = [members[0], ShardMember(members[1].key, {k: v for k, v in members[1].files.items()
                                                         if k != "target.flac"})]
    write_shard(copy / relpath, stripped)
    problems = verify_dataset(copy)
    assert _names_file(problems, copy / relpath, "song-a-0001", "no target member")


def test_verify_example_missing_from_shard_or_manifest(copy, tiny):
    relpath = "train/tiny-train-000000.tar"
    write_shard(copy / relpath, tiny[1][relpath][:1])
    problems = verify_dataset(copy)
    assert _names_file(problems, copy / relpath, "'song-a-0001' is in the manifest but not in the shard")
    # The other way round: a shard example with no manifest row.
    rows = [r for r in read_manifest(manifest_path(copy, "valid")) if r["key"] != "song-c-0000"]
    write_manifest(manifest_path(copy, "valid"), rows)
    problems = verify_dataset(copy)
    assert _names_file(problems, copy / "valid/tiny-valid-000000.tar", "'song-c-0000' is not in the manifest")
    assert _names_file(problems, copy / DATASET_JSON, "splits.valid.examples is 1")


def test_verify_dataset_json_counts(copy):
    info = read_json(copy / DATASET_JSON)
    info["splits"]["train"]["examples"] = 4
    write_json(copy / DATASET_JSON, info)
    problems = verify_dataset(copy)
    assert _names_file(problems, copy / DATASET_JSON, "checksum mismatch")
    assert _names_file(problems, copy / DATASET_JSON, "splits.train.examples is 4", "has 3 rows")


def test_verify_manifest_disagreements(copy):
    rows = read_manifest(manifest_path(copy, "train"))
    rows[0]["target_pcm_sha256"] = "0" * 64
    rows[1]["duration_seconds"] = DURATION_SECONDS + 2 / SAMPLE_RATE
    rows[2]["sample_rate"] = SAMPLE_RATE * 2
    write_manifest(manifest_path(copy, "train"), rows)
    problems = verify_dataset(copy)
    shard0, shard1 = copy / "train/tiny-train-000000.tar", copy / "train/tiny-train-000001.tar"
    assert _names_file(problems, shard0, "song-a-0000.target.flac", "target_pcm_sha256")
    assert _names_file(problems, shard0, "song-a-0001.input.flac", "manifest says 0.250250 s")
    assert _names_file(problems, shard1, "song-b-0000", "sample rate 8000 Hz, manifest says 16000 Hz")
    # Within one sample is fine.
    rows = read_manifest(manifest_path(copy, "train"))
    rows[1]["duration_seconds"] = DURATION_SECONDS + 0.9 / SAMPLE_RATE
    rows[2]["sample_rate"] = SAMPLE_RATE
    write_manifest(manifest_path(copy, "train"), rows)
    assert not any("song-a-0001" in p for p in verify_dataset(copy))


def test_verify_unlisted_and_undecodable(copy):
    stray = copy / "test" / "tiny-test-000000.tar"
    write_shard(stray, [ShardMember("stray", {"target.flac": b"not flac at all", "json": b"{not json"})])
    problems = verify_dataset(copy)
    assert _names_file(problems, stray, "not listed in SHA256SUMS")
    assert _names_file(problems, stray, "stray.target.flac", "cannot decode flac")
    assert _names_file(problems, stray, "stray.json", "invalid JSON")
    assert _names_file(problems, stray, "'stray' is not in the manifest")
    assert verify_dataset(copy / "nowhere") == [f"{copy / 'nowhere'}: no such folder"]


def test_public_names_are_exported():
    for name in ["ManifestError", "validate_key", "slugify", "stable_digest", "SPLITS", "shard_name", "shard_relpath",
                 "ShardMember", "ShardInfo", "write_shard", "read_shard", "MANIFEST_SCHEMA", "write_manifest",
                 "read_manifest", "read_manifests", "manifest_path", "sha256_file", "pcm_sha256", "write_sha256sums",
                 "read_sha256sums", "check_sha256sums", "write_json", "read_json", "DATASET_JSON", "config_hash",
                 "write_card", "verify_dataset"]:
        assert name in manifests.__all__ and hasattr(manifests, name), name
    assert issubclass(ManifestError, ValueError)
