import numpy as np
import pytest
import soundfile as sf

from datagen.apply import apply_file
from datagen.audio_io import AudioFileError
from datagen.cli import main as datagen_main
from datagen.cli import parse_effect_args
from datagen.demo import demo_guitar
from datagen.float_wav import FloatWavReader
from effects import clip_to_sdr, overdrive, sdr_db
from training.cli import main as dedistort_main


def test_demo_is_deterministic_and_music_like():
    a = demo_guitar(6.0, 16000, seed=3)
    assert a.shape == (1, 96000) and a.dtype == np.float32
    np.testing.assert_array_equal(a, demo_guitar(6.0, 16000, seed=3))
    assert not np.array_equal(a, demo_guitar(6.0, 16000, seed=4))
    assert np.abs(a).max() == pytest.approx(0.5)
    # Plucked strings: energy spread over time (no long silences), most of it below 2 kHz.
    frames = a[0, : 96000 // 1600 * 1600].reshape(-1, 1600)
    assert np.mean(np.sqrt((frames**2).mean(axis=1)) > 1e-3) > 0.9
    spectrum = np.abs(np.fft.rfft(a[0])) ** 2
    assert spectrum[: 2000 * 6].sum() / spectrum.sum() > 0.8


def test_demo_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seconds"):
        demo_guitar(0)
    with pytest.raises(ValueError, match="sample_rate"):
        demo_guitar(1, sample_rate=100)


def _write(path, x, rate=16000):
    sf.write(path, x.T, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_float_wav_reader_reads_what_soundfile_reads(tmp_path, channels):
    x = np.random.default_rng(channels).normal(0, 0.3, (channels, 5000)).astype(np.float32)
    path = _write(tmp_path / "x.wav", x)  # 3 channels: libsndfile writes WAVE_FORMAT_EXTENSIBLE
    with FloatWavReader.open(path) as reader:
        assert (reader.samplerate, reader.channels, reader.frames) == (16000, channels, 5000)
        buffer = np.empty((1536, channels), dtype=np.float32)
        blocks = []
        while count := reader.read_into(buffer):
            blocks.append(buffer[:count].copy())
    np.testing.assert_array_equal(np.concatenate(blocks), sf.read(path, dtype="float32", always_2d=True)[0])
    # Anything else is soundfile's: integer WAV, FLAC, and files that are not audio at all.
    sf.write(tmp_path / "pcm.wav", x.T, 16000, subtype="PCM_16")
    sf.write(tmp_path / "x.flac", x.T.clip(-1, 1), 16000)
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00")
    for other in ("pcm.wav", "x.flac", "junk.wav"):
        assert FloatWavReader.open(tmp_path / other) is None


def test_apply_file_names_a_truncated_float_wav(tmp_path, guitar):
    source = _write(tmp_path / "in.wav", guitar)
    data = source.read_bytes()
    source.write_bytes(data[:-1001])  # the header still promises every frame
    with pytest.raises(AudioFileError, match="in.wav: truncated float WAV"):
        apply_file(source, tmp_path / "out.wav", "overdrive", {"gain_db": 30}, progress=False)
    assert not (tmp_path / "out.wav").exists()


def test_apply_file_streams_like_the_function(tmp_path, stereo_guitar):
    source = _write(tmp_path / "in.wav", stereo_guitar)
    report = apply_file(source, tmp_path / "out.wav", "overdrive", {"gain_db": "40", "colour": "20"},
                        block_frames=1000, progress=False)
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    assert rate == 16000 and report.audio_seconds == pytest.approx(2.0)
    np.testing.assert_array_equal(out.T, overdrive(stereo_guitar, 40, 20))
    assert report.parameters == {"gain_db": 40.0, "colour": 20.0}


def test_apply_file_whole_signal_effect_and_dry_gain(tmp_path, guitar):
    source = _write(tmp_path / "in.wav", guitar)
    report = apply_file(source, tmp_path / "out.flac", "clip-sdr", {"sdr_db": 5}, dry_gain=0.5, progress=False)
    out, _ = sf.read(tmp_path / "out.flac", dtype="float32", always_2d=True)
    clipped, gain_db = clip_to_sdr(guitar, 5)
    np.testing.assert_allclose(out.T, clipped + 0.5 * guitar, atol=2e-6)  # 24-bit FLAC
    assert report.extras == {"gain_db": gain_db}


def test_apply_file_bad_inputs_leave_no_output(tmp_path, guitar):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot really audio")
    with pytest.raises(AudioFileError, match="broken.wav: not readable"):
        apply_file(broken, tmp_path / "out.wav", "hardclip", progress=False)
    nan = guitar.copy()
    nan[0, 30000] = np.nan
    with pytest.raises(AudioFileError, match="nan.wav: non-finite samples"):
        apply_file(_write(tmp_path / "nan.wav", nan), tmp_path / "out.wav", "hardclip", progress=False)
    with pytest.raises(AudioFileError, match="no samples"):
        apply_file(_write(tmp_path / "empty.wav", guitar[:, :0]), tmp_path / "out.wav", "hardclip",
                   progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.wav", "empty.wav", "nan.wav"]


def test_apply_file_failure_keeps_previous_output(tmp_path, guitar):
    good = tmp_path / "out.wav"
    apply_file(_write(tmp_path / "in.wav", guitar), good, "hardclip", progress=False)
    before = good.read_bytes()
    with pytest.raises(ValueError, match="silent"):
        apply_file(_write(tmp_path / "silent.wav", guitar * 0), good, "clip-sdr", progress=False)
    assert good.read_bytes() == before


def test_parse_effect_args():
    assert parse_effect_args(["gain_db=30", " colour = 20 "]) == {"gain_db": "30", "colour": "20"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_effect_args(["30"])


def test_cli_demo_apply_and_score(tmp_path, capsys):
    out = tmp_path / "demo.wav"
    assert datagen_main(["apply", "-o", str(out), "--effect", "hardclip", "--effect-arg", "gain_db=12",
                         "--demo-seconds", "2", "-q"]) == 0
    clean, _ = sf.read(tmp_path / "demo.clean.wav", always_2d=True)
    clipped, _ = sf.read(out, always_2d=True)
    assert clean.shape == clipped.shape == (32000, 1)
    assert "x real time" in capsys.readouterr().out
    assert dedistort_main(["score", str(tmp_path / "demo.clean.wav"), str(out)]) == 0
    printed = capsys.readouterr().out
    measured = sdr_db(clean.T, clipped.T)
    assert f"{measured:8.3f}" in printed and "SI-SDR" in printed


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert datagen_main(["apply", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o.wav"),
                         "--effect", "softclip", "-q"]) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    assert datagen_main(["apply", "-o", str(tmp_path / "o.wav"), "--effect", "overdrive",
                         "--effect-arg", "gain_db=120", "--demo-seconds", "1", "-q"]) == 2
    assert "gain_db must be in [0, 100]" in capsys.readouterr().err
    assert datagen_main(["effects"]) == 0
    assert "sdr_db" in capsys.readouterr().out
