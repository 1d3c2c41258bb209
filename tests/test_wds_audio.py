"""manifests.wds_audio / decode_audio: our shards through webdataset and Hugging Face datasets without torchcodec,
and the dataset card's two loading snippets, extracted from built cards and run verbatim."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen.cli import main as datagen_main
from datagen.demo import demo_guitar
from manifests import decode_audio, read_manifests, read_shard, wds_audio


def _build(tmp_path_factory, name: str, *options: str) -> Path:
    clean = tmp_path_factory.mktemp(f"{name}-clean")
    for i in range(6):
        stereo = np.concatenate([demo_guitar(1.0, 16000, seed=60 + i, peak=0.5),
                                 demo_guitar(1.0, 16000, seed=70 + i, peak=0.3)])
        sf.write(clean / f"take-{i}.wav", stereo.T, 16000)
    out = tmp_path_factory.mktemp(name) / "out"
    assert datagen_main(["build", "--source", str(clean), "--out", str(out), "--name", name, "--channels", "keep",
                         "--segment-seconds", "1", "--splits", "50:25:25", "--workers", "1", "-q", *options]) == 0
    return out


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "offline", "--effect", "hardclip", "--gains", "10,20")


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "online", "--effect", "overdrive", "--gains", "uniform:10:30:1", "--online")


def _first_member(out: Path, split: str = "train") -> tuple[str, dict]:
    shard = sorted((out / split).glob("*.tar"))[0]
    member = next(iter(read_shard(shard)))
    return member.key, member.files


def _snippets(out: Path) -> list[str]:
    text = (out / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Loading"):text.index("## Verifying")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_decode_audio_is_channels_first_float32(offline):
    key, members = _first_member(offline)
    audio, rate = decode_audio(members["target.flac"], key)
    expected, expected_rate = sf.read(io.BytesIO(members["target.flac"]), dtype="float32", always_2d=True)
    assert rate == expected_rate == 16000 and audio.dtype == np.float32 and audio.shape == (2, 16000)
    np.testing.assert_array_equal(audio, expected.T)
    with pytest.raises(ValueError, match=r"^bad\.flac: not readable audio"):
        decode_audio(b"not a flac file", "bad.flac")
    assert wds_audio(".json", b"{}") is None and wds_audio(".txt", b"x") is None


def test_webdataset_decode_handler(offline):
    wds = pytest.importorskip("webdataset")
    shards = sorted(str(p) for p in (offline / "train").glob("*.tar"))
    rows = {r["key"]: r for r in read_manifests(offline)["train"]}
    seen = 0
    for sample in wds.WebDataset(shards, shardshuffle=False).decode(wds_audio):
        target, rate = sample["target.flac"]
        noisy, _ = sample["input.flac"]
        assert target.dtype == np.float32 and target.shape == (2, 16000) and rate == 16000
        assert noisy.shape == target.shape and not np.array_equal(noisy, target)
        assert sample["json"]["key"] == sample["__key__"]  # webdataset's own handlers still decode the rest
        assert sample["json"]["target_pcm_sha256"] == rows[sample["__key__"]]["target_pcm_sha256"]
        seen += 1
    assert seen == len(rows)


@pytest.mark.parametrize("which", ["offline", "online"])
def test_card_webdataset_snippet_runs_verbatim(which, request, monkeypatch, capsys):
    pytest.importorskip("webdataset")
    out = request.getfixturevalue(which)
    snippet = _snippets(out)[0]
    assert "import webdataset as wds" in snippet
    monkeypatch.chdir(out)
    capsys.readouterr()  # the fixture's build output
    namespace: dict = {}
    exec(compile(snippet, "README.md (webdataset snippet)", "exec"), namespace)
    key, members = _first_member(out)
    assert namespace["sample"]["__key__"] == key and namespace["sample_rate"] == 16000
    np.testing.assert_array_equal(namespace["target"], decode_audio(members["target.flac"])[0])
    assert capsys.readouterr().out == f"{key} (2, 16000) 16000 {namespace['sample']['json']['parameters']}\n"


@pytest.mark.parametrize("which", ["offline", "online"])
def test_card_datasets_snippet_runs_verbatim(which, request, monkeypatch, tmp_path, capsys):
    # Offline and in a private cache: the snippet must not need the network or leave files in $HOME.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    out = request.getfixturevalue(which)
    snippet = _snippets(out)[1]
    assert "load_dataset(" in snippet
    monkeypatch.chdir(out)
    capsys.readouterr()
    namespace: dict = {}
    exec(compile(snippet, "README.md (datasets snippet)", "exec"), namespace)
    rows = read_manifests(out)
    dataset = namespace["dataset"]
    assert {name: len(dataset[name]) for name in dataset} == {
        {"valid": "validation"}.get(split, split): len(split_rows) for split, split_rows in rows.items()}
    example = namespace["example"]
    key, members = _first_member(out)
    assert example["__key__"] == key and example["json"] == next(r for r in rows["train"] if r["key"] == key)
    np.testing.assert_array_equal(namespace["target"], decode_audio(members["target.flac"])[0])
    assert ("input.flac" in dataset["train"].features) == (which == "offline")
    assert capsys.readouterr().out.strip().endswith(f"{key} (2, 16000) 16000 {example['json']['parameters']}")
