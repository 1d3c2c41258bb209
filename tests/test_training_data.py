"""training.data: aligned crops, reproducible epochs, every example once in evaluation, online effects."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

import effects  # noqa: E402
import training.data as data  # noqa: E402
from datagen.build import build  # noqa: E402
from datagen.config import BuildConfig  # noqa: E402
from datagen.demo import demo_guitar  # noqa: E402
from manifests import ManifestError, read_manifests  # noqa: E402
from manifests.member_audio import ArrayAudio  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    for i in range(6):
        sf.write(root / f"take-{i}.wav", demo_guitar(5.0, 16000, seed=200 + i, peak=0.6).T, 16000)
    return root


@pytest.fixture(scope="module")
def hardclip_set(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hc") / "out"
    build(BuildConfig(source=str(corpus), effect="hardclip", sweep="10,20", segment_seconds=2.0,
                      shard_max_examples=3, name="hc"), out, progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def online_set(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("online") / "out"
    build(BuildConfig(source=str(corpus), effect="clip-sdr", sweep="uniform:1:20:1", online=True,
                      segment_seconds=2.0, name="online"), out, progress=False, log=lambda _: None)
    return out


def _keys(stream) -> list[str]:
    return [item["key"] for item in stream]


def test_crops_keep_input_and_target_aligned(hardclip_set):
    stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=3)
    for item in list(stream)[:12]:
        gain_db = 10.0 if item["key"].endswith("v00") else 20.0
        rendered = effects.hard_clip(item["target"].numpy(), gain_db)
        # Both sides were quantised to 24 bits after rendering: agreement to a few LSB times the gain.
        np.testing.assert_allclose(item["input"].numpy(), rendered, atol=20 * 2.0**-23 * 10 ** (gain_db / 20))
        assert item["input"].shape == item["target"].shape == (1, 8000)


def test_epochs_are_reproducible_and_differ(hardclip_set):
    def run(epoch):
        stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=1)
        stream.set_epoch(epoch)
        return [(item["key"], float(item["target"].sum())) for item in stream]

    assert run(0) == run(0)
    assert run(0) != run(1)
    assert sorted(k for k, _ in run(0)) == sorted(k for k, _ in run(1))


def test_training_epoch_covers_every_example_and_readers_are_equal(hardclip_set):
    stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5)
    loader = data.make_loader(stream, batch_size=1, num_workers=2)
    seen = Counter(key for batch in loader for key in batch["key"])
    expected = {r["key"] for r in read_manifests(hardclip_set)["train"]}
    assert set(seen) == expected and max(seen.values()) <= 2
    for slots in (2, 3, 7):  # shard dealing and example dealing
        lengths = {len(stream.assigned_rows(slot, slots)) for slot in range(slots)}
        assert len(lengths) == 1, f"readers of unequal length with {slots} slots: {lengths}"
        shards = [{r["shard"] for r in stream.assigned_rows(slot, slots)} for slot in range(slots)]
        if len({r["shard"] for r in stream.rows}) >= slots:
            assert all(not (a & b) for i, a in enumerate(shards) for b in shards[i + 1:])  # each shard read once


def test_evaluation_visits_each_example_once_in_a_fixed_order(hardclip_set):
    expected = sorted(r["key"] for r in read_manifests(hardclip_set)["test"])
    orders = []
    for _ in range(2):
        stream = data.PairStream(hardclip_set, "test", crop_seconds=None, training=False)
        loader = data.make_loader(stream, batch_size=2, num_workers=2)
        batches = list(loader)
        orders.append([key for batch in batches for key in batch["key"]])
        assert batches[0]["input"].shape[-1] == 32000  # whole 2-s examples
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == expected and len(orders[0]) == len(expected)


def test_no_reader_is_left_without_data(hardclip_set, monkeypatch):
    stream = data.PairStream(hardclip_set, "test", crop_seconds=0.5)
    slots = 4 * len(stream)  # far more readers than examples
    for slot in range(slots):
        assert stream.assigned_rows(slot, slots), f"reader {slot} got nothing"
    monkeypatch.setattr(data, "_rank_and_world", lambda: (1, 2))
    assert len(_keys(data.PairStream(hardclip_set, "test", crop_seconds=0.5))) >= 1


def test_silent_crops_are_avoided(hardclip_set):
    stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5)
    half_silent = np.zeros((1, 32000), dtype=np.float32)
    half_silent[:, 16000:] = 0.1
    rng = np.random.default_rng(0)
    for _ in range(20):
        start, crop = stream._crop_start(ArrayAudio(half_silent, "test"), rng)
        assert start + 8000 > 16000 and np.array_equal(crop, half_silent[:, start:start + 8000])
    # An all-silent example still yields a crop: readers must stay equal in length.
    silent = ArrayAudio(np.zeros((1, 32000), dtype=np.float32), "test")
    assert 0 <= stream._crop_start(silent, rng)[0] <= 24000


def test_online_effect_is_rendered_per_batch_and_reproducible(online_set):
    stream = data.PairStream(online_set, "train", crop_seconds=1.0, seed=5)
    assert stream.online is not None and stream.online.effect == "clip-sdr"
    batch = next(iter(data.make_loader(stream, batch_size=4)))
    noisy, clean = data.apply_online(batch, stream, "cpu")
    for b in range(4):
        sdr = effects.sdr_db(clean[b].numpy(), noisy[b].numpy())
        assert 1.0 <= batch["parameter"][b] <= 20.0
        assert sdr == pytest.approx(float(batch["parameter"][b]), abs=0.01)
    again = next(iter(data.make_loader(data.PairStream(online_set, "train", crop_seconds=1.0, seed=5), batch_size=4)))
    assert again["key"] == batch["key"] and torch.equal(again["parameter"], batch["parameter"])


def test_bad_arguments(hardclip_set):
    with pytest.raises(ValueError, match="crop_seconds"):
        data.PairStream(hardclip_set, "train", crop_seconds=30.0)
    with pytest.raises(ValueError, match="no examples"):
        data.PairStream(hardclip_set, "nonexistent")
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loader(data.PairStream(hardclip_set), batch_size=0)


def test_persistent_workers_see_the_same_epochs_as_in_process_loading(hardclip_set):
    def crops(loader) -> list:
        return sorted((k, round(float(t.sum()), 4)) for b in loader for k, t in zip(b["key"], b["target"], strict=True))

    def keys_and_sums(loader, epochs, stream):
        passes = []
        for epoch in epochs:
            stream.set_epoch(epoch)  # reaches in-process loading only; persistent workers count by themselves
            passes.append(crops(loader))
        return passes

    stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=4)
    stream.set_epoch(3)
    persistent = keys_and_sums(data.make_loader(stream, 2, num_workers=2, persistent_workers=True), (3, 4, 5), stream)
    fresh = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=4)
    expected = []
    for epoch in (3, 4, 5):  # non-persistent workers copy the stream at each pass, so set_epoch reaches them
        fresh.set_epoch(epoch)
        expected.append(crops(data.make_loader(fresh, 2, num_workers=2)))
    assert persistent == expected
    assert persistent[0] != persistent[1]


@pytest.mark.parametrize("training", [True, False])
def test_threaded_loader_yields_what_dataloader_workers_yield(hardclip_set, training):
    from training.threaded_loader import ThreadedLoader

    def batches(loader):
        return [(b["key"], b["input"], b["target"]) for b in loader]

    split = "train" if training else "test"
    crop = 0.5 if training else None
    for epoch in (0, 1):
        processes = data.PairStream(hardclip_set, split, crop_seconds=crop, training=training, seed=2)
        processes.set_epoch(epoch)
        threads = data.PairStream(hardclip_set, split, crop_seconds=crop, training=training, seed=2)
        threads.set_epoch(epoch)
        expected = batches(data.make_loader(processes, 3, num_workers=2))
        got = batches(ThreadedLoader(threads, 3, threads=2))
        assert [k for k, _, _ in got] == [k for k, _, _ in expected] and got
        assert all(torch.equal(a, c) and torch.equal(b, d) for (_, a, b), (_, c, d) in zip(got, expected, strict=True))


def test_threaded_loader_passes_errors_on_and_stops_its_threads(hardclip_set, tmp_path):
    import shutil
    import threading

    from training.threaded_loader import ThreadedLoader

    copy = tmp_path / "copy"
    shutil.copytree(hardclip_set, copy)
    before = threading.active_count()
    loader = ThreadedLoader(data.PairStream(copy, "train", crop_seconds=0.5), 2, threads=2)
    for _ in loader:
        break  # an epoch cut short
    assert threading.active_count() == before
    shard = sorted((copy / "train").glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:3000])  # truncated
    with pytest.raises(ManifestError, match=shard.name):
        list(ThreadedLoader(data.PairStream(copy, "train", crop_seconds=0.5), 2, threads=2))
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="threads"):
        ThreadedLoader(data.PairStream(copy, "train"), 2, threads=0)


def test_flac_member_crops_equal_the_whole_member_and_check_their_frames(hardclip_set, tmp_path):
    from manifests import index_shard
    from manifests.flac import decode_flac, to_float32
    from manifests.member_audio import open_member

    shard = sorted((hardclip_set / "train").glob("*.tar"))[0]
    members = next(iter(index_shard(shard).values()))
    offset, size = members["input.flac"]
    raw = shard.read_bytes()
    pcm, _, bits = decode_flac(raw[offset:offset + size])
    whole = to_float32(pcm, bits)
    layouts: dict = {}
    with open(shard, "rb") as handle:
        for _ in range(2):  # the second time from the remembered header
            audio = open_member(handle.fileno(), offset, size, "input.flac", "the member", layouts)
            assert (audio.channels, audio.frames) == whole.shape
            for start, frames in [(0, audio.frames), (0, 1), (audio.frames - 1, 1), (5000, 8000), (4095, 2)]:
                np.testing.assert_array_equal(audio.read(start, frames), whole[:, start:start + frames])
            with pytest.raises(ManifestError, match="outside"):
                audio.read(audio.frames - 10, 11)
    assert layouts
    # A flipped bit in the member's last FLAC frame: crops that touch that frame fail naming the member
    # (its CRC-16), crops before it still read.
    damaged = bytearray(raw)
    damaged[offset + size - 100] ^= 0x40
    copy = tmp_path / "damaged.tar"
    copy.write_bytes(damaged)
    with open(copy, "rb") as handle:
        audio = open_member(handle.fileno(), offset, size, "input.flac", "the member")
        np.testing.assert_array_equal(audio.read(0, 4000), whole[:, :4000])
        with pytest.raises(ManifestError, match="the member"):
            audio.read(audio.frames - 100, 100)


def test_threaded_loader_reads_ahead_yet_yields_what_fresh_readers_yield(hardclip_set):
    import gc
    import threading

    from training.threaded_loader import ThreadedLoader

    def batches(loader):
        return [(b["key"], b["input"]) for b in loader]

    def fresh(epoch):
        stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=6)
        stream.set_epoch(epoch)
        return batches(ThreadedLoader(stream, 3, threads=2))

    def same(a, b):
        return [k for k, _ in a] == [k for k, _ in b] and all(torch.equal(x, y)
                                                             for (_, x), (_, y) in zip(a, b, strict=True))

    before = threading.active_count()
    stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=6)
    loader = ThreadedLoader(stream, 3, threads=2)
    passes = [batches(loader) for _ in range(3)]  # epochs 0, 1, 2: 1 and 2 were read ahead
    assert threading.active_count() == before + 2  # the readers went on with epoch 3
    assert all(same(got, fresh(epoch)) for epoch, got in enumerate(passes))
    assert not same(passes[0], passes[1])
    stream.set_epoch(7)  # not the epoch read ahead: the readers restart there
    assert same(batches(loader), fresh(7))
    for _ in loader:  # a pass cut short stops the readers; the next pass starts over
        break
    assert threading.active_count() == before
    assert same(batches(loader), fresh(9))
    del loader
    gc.collect()
    assert threading.active_count() == before  # dropping the loader stops its readers


def _crops(loader) -> list:
    return sorted((k, round(float(t.sum()), 4)) for b in loader for k, t in zip(b["key"], b["target"], strict=True))


def test_fresh_workers_read_a_new_reproducible_epoch_each_pass_without_set_epoch(hardclip_set):
    # Non-persistent DataLoader workers (and Lightning, which never calls set_epoch on a dataset) copy the
    # stream anew at each pass: the stream must still advance its own epoch.
    def passes(count, persistent=False):
        stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=8)
        loader = data.make_loader(stream, 3, num_workers=2, persistent_workers=persistent)
        return stream, loader, [_crops(loader) for _ in range(count)]

    stream, loader, got = passes(3)
    assert got[0] != got[1] != got[2] != got[0]
    assert passes(3)[2] == got  # reproducible
    assert passes(3, persistent=True)[2] == got  # as persistent workers count
    for epoch in range(3):  # the same epochs as numbered explicitly
        numbered = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=8)
        numbered.set_epoch(epoch)
        assert _crops(data.make_loader(numbered, 3, num_workers=2)) == got[epoch]
    assert stream.epoch == 3
    stream.set_epoch(1)  # an explicit epoch wins, for fresh workers ...
    assert _crops(loader) == got[1] and _crops(loader) == got[2]
    _, persistent, _ = passes(1, persistent=True)
    persistent.dataset.set_epoch(0)  # ... and for persistent ones, whose copies it now reaches
    assert _crops(persistent) == got[0]
    evaluation = data.PairStream(hardclip_set, "test", crop_seconds=None, training=False)
    test_loader = data.make_loader(evaluation, 2, num_workers=2)
    assert _crops(test_loader) == _crops(test_loader) and evaluation.epoch == 0  # evaluation never advances


def test_a_plain_pickle_keeps_the_epoch_count(hardclip_set):
    import pickle

    stream = data.PairStream(hardclip_set, "train", crop_seconds=0.5, seed=8)
    stream.set_epoch(5)
    copy = pickle.loads(pickle.dumps(stream))
    assert copy.epoch == 5
    copy.set_epoch(6)
    assert stream.epoch == 5  # a pickled copy is on its own
