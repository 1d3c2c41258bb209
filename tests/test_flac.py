"""manifests.flac: round trips, interoperability with libsndfile and the flac binary, crops, corruption."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datagen.demo import demo_guitar
from manifests import flac as flac_module
from manifests.flac import FlacInfo, decode_flac, decode_flac_range, encode_flac, read_flac_header, to_float32

RATE = 16000


# ------------------------------------------------------------------------------------------------
# Helpers: signals, independent CRCs, stream surgery
# ------------------------------------------------------------------------------------------------

def quantise(x: np.ndarray, bits: int) -> np.ndarray:
    full_scale = 2.0 ** (bits - 1)
    return np.clip(np.rint(x.astype(np.float64) * full_scale), -full_scale, full_scale - 1).astype(np.int32)


def make_signal(kind: str, channels: int, frames: int, bits: int, seed: int = 0) -> np.ndarray:
    """int32 (channels, frames) in the signed range of `bits`."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros((channels, frames), np.int32)
    if kind == "square":  # full scale, both extremes
        period = 37
        wave = np.where((np.arange(frames) // period) % 2 == 0, high, low)
        return np.stack([np.roll(wave, 11 * c) for c in range(channels)]).astype(np.int32)
    if kind == "noise":  # white noise over the whole range: the worst case (VERBATIM or escapes)
        return rng.integers(low, high + 1, (channels, frames)).astype(np.int32)
    if kind == "guitar":
        seconds = frames / RATE + 0.01
        takes = [demo_guitar(seconds, RATE, seed=seed + c, peak=0.9)[0, :frames] for c in range(channels)]
        return quantise(np.stack(takes), bits)
    raise ValueError(kind)


def reference_md5(pcm: np.ndarray, bits: int) -> bytes:
    """STREAMINFO's MD5 as RFC 9639 defines it, written out plainly: the samples interleaved (frame by frame,
    channel by channel), each as a little-endian signed integer of ceil(bits / 8) bytes."""
    width = (bits + 7) // 8
    digest = hashlib.md5()
    for frame in np.asarray(pcm, np.int64).T:
        digest.update(b"".join(struct.pack("<i", int(v))[:width] for v in frame))
    return digest.digest()


def _crc_table(polynomial: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ polynomial) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return table


_CRC8_TABLE, _CRC16_TABLE = _crc_table(0x07, 8), _crc_table(0x8005, 16)


def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16_TABLE[(crc >> 8) ^ byte]
    return crc


def split_stream(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """([(block type, body), ...], frames) of a FLAC stream."""
    assert data[:4] == b"fLaC"
    position, blocks = 4, []
    while True:
        header, length = data[position], int.from_bytes(data[position + 1:position + 4], "big")
        blocks.append((header & 0x7F, data[position + 4:position + 4 + length]))
        position += 4 + length
        if header & 0x80:
            return blocks, data[position:]


def join_stream(blocks: list[tuple[int, bytes]], frames: bytes) -> bytes:
    out = b"fLaC"
    for index, (kind, body) in enumerate(blocks):
        out += bytes([(0x80 if index == len(blocks) - 1 else 0) | kind]) + len(body).to_bytes(3, "big") + body
    return out + frames


def without_seektable(data: bytes) -> bytes:
    blocks, frames = split_stream(data)
    return join_stream([block for block in blocks if block[0] != 3], frames)


def with_sparse_seektable(data: bytes, keep_every: int) -> bytes:
    blocks, frames = split_stream(data)
    rebuilt = []
    for kind, body in blocks:
        if kind == 3:
            points = [body[i:i + 18] for i in range(0, len(body), 18)]
            body = b"".join(points[::keep_every])
        rebuilt.append((kind, body))
    return join_stream(rebuilt, frames)


def with_total(data: bytes, total: int) -> bytes:
    """The stream with STREAMINFO's total frame count replaced (0 = unknown)."""
    blocks, frames = split_stream(data)
    kind, body = blocks[0]
    word = int.from_bytes(body[10:18], "big") & ~((1 << 36) - 1) | total
    blocks[0] = (kind, body[:10] + word.to_bytes(8, "big") + body[18:])
    return join_stream(blocks, frames)


def utf8_number(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    count = 2
    while value >= 1 << (5 * count + 1):
        count += 1
    lead = ((0xFF00 >> count) & 0xFF) | (value >> (6 * (count - 1)))
    return bytes([lead] + [0x80 | ((value >> (6 * (count - 1 - t))) & 0x3F) for t in range(1, count)])


def variable_block_stream(pcm: np.ndarray, bits: int, sizes: list[int]) -> bytes:
    """A variable-block-size stream: each chunk encoded on its own, its frame re-headed with the sample
    number (blocking-strategy bit set) and both CRCs recomputed here, independently of the codec."""
    assert sum(sizes) == pcm.shape[1]
    frames, first = b"", 0
    for size in sizes:
        single = encode_flac(pcm[:, first:first + size], RATE, bits, block_frames=max(16, size))
        frame = split_stream(single)[1]
        assert frame[4] == 0  # frame number 0, one byte
        block_code, rate_code = frame[2] >> 4, frame[2] & 0x0F
        header_length = 5 + {6: 1, 7: 2}.get(block_code, 0) + {12: 1, 13: 2, 14: 2}.get(rate_code, 0) + 1
        header = b"\xff\xf9" + frame[2:4] + utf8_number(first) + frame[5:header_length - 1]
        header += bytes([crc8(header)])
        body = header + frame[header_length:-2]
        frames += body + crc16(body).to_bytes(2, "big")
        first += size
    blocks, _ = split_stream(encode_flac(pcm[:, :16], RATE, bits))
    streaminfo = bytearray(blocks[0][1])
    streaminfo[0:4] = min(sizes).to_bytes(2, "big") + max(sizes).to_bytes(2, "big")
    streaminfo[4:10] = bytes(6)  # frame sizes unknown
    word = int.from_bytes(streaminfo[10:18], "big") & ~((1 << 36) - 1) | pcm.shape[1]
    streaminfo[10:18] = word.to_bytes(8, "big")
    return join_stream([(0, bytes(streaminfo))], frames)


def soundfile_stream(pcm: np.ndarray, bits: int) -> bytes:
    buffer = io.BytesIO()
    subtype = {16: "PCM_16", 24: "PCM_24"}[bits]
    sf.write(buffer, (pcm.astype(np.int32) << (32 - bits)).T, RATE, format="FLAC", subtype=subtype)
    return buffer.getvalue()


def soundfile_integers(data: bytes, bits: int) -> np.ndarray:
    """What libsndfile decodes, as the coded integers: soundfile gives them in the top bits of int32."""
    audio, _ = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
    return audio.T >> (32 - bits)


# ------------------------------------------------------------------------------------------------
# CRCs
# ------------------------------------------------------------------------------------------------

def test_crcs_match_the_standard_check_values_and_a_bitwise_reference():
    check = np.frombuffer(b"123456789", np.uint8)
    assert flac_module._crc8(check, 0, 9) == 0xF4  # CRC-8/SMBUS check value
    assert flac_module._crc16(check, 0, 9) == 0xFEE8  # CRC-16/UMTS (polynomial 0x8005) check value
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 1000).astype(np.uint8)
    for start, end in [(0, 0), (0, 1), (3, 18), (5, 37), (0, 1000), (1, 999)]:  # slicing-by-16 and its tail
        assert flac_module._crc16(data, start, end) == crc16(bytes(data[start:end]))
        assert flac_module._crc8(data, start, end) == crc8(bytes(data[start:end]))


# ------------------------------------------------------------------------------------------------
# Round trips and libsndfile reading our streams
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("bits", [16, 24])
@pytest.mark.parametrize("kind", ["silence", "square", "noise", "guitar"])
def test_round_trip_and_libsndfile_reads_the_same(channels, bits, kind):
    for frames in (1, 15, 4095, 4096, 4097, 10 * RATE):
        pcm = make_signal(kind, channels, frames, bits, seed=frames)
        data = encode_flac(pcm, RATE, bits)
        decoded, rate, decoded_bits = decode_flac(data)
        assert decoded.dtype == np.int32 and decoded.shape == (channels, frames)
        assert (rate, decoded_bits) == (RATE, bits)
        np.testing.assert_array_equal(decoded, pcm)
        audio, sf_rate = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
        assert sf_rate == RATE
        np.testing.assert_array_equal(audio.T, pcm.astype(np.int64) << (32 - bits))  # top bits of int32
        floats, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        np.testing.assert_array_equal(floats.T, to_float32(pcm, bits))  # bit-exact: a power-of-two scale


def test_noise_is_not_expanded_much():
    pcm = make_signal("noise", 1, 20000, 16)
    data = encode_flac(pcm, RATE, 16)
    assert len(data) < 20000 * 2 * 1.01 + 1000  # VERBATIM or escapes: raw size plus headers


def test_stereo_decorrelation_pays():
    # Identical channels: the side channel is constant, so a stereo frame costs little more than mono.
    mono = make_signal("guitar", 1, 3 * RATE, 24)
    stereo = encode_flac(np.concatenate([mono, mono]), RATE, 24)
    assert len(stereo) < 1.05 * len(encode_flac(mono, RATE, 24))
    np.testing.assert_array_equal(decode_flac(stereo)[0], np.concatenate([mono, mono]))
    # Correlated but different channels: smaller than two independent mono streams, still exact.
    pair = np.concatenate([mono, quantise(0.8 * mono / 2**23 + 0.001, 24)])
    data = encode_flac(pair, RATE, 24)
    assert len(data) < len(encode_flac(pair[:1], RATE, 24)) + len(encode_flac(pair[1:], RATE, 24))
    np.testing.assert_array_equal(decode_flac(data)[0], pair)


def test_wasted_bits_make_16_bit_audio_in_24_bit_cost_16_bits():
    pcm16 = make_signal("guitar", 2, 3 * RATE, 16)
    as24 = pcm16 << 8
    size16, size24 = len(encode_flac(pcm16, RATE, 16)), len(encode_flac(as24, RATE, 24))
    assert size24 < 1.01 * size16
    np.testing.assert_array_equal(decode_flac(encode_flac(as24, RATE, 24))[0], as24)
    np.testing.assert_array_equal(soundfile_integers(encode_flac(as24, RATE, 24), 24), as24)


def test_escape_partitions_are_used_and_decoded():
    # Residuals of +-1 cost 2.5 bits in Rice codes, 2 bits escaped as raw values.
    rng = np.random.default_rng(3)
    pcm = rng.choice(np.array([-1, 1], np.int32), (1, 8192))
    residual = pcm[0, :4096].copy()
    level_sum = np.empty(512, np.int64)
    level_or = np.empty(512, np.int64)
    params = np.empty(256, np.int64)
    _, partition_order, _ = flac_module._plan_partitions(residual, 4096, 0, level_sum, level_or, params)
    assert (params[: 1 << partition_order] == -3).any()  # escaped with 2 raw bits
    data = encode_flac(pcm, RATE, 16)
    np.testing.assert_array_equal(decode_flac(data)[0], pcm)
    np.testing.assert_array_equal(soundfile_integers(data, 16), pcm)


@pytest.mark.parametrize("rate", [1, 8000, 11025, 44100, 96100, 100000, 655350])
def test_sample_rates_round_trip(rate):
    pcm = make_signal("guitar", 1, 5000, 16)
    data = encode_flac(pcm, rate, 16)
    decoded, decoded_rate, _ = decode_flac(data)
    assert decoded_rate == rate and read_flac_header(data).sample_rate == rate
    np.testing.assert_array_equal(decoded, pcm)
    assert sf.info(io.BytesIO(data)).samplerate == rate


@st.composite
def random_pcm(draw):
    channels = draw(st.integers(1, 3))
    bits = draw(st.integers(8, 24))
    frames = draw(st.integers(1, 12000))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["walk", "noise", "steps", "clipped", "sparse"]))
    rng = np.random.default_rng(seed)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if kind == "walk":
        scale = 2.0 ** rng.uniform(0, bits - 2)
        x = np.cumsum(rng.normal(0, scale / 50, (channels, frames)), axis=1)
    elif kind == "noise":
        x = rng.normal(0, 2.0 ** rng.uniform(0, bits - 1), (channels, frames))
    elif kind == "steps":  # constant runs: CONSTANT subframes
        x = np.repeat(rng.integers(low, high + 1, (channels, frames // 50 + 1)), 50, axis=1)[:, :frames]
    elif kind == "clipped":
        x = np.sin(np.arange(frames) / rng.uniform(2, 200))[None].repeat(channels, 0) * 4.0 * high
    else:
        x = rng.normal(0, 1, (channels, frames)) * (rng.random((channels, frames)) < 0.01) * high
    pcm = np.clip(np.rint(x), low, high).astype(np.int32)
    return pcm, bits, draw(st.integers(16, 6000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_pcm())
def test_random_signals_round_trip_and_libsndfile_agrees(case):
    pcm, bits, block = case
    data = encode_flac(pcm, RATE, bits, block_frames=block)
    np.testing.assert_array_equal(decode_flac(data)[0], pcm)
    if bits in (8, 16, 24):  # libsndfile reads no other depths from FLAC
        np.testing.assert_array_equal(soundfile_integers(data, bits), pcm)


def test_encoding_is_deterministic():
    pcm = make_signal("guitar", 2, 3 * RATE, 24, seed=5)
    first = encode_flac(pcm, RATE, 24)
    assert encode_flac(pcm, RATE, 24) == first
    # The same integers in another dtype or memory layout: the same bytes.
    assert encode_flac(np.asfortranarray(pcm.astype(np.int64)), RATE, 24) == first
    assert encode_flac(make_signal("guitar", 1, 4000, 16)[0], RATE, 16) == encode_flac(
        make_signal("guitar", 1, 4000, 16).astype(np.int16), RATE, 16)


def test_read_flac_header_describes_the_stream():
    pcm = make_signal("guitar", 2, 10000, 24)
    data = encode_flac(pcm, RATE, 24, block_frames=4096)
    info = read_flac_header(data)
    assert isinstance(info, FlacInfo)
    assert (info.sample_rate, info.channels, info.bits_per_sample, info.total_frames) == (RATE, 2, 24, 10000)
    assert (info.min_block_frames, info.max_block_frames) == (4096, 4096)
    np.testing.assert_array_equal(info.seek_sample_numbers, [0, 4096, 8192])
    assert info.seek_byte_offsets[0] == 0
    frames = data[info.first_frame_offset:]
    for offset in info.seek_byte_offsets:  # every seek point lands on a frame header
        assert frames[offset:offset + 2] == b"\xff\xf8"
    assert 0 < info.min_frame_bytes <= info.max_frame_bytes
    assert data[4 + 4 + 18:4 + 4 + 34] == reference_md5(pcm, 24) == info.md5
    assert read_flac_header(soundfile_stream(pcm, 24)).seek_sample_numbers.size == 0


def test_to_float32_is_what_libsndfile_returns():
    for bits in (16, 24):
        pcm = np.array([[-(1 << (bits - 1)), -1, 0, 1, 12345, (1 << (bits - 1)) - 1]], np.int32)
        floats, _ = sf.read(io.BytesIO(encode_flac(pcm, RATE, bits)), dtype="float32", always_2d=True)
        converted = to_float32(pcm, bits)
        assert converted.dtype == np.float32
        np.testing.assert_array_equal(converted, floats.T)
        np.testing.assert_array_equal(converted, pcm / 2.0 ** (bits - 1))


# ------------------------------------------------------------------------------------------------
# Decoding other encoders' streams
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [16, 24])
@pytest.mark.parametrize("channels", [1, 2])
def test_decodes_libsndfile_streams(bits, channels):
    # libsndfile (libFLAC, compression level 5): LPC subframes, mid/side, no seek table.
    pcm = np.concatenate([make_signal("guitar", channels, 3 * RATE, bits), make_signal("noise", channels, 999, bits),
                          make_signal("silence", channels, 5000, bits)], axis=1)
    data = soundfile_stream(pcm, bits)
    decoded, rate, decoded_bits = decode_flac(data)
    assert (rate, decoded_bits) == (RATE, bits)
    np.testing.assert_array_equal(decoded, soundfile_integers(data, bits))
    np.testing.assert_array_equal(decoded, pcm)


def test_decodes_variable_block_size_streams():
    pcm = make_signal("guitar", 2, 16 + 4096 + 1000 + 4608 + 333 + 4096 + 2000, 16)
    data = variable_block_stream(pcm, 16, [16, 4096, 1000, 4608, 333, 4096, 2000])
    np.testing.assert_array_equal(soundfile_integers(data, 16), pcm)  # libFLAC agrees it is valid
    np.testing.assert_array_equal(decode_flac(data)[0], pcm)
    for start, frames in [(0, 16), (10, 9000), (5120, 333), (9700, 4000), (pcm.shape[1] - 1, 1)]:
        np.testing.assert_array_equal(decode_flac_range(data, start, frames), pcm[:, start:start + frames])


def test_streams_of_unknown_length():
    pcm = make_signal("guitar", 1, 10000, 16)
    data = with_total(encode_flac(pcm, RATE, 16, block_frames=1024), 0)
    assert read_flac_header(data).total_frames == 0
    np.testing.assert_array_equal(decode_flac(data)[0], pcm)
    np.testing.assert_array_equal(decode_flac_range(data, 9000, 1000), pcm[:, 9000:])
    with pytest.raises(ValueError, match="past the stream"):
        decode_flac_range(data, 9000, 1001)


# The flac binary: the reference encoder's streams (all LPC orders and precisions, 8 and 32 bits, up to
# 8 channels, every block-size code) and its strict test mode on ours.
_FLAC_CASES = [(1, 16, 16000, ["-8"]), (2, 24, 48000, ["-5"]), (1, 24, 16000, ["--lax", "-l", "32", "-b", "4608"]),
               (2, 16, 16000, ["--lax", "-l", "32", "-q", "15", "-b", "8192"]), (1, 16, 16000, ["-e", "-p"]),
               (1, 16, 16000, ["-b", "192"]), (1, 16, 16000, ["--lax", "-b", "100"]), (1, 8, 8000, ["-8"]),
               (1, 32, 16000, ["--lax", "-8"]), (2, 32, 16000, ["--lax", "-8"]), (8, 16, 16000, ["-5"]),
               (1, 16, 11025, ["-S", "1s"]), (2, 16, 16000, ["-0"])]


@pytest.mark.parametrize(("channels", "bits", "rate", "options"), _FLAC_CASES)
def test_decodes_the_flac_binarys_streams(flac_binary, channels, bits, rate, options):
    source = np.concatenate([make_signal("guitar", channels, 20000, 24), make_signal("noise", channels, 700, 24)],
                            axis=1).astype(np.int64)
    pcm = source >> (24 - bits) if bits <= 24 else source << (bits - 24)
    width = bits // 8
    raw = np.ascontiguousarray(pcm.T).astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width].tobytes()
    command = [flac_binary, "-s", "--force-raw-format", "--endian=little", "--sign=signed", f"--channels={channels}",
               f"--bps={bits}", f"--sample-rate={rate}", *options, "-c", "-"]
    data = subprocess.run(command, input=raw, capture_output=True, check=True).stdout
    decoded, decoded_rate, decoded_bits = decode_flac(data)
    assert (decoded_rate, decoded_bits) == (rate, bits)
    np.testing.assert_array_equal(decoded, pcm)
    for start in (0, 5000, 19000):
        np.testing.assert_array_equal(decode_flac_range(data, start, 1500), pcm[:, start:start + 1500])


def test_flac_binary_accepts_our_streams(flac_binary, tmp_path: Path):
    cases = [(make_signal("guitar", 1, 10 * RATE, 24), 24, 4096), (make_signal("guitar", 2, 7000, 16), 16, 4096),
             (make_signal("noise", 2, 5000, 16), 16, 1000), (make_signal("square", 1, 3000, 24), 24, 192),
             (make_signal("silence", 3, 3000, 16), 16, 4608), (make_signal("guitar", 1, 1, 16), 16, 4096),
             (make_signal("guitar", 2, 9000, 20) >> 2, 18, 1111), (make_signal("guitar", 1, 5000, 8), 8, 256),
             (make_signal("guitar", 2, 8000, 16) << 8, 24, 4096)]
    paths = []
    for index, (pcm, bits, block) in enumerate(cases):
        path = tmp_path / f"case{index}.flac"
        path.write_bytes(encode_flac(pcm, RATE, bits, block_frames=block))
        paths.append(str(path))
    result = subprocess.run([flac_binary, "-t", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr
    # Every stream carries the MD5 of its samples, so flac checks them too (no "cannot check MD5 signature").
    assert "MD5" not in result.stderr and result.stderr.count("ok") == len(cases), result.stderr
    for (pcm, bits, _), path in zip(cases, paths, strict=True):
        assert Path(path).read_bytes()[4 + 4 + 18:4 + 4 + 34] == reference_md5(pcm, bits)
    # ... and flac does check it: a wrong MD5 is an error.
    data = bytearray(Path(paths[1]).read_bytes())
    data[4 + 4 + 18] ^= 1
    Path(paths[1]).write_bytes(bytes(data))
    result = subprocess.run([flac_binary, "-t", paths[1]], capture_output=True, text=True)
    assert result.returncode != 0 and "MD5" in result.stderr, result.stderr


@pytest.mark.parametrize(("channels", "bits"), [(1, 8), (2, 12), (1, 16), (3, 20), (2, 24)])
def test_streaminfo_md5_is_the_md5_of_the_interleaved_samples(channels, bits):
    pcm = make_signal("noise", channels, 3001, bits, seed=bits)
    data = encode_flac(pcm, RATE, bits, block_frames=1000)
    assert read_flac_header(data).md5 == reference_md5(pcm, bits) == flac_module.pcm_md5(pcm, bits)
    # What our own decoder returns hashes to what STREAMINFO says.
    samples, _, decoded_bits = decode_flac(data)
    assert flac_module.pcm_md5(samples, decoded_bits) == read_flac_header(data).md5


# ------------------------------------------------------------------------------------------------
# Crops
# ------------------------------------------------------------------------------------------------

def test_ranges_equal_slices_of_the_full_decode():
    pcm = make_signal("guitar", 2, 10 * RATE, 24)
    ours = encode_flac(pcm, RATE, 24)
    streams = {"seek table per frame": ours, "no seek table": without_seektable(ours),
               "sparse seek table": with_sparse_seektable(ours, 7), "libsndfile": soundfile_stream(pcm, 24)}
    rng = np.random.default_rng(0)
    total = pcm.shape[1]
    windows = [(0, total), (0, 1), (total - 1, 1), (4096, 4096), (4095, 2), (8191, 4098), (12345, 0)]
    windows += [(int(s), int(n)) for s, n in zip(rng.integers(0, total - 1, 40), rng.integers(1, 3 * 4096, 40),
                                                  strict=True) if s + n <= total]
    for name, data in streams.items():
        for start, frames in windows:
            crop = decode_flac_range(data, start, frames)
            assert crop.shape == (2, frames) and crop.dtype == np.int32, name
            np.testing.assert_array_equal(crop, pcm[:, start:start + frames], err_msg=f"{name} {start} {frames}")
        floats = decode_flac_range(data, 1000, 32000, dtype=np.float32)
        assert floats.dtype == np.float32
        np.testing.assert_array_equal(floats, to_float32(pcm[:, 1000:33000], 24))


def test_spans_decode_like_the_whole_stream_and_read_only_the_frames_needed():
    pcm = make_signal("guitar", 2, 10 * RATE, 24)
    ours = encode_flac(pcm, RATE, 24)
    streams = {"seek table per frame": ours, "no seek table": without_seektable(ours),
               "sparse seek table": with_sparse_seektable(ours, 7), "libsndfile": soundfile_stream(pcm, 24)}
    total = pcm.shape[1]
    windows = [(0, total), (0, 1), (total - 1, 1), (4096, 4096), (4095, 2), (8191, 4098), (12345, 0),
               (total - 32000, 32000), (40000, 32000)]
    for name, data in streams.items():
        info = read_flac_header(data)
        spans = flac_module.FlacSpans(info, len(data))
        for start, frames in windows:
            begin, end, header = spans.span(start, frames)
            assert info.first_frame_offset <= begin <= end <= len(data), name
            crop = decode_flac_range(header + data[begin:end], start, frames, dtype=np.float32)
            np.testing.assert_array_equal(crop, decode_flac_range(data, start, frames, dtype=np.float32),
                                          err_msg=f"{name} {start} {frames}")
    # With a point per frame, a 2-s crop reads its own frames only: at most one frame either side.
    info = read_flac_header(ours)
    spans = flac_module.FlacSpans(info, len(ours))
    begin, end, header = spans.span(40000, 32000)
    assert end - begin < (32000 + 2 * 4096) / total * (len(ours) - info.first_frame_offset) * 1.2
    # A span cut short (a truncated file) is an error, not a short crop.
    with pytest.raises(ValueError):
        decode_flac_range(header + ours[begin:end - 10], 40000, 32000)
    for start, frames in [(total - 10, 11), (-1, 5), (0, -1)]:
        with pytest.raises(ValueError, match="outside"):
            spans.span(start, frames)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(16, 5000), st.integers(0, 20000), st.integers(0, 20000))
def test_random_ranges(channels, block, start, frames):
    pcm = make_signal("guitar", channels, 20000, 16, seed=channels)
    start, frames = min(start, 20000), min(frames, 20000 - min(start, 20000))
    data = encode_flac(pcm, RATE, 16, block_frames=block)
    np.testing.assert_array_equal(decode_flac_range(data, start, frames), pcm[:, start:start + frames])
    np.testing.assert_array_equal(decode_flac_range(without_seektable(data), start, frames),
                                  pcm[:, start:start + frames])


def test_range_arguments_are_checked():
    data = encode_flac(make_signal("guitar", 1, 5000, 16), RATE, 16)
    for start, frames in [(-1, 10), (0, -1)]:
        with pytest.raises(ValueError, match=">= 0"):
            decode_flac_range(data, start, frames)
    with pytest.raises(ValueError, match="past the stream"):
        decode_flac_range(data, 4000, 1001)
    with pytest.raises(ValueError, match="dtype"):
        decode_flac_range(data, 0, 10, dtype=np.float64)


def test_decoders_accept_bytes_like_input():
    pcm = make_signal("guitar", 1, 3000, 16)
    data = encode_flac(pcm, RATE, 16)
    for form in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_flac(form)[0], pcm)
        np.testing.assert_array_equal(decode_flac_range(form, 100, 200), pcm[:, 100:300])
    with pytest.raises(ValueError, match="uint8"):
        decode_flac(np.frombuffer(data, np.uint8).astype(np.int16))
    with pytest.raises(ValueError, match="bytes"):
        decode_flac("not bytes")


# ------------------------------------------------------------------------------------------------
# Corruption and truncation
# ------------------------------------------------------------------------------------------------

def _frame_spans(data: bytes) -> list[tuple[int, int]]:
    info = read_flac_header(data)
    starts = [info.first_frame_offset + int(o) for o in info.seek_byte_offsets] + [len(data)]
    return list(zip(starts[:-1], starts[1:], strict=True))


def test_flipped_bits_inside_frames_are_caught_by_the_crcs():
    pcm = np.concatenate([make_signal("guitar", 2, 3 * RATE, 24), make_signal("noise", 2, 3000, 24)], axis=1)
    data = encode_flac(pcm, RATE, 24)
    rng = np.random.default_rng(1)
    for start, end in _frame_spans(data):
        for position in rng.integers(start + 16, end, 12):  # past the frame header: subframes and CRC-16
            corrupt = bytearray(data)
            corrupt[position] ^= 1 << int(rng.integers(0, 8))
            with pytest.raises(ValueError, match="CRC"):
                decode_flac(bytes(corrupt))
        corrupt = bytearray(data)
        corrupt[start + 2] ^= 0x01  # the frame header: caught by its CRC-8 (or as an invalid header)
        with pytest.raises(ValueError, match=r"CRC-8|header|sync"):
            decode_flac(bytes(corrupt))


def test_crop_checks_the_crc_of_every_frame_it_touches():
    pcm = make_signal("guitar", 1, 5 * RATE, 16)
    data = encode_flac(pcm, RATE, 16, block_frames=4096)
    spans = _frame_spans(data)
    start, end = spans[3]  # FLAC frame 3: samples 12288..16383
    corrupt = bytearray(data)
    corrupt[end - 5] ^= 0x10  # late in the frame: past the samples a short crop needs
    with pytest.raises(ValueError, match="CRC-16 mismatch in FLAC frame 3"):
        decode_flac_range(bytes(corrupt), 12300, 100)
    np.testing.assert_array_equal(decode_flac_range(bytes(corrupt), 0, 12288), pcm[:, :12288])  # frames before
    np.testing.assert_array_equal(decode_flac_range(bytes(corrupt), 16384, 100), pcm[:, 16384:16484])  # after
    corrupt = bytearray(without_seektable(data))
    start, end = _frame_spans(data)[1]
    shift = len(data) - len(corrupt)
    corrupt[start - shift + 40] ^= 0x04  # a frame skipped by scanning still has its CRC-16 checked
    with pytest.raises(ValueError, match="CRC"):
        decode_flac_range(bytes(corrupt), 12300, 100)


def test_truncated_and_malformed_streams_raise():
    pcm = make_signal("guitar", 2, 20000, 16)
    data = encode_flac(pcm, RATE, 16)
    first = read_flac_header(data).first_frame_offset
    for cut in (len(data) - 1, len(data) - 2, len(data) - 100, first + 10, first + 5000):
        with pytest.raises(ValueError, match="truncated"):
            decode_flac(data[:cut])
    with pytest.raises(ValueError, match="truncated"):
        decode_flac(data[:_frame_spans(data)[2][0]])  # cut at a frame boundary: fewer samples than STREAMINFO
    with pytest.raises(ValueError, match="truncated"):
        decode_flac_range(data[:first + 5000], 15000, 100)
    for cut in (0, 3, 10, first - 1):
        with pytest.raises(ValueError, match="FLAC"):
            decode_flac(data[:cut])
    with pytest.raises(ValueError, match="not a FLAC stream"):
        decode_flac(b"RIFF" + data[4:])
    with pytest.raises(ValueError, match="after the last FLAC frame"):
        decode_flac(data + b"junk")
    with pytest.raises(ValueError, match="STREAMINFO"):
        decode_flac(with_total(data, 1 << 35))  # more frames than the data could hold
    with pytest.raises(ValueError, match="more than STREAMINFO"):
        decode_flac(with_total(data, 19000))
    with pytest.raises(ValueError, match="not a FLAC stream"):
        read_flac_header(b"")


# ------------------------------------------------------------------------------------------------
# Encoder arguments
# ------------------------------------------------------------------------------------------------

_GOOD = make_signal("guitar", 1, 1000, 16)


@pytest.mark.parametrize(("samples", "rate", "bits", "block", "message"), [
    (_GOOD.astype(np.float32), RATE, 16, 4096, "integers"),
    (_GOOD[None], RATE, 16, 4096, "shape"),
    ([[0, 1, 2]], RATE, 16, 4096, "numpy array"),
    (np.zeros((9, 10), np.int32), RATE, 16, 4096, "1 to 8 channels"),
    (np.zeros((1, 0), np.int32), RATE, 16, 4096, "empty"),
    (np.full((1, 10), 32768, np.int32), RATE, 16, 4096, "outside the 16-bit range"),
    (np.full((1, 10), -32769, np.int32), RATE, 16, 4096, "outside the 16-bit range"),
    (_GOOD, RATE, 7, 4096, "bits_per_sample"),
    (_GOOD, RATE, 25, 4096, "bits_per_sample"),
    (_GOOD, RATE, True, 4096, "bits_per_sample must be an integer"),
    (_GOOD, RATE, 16.0, 4096, "bits_per_sample must be an integer"),
    (_GOOD, 0, 16, 4096, "sample_rate"),
    (_GOOD, 655351, 16, 4096, "sample_rate"),
    (_GOOD, RATE, 16, 15, "block_frames"),
    (_GOOD, RATE, 16, 65536, "block_frames"),
])
def test_bad_encoder_arguments_raise(samples, rate, bits, block, message):
    with pytest.raises(ValueError, match=message):
        encode_flac(samples, rate, bits, block_frames=block)


def test_extreme_arguments_are_accepted():
    pcm = make_signal("square", 8, 70000, 24)  # eight channels, full scale, several 65535-frame blocks
    data = encode_flac(pcm, 655350, 24, block_frames=65535)
    np.testing.assert_array_equal(decode_flac(data)[0], pcm)
    np.testing.assert_array_equal(decode_flac(encode_flac(pcm[:1, :20], 1, 24, block_frames=16))[0], pcm[:1, :20])
