"""Training you can trust: checkpoints that cannot run code, no epoch that trains on nothing, no pair with a
missing member, no non-finite loss or summary (issue 12, items 1-4)."""

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from manifests import ManifestError, index_shard, read_manifests  # noqa: E402
from training import checkpoints  # noqa: E402
from training.cli import main as dedistort_main  # noqa: E402
from training.data import PairStream, make_loader  # noqa: E402
from training.threaded_loader import ThreadedLoader  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, write_takes) -> Path:
    """48 training pairs of 1 s in 12 shards of 4, float WAV members (so a test can write a NaN into one)."""
    clean = write_takes(tmp_path_factory.mktemp("clean"), 10, 3.0, seed=500)
    out = tmp_path_factory.mktemp("data") / "safe"
    build(BuildConfig(source=str(clean), effect="hardclip", sweep="6,12", segment_seconds=1.0, codec="wav32",
                      shard_max_examples=4, name="safe"), out, progress=False, log=lambda _: None)
    return out


def _train_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    # Open-Unmix: the quickest of the four models to step on a CPU at this size.
    return ["train", "--data", str(corpus), "--out", str(out), "--model", "openunmix", "--epochs", "1",
            "--crop-seconds", "0.5", "-q", *extra]


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error" in line]


# --- item 1: checkpoints load with weights_only=True everywhere -------------------------------------------


class _Payload:
    """Unpickling this calls open(marker, "w"): a file appears if the checkpoint's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    state = {"config": {"model": "waveunet", "size": "paper"}, "channels": 1, "sample_rate": 16000, "epoch": 0,
             "model": {}, "payload": _Payload(marker)}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("entry", ["run", "evaluate", "train --resume"])
def test_a_malicious_checkpoint_runs_nothing_and_is_one_line_error(corpus, tmp_path, capsys, entry):
    marker = tmp_path / "payload-ran"
    evil = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    if entry == "run":
        sf.write(tmp_path / "in.wav", demo_guitar(1.0, 16000, seed=1).T, 16000)
        args = ["run", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"), "--checkpoint", str(evil)]
    elif entry == "evaluate":
        args = ["evaluate", "--checkpoint", str(evil), "--data", str(corpus), "-o", str(tmp_path / "results"),
                "--metrics", "si-sdr", "--workers", "0", "-q"]
    else:
        (tmp_path / "run").mkdir()
        evil = Path(shutil.copy(evil, tmp_path / "run" / "last.pt"))
        args = _train_args(corpus, tmp_path / "run", "--resume")
    assert dedistort_main(args) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and str(evil) in errors[0] and "refused" in errors[0], errors
    assert not marker.exists()
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "results" / "summary.json").exists()
    # The payload is live: the loader torch used before would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_save_checkpoint_refuses_what_would_not_load(tmp_path):
    with pytest.raises(ValueError, match=r"state\.config is a \w*Path"):
        checkpoints.save_checkpoint(tmp_path / "x.pt", {"config": tmp_path, "model": {}})
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ValueError, match="not a checkpoint of dedistort train"):
        torch.save({"weight": torch.zeros(2)}, tmp_path / "weights.pt")
        checkpoints.load_checkpoint(tmp_path / "weights.pt")


# --- item 2: every training example each epoch, whatever the reader count ---------------------------------


@pytest.mark.parametrize("loader", ["threads", "processes"])
def test_a_split_smaller_than_readers_times_batch_still_sees_every_example(corpus, loader):
    stream = PairStream(corpus, "train", crop_seconds=0.5, seed=1)
    examples = len(stream)
    batch_size = examples // 2 + 6  # more than each of the 2 readers holds, fewer than the split
    batches = (list(ThreadedLoader(stream, batch_size, threads=2)) if loader == "threads"
               else list(make_loader(stream, batch_size, num_workers=2)))
    seen = [key for batch in batches for key in batch["key"]]
    assert batches and set(seen) == {row["key"] for row in stream.rows}
    assert all(len(batch["key"]) <= batch_size for batch in batches)


def test_a_split_smaller_than_one_batch_is_refused_with_the_numbers(corpus, tmp_path, capsys):
    examples = len(read_manifests(corpus)["train"])
    stream = PairStream(corpus, "train", crop_seconds=0.5)
    for make in (lambda: make_loader(stream, examples + 1), lambda: ThreadedLoader(stream, examples + 1)):
        with pytest.raises(ValueError, match=f"{examples} examples.*batch of {examples + 1}"):
            make()
    assert dedistort_main(_train_args(corpus, tmp_path / "run", "--batch-size", str(examples + 1))) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and f"{examples} examples" in errors[0]
    assert not (tmp_path / "run" / "best.pt").exists()


@pytest.mark.usefixtures("small_paper_models")  # the training path, not the model size
def test_training_with_a_batch_above_each_readers_share_learns(corpus, tmp_path):
    from training.train import TrainConfig, train

    examples = len(read_manifests(corpus)["train"])
    # One step is enough: the epoch used to have none.
    config = TrainConfig(data=str(corpus), model="waveunet", epochs=1, batch_size=examples // 2 + 6,
                         crop_seconds=0.5, num_workers=2, max_batches_per_epoch=1)
    summary = train(config, tmp_path / "run", progress=False, log=lambda _: None)
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert np.isfinite(float(log[1].split(",")[1])), log  # the training loss of epoch 0 (was nan: 0 batches)
    assert np.isfinite(summary["best_valid_si_sdr_db"])


# --- item 3: a pair with a missing member -----------------------------------------------------------------


def _copy_without(corpus: Path, out: Path, role: str) -> dict[str, set[str]]:
    """A copy of the corpus whose training shards lack their ``role`` members; {shard name: its keys}."""
    shutil.copytree(corpus, out)
    keys = {}
    for shard in sorted((out / "train").glob("*.tar")):
        with tarfile.open(shard) as source:
            members = [(info, source.extractfile(info).read()) for info in source.getmembers()]
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as target:
            for info, payload in members:
                if f".{role}." not in info.name:
                    target.addfile(info, io.BytesIO(payload))
        keys[shard.name] = set(index_shard(shard))
    return keys


def _names_a_shard_and_its_key(message: str, keys: dict[str, set[str]], role: str) -> bool:
    found = re.search(rf"([\w-]+\.tar): ([a-z0-9-]+): no {role} member", message)
    return found is not None and found.group(2) in keys[found.group(1)]


@pytest.mark.parametrize("role", ["input", "target"])
def test_a_pair_with_a_missing_member_is_an_error_naming_shard_and_key(corpus, tmp_path, capsys, role):
    keys = _copy_without(corpus, tmp_path / "copy", role)
    stream = PairStream(tmp_path / "copy", "train", crop_seconds=0.5)
    with pytest.raises(ManifestError) as raised:
        list(stream.reader(0, 1, 0))
    assert _names_a_shard_and_its_key(str(raised.value), keys, role), raised.value
    assert dedistort_main(_train_args(tmp_path / "copy", tmp_path / "run", "--batch-size", "4")) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and _names_a_shard_and_its_key(errors[0], keys, role), errors
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "summary.json").exists()


# --- item 4: non-finite losses and summaries --------------------------------------------------------------


def _poison(corpus: Path, out: Path, split: str, count: int) -> list[str]:
    """A copy of the corpus with NaN in the inputs of the first ``count`` ``split`` examples; returns their keys."""
    shutil.copytree(corpus, out)
    rows = sorted(read_manifests(out)[split], key=lambda r: r["key"])[:count]
    for row in rows:
        shard = out / row["shard"]
        offset, size = index_shard(shard)[row["key"]]["input.wav"]
        with open(shard, "r+b") as handle:
            handle.seek(offset)
            audio, rate = sf.read(io.BytesIO(handle.read(size)), dtype="float32", always_2d=True)
            audio[:] = np.nan
            buffer = io.BytesIO()
            sf.write(buffer, audio, rate, subtype="FLOAT", format="WAV")
            assert len(buffer.getvalue()) == size
            handle.seek(offset)
            handle.write(buffer.getvalue())
    return [row["key"] for row in rows]


def test_a_non_finite_training_loss_stops_training_naming_the_batch(corpus, tmp_path, capsys):
    poisoned = _poison(corpus, tmp_path / "copy", "train", 48)  # every batch, so the first step meets one
    assert dedistort_main(_train_args(tmp_path / "copy", tmp_path / "run", "--batch-size", "4", "--epochs",
                                      "3")) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "non-finite training loss" in errors[0] and "step 0" in errors[0], errors
    named = errors[0].split("held ", 1)[1].split(":")[0].split(", ")
    assert len(named) == 4 and set(named) <= set(poisoned), errors
    # It stopped at once: no epoch finished, so nothing claims to be a checkpoint or a summary.
    for name in ("last.pt", "best.pt", "summary.json"):
        assert not (tmp_path / "run" / name).exists()


def test_a_non_finite_validation_score_stops_training_naming_the_example(corpus, tmp_path, capsys):
    (key,) = _poison(corpus, tmp_path / "copy", "valid", 1)
    assert dedistort_main(_train_args(tmp_path / "copy", tmp_path / "run", "--batch-size", "8", "--max-batches",
                                      "1")) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "non-finite validation" in errors[0] and key in errors[0], errors
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "best.pt").exists()


def test_the_summary_is_strict_json_naming_files_that_exist(corpus, tmp_path, capsys):
    assert dedistort_main(_train_args(corpus, tmp_path / "run", "--batch-size", "8", "--max-batches", "1", "--model",
                                      "waveunet")) == 0

    def refuse(constant: str):
        raise AssertionError(f"summary.json holds {constant}")

    summary = json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=refuse)
    assert Path(summary["checkpoint"]).is_file() and Path(summary["last_checkpoint"]).is_file()
    assert np.isfinite(summary["best_valid_si_sdr_db"]) and summary["best_epoch"] == 0
