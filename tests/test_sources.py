"""Source discovery (folder, SignalTrain, IDMT, demo), region loading and segmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen.audio_io import AudioFileError
from datagen.sources import (
    AUDIO_EXTENSIONS,
    DEMO_FILE_SECONDS,
    DEMO_FILES,
    SourceFile,
    demo_sources,
    discover,
    is_near_silent,
    load_region,
    segment_starts,
)


def sine(frequency_hz: float, seconds: float, sample_rate: int, channels: int = 1, amplitude: float = 0.5):
    """(samples, channels) float64 sine, the layout soundfile writes."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * frequency_hz * t)
    return np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1)


def noise(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0):
    """(samples, channels) band-limited-looking noise: a few sines plus white noise, peak below 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    waves = []
    for _ in range(channels):
        wave = sum(rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * rng.uniform(50, 5000) * t + rng.uniform(0, 6))
                   for _ in range(6))
        waves.append(wave + 0.05 * rng.standard_normal(t.size))
    return np.stack(waves, axis=1)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "songs" / "live").mkdir(parents=True)
    (root / ".cache").mkdir()
    sf.write(root / "songs" / "a.wav", sine(440, 1.0, 44100, channels=2), 44100, subtype="PCM_16")
    sf.write(root / "songs" / "b.FLAC", sine(220, 0.5, 22050), 22050)
    sf.write(root / "songs" / "live" / "c.ogg", sine(330, 0.75, 48000), 48000, format="OGG", subtype="VORBIS")
    sf.write(root / "top.aiff", sine(110, 0.25, 16000), 16000)
    sf.write(root / ".hidden.wav", sine(440, 0.25, 16000), 16000)
    sf.write(root / ".cache" / "d.wav", sine(440, 0.25, 16000), 16000)
    (root / "songs" / "corrupt.wav").write_bytes(b"this is not a RIFF file at all" * 20)
    sf.write(root / "empty.wav", np.zeros((0, 1)), 16000)
    (root / "notes.txt").write_text("not audio\n")
    return root


def test_discover_folder_finds_audio_sorted_with_headers(folder: Path):
    sources, skipped = discover(str(folder))
    assert [s.source_id for s in sources] == ["songs/a.wav", "songs/b.FLAC", "songs/live/c.ogg", "top.aiff"]
    a, b, c, top = sources
    assert (a.sample_rate, a.frames, a.channels) == (44100, 44100, 2)
    assert (b.sample_rate, b.frames, b.channels) == (22050, 11025, 1)
    assert (c.sample_rate, c.frames, c.channels) == (48000, 36000, 1)
    assert (top.sample_rate, top.frames) == (16000, 4000)
    assert a.path == str(folder / "songs" / "a.wav") and Path(a.path).is_absolute()
    assert a.duration_seconds == pytest.approx(1.0) and c.duration_seconds == pytest.approx(0.75)
    assert all(s.group_id == s.source_id and s.native_split is None for s in sources)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"corrupt.wav", "empty.wav"}
    assert "not readable as audio" in reasons["corrupt.wav"]
    assert "no samples" in reasons["empty.wav"]
    # Relative to the source root, like source ids: a release must not depend on where the sources lie.
    assert all(not Path(s.path).is_absolute() and (folder / s.path).is_file() for s in skipped)


def test_discover_folder_prefix_and_group_by_parent(folder: Path):
    plain, _ = discover(str(folder))
    prefixed, _ = discover(f"folder:{folder}", group_by="parent")
    assert [s.source_id for s in prefixed] == [s.source_id for s in plain]
    assert {s.source_id: s.group_id for s in prefixed} == {
        "songs/a.wav": "songs", "songs/b.FLAC": "songs", "songs/live/c.ogg": "songs/live", "top.aiff": "."}


def test_discover_refuses_bad_specs(tmp_path: Path, folder: Path):
    with pytest.raises(ValueError, match="group_by"):
        discover(str(folder), group_by="album")
    with pytest.raises(ValueError, match="nowhere"):
        discover(str(tmp_path / "nowhere"))
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="only_text.*no audio files"):
        discover(str(tmp_path / "only_text"))
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.wav").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="only_bad.*none of the 1 audio files"):
        discover(str(tmp_path / "only_bad"))


def test_extensions_are_matched_case_insensitively(tmp_path: Path):
    assert ".mp3" in AUDIO_EXTENSIONS and ".oga" in AUDIO_EXTENSIONS
    sf.write(tmp_path / "LOUD.WAV", sine(440, 0.5, 8000), 8000)
    sf.write(tmp_path / "clip.Mp3", sine(1000, 1.0, 44100), 44100, format="MP3")
    sources, skipped = discover(str(tmp_path))
    assert [s.source_id for s in sources] == ["LOUD.WAV", "clip.Mp3"] and skipped == []
    # MP3 regions decode (with seeking) and resample too: the sine's level survives.
    region = load_region(sources[1], 0.25, 0.5, 16000)
    assert float(np.sqrt(np.mean(region.astype(np.float64) ** 2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def make_signaltrain(root: Path, val_name: str = "Val") -> None:
    for split_folder, ident in (("Train", 1), (val_name, 2), ("Test", 3)):
        (root / split_folder).mkdir(parents=True)
        sf.write(root / split_folder / f"input_{ident}_.wav", sine(440, 0.5, 44100), 44100)
        sf.write(root / split_folder / f"target_{ident}_LA2A_2c__0__0.wav", sine(440, 0.5, 44100), 44100)


def test_discover_signaltrain(tmp_path: Path):
    make_signaltrain(tmp_path, val_name="val")
    sources, skipped = discover(f"signaltrain:{tmp_path}")
    assert skipped == []
    assert [(s.source_id, s.native_split, s.group_id) for s in sources] == [
        ("Test/input_3_.wav", "test", "Test/input_3_.wav"),
        ("Train/input_1_.wav", "train", "Train/input_1_.wav"),
        ("val/input_2_.wav", "valid", "val/input_2_.wav"),
    ]


def test_discover_signaltrain_needs_its_folders(tmp_path: Path):
    (tmp_path / "Train").mkdir()
    sf.write(tmp_path / "Train" / "input_1_.wav", sine(440, 0.5, 44100), 44100)
    with pytest.raises(ValueError, match=r"expected subfolders Train, Val and Test, missing Val, Test"):
        discover(f"signaltrain:{tmp_path}")


def test_discover_idmt_takes_only_nofx(tmp_path: Path):
    for instrument in ("Gitarre monophon", "Bass monophon"):
        for effect in ("NoFX", "Distortion", "Chorus"):
            folder = tmp_path / instrument / "Samples" / effect
            folder.mkdir(parents=True)
            sf.write(folder / f"{effect}-1.wav", sine(220, 0.3, 44100), 44100)
    (tmp_path / "Gitarre polyphon" / "Samples" / "nofx").mkdir(parents=True)
    sf.write(tmp_path / "Gitarre polyphon" / "Samples" / "nofx" / "p.wav", sine(220, 0.3, 44100), 44100)
    sources, skipped = discover(f"idmt:{tmp_path}")
    assert skipped == []
    assert [s.source_id for s in sources] == ["Bass monophon/Samples/NoFX/NoFX-1.wav",
                                              "Gitarre monophon/Samples/NoFX/NoFX-1.wav",
                                              "Gitarre polyphon/Samples/nofx/p.wav"]
    assert all(s.group_id == s.source_id and s.native_split is None for s in sources)


def test_discover_idmt_without_nofx_is_refused(tmp_path: Path):
    (tmp_path / "Gitarre monophon" / "Samples" / "Distortion").mkdir(parents=True)
    sf.write(tmp_path / "Gitarre monophon" / "Samples" / "Distortion" / "x.wav", sine(220, 0.3, 8000), 8000)
    with pytest.raises(ValueError, match="NoFX"):
        discover(f"idmt:{tmp_path}")


def test_demo_corpus():
    for spec in (None, "", "demo"):
        sources, skipped = discover(spec, sample_rate=22050)
        assert skipped == [] and len(sources) == DEMO_FILES == 12
    assert sources == demo_sources(22050)
    assert [s.source_id for s in sources][:2] == ["demo/guitar-000", "demo/guitar-001"]
    first = sources[3]
    assert (first.path, first.group_id, first.native_split) == ("", "demo/guitar-003", None)
    assert (first.sample_rate, first.frames, first.channels) == (22050, round(30 * 22050), 1)
    assert first.duration_seconds == DEMO_FILE_SECONDS
    assert sum(s.duration_seconds for s in sources) == pytest.approx(360.0)


def test_demo_regions_are_deterministic_and_varied():
    sources = demo_sources(16000)
    one = load_region(sources[1], 3.0, 2.0, 16000)
    again = load_region(sources[1], 3.0, 2.0, 16000)
    assert one.shape == (1, 32000) and one.dtype == np.float32
    np.testing.assert_array_equal(one, again)
    # The piece is the same slice as in the whole virtual file.
    whole = load_region(sources[1], 0.0, DEMO_FILE_SECONDS, 16000)
    np.testing.assert_array_equal(one, whole[:, 48000:80000])
    other = load_region(sources[2], 3.0, 2.0, 16000)
    assert not np.allclose(one, other)
    # Varied loudness: the files do not all peak at the same level.
    peaks = {round(float(np.abs(load_region(s, 0.0, DEMO_FILE_SECONDS, 16000)).max()), 3) for s in sources[:4]}
    assert len(peaks) == 4 and max(peaks) <= 0.9
    # Past the end of the virtual file: zero padded.
    tail = load_region(sources[0], 29.0, 2.0, 16000)
    assert np.any(tail[:, :16000]) and not np.any(tail[:, 16000:])


def write(path: Path, data: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> SourceFile:
    sf.write(path, data, sample_rate, subtype=subtype)
    sources, _ = discover(str(path.parent))
    return next(s for s in sources if s.path == str(path))


def test_load_region_resamples_a_sine_correctly(tmp_path: Path):
    source = write(tmp_path / "tone.wav", sine(1000, 2.0, 44100, amplitude=0.5), 44100)
    region = load_region(source, 0.5, 1.0, 16000)
    assert region.shape == (1, 16000) and region.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(region[0] * np.hanning(region.shape[1])))
    assert np.fft.rfftfreq(region.shape[1], 1 / 16000)[np.argmax(spectrum)] == pytest.approx(1000.0, abs=1.0)
    rms = float(np.sqrt(np.mean(region.astype(np.float64) ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    # Phase is right too: the region is the analytic sine sampled at 16 kHz from t = 0.5 s.
    t = 0.5 + np.arange(16000) / 16000
    np.testing.assert_allclose(region[0], 0.5 * np.sin(2 * np.pi * 1000 * t), atol=1e-4)


def test_load_region_mixes_to_mono_unless_asked(tmp_path: Path):
    data = np.stack([sine(300, 1.0, 16000)[:, 0], np.zeros(16000)], axis=1)
    source = write(tmp_path / "st.wav", data, 16000)
    mono = load_region(source, 0.0, 1.0, 16000)
    stereo = load_region(source, 0.0, 1.0, 16000, keep_channels=True)
    assert mono.shape == (1, 16000) and stereo.shape == (2, 16000)
    np.testing.assert_allclose(mono[0], data[:, 0] / 2, atol=1e-7)
    np.testing.assert_array_equal(stereo[1], 0.0)
    resampled = load_region(source, 0.0, 1.0, 8000, keep_channels=True)
    assert resampled.shape == (2, 8000) and not np.any(resampled[1])


def test_same_rate_is_a_bit_exact_slice(tmp_path: Path):
    data = noise(1.0, 22050, channels=2, seed=3).astype(np.float32)
    source = write(tmp_path / "n.wav", data, 22050)
    region = load_region(source, 0.25, 0.5, 22050, keep_channels=True)
    start = round(0.25 * 22050)
    np.testing.assert_array_equal(region, data[start:start + round(0.5 * 22050)].T)


def test_region_past_the_end_is_zero_padded(tmp_path: Path):
    source = write(tmp_path / "short.wav", sine(500, 1.0, 44100, amplitude=0.5), 44100)
    region = load_region(source, 0.5, 1.0, 16000)
    assert region.shape == (1, 16000)
    assert np.abs(region[0, :7900]).max() > 0.45
    np.testing.assert_array_equal(region[0, 8000:], 0.0)
    beyond = load_region(source, 5.0, 1.0, 16000)
    assert beyond.shape == (1, 16000) and not np.any(beyond)
    same_rate = write(tmp_path / "short16.wav", sine(500, 1.0, 16000), 16000)
    padded = load_region(same_rate, 0.75, 0.5, 16000)
    assert np.any(padded[0, :4000]) and not np.any(padded[0, 4000:])


@pytest.mark.parametrize(("native_rate", "target_rate"), [(44100, 16000), (22050, 16000), (16000, 44100),
                                                          (48000, 44100)])
def test_regions_in_pieces_match_a_whole_load(tmp_path: Path, native_rate: int, target_rate: int):
    data = noise(3.0, native_rate, channels=2, seed=5)
    source = write(tmp_path / "n.flac", data, native_rate, subtype="PCM_24")
    whole = load_region(source, 0.0, source.duration_seconds, target_rate)
    pieces = np.concatenate([load_region(source, start, 0.5, target_rate)
                             for start in np.arange(0.0, 3.0, 0.5)], axis=1)
    assert whole.shape == pieces.shape == (1, 3 * target_rate)
    # The reads are aligned to the two sample grids, so pieces agree with the whole far better than 1e-3.
    edge = 16
    np.testing.assert_allclose(pieces[:, edge:-edge], whole[:, edge:-edge], atol=1e-5)
    # An arbitrary region agrees with the corresponding slice of the whole load as well.
    start = round(1.234 * target_rate)
    region = load_region(source, 1.234, 0.7, target_rate)
    np.testing.assert_allclose(region, whole[:, start:start + region.shape[1]], atol=1e-5)


def test_region_lengths_are_exact(tmp_path: Path):
    source = write(tmp_path / "n.wav", noise(1.0, 44100, seed=1), 44100)
    for start, duration, rate in ((0.0, 0.1, 16000), (0.3, 0.33333, 16000), (0.9, 0.25, 8000), (0.1, 0.2, 44100)):
        region = load_region(source, start, duration, rate)
        assert region.shape == (1, round(duration * rate))
        assert region.dtype == np.float32 and np.isfinite(region).all()


def test_nan_file_is_refused_with_its_name(tmp_path: Path):
    data = sine(440, 2.0, 16000)
    data[16000 + 100] = np.nan
    source = write(tmp_path / "broken.wav", data, 16000)
    with pytest.raises(AudioFileError, match=r"broken\.wav: non-finite samples \(NaN or inf\) between 1\.01 s"):
        load_region(source, 0.5, 1.0, 16000)
    with pytest.raises(AudioFileError, match="broken.wav"):
        load_region(source, 0.5, 1.0, 8000)
    # A region well away from the bad sample is fine.
    assert np.isfinite(load_region(source, 0.0, 0.5, 8000)).all()


def test_unreadable_and_changed_files_raise_audio_file_error(tmp_path: Path):
    source = write(tmp_path / "gone.wav", sine(440, 0.5, 16000), 16000)
    Path(source.path).unlink()
    with pytest.raises(AudioFileError, match="gone.wav"):
        load_region(source, 0.0, 0.25, 16000)
    sf.write(source.path, sine(440, 0.5, 8000), 8000)
    with pytest.raises(AudioFileError, match="gone.wav: changed since discovery"):
        load_region(source, 0.0, 0.25, 16000)


def test_load_region_refuses_bad_arguments():
    source = demo_sources(16000)[0]
    with pytest.raises(ValueError, match="start_seconds"):
        load_region(source, -1.0, 1.0, 16000)
    with pytest.raises(ValueError, match="duration_seconds"):
        load_region(source, 0.0, 0.0, 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        load_region(source, 0.0, 1.0, 0)


@pytest.mark.parametrize(("duration", "segment", "expected"), [
    (7.0, 2.0, [0.0, 2.0, 4.0, 5.0]),  # remainder 1.0 = half a segment: kept, ending at the end
    (6.9, 2.0, [0.0, 2.0, 4.0]),  # remainder 0.9 < 1.0: dropped
    (6.0, 2.0, [0.0, 2.0, 4.0]),  # exact multiple
    (2.0, 2.0, [0.0]),
    (3.5, 2.0, [0.0, 1.5]),  # remainder 1.5 overlaps the first segment
    (1.2, 2.0, [0.0]),  # shorter than a segment but at least half: one padded segment
    (1.0, 2.0, [0.0]),
    (0.9, 2.0, []),
    (0.0, 2.0, []),
    (0.3 * 3, 0.3, [0.0, 0.3, 0.6]),  # 0.8999999999999999 s: floating point must not lose the third
])
def test_segment_starts(duration: float, segment: float, expected: list[float]):
    assert segment_starts(duration, segment) == pytest.approx(expected)


def test_segment_starts_cover_and_stay_inside():
    for duration in np.linspace(0.0, 20.0, 201):
        starts = segment_starts(float(duration), 4.0)
        assert starts == sorted(starts)
        if duration >= 4.0:
            assert all(0.0 <= s <= duration - 4.0 + 1e-9 for s in starts)
            # Nothing more than half a segment is left uncovered at the end.
            assert duration - (starts[-1] + 4.0) < 2.0
    with pytest.raises(ValueError, match="segment_seconds"):
        segment_starts(10.0, 0.0)
    with pytest.raises(ValueError, match="duration_seconds"):
        segment_starts(-1.0, 2.0)


def test_is_near_silent():
    assert is_near_silent(np.zeros((2, 100), dtype=np.float32))
    assert is_near_silent(np.zeros((1, 0), dtype=np.float32))
    quiet = np.full((1, 1000), 10 ** (-70 / 20), dtype=np.float32)  # RMS -70 dBFS
    loud = np.full((1, 1000), 10 ** (-50 / 20), dtype=np.float32)  # RMS -50 dBFS
    assert is_near_silent(quiet) and not is_near_silent(loud)
    assert not is_near_silent(quiet, threshold_db=-80.0) and is_near_silent(loud, threshold_db=-40.0)
    # RMS is over all channels together: one loud channel makes the pair not silent.
    assert not is_near_silent(np.concatenate([np.zeros((1, 1000), np.float32), loud]))
    with pytest.raises(ValueError, match="NaN"):
        is_near_silent(np.array([[np.nan, 0.0]]))


def test_source_file_validates():
    with pytest.raises(ValueError, match="sample_rate"):
        SourceFile("x.wav", "/x.wav", "x.wav", None, 0, 10, 1)
    with pytest.raises(ValueError, match="native_split"):
        SourceFile("x.wav", "/x.wav", "x.wav", "training", 16000, 10, 1)
