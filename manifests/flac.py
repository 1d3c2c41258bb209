"""A FLAC encoder and decoder compiled with numba: standard streams, deterministic bytes, cheap crops.

Why our own codec: the corpus builder writes every example as FLAC and the training loader decodes
random crops of them. Through libsndfile, encoding costs more than the effects that make the audio,
and a crop costs ~0.7 ms, mostly per-call overhead and Python I/O callbacks. Here the whole encoder
and the whole crop decoder are one compiled call each.

What the encoder writes (RFC 9639; any decoder reads it, libsndfile and ``flac -t`` included)::

    "fLaC"  STREAMINFO (with the MD5 of the samples)  SEEKTABLE (one point per frame)  frames...

Each frame has a fixed block size (the last one shorter). Per channel it picks a CONSTANT subframe
when the block is constant, else the FIXED predictor of order 0..4 with the smallest estimated cost,
or VERBATIM when that is smaller (compared on exact bit counts). Residuals use partitioned Rice codes
(partition order 0..8, 4- or 5-bit parameters, escapes for partitions that Rice codes badly). Stereo
frames pick independent, left/side, right/side or mid/side by estimated cost; samples whose low bits
are all zero in a block are coded with "wasted bits" (16-bit audio stored as 24-bit costs 16 bits).
There is no vendor string and no timestamp: the same samples always give the same bytes. STREAMINFO
carries the MD5 of the samples (:func:`pcm_md5`), so ``flac -t`` and ``datagen verify`` check every
member end to end.

What the decoder reads: any valid FLAC stream (not only ours): metadata blocks of every kind (it uses
STREAMINFO and SEEKTABLE), fixed or variable block sizes, every subframe type (CONSTANT, VERBATIM,
FIXED 0..4, LPC 1..32), wasted bits, all channel assignments, Rice and Rice2 partitions with escapes,
4..32-bit samples. It checks each frame's header CRC-8 and CRC-16 and raises ``ValueError`` naming the
frame and byte offset on any corruption or truncation (the loader and ``datagen verify`` rely on it).

Vocabulary: a *frame* in the public API is one sample per channel (as in soundfile); a *FLAC frame*
is the format's unit of coding (a block of ``block_frames`` such frames).

Speed figures: ``python benchmarks/bench_flac.py``.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import sys
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

try:  # LLVM's ctlz/cttz; numba has exposed them there since 0.4x.
    from numba.cpython.unsafe.numbers import leading_zeros as _clz
    from numba.cpython.unsafe.numbers import trailing_zeros as _ctz
except ImportError:  # pragma: no cover - depends on the numba version
    @numba.njit(cache=True, nogil=True)
    def _clz(x):
        count = 0
        for bit in range(63, -1, -1):
            if (x >> bit) & 1:
                return count
            count += 1
        return 64

    @numba.njit(cache=True, nogil=True)
    def _ctz(x):
        for bit in range(64):
            if (x >> bit) & 1:
                return bit
        return 64

# LLVM operations numba does not spell: a logical right shift of an int64, a rotate, and an unaligned
# big-endian 8-byte load (one instruction each on x86-64 with BMI2/MOVBE).
@intrinsic
def _lshr(typingctx, x, n):
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        amount = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.lshr(value, amount)
    return types.int64(x, n), codegen


@intrinsic
def _rotl(typingctx, x, n):
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        amount = context.cast(builder, args[1], signature.args[1], types.int64)
        i64 = ir.IntType(64)
        fshl = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i64, i64]), "llvm.fshl.i64")
        return builder.call(fshl, [value, value, amount])
    return types.int64(x, n), codegen


@intrinsic
def _shl(typingctx, x, n):
    # x << (n mod 64): defined for any n (numba's << is not for n >= 64), one instruction on x86-64.
    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        amount = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.shl(value, builder.and_(amount, ir.Constant(ir.IntType(64), 63)))
    return types.int64(x, n), codegen


def _host_features() -> set[str]:
    # CPU features the compiled code may use beyond baseline x86-64: only when numba compiles for this
    # very CPU (its default; a NUMBA_CPU_NAME build is meant to run elsewhere). numba keys its cache on
    # the CPU name and features, so cached code never meets a CPU it was not compiled for.
    try:
        import llvmlite.binding as llvm
        if numba.config.CPU_NAME or not llvm.get_process_triple().startswith("x86_64"):
            return set()
        return {name for name, present in llvm.get_host_cpu_features().items() if present}
    except Exception:  # pragma: no cover - depends on the platform
        return set()


_FEATURES = _host_features()
_HAVE_BMI2 = "bmi2" in _FEATURES


@intrinsic
def _bzhi(typingctx, x, n):
    # The low n bits of x (0 <= n < 64): BMI2's BZHI where the CPU has it (one instruction, no mask
    # register), else x & ((1 << n) - 1).
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        value = context.cast(builder, args[0], signature.args[0], types.int64)
        index = context.cast(builder, args[1], signature.args[1], types.int64)
        if _HAVE_BMI2:
            bzhi = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i64]),
                                                  "llvm.x86.bmi.bzhi.64")
            return builder.call(bzhi, [value, index])
        mask = builder.sub(builder.shl(ir.Constant(i64, 1), index), ir.Constant(i64, 1))
        return builder.and_(value, mask)
    return types.int64(x, n), codegen


@intrinsic
def _address(typingctx, array):
    # The address of array's first element, for the pointer-based hot loops below: inside them, no
    # array (and so no reference count) is live, which leaves LLVM the registers the loop state needs.
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, value=args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))
    return types.int64(array), codegen


@intrinsic
def _load_be64_at(typingctx, address):
    # The 8 bytes at `address` (any alignment) as a big-endian int64.
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        word = builder.load(builder.inttoptr(args[0], i64.as_pointer()), align=1)
        bswap = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.bswap.i64")
        return builder.call(bswap, [word])
    return types.int64(address), codegen


@intrinsic
def _store_i32_at(typingctx, address, value):
    # Store the low 32 bits of value at `address` (4-byte aligned: an element of an int32 array).
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        number = context.cast(builder, args[1], signature.args[1], types.int64)
        builder.store(builder.trunc(number, i32), builder.inttoptr(args[0], i32.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(address, value), codegen


@intrinsic
def _be64(typingctx, buf, i):
    # buf[i:i + 8] as a big-endian int64; the caller guarantees 0 <= i and i + 8 <= buf.size.
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8 and buf.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, value=args[0]).data
        index = context.cast(builder, args[1], signature.args[1], types.int64)
        i64 = ir.IntType(64)
        pointer = builder.bitcast(builder.gep(data, [index]), i64.as_pointer())
        word = builder.load(pointer, align=1)
        bswap = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64]), "llvm.bswap.i64")
        return builder.call(bswap, [word])
    return types.int64(buf, i), codegen


#: Recorded in dataset.json: bump it whenever a change makes the encoder write other bytes for the same
#: samples, so that a rebuild knows to compare decoded PCM instead of shard bytes.
#: Bumped whenever the encoder's bytes change for the same samples (2: STREAMINFO holds the samples' MD5).
ENCODER_VERSION = "2"

__all__ = ["ENCODER_VERSION", "FlacInfo", "decode_flac", "decode_flac_range", "encode_flac", "pcm_md5",
           "read_flac_header", "to_float32"]

# ------------------------------------------------------------------------------------------------
# Constants and tables
# ------------------------------------------------------------------------------------------------

_MAX_PARTITION_ORDER = 8
_MAX_FIXED_ORDER = 4
_SEGMENTS = 16  # pieces of a block whose residual sums choose the fixed order (see _analyse)
#: Sample rates with a 4-bit code in the frame header (RFC 9639, 9.1.2); others go in extra bytes.
_RATE_CODES = {88200: 1, 176400: 2, 192000: 3, 8000: 4, 16000: 5, 22050: 6, 24000: 7, 32000: 8, 44100: 9,
               48000: 10, 96000: 11}
#: Bit depths with a 3-bit code in the frame header; others (e.g. 10 or 18 bits) point to STREAMINFO.
_SIZE_CODES = {8: 1, 12: 2, 16: 4, 20: 5, 24: 6}
_SEEKPOINT_BYTES = 18
_SEEKPOINT_DTYPE = np.dtype([("sample", ">u8"), ("offset", ">u8"), ("frames", ">u2")])
_SEEKPOINT = struct.Struct(">QQH")  # the same, one point
_STREAMINFO_END = 4 + 4 + 34  # "fLaC", the STREAMINFO block's header and body
_MD5_START = 4 + 4 + 18  # STREAMINFO's MD5 (its last 16 bytes; STREAMINFO is always the first block)
#: The encoder's 32-bit words reach the output through a byte view: swap them on little-endian machines.
_SWAP_WORDS = sys.byteorder == "little"
_MAX_SEEKPOINTS = (1 << 24) // _SEEKPOINT_BYTES - 1  # a metadata block's length field has 24 bits


def _crc8_table() -> np.ndarray:
    # CRC-8, polynomial x^8 + x^2 + x + 1 (0x07), initial value 0: the frame header's check.
    table = np.zeros(256, np.int32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table[byte] = crc
    return table


def _crc16_tables() -> np.ndarray:
    # CRC-16, polynomial x^16 + x^15 + x^2 + 1 (0x8005), initial value 0, MSB first: the frame's check.
    # Sixteen tables for "slicing by 16": row k gives the CRC of a byte followed by k zero bytes, so
    # sixteen input bytes cost sixteen independent lookups instead of a chain of dependent ones.
    tables = np.zeros((16, 256), np.int32)
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        tables[0, byte] = crc
    for row in range(1, 16):
        for byte in range(256):
            previous = int(tables[row - 1, byte])
            tables[row, byte] = ((previous << 8) & 0xFFFF) ^ int(tables[0, previous >> 8])
    return tables.reshape(-1)


_CRC8 = _crc8_table()
_CRC16 = _crc16_tables()
# Offsets of the CRC-16 table rows, unsigned (see the note on indexing below).
_ROW = tuple(np.uint64(256 * row) for row in range(16))

# Status codes shared by the kernels; _raise turns them into ValueErrors.
_OK = 0
_E_NOT_FLAC = 1
_E_META_TRUNCATED = 2
_E_NO_STREAMINFO = 3
_E_BAD_STREAMINFO = 4
_E_BAD_SEEKTABLE = 5
_E_BAD_BLOCK_TYPE = 6
_E_TRUNCATED = 10
_E_SYNC = 11
_E_HEADER_CRC = 12
_E_FRAME_CRC = 13
_E_HEADER = 14
_E_SUBFRAME = 15
_E_FORMAT = 16
_E_BLOCK_SIZE = 17
_E_NUMBERING = 18
_E_RANGE = 19
_E_PADDING = 20
_E_SHORT = 21
_E_TRAILING = 22
_E_LONG = 23
_E_BEYOND = 24
_E_WIDE = 25  # not an error: decode again with int64 subframes (32-bit samples)
_NARROW = np.empty(0, np.int32)
_WIDE = np.empty(0, np.int64)
_INFO_FIELDS = 6  # status, byte offset, first sample, FLAC frame index (-1 unknown), detail, detail


# ------------------------------------------------------------------------------------------------
# Shared kernels: CRCs, bit reading
#
# A note on indexing in the loops below: numba wraps negative indices (x[-1] is the last element), so
# x[i - 1] or x[i] with i from a variable start carries a check that stops LLVM from vectorising or
# fusing loads (6x slower here). Hot loops therefore walk slices from 0, or index with np.uint64.
# ------------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _load_be64(buf, i):  # pragma: no cover - compiled
    # Eight bytes big-endian; unsigned indices let LLVM fuse the loads into one (no wraparound checks).
    u = np.uint64(i)
    return ((np.int64(buf[u]) << 56) | (np.int64(buf[u + np.uint64(1)]) << 48)
            | (np.int64(buf[u + np.uint64(2)]) << 40) | (np.int64(buf[u + np.uint64(3)]) << 32)
            | (np.int64(buf[u + np.uint64(4)]) << 24) | (np.int64(buf[u + np.uint64(5)]) << 16)
            | (np.int64(buf[u + np.uint64(6)]) << 8) | np.int64(buf[u + np.uint64(7)]))


def _x_power_mod(n: int) -> int:
    # x^n modulo the CRC-16 polynomial x^16 + x^15 + x^2 + 1, as a 16-bit integer.
    value = 1
    for _ in range(n):
        value <<= 1
        if value & 0x10000:
            value ^= 0x18005
    return value


def _clmul_shape() -> tuple[int, int]:
    # (128-bit lanes per vector, vectors in flight) for the carry-less-multiply CRC; (0, 0) without it.
    if {"avx512f", "vpclmulqdq"} <= _FEATURES:
        return 4, 2
    if {"avx", "vpclmulqdq"} <= _FEATURES:
        return 2, 4
    if "pclmul" in _FEATURES:
        return 1, 4
    return 0, 0


_CLMUL_LANES, _CLMUL_VECTORS = _clmul_shape()
_CLMUL_STEP = 16 * _CLMUL_LANES * _CLMUL_VECTORS  # bytes folded per iteration


@intrinsic
def _crc16_fold(typingctx, buf, start, steps, crc):
    """Fold buf[start:start + steps * _CLMUL_STEP] (steps >= 1) into a 128-bit remainder (hi, lo).

    The message is a polynomial over GF(2), first bit highest. Each 16-byte block, read big-endian, is a
    128-bit polynomial; an accumulator A of earlier blocks moves d bits on as A * x^d, and since only
    the remainder modulo the CRC polynomial P matters, A_hi * x^(d+64) + A_lo * x^d (64-bit halves)
    becomes A_hi * (x^(d+64) mod P) + A_lo * (x^d mod P): two carry-less multiplications (PCLMULQDQ)
    by 16-bit constants, giving at most 80 bits. `vectors` accumulators of `lanes` blocks each run
    side by side (so the multiplier's latency overlaps), then fold into one, and the lanes into one
    128-bit value R with R = message (mod P): the CRC is then the table CRC of R's 16 bytes, continued
    over the bytes after. `crc` (the CRC of the bytes before start) enters as the top 16 bits XORed
    into the first block, which is what a CRC register preset to it does.
    """
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8 and buf.ndim == 1 and buf.layout == "C"):
        return None
    lanes, vectors, step = _CLMUL_LANES, _CLMUL_VECTORS, _CLMUL_STEP

    def codegen(context, builder, signature, args):
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        if lanes == 0:  # never called (see _crc16): no x86 instruction where there is none
            return context.make_tuple(builder, signature.return_type, [ir.Constant(i64, 0)] * 2)
        bytes_type, quads = ir.VectorType(i8, 16 * lanes), ir.VectorType(i64, 2 * lanes)
        pair = ir.VectorType(i64, 2)
        name = {1: "llvm.x86.pclmulqdq", 2: "llvm.x86.pclmulqdq.256", 4: "llvm.x86.pclmulqdq.512"}[lanes]
        multiply = cgutils.get_or_insert_function(builder.module, ir.FunctionType(quads, [quads, quads, i8]), name)
        multiply_pair = cgutils.get_or_insert_function(builder.module, ir.FunctionType(pair, [pair, pair, i8]),
                                                       "llvm.x86.pclmulqdq")
        # Byte order within each 16-byte lane reversed: the block as a big-endian 128-bit number.
        reverse = ir.Constant(ir.VectorType(i32, 16 * lanes), [16 * (j // 16) + 15 - j % 16 for j in range(16 * lanes)])
        data = context.make_array(signature.args[0])(context, builder, value=args[0]).data
        base = builder.gep(data, [args[1]])

        def load(offset):
            pointer = builder.bitcast(builder.gep(base, [offset]), bytes_type.as_pointer())
            raw = builder.load(pointer, align=1)
            return builder.bitcast(builder.shuffle_vector(raw, raw, reverse), quads)

        def fold(value, constants, addend, function=multiply):
            high = builder.call(function, [value, constants, ir.Constant(i8, 0x11)])
            low = builder.call(function, [value, constants, ir.Constant(i8, 0x00)])
            return builder.xor(builder.xor(high, low), addend)

        def constants(bits, vector_type, count):  # lane (x^bits mod P, x^(bits+64) mod P)
            return ir.Constant(vector_type, [_x_power_mod(bits), _x_power_mod(bits + 64)] * count)

        far = constants(8 * step, quads, lanes)
        near = constants(8 * 16 * lanes, quads, lanes)
        single = constants(128, pair, 1)
        slots = [cgutils.alloca_once(builder, quads) for _ in range(vectors)]
        preset = builder.shl(context.cast(builder, args[3], signature.args[3], types.int64), ir.Constant(i64, 48))
        preset = builder.insert_element(ir.Constant(quads, [0] * (2 * lanes)), preset, ir.Constant(i32, 1))
        builder.store(builder.xor(load(ir.Constant(i64, 0)), preset), slots[0])
        for v in range(1, vectors):
            builder.store(load(ir.Constant(i64, 16 * lanes * v)), slots[v])
        with cgutils.for_range(builder, builder.sub(args[2], ir.Constant(i64, 1))) as loop:
            offset = builder.mul(builder.add(loop.index, ir.Constant(i64, 1)), ir.Constant(i64, step))
            for v in range(vectors):
                block = load(builder.add(offset, ir.Constant(i64, 16 * lanes * v)))
                builder.store(fold(builder.load(slots[v]), far, block), slots[v])
        total = builder.load(slots[0])
        for v in range(1, vectors):
            total = fold(total, near, builder.load(slots[v]))
        parts = [builder.shuffle_vector(total, total, ir.Constant(ir.VectorType(i32, 2), [2 * j, 2 * j + 1]))
                 for j in range(lanes)]
        remainder = parts[0]
        for j in range(1, lanes):
            remainder = fold(remainder, single, parts[j], multiply_pair)
        high = builder.extract_element(remainder, ir.Constant(i32, 1))
        low = builder.extract_element(remainder, ir.Constant(i32, 0))
        return context.make_tuple(builder, signature.return_type, [high, low])

    return types.UniTuple(types.int64, 2)(buf, types.int64, types.int64, types.int64), codegen


@numba.njit(cache=True, nogil=True)
def _crc16_table(buf, start, end, crc):  # pragma: no cover - compiled
    # CRC-16 of buf[start:end] by table, continuing from `crc` (the CRC of the bytes before start). Per
    # 16 bytes, only the first two lookups depend on the previous CRC; the other fourteen are XORed as a
    # tree first, so the loop-carried chain is two lookups long (twice as fast as a left-to-right chain).
    t = _CRC16
    i = start
    while i + 16 <= end:
        b = buf[i:i + 16]
        x = (t[_ROW[13] + b[2]] ^ t[_ROW[12] + b[3]]) ^ (t[_ROW[11] + b[4]] ^ t[_ROW[10] + b[5]])
        y = (t[_ROW[9] + b[6]] ^ t[_ROW[8] + b[7]]) ^ (t[_ROW[7] + b[8]] ^ t[_ROW[6] + b[9]])
        z = (t[_ROW[5] + b[10]] ^ t[_ROW[4] + b[11]]) ^ (t[_ROW[3] + b[12]] ^ t[_ROW[2] + b[13]])
        w = t[_ROW[1] + b[14]] ^ t[_ROW[0] + b[15]]
        head = (t[_ROW[15] + np.uint64((np.int64(b[0]) ^ (crc >> 8)) & 0xFF)]
                ^ t[_ROW[14] + np.uint64((np.int64(b[1]) ^ crc) & 0xFF)])
        crc = ((x ^ y) ^ (z ^ w)) ^ head
        i += 16
    while i < end:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ np.int64(buf[i])) & 0xFF]
        i += 1
    return crc


@numba.njit(cache=True, nogil=True)
def _crc16(buf, start, end, crc=0):  # pragma: no cover - compiled
    # CRC-16 of buf[start:end], continuing from `crc` (the CRC of the bytes before start): whole steps
    # by carry-less multiplication where the CPU has it (about 0.03 ns a byte against 0.25 by table),
    # the remainder and the rest by table.
    if _CLMUL_STEP > 0 and end - start >= _CLMUL_STEP:
        steps = (end - start) // _CLMUL_STEP
        high, low = _crc16_fold(buf, start, steps, crc)
        t = _CRC16
        crc = 0
        for j in range(8):  # the table CRC of the remainder's 16 bytes: sixteen independent lookups
            crc ^= t[_ROW[15 - j] + np.uint64(_lshr(high, 56 - 8 * j) & 0xFF)]
            crc ^= t[_ROW[7 - j] + np.uint64(_lshr(low, 56 - 8 * j) & 0xFF)]
        start += steps * _CLMUL_STEP
    return _crc16_table(buf, start, end, crc)


@numba.njit(cache=True, nogil=True)
def _crc8(buf, start, end):  # pragma: no cover - compiled
    crc = 0
    for i in range(start, end):
        crc = _CRC8[crc ^ np.int64(buf[i])]
    return crc


@numba.njit(cache=True, nogil=True)
def _peek64(buf, bit_position):  # pragma: no cover - compiled
    # The 64 bits from bit_position on, MSB first (at least 57 of them real), zeros past the end.
    n = buf.size
    b = bit_position >> 3
    if b + 8 <= n:
        word = _load_be64(buf, b)
    else:
        word = 0
        for i in range(8):
            word <<= 8
            if b + i < n:
                word |= np.int64(buf[b + i])
    return word << (bit_position & 7)


@numba.njit(cache=True, nogil=True)
def _read_unsigned(buf, bit_position, bits):  # pragma: no cover - compiled
    # 0 <= bits <= 57; int64 arithmetic shifts, so mask after shifting.
    if bits == 0:
        return 0
    return (_peek64(buf, bit_position) >> (64 - bits)) & ((1 << bits) - 1)


@numba.njit(cache=True, nogil=True)
def _read_signed(buf, bit_position, bits):  # pragma: no cover - compiled
    # Two's complement, 1 <= bits <= 57 (33 for the side channel of 32-bit audio).
    value = _read_unsigned(buf, bit_position, bits)
    if (value >> (bits - 1)) & 1:
        value -= 1 << bits
    return value


@numba.njit(cache=True, nogil=True)
def _read_unary(buf, bit_position):  # pragma: no cover - compiled
    # Count zeros up to the next one bit; returns (zeros, position after the one), or (-1, _) at the end.
    total_bits = buf.size * 8
    zeros = 0
    while bit_position < total_bits:
        run = _clz(_peek64(buf, bit_position))
        if run < 57:
            if bit_position + run >= total_bits:
                return -1, bit_position
            return zeros + run, bit_position + run + 1
        zeros += 57
        bit_position += 57
    return -1, bit_position


@numba.njit(cache=True, nogil=True)
def _bit_length(value):  # pragma: no cover - compiled
    return 64 - _clz(value)


# ------------------------------------------------------------------------------------------------
# Encoder kernels
# ------------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _put(words, wi, acc, fill, bits, value):  # pragma: no cover - compiled
    # Append `bits` (0..32) bits of `value` (< 2**bits) to a stream of 32-bit words (native order, MSB
    # first). `acc` holds the pending `fill` (< 32) bits in its low end (higher bits are stale). Branch
    # free: the word is stored every time (a partial one is simply rewritten later) and wi moves on when
    # it is complete, so the cost does not depend on how predictable the code lengths are.
    acc = (acc << bits) | value
    fill += bits
    words[np.uint64(wi)] = acc >> (fill & 31)
    wi += fill >> 5
    fill &= 31
    return wi, acc, fill


@numba.njit(cache=True, nogil=True)
def _flush_words(words, wi, acc, fill, out, pos):  # pragma: no cover - compiled
    # Pad to a byte with zero bits, copy the words big-endian to out[pos:]; returns the new pos. The
    # byte swap runs over the word array (vectorised) and the copy is one slice assignment.
    if fill > 0:
        words[wi] = (acc << (32 - fill)) & 0xFFFFFFFF
    nbytes = wi * 4 + (fill + 7) // 8
    whole = wi if fill == 0 else wi + 1
    if _SWAP_WORDS:
        for w in range(whole):
            v = words[w]
            words[w] = (v >> 24) | ((v >> 8) & 0xFF00) | ((v << 8) & 0xFF0000) | (v << 24)
    out[pos:pos + nbytes] = words.view(np.uint8)[:nbytes]
    return pos + nbytes


@numba.njit(cache=True, nogil=True)
def _analyse(x, n, sums):  # pragma: no cover - compiled
    # One pass over a block: is it constant, which low bits are zero in every sample (for "wasted" bits),
    # and, per segment of the block, sum |residual| of the fixed predictors of order 0..4 into
    # sums[segment, order] (over samples 4.., the same for all orders; all five residuals come from the
    # same five samples, so the loop vectorises). Per segment, because the bit cost goes as the log of
    # the local magnitude: whole-block sums let the loud passages pick the order for the quiet ones.
    # Returns (constant, OR of the samples, number of segments).
    x0 = x[0]
    bits_or = 0
    diff = 0
    if n < 5:
        for i in range(n):
            bits_or |= x[i]
            diff |= x[i] ^ x0
        return diff == 0, bits_or, 0
    for i in range(4):
        bits_or |= x[i]
        diff |= x[i] ^ x0
    segments = min(_SEGMENTS, max(1, (n - 4) // 64))
    length = (n - 4) // segments
    for segment in range(segments):
        lo = 4 + segment * length
        hi = n if segment == segments - 1 else lo + length
        lag0 = x[lo:hi]
        lag1 = x[lo - 1:hi - 1]
        lag2 = x[lo - 2:hi - 2]
        lag3 = x[lo - 3:hi - 3]
        lag4 = x[lo - 4:hi - 4]
        s0 = 0
        s1 = 0
        s2 = 0
        s3 = 0
        s4 = 0
        for i in range(hi - lo):
            a = lag0[i]
            b = lag1[i]
            c = lag2[i]
            d = lag3[i]
            e = lag4[i]
            bits_or |= a
            diff |= a ^ x0
            d1a = a - b
            d1b = b - c
            d1c = c - d
            d1d = d - e
            d2a = d1a - d1b
            d2b = d1b - d1c
            d2c = d1c - d1d
            d3a = d2a - d2b
            d3b = d2b - d2c
            d4 = d3a - d3b
            s0 += abs(a)
            s1 += abs(d1a)
            s2 += abs(d2a)
            s3 += abs(d3a)
            s4 += abs(d4)
        sums[segment, 0] = s0
        sums[segment, 1] = s1
        sums[segment, 2] = s2
        sums[segment, 3] = s3
        sums[segment, 4] = s4
    return diff == 0, bits_or, segments


@numba.njit(cache=True, nogil=True)
def _rice_estimate(total, count, k):  # pragma: no cover - compiled
    # Bits to Rice-code `count` values summing to `total` with parameter k: count * (k + 1) stop bits and
    # low bits, plus the sum of the quotients u >> k, taken as (total - count * (2^k - 1) / 2) / 2^k
    # (fractional parts assumed uniform; exact for k = 0).
    quotients = (2 * total - count * ((1 << k) - 1)) >> (k + 1)
    return count * (k + 1) + max(quotients, 0)


@numba.njit(cache=True, nogil=True)
def _rice_guess(total, log2_count, count, k_max):  # pragma: no cover - compiled
    # (k, estimated bits) for a partition: k near log2(mean), which is optimal for Laplacian residuals
    # within one; the mean comes from bit lengths (no division): count is a power of two up to the order.
    if count <= 0:
        return 0, 0
    k = _bit_length(total) - 1 - log2_count
    k = min(max(k, 0), k_max)
    best_k = k
    best = _rice_estimate(total, count, k)
    if k > 0:
        lower = _rice_estimate(total, count, k - 1)
        if lower < best:
            best, best_k = lower, k - 1
    return best_k, best


@numba.njit(cache=True, nogil=True)
def _fixed_residual(x, n, order, shift, res):  # pragma: no cover - compiled
    # res[i] = x[i] minus the order-`order` polynomial extrapolation of x[i-order..i-1], on x >> shift.
    out = res[order:n]
    m = n - order
    if order == 0:
        for i in range(m):
            out[i] = x[i] >> shift
    elif order == 1:
        a = x[1:n]
        b = x[:n - 1]
        for i in range(m):
            out[i] = (a[i] >> shift) - (b[i] >> shift)
    elif order == 2:
        a = x[2:n]
        b = x[1:n - 1]
        c = x[:n - 2]
        for i in range(m):
            out[i] = (a[i] >> shift) - 2 * (b[i] >> shift) + (c[i] >> shift)
    elif order == 3:
        a = x[3:n]
        b = x[2:n - 1]
        c = x[1:n - 2]
        d = x[:n - 3]
        for i in range(m):
            out[i] = (a[i] >> shift) - 3 * (b[i] >> shift) + 3 * (c[i] >> shift) - (d[i] >> shift)
    else:
        a = x[4:n]
        b = x[3:n - 1]
        c = x[2:n - 2]
        d = x[1:n - 3]
        e = x[:n - 4]
        for i in range(m):
            out[i] = ((a[i] >> shift) - 4 * (b[i] >> shift) + 6 * (c[i] >> shift) - 4 * (d[i] >> shift)
                      + (e[i] >> shift))


@numba.njit(cache=True, nogil=True)
def _plan_partitions(res, n, order, level_sum, level_or, params):  # pragma: no cover - compiled
    # Choose the partition order (0..8) and, per partition, the Rice parameter or an escape (raw bits).
    # The order comes from estimates over sums of the zigzag-folded residuals; then, for that order,
    # each partition's parameter is chosen among three by exact bit counts. Returns (exact bits of the
    # whole residual section, partition order, 1 for the 5-bit-parameter method RICE2); writes
    # params[j] = k >= 0, or -1 - raw_bits for an escaped partition.
    max_order = min(_ctz(n) if n > 0 else 0, _MAX_PARTITION_ORDER)
    while max_order > 0 and (n >> max_order) <= order:
        max_order -= 1
    # Sums and ORs of u at the finest order; coarser orders pair them up (a binary heap: order p at 2^p).
    parts = 1 << max_order
    size = n >> max_order
    for j in range(parts):
        lo = max(j * size, order)
        hi = (j + 1) * size
        total = 0
        bits_or = 0
        segment = res[lo:hi]
        for i in range(hi - lo):
            r = segment[i]
            u = (r << 1) ^ (r >> 31)
            total += u
            bits_or |= u
        level_sum[parts + j] = total
        level_or[parts + j] = bits_or
    for p in range(max_order - 1, -1, -1):
        base = 1 << p
        for j in range(base):
            level_sum[base + j] = level_sum[2 * (base + j)] + level_sum[2 * (base + j) + 1]
            level_or[base + j] = level_or[2 * (base + j)] | level_or[2 * (base + j) + 1]
    # Coarse to fine, stopping once the cost has risen at two orders in a row: it is close to unimodal in
    # the order, and the finest orders (up to 256 partitions) are where the evaluation time goes.
    best = 1 << 62
    best_order = 0
    best_wide = 0
    previous = 1 << 62
    rises = 0
    for p in range(max_order + 1):
        base = 1 << p
        size = n >> p
        log2_size = _ctz(size)
        cost4 = 4 * base
        cost5 = 5 * base
        for j in range(base):
            count = size - order if j == 0 else size
            total = level_sum[base + j]
            escape = 5 + count * _bit_length(level_or[base + j])
            k, bits = _rice_guess(total, log2_size, count, 30)
            cost5 += min(bits, escape)
            if k > 14:
                bits = _rice_estimate(total, count, 14)
            cost4 += min(bits, escape)
        cost = min(cost4, cost5)
        if cost < best:
            best, best_order, best_wide = cost, p, 1 if cost5 < cost4 else 0
        rises = rises + 1 if cost >= previous else 0
        if rises == 2:
            break
        previous = cost
    # Exact parameters for the chosen order: three candidates around the guess, and the escape.
    p = best_order
    base = 1 << p
    size = n >> p
    log2_size = _ctz(size)
    k_max = 30 if best_wide else 14
    bits_total = 6  # method (2) and partition order (4)
    any_wide = False
    for j in range(base):
        lo = max(j * size, order)
        hi = (j + 1) * size
        count = hi - lo
        total = level_sum[base + j]
        k, _ = _rice_guess(total, log2_size, count, k_max)
        k0 = max(k - 1, 0)
        k1 = min(k0 + 1, k_max)
        k2 = min(k0 + 2, k_max)
        q0 = 0
        q1 = 0
        q2 = 0
        segment = res[lo:hi]
        for i in range(count):
            r = segment[i]
            u = (r << 1) ^ (r >> 31)
            q0 += u >> k0
            q1 += u >> k1
            q2 += u >> k2
        choice = k0
        bits = q0 + count * (k0 + 1)
        if q1 + count * (k1 + 1) < bits:
            choice, bits = k1, q1 + count * (k1 + 1)
        if q2 + count * (k2 + 1) < bits:
            choice, bits = k2, q2 + count * (k2 + 1)
        raw = _bit_length(level_or[base + j])
        if 5 + count * raw < bits:
            bits = 5 + count * raw
            params[j] = -1 - raw
        else:
            params[j] = choice
            if choice > 14:
                any_wide = True
        bits_total += bits
    wide = 1 if any_wide else 0
    bits_total += base * (5 if wide else 4)
    return bits_total, p, wide


@numba.njit(cache=True, nogil=True)
def _write_residual(out, pos, acc, fill, res, n, order, partition_order, wide, params, largest):  # pragma: no cover
    # (out, pos) are the word stream and word index of _put; largest[j] bounds partition j's folded values
    # (their OR).
    pos, acc, fill = _put(out, pos, acc, fill, 2, wide)
    pos, acc, fill = _put(out, pos, acc, fill, 4, partition_order)
    parameter_bits = 5 if wide else 4
    escape_code = 31 if wide else 15
    size = n >> partition_order
    for j in range(1 << partition_order):
        lo = max(j * size, order)
        hi = (j + 1) * size
        k = params[j]
        if k < 0:
            raw = -1 - k
            pos, acc, fill = _put(out, pos, acc, fill, parameter_bits, escape_code)
            pos, acc, fill = _put(out, pos, acc, fill, 5, raw)
            if raw > 0:
                mask = (1 << raw) - 1
                segment = res[lo:hi]
                for i in range(hi - lo):
                    pos, acc, fill = _put(out, pos, acc, fill, raw, segment[i] & mask)
            continue
        pos, acc, fill = _put(out, pos, acc, fill, parameter_bits, k)
        mask = (1 << k) - 1
        stop = 1 << k
        segment = res[lo:hi]
        if (largest[j] >> k) + k < 32:  # every code fits one 32-bit write: no branch in the loop
            for i in range(hi - lo):
                r = np.int64(segment[i])
                u = (r << 1) ^ (r >> 63)
                pos, acc, fill = _put(out, pos, acc, fill, (u >> k) + 1 + k, stop | (u & mask))
            continue
        for i in range(hi - lo):
            r = np.int64(segment[i])
            u = (r << 1) ^ (r >> 63)
            q = u >> k
            if q + k < 32:  # zeros, the stop bit and k low bits in one write
                pos, acc, fill = _put(out, pos, acc, fill, q + 1 + k, stop | (u & mask))
            else:
                while q >= 32:
                    pos, acc, fill = _put(out, pos, acc, fill, 32, 0)
                    q -= 32
                pos, acc, fill = _put(out, pos, acc, fill, q, 0)
                pos, acc, fill = _put(out, pos, acc, fill, k + 1, stop | (u & mask))
    return pos, acc, fill


@numba.njit(cache=True, nogil=True)
def _write_subframe(out, pos, acc, fill, x, n, sample_bits, constant, wasted, order, res, level_sum, level_or,
                    params):  # pragma: no cover - compiled
    if constant:
        pos, acc, fill = _put(out, pos, acc, fill, 8, 0x00)
        return _put(out, pos, acc, fill, sample_bits, np.int64(x[0]) & ((1 << sample_bits) - 1))
    bits = sample_bits - wasted
    mask = (1 << bits) - 1
    verbatim_bits = n * bits
    fixed_bits = 1 << 62
    partition_order = 0
    wide = 0
    if order >= 0:
        _fixed_residual(x, n, order, wasted, res)
        residual_bits, partition_order, wide = _plan_partitions(res, n, order, level_sum, level_or, params)
        fixed_bits = order * bits + residual_bits
    flag = 1 if wasted > 0 else 0
    if fixed_bits < verbatim_bits:
        pos, acc, fill = _put(out, pos, acc, fill, 8, 0x10 | (order << 1) | flag)
    else:
        pos, acc, fill = _put(out, pos, acc, fill, 8, 0x02 | flag)
    if wasted > 0:  # unary: wasted - 1 zeros, then a one
        pos, acc, fill = _put(out, pos, acc, fill, wasted, 1)
    if fixed_bits < verbatim_bits:
        for i in range(order):
            pos, acc, fill = _put(out, pos, acc, fill, bits, (np.int64(x[i]) >> wasted) & mask)
        largest = level_or[1 << partition_order:2 << partition_order]
        return _write_residual(out, pos, acc, fill, res, n, order, partition_order, wide, params, largest)
    for i in range(n):
        pos, acc, fill = _put(out, pos, acc, fill, bits, (np.int64(x[i]) >> wasted) & mask)
    return pos, acc, fill


@numba.njit(cache=True, nogil=True)
def _choose_order(x, n, sample_bits, sums):  # pragma: no cover - compiled
    # (constant, wasted bits, fixed order or -1 for verbatim, estimated bits) for one channel's block;
    # sums is (_SEGMENTS, 5) scratch. The estimate Rice-codes each segment on its own, like partitions.
    constant, bits_or, segments = _analyse(x, n, sums)
    if constant:
        return True, 0, 0, sample_bits
    wasted = min(_ctz(bits_or), sample_bits - 1)
    bits = sample_bits - wasted
    best_order = -1
    best = n * bits  # verbatim
    if segments == 0:  # under 5 samples: verbatim
        return False, wasted, best_order, best
    length = (n - 4) // segments
    for order in range(min(_MAX_FIXED_ORDER, n - 1) + 1):
        estimate = order * bits + 6
        for segment in range(segments):
            count = length if segment < segments - 1 else n - 4 - length * (segments - 1)
            # Residuals of x >> wasted are those of x divided by 2^wasted exactly; u = zigzag ~ 2 |r|.
            _, cost = _rice_guess(2 * (sums[segment, order] >> wasted), _bit_length(count) - 1, count, 30)
            estimate += cost + 5
        if estimate < best:
            best, best_order = estimate, order
    return False, wasted, best_order, best


@numba.njit(cache=True, nogil=True)
def _frame_header_bytes(out, block, bs, rate_code, rate_extra, channel_code, size_code,
                        frame_number):  # pragma: no cover - compiled
    # Writes the frame header to out[0:] (a small scratch array); returns its length in bytes.
    pos = 0
    start = 0
    out[pos] = 0xFF
    out[pos + 1] = 0xF8  # sync code, reserved 0, fixed block size
    extra_bits = 0
    code = 0
    if bs == 192:
        code = 1
    elif bs in (576, 1152, 2304, 4608):
        code = 2 + _ctz(bs // 576)
    elif bs in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768):
        code = 8 + _ctz(bs // 256)
    elif bs <= 256:
        code, extra_bits = 6, 8
    else:
        code, extra_bits = 7, 16
    out[pos + 2] = (code << 4) | (rate_code & 0x0F)
    out[pos + 3] = (channel_code << 4) | (size_code << 1)
    pos += 4
    # The frame number, UTF-8 style (1 to 6 bytes for 31 bits).
    v = frame_number
    if v < 0x80:
        out[pos] = v
        pos += 1
    else:
        count = 2
        while v >= (1 << (5 * count + 1)):
            count += 1
        out[pos] = ((0xFF00 >> count) & 0xFF) | (v >> (6 * (count - 1)))
        for t in range(1, count):
            out[pos + t] = 0x80 | ((v >> (6 * (count - 1 - t))) & 0x3F)
        pos += count
    if extra_bits == 8:
        out[pos] = bs - 1
        pos += 1
    elif extra_bits == 16:
        out[pos] = (bs - 1) >> 8
        out[pos + 1] = (bs - 1) & 0xFF
        pos += 2
    if rate_code == 12:
        out[pos] = rate_extra
        pos += 1
    elif rate_code == 13 or rate_code == 14:
        out[pos] = rate_extra >> 8
        out[pos + 1] = rate_extra & 0xFF
        pos += 2
    out[pos] = _crc8(out, start, pos)
    return pos + 1


@numba.njit(cache=True, nogil=True)
def _encode_frames(samples, bits_per_sample, block, rate_code, rate_extra, size_code, out,
                   frame_offsets):  # pragma: no cover - compiled
    channels, total = samples.shape
    frames = (total + block - 1) // block
    scratch = np.empty((2, block), np.int32)  # mid and side of a stereo block
    res = np.empty(block, np.int32)
    level_sum = np.empty(2 << _MAX_PARTITION_ORDER, np.int64)
    level_or = np.empty(2 << _MAX_PARTITION_ORDER, np.int64)
    params = np.empty(1 << _MAX_PARTITION_ORDER, np.int64)
    header = np.empty(16, np.uint8)
    sums = np.empty((_SEGMENTS, _MAX_FIXED_ORDER + 1), np.int64)
    # One FLAC frame as 32-bit words: at most a 16-byte header and, per subframe, 40 header bits plus
    # VERBATIM's size (a FIXED subframe is only written when smaller), one more bit for a side channel.
    words = np.empty((128 + channels * (40 + block * (bits_per_sample + 1))) // 32 + 4, np.uint32)
    pos = 0
    min_size = 1 << 62
    max_size = 0
    for f in range(frames):
        first = f * block
        n = min(block, total - first)
        frame_offsets[f] = pos
        channel_code = channels - 1
        # Per subframe: the signal, its bit depth and the chosen coding.
        sig0 = samples[0, first:first + n]
        sig1 = samples[min(1, channels - 1), first:first + n]
        mid = scratch[0, :n]
        side = scratch[1, :n]
        const0, wasted0, order0, cost0 = _choose_order(sig0, n, bits_per_sample, sums)
        const1, wasted1, order1, cost1 = const0, wasted0, order0, cost0
        const_m, wasted_m, order_m, cost_m = const0, wasted0, order0, cost0
        const_s, wasted_s, order_s, cost_s = const0, wasted0, order0, cost0
        if channels == 2:
            const1, wasted1, order1, cost1 = _choose_order(sig1, n, bits_per_sample, sums)
            for i in range(n):
                left = sig0[i]
                right = sig1[i]
                mid[i] = (left + right) >> 1
                side[i] = left - right
            const_m, wasted_m, order_m, cost_m = _choose_order(mid, n, bits_per_sample, sums)
            const_s, wasted_s, order_s, cost_s = _choose_order(side, n, bits_per_sample + 1, sums)
            best = cost0 + cost1
            if cost0 + cost_s < best:  # left/side
                best, channel_code = cost0 + cost_s, 8
            if cost_s + cost1 < best:  # right/side
                best, channel_code = cost_s + cost1, 9
            if cost_m + cost_s < best:  # mid/side
                best, channel_code = cost_m + cost_s, 10
        header_bytes = _frame_header_bytes(header, block, n, rate_code, rate_extra, channel_code, size_code, f)
        wi = 0
        acc = 0
        fill = 0
        for t in range(header_bytes):
            wi, acc, fill = _put(words, wi, acc, fill, 8, np.int64(header[t]))
        if channels == 2:
            if channel_code == 1:
                wi, acc, fill = _write_subframe(words, wi, acc, fill, sig0, n, bits_per_sample, const0, wasted0,
                                                 order0, res, level_sum, level_or, params)
                wi, acc, fill = _write_subframe(words, wi, acc, fill, sig1, n, bits_per_sample, const1, wasted1,
                                                 order1, res, level_sum, level_or, params)
            elif channel_code == 8:
                wi, acc, fill = _write_subframe(words, wi, acc, fill, sig0, n, bits_per_sample, const0, wasted0,
                                                 order0, res, level_sum, level_or, params)
                wi, acc, fill = _write_subframe(words, wi, acc, fill, side, n, bits_per_sample + 1, const_s,
                                                 wasted_s, order_s, res, level_sum, level_or, params)
            elif channel_code == 9:
                wi, acc, fill = _write_subframe(words, wi, acc, fill, side, n, bits_per_sample + 1, const_s,
                                                 wasted_s, order_s, res, level_sum, level_or, params)
                wi, acc, fill = _write_subframe(words, wi, acc, fill, sig1, n, bits_per_sample, const1, wasted1,
                                                 order1, res, level_sum, level_or, params)
            else:
                wi, acc, fill = _write_subframe(words, wi, acc, fill, mid, n, bits_per_sample, const_m, wasted_m,
                                                 order_m, res, level_sum, level_or, params)
                wi, acc, fill = _write_subframe(words, wi, acc, fill, side, n, bits_per_sample + 1, const_s,
                                                 wasted_s, order_s, res, level_sum, level_or, params)
        else:
            wi, acc, fill = _write_subframe(words, wi, acc, fill, sig0, n, bits_per_sample, const0, wasted0,
                                             order0, res, level_sum, level_or, params)
            for c in range(1, channels):
                sig = samples[c, first:first + n]
                const_c, wasted_c, order_c, _ = _choose_order(sig, n, bits_per_sample, sums)
                wi, acc, fill = _write_subframe(words, wi, acc, fill, sig, n, bits_per_sample, const_c, wasted_c,
                                                 order_c, res, level_sum, level_or, params)
        pos = _flush_words(words, wi, acc, fill, out, pos)
        crc = _crc16(out, frame_offsets[f], pos)
        out[pos] = crc >> 8
        out[pos + 1] = crc & 0xFF
        pos += 2
        size = pos - frame_offsets[f]
        min_size = min(min_size, size)
        max_size = max(max_size, size)
    return pos, min_size, max_size


# ------------------------------------------------------------------------------------------------
# Decoder kernels
# ------------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _parse_metadata(buf, meta):  # pragma: no cover - compiled
    # Fills meta: 0 first frame offset, 1 sample rate, 2 channels, 3 bits per sample, 4 total frames
    # (0 = unknown), 5 min block, 6 max block, 7 min frame bytes, 8 max frame bytes, 9 seek table
    # offset (-1 = none), 10 seek points, 11 error offset. Returns a status code.
    n = buf.size
    p = 0
    meta[9] = -1
    meta[10] = 0
    if n >= 10 and buf[0] == 0x49 and buf[1] == 0x44 and buf[2] == 0x33:  # an ID3v2 tag before "fLaC"
        size = ((np.int64(buf[6]) & 0x7F) << 21) | ((np.int64(buf[7]) & 0x7F) << 14) \
            | ((np.int64(buf[8]) & 0x7F) << 7) | (np.int64(buf[9]) & 0x7F)
        p = 10 + size + (10 if buf[5] & 0x10 else 0)
    meta[11] = p
    if p + 4 > n or buf[p] != 0x66 or buf[p + 1] != 0x4C or buf[p + 2] != 0x61 or buf[p + 3] != 0x43:
        return _E_NOT_FLAC
    p += 4
    first_block = True
    while True:
        meta[11] = p
        if p + 4 > n:
            return _E_META_TRUNCATED
        header = np.int64(buf[p])
        kind = header & 0x7F
        length = (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])
        p += 4
        if p + length > n:
            return _E_META_TRUNCATED
        if first_block and kind != 0:
            return _E_NO_STREAMINFO
        if kind == 0:
            if not first_block or length < 34:
                return _E_BAD_STREAMINFO
            meta[5] = (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
            meta[6] = (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])
            meta[7] = (np.int64(buf[p + 4]) << 16) | (np.int64(buf[p + 5]) << 8) | np.int64(buf[p + 6])
            meta[8] = (np.int64(buf[p + 7]) << 16) | (np.int64(buf[p + 8]) << 8) | np.int64(buf[p + 9])
            word = 0
            for t in range(8):
                word = (word << 8) | np.int64(buf[p + 10 + t])
            meta[1] = (word >> 44) & 0xFFFFF
            meta[2] = ((word >> 41) & 7) + 1
            meta[3] = ((word >> 36) & 31) + 1
            meta[4] = word & 0xFFFFFFFFF
            if meta[1] == 0 or meta[3] < 4 or meta[6] < 1 or meta[5] > meta[6]:
                return _E_BAD_STREAMINFO
        elif kind == 3:
            if length % 18 != 0 or meta[9] >= 0:
                return _E_BAD_SEEKTABLE
            meta[9] = p
            meta[10] = length // 18
        elif kind == 127:
            return _E_BAD_BLOCK_TYPE
        first_block = False
        p += length
        if header & 0x80:
            break
    meta[0] = p
    return _OK


@numba.njit(cache=True, nogil=True)
def _read_u64(buf, p):  # pragma: no cover - compiled
    value = 0
    for t in range(8):
        value = (value << 8) | np.int64(buf[p + t])
    return value


@numba.njit(cache=True, nogil=True)
def _parse_frame_header(buf, p, si_bits, si_min_block, si_max_block):  # pragma: no cover - compiled
    # (status, header bytes, block size, channel code, channels, bits per sample, first sample number)
    n = buf.size
    if p + 2 > n:
        return _E_TRUNCATED, 0, 0, 0, 0, 0, 0
    if buf[p] != 0xFF or (buf[p + 1] & 0xFE) != 0xF8:
        return _E_SYNC, 0, 0, 0, 0, 0, 0
    if p + 5 > n:
        return _E_TRUNCATED, 0, 0, 0, 0, 0, 0
    variable = np.int64(buf[p + 1]) & 1
    block_code = np.int64(buf[p + 2]) >> 4
    rate_code = np.int64(buf[p + 2]) & 0x0F
    channel_code = np.int64(buf[p + 3]) >> 4
    size_code = (np.int64(buf[p + 3]) >> 1) & 7
    if block_code == 0 or rate_code == 15 or channel_code >= 11 or size_code == 3 or (buf[p + 3] & 1):
        return _E_HEADER, 0, 0, 0, 0, 0, 0
    q = p + 4
    lead = np.int64(buf[q])
    if lead < 0x80:
        number = lead
        extra = 0
    elif 0xC0 <= lead < 0xE0:
        number, extra = lead & 0x1F, 1
    elif 0xE0 <= lead < 0xF0:
        number, extra = lead & 0x0F, 2
    elif 0xF0 <= lead < 0xF8:
        number, extra = lead & 0x07, 3
    elif 0xF8 <= lead < 0xFC:
        number, extra = lead & 0x03, 4
    elif 0xFC <= lead < 0xFE:
        number, extra = lead & 0x01, 5
    elif lead == 0xFE:
        number, extra = 0, 6
    else:
        return _E_HEADER, 0, 0, 0, 0, 0, 0
    if q + 1 + extra > n:
        return _E_TRUNCATED, 0, 0, 0, 0, 0, 0
    for t in range(1, extra + 1):
        byte = np.int64(buf[q + t])
        if byte & 0xC0 != 0x80:
            return _E_HEADER, 0, 0, 0, 0, 0, 0
        number = (number << 6) | (byte & 0x3F)
    q += 1 + extra
    by_sample = variable == 1 or si_min_block != si_max_block
    if not by_sample and extra > 5:  # a frame number has at most 31 bits
        return _E_HEADER, 0, 0, 0, 0, 0, 0
    if block_code == 1:
        block = 192
    elif block_code <= 5:
        block = 576 << (block_code - 2)
    elif block_code == 6:
        if q + 1 > n:
            return _E_TRUNCATED, 0, 0, 0, 0, 0, 0
        block = np.int64(buf[q]) + 1
        q += 1
    elif block_code == 7:
        if q + 2 > n:
            return _E_TRUNCATED, 0, 0, 0, 0, 0, 0
        block = ((np.int64(buf[q]) << 8) | np.int64(buf[q + 1])) + 1
        q += 2
        if block > 65535:
            return _E_HEADER, 0, 0, 0, 0, 0, 0
    else:
        block = 256 << (block_code - 8)
    if rate_code == 12:
        q += 1
    elif rate_code == 13 or rate_code == 14:
        q += 2
    if q + 1 > n:
        return _E_TRUNCATED, 0, 0, 0, 0, 0, 0
    if _crc8(buf, p, q) != buf[q]:
        return _E_HEADER_CRC, 0, 0, 0, 0, 0, 0
    q += 1
    if size_code == 0:
        bits = si_bits
    elif size_code == 1:
        bits = 8
    elif size_code == 2:
        bits = 12
    elif size_code == 7:
        bits = 32
    else:
        bits = 4 * size_code  # 16, 20, 24
    channels = channel_code + 1 if channel_code < 8 else 2
    first_sample = number if by_sample else number * si_max_block
    return _OK, q - p, block, channel_code, channels, bits, first_sample


@numba.njit(cache=True, nogil=True)
def _refill(buf, acc, avail, ptr):  # pragma: no cover - compiled
    # Top up the residual reader's register (see _residual_body) to 56..63 valid bits: 8 bytes from ptr
    # placed below the `avail` valid bits (the bits they repeat are the same stream bits), and ptr moves
    # on by the whole bytes that now sit in the register. Zeros past the end of buf.
    if 0 <= ptr and ptr + 8 <= buf.size:
        word = _be64(buf, ptr)
    else:
        word = 0
        for t in range(8):
            word <<= 8
            if 0 <= ptr + t < buf.size:
                word |= np.int64(buf[ptr + t])
    acc |= _lshr(word, avail)
    ptr += (63 - avail) >> 3
    avail |= 56
    return acc, avail, ptr


@numba.njit(cache=True, nogil=True)
def _rice_slow(buf, k, acc, avail, ptr):  # pragma: no cover - compiled
    # One Rice code the careful way: a run of zeros longer than the valid bits (counted through refills),
    # or a code near the end of buf. Returns (ok, zeros, low bits, acc, avail, ptr); not ok: truncated.
    zeros = 0
    run = _clz(acc)
    while run >= avail:  # all valid bits are zeros
        zeros += avail
        acc = 0
        avail = 0
        if ptr > buf.size + 8:
            return False, 0, 0, acc, avail, ptr
        acc, avail, ptr = _refill(buf, acc, avail, ptr)
        run = _clz(acc)
    zeros += run
    acc <<= run + 1
    avail -= run + 1
    acc, avail, ptr = _refill(buf, acc, avail, ptr)
    low = _rotl(acc, k) & ((1 << k) - 1)
    acc <<= k
    avail -= k
    return True, zeros, low, acc, avail, ptr


# _integrate and _rice_value are small enough for LLVM to inline at every call (with a constant
# `stages`, which it then folds away). Not inline="always": numba inlines by re-running its front end
# on the callee at each call site, and at the ~100 sites of the unrolled loops that took most of a
# 3-minute cold compile.
@numba.njit(cache=True, nogil=True)
def _integrate(v, s0, s1, s2, s3, stages):  # pragma: no cover - compiled
    # One step of the running sums that undo a FIXED predictor of order `stages` (see _residual_body).
    if stages >= 4:
        s3 += v
        v = s3
    if stages >= 3:
        s2 += v
        v = s2
    if stages >= 2:
        s1 += v
        v = s1
    if stages >= 1:
        s0 += v
        v = s0
    return v, s0, s1, s2, s3


@numba.njit(cache=True, nogil=True)
def _rice_value(acc, k, km1):  # pragma: no cover - compiled
    # One Rice code (k >= 1) from the top of the register, assumed to lie within its valid bits: its
    # zeros z before the stop bit; rotating the register left by z + k brings the zeros, the stop bit
    # and the top k - 1 low bits to the bottom and the last low bit (the zigzag sign) to the top, so
    # the signed value is ((z << (k - 1)) | those k - 1 bits) ^ (the sign smeared). The register moves
    # on by z + 1 + k bits, as ((acc + acc) << k) << z: one shift after the zero count, not two.
    # Returns (z + k, value, register).
    zeros = _clz(acc)
    zk = zeros + k
    turned = _rotl(acc, zk)
    value = (_shl(zeros, km1) | _bzhi(turned, km1)) ^ (turned >> 63)
    return zk, value, _shl((acc + acc) << k, zeros)


@numba.njit(cache=True, nogil=True, inline="always")
def _rice_groups(last, out, n, k, acc, avail, ptr, s0, s1, s2, s3, stages, group):  # pragma: no cover
    # The hot loop of _rice_run, on addresses: `group` (1..6) values per refill, with one check per
    # group that their codes lay within the valid bits. With a literal `group` the steps beyond it fold
    # away; with a variable one they cost a well-predicted branch each (see _rice_run). A group whose
    # codes ran past them is dropped (its stores are overwritten later) and the loop returns "not
    # clean": the register and sums are then garbage, and the caller rebuilds them from the bit position
    # (ptr * 8 - avail, as before the group) and the samples already written. Keeping copies to restore
    # instead would cost registers the loop needs. Returns (values done, clean, acc, avail, ptr, s0, s1,
    # s2, s3); ptr is an address here.
    km1 = k - 1
    groups = n // group
    if ptr > last:
        groups = 0
    else:  # a refill moves ptr on by at most 7 bytes: loads up to `last` only
        groups = min(groups, (last - ptr) // 7 + 1)
    first = out
    stop = out + 4 * group * groups
    while out < stop:
        acc |= _lshr(_load_be64_at(ptr), avail)
        room = (avail | 56) - group  # the group's stop bits
        zk, v, acc = _rice_value(acc, k, km1)
        v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
        _store_i32_at(out, v)
        room -= zk
        if group >= 2:
            zk, v, acc = _rice_value(acc, k, km1)
            v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
            _store_i32_at(out + 4, v)
            room -= zk
        if group >= 3:
            zk, v, acc = _rice_value(acc, k, km1)
            v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
            _store_i32_at(out + 8, v)
            room -= zk
        if group >= 4:
            zk, v, acc = _rice_value(acc, k, km1)
            v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
            _store_i32_at(out + 12, v)
            room -= zk
        if group >= 5:
            zk, v, acc = _rice_value(acc, k, km1)
            v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
            _store_i32_at(out + 16, v)
            room -= zk
        if group >= 6:
            zk, v, acc = _rice_value(acc, k, km1)
            v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
            _store_i32_at(out + 20, v)
            room -= zk
        if room < 0:  # some code ran past the valid bits: drop the group
            return (out - first) >> 2, False, acc, avail, ptr, s0, s1, s2, s3
        ptr += (63 - avail) >> 3
        avail = room
        out += 4 * group
    done = group * groups
    while done < n and ptr <= last:  # the last few values, one refill each
        acc |= _lshr(_load_be64_at(ptr), avail)
        ptr += (63 - avail) >> 3
        avail |= 56
        zk, v, shifted = _rice_value(acc, k, km1)
        if zk >= avail:
            break
        acc = shifted
        avail -= zk + 1
        v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
        _store_i32_at(out, v)
        out += 4
        done += 1
    return done, True, acc, avail, ptr, s0, s1, s2, s3


@numba.njit(cache=True, nogil=True, inline="always")
def _rice_run(buf, dst, i, end, k, acc, avail, ptr, s0, s1, s2, s3, stages):  # pragma: no cover - compiled
    # Rice-coded values i..end-1 with parameter k >= 1 into an int32 dst, through `stages` running sums
    # (see _residual_body), for as long as the register can be topped up with 8-byte loads inside buf
    # and the codes fit in its valid bits; returns at the first value that does not (the caller takes
    # it with _rice_slow). Inlined by numba with a literal `stages` at each call site. Group size:
    # values per refill that usually fit in the 56 bits a refill guarantees (no refill decision depends
    # on the data). Returns (i, clean, acc, avail, ptr, s0, s1, s2, s3): see _rice_groups for "not
    # clean".
    start = _address(buf)
    last = start + buf.size - 8
    out = _address(dst) + 4 * i
    n = end - i
    address = start + ptr
    # A copy of the loop with the group size fixed costs ~1 s of cold compile per FIXED order (times
    # 5): only k 15..22, the usual k of noisy 24-bit audio, gets one (~8% faster there); other k share
    # a copy that picks the group size at run time.
    if 15 <= k <= 22:
        done, clean, acc, avail, address, s0, s1, s2, s3 = _rice_groups(last, out, n, k, acc, avail, address, s0, s1,
                                                                        s2, s3, stages, 2)
    else:
        group = 6 if k <= 5 else 4 if k <= 10 else 3 if k <= 14 else 1
        done, clean, acc, avail, address, s0, s1, s2, s3 = _rice_groups(last, out, n, k, acc, avail, address, s0, s1,
                                                                        s2, s3, stages, group)
    return i + done, clean, acc, avail, address - start, s0, s1, s2, s3


@numba.njit(cache=True, nogil=True, inline="always")
def _sums_at(dst, i, stages):  # pragma: no cover - compiled
    # The running sums (see _residual_body) after sample i - 1, from the last `stages` samples written.
    x1 = np.int64(dst[i - 1]) if stages >= 1 else 0
    x2 = np.int64(dst[i - 2]) if stages >= 2 else 0
    x3 = np.int64(dst[i - 3]) if stages >= 3 else 0
    x4 = np.int64(dst[i - 4]) if stages >= 4 else 0
    return x1, x1 - x2, x1 - 2 * x2 + x3, x1 - 3 * x2 + 3 * x3 - x4


@numba.njit(cache=True, nogil=True, inline="always")
def _residual_body(buf, bp, dst, block, count, order, stages):  # pragma: no cover - compiled
    # Partitioned Rice residual into dst[order:count] (count <= block: a partial frame stops early). The
    # hot loop keeps the next bits left-aligned in a 64-bit register (`acc`, `avail` of them valid;
    # `ptr` is the byte after them), so a value costs a count-leading-zeros and a few shifts, not a
    # memory load. With stages = p > 0 it also undoes a FIXED predictor of order p on the way: the
    # residual is the p-th difference of the signal, so the signal is p running sums of it (s3 += r;
    # s2 += s3; ...; x = s0 += s1), one-cycle additions that overlap with the bit reading (stages = 0
    # for LPC, which is restored afterwards). Returns (status, bit position).
    total_bits = buf.size * 8
    if bp + 6 > total_bits:
        return _E_TRUNCATED, bp
    method = _read_unsigned(buf, bp, 2)
    partition_order = _read_unsigned(buf, bp + 2, 4)
    bp += 6
    if method > 1:
        return _E_SUBFRAME, bp
    if (block >> partition_order) < order or block % (1 << partition_order) != 0:
        return _E_SUBFRAME, bp
    parameter_bits = 5 if method == 1 else 4
    escape_code = 31 if method == 1 else 15
    size = block >> partition_order
    # The register at bp: 56 bits from its byte, then the bits before bp shifted out.
    skip = bp & 7
    acc, avail, ptr = _refill(buf, 0, 0, bp >> 3)
    acc <<= skip
    avail -= skip
    i = order
    # Running sums: s0 = x, s1 = its first difference, ... at the last warm-up sample.
    x1 = np.int64(dst[order - 1]) if order >= 1 else 0
    x2 = np.int64(dst[order - 2]) if order >= 2 else 0
    x3 = np.int64(dst[order - 3]) if order >= 3 else 0
    x4 = np.int64(dst[order - 4]) if order >= 4 else 0
    s0 = x1
    s1 = x1 - x2
    s2 = x1 - 2 * x2 + x3
    s3 = x1 - 3 * x2 + 3 * x3 - x4
    for j in range(1 << partition_order):
        if i >= count:
            break
        end = min((j + 1) * size, count)
        acc, avail, ptr = _refill(buf, acc, avail, ptr)
        k = _lshr(acc, 64 - parameter_bits)
        acc <<= parameter_bits
        avail -= parameter_bits
        if k == escape_code:  # raw signed values of `raw` (0..31) bits
            raw = _lshr(acc, 59)
            acc <<= 5
            avail -= 5
            while i < end:
                v = 0
                if raw > 0:
                    if avail < 32:
                        acc, avail, ptr = _refill(buf, acc, avail, ptr)
                    v = _lshr(acc, 64 - raw)
                    if (v >> (raw - 1)) & 1:
                        v -= 1 << raw
                    acc <<= raw
                    avail -= raw
                v, s0, s1, s2, s3 = _integrate(v, s0, s1, s2, s3, stages)
                dst[np.uint64(i)] = v
                i += 1
        else:
            while k > 0 and dst.itemsize == 4:
                i, clean, acc, avail, ptr, s0, s1, s2, s3 = _rice_run(buf, dst, i, end, k, acc, avail, ptr, s0, s1, s2,
                                                                      s3, stages)
                if not clean:  # rebuild the register and the sums (see _rice_groups)
                    bits = ptr * 8 - avail
                    acc, avail, ptr = _refill(buf, 0, 0, bits >> 3)
                    acc <<= bits & 7
                    avail -= bits & 7
                    s0, s1, s2, s3 = _sums_at(dst, i, stages)
                if i >= end:
                    break
                ok, zeros, low, acc, avail, ptr = _rice_slow(buf, k, acc, avail, ptr)
                if not ok:
                    return _E_TRUNCATED, total_bits + 1
                folded = (zeros << k) | low
                v, s0, s1, s2, s3 = _integrate((folded >> 1) ^ -(folded & 1), s0, s1, s2, s3, stages)
                dst[np.uint64(i)] = v
                i += 1
            while i < end:  # k = 0 (the codes are unary), or 64-bit samples
                ok, zeros, low, acc, avail, ptr = _rice_slow(buf, k, acc, avail, ptr)
                if not ok:
                    return _E_TRUNCATED, total_bits + 1
                folded = (zeros << k) | low
                v, s0, s1, s2, s3 = _integrate((folded >> 1) ^ -(folded & 1), s0, s1, s2, s3, stages)
                dst[np.uint64(i)] = v
                i += 1
        if ptr * 8 - avail > total_bits:
            return _E_TRUNCATED, total_bits + 1
    return _OK, ptr * 8 - avail


# One compiled copy of the residual decoder per FIXED order (0 = none, as for LPC), each with a literal
# `stages`: LLVM then drops the unused running sums, and the hot loop's state fits in registers.
@numba.njit(cache=True, nogil=True)
def _residual_0(buf, bp, dst, block, count, order):  # pragma: no cover - compiled
    return _residual_body(buf, bp, dst, block, count, order, 0)


@numba.njit(cache=True, nogil=True)
def _residual_1(buf, bp, dst, block, count, order):  # pragma: no cover - compiled
    return _residual_body(buf, bp, dst, block, count, order, 1)


@numba.njit(cache=True, nogil=True)
def _residual_2(buf, bp, dst, block, count, order):  # pragma: no cover - compiled
    return _residual_body(buf, bp, dst, block, count, order, 2)


@numba.njit(cache=True, nogil=True)
def _residual_3(buf, bp, dst, block, count, order):  # pragma: no cover - compiled
    return _residual_body(buf, bp, dst, block, count, order, 3)


@numba.njit(cache=True, nogil=True)
def _residual_4(buf, bp, dst, block, count, order):  # pragma: no cover - compiled
    return _residual_body(buf, bp, dst, block, count, order, 4)


@numba.njit(cache=True, nogil=True)
def _decode_residual(buf, bp, dst, block, count, order, stages):  # pragma: no cover - compiled
    # See _residual_body. Returns (status, bit position).
    if stages == 0:
        return _residual_0(buf, bp, dst, block, count, order)
    if stages == 1:
        return _residual_1(buf, bp, dst, block, count, order)
    if stages == 2:
        return _residual_2(buf, bp, dst, block, count, order)
    if stages == 3:
        return _residual_3(buf, bp, dst, block, count, order)
    return _residual_4(buf, bp, dst, block, count, order)


@numba.njit(cache=True, nogil=True)
def _restore_lpc(x, n, coefficients, order, shift):  # pragma: no cover - compiled
    # x[i] += (sum_j c[j] * x[i-1-j]) >> shift for i in [order, n), accumulated in int64 (32-bit audio
    # and 15-bit coefficients would overflow int32).
    if order == 8:  # libFLAC's default order; unrolled, it runs about twice as fast
        c0, c1, c2, c3 = coefficients[0], coefficients[1], coefficients[2], coefficients[3]
        c4, c5, c6, c7 = coefficients[4], coefficients[5], coefficients[6], coefficients[7]
        for i in range(8, n):
            u = np.uint64(i)
            total = (c0 * x[u - np.uint64(1)] + c1 * x[u - np.uint64(2)] + c2 * x[u - np.uint64(3)]
                     + c3 * x[u - np.uint64(4)] + c4 * x[u - np.uint64(5)] + c5 * x[u - np.uint64(6)]
                     + c6 * x[u - np.uint64(7)] + c7 * x[u - np.uint64(8)])
            x[u] += total >> shift
        return
    for i in range(order, n):
        total = 0
        for j in range(order):
            total += coefficients[j] * x[np.uint64(i - 1 - j)]
        x[np.uint64(i)] += total >> shift


@numba.njit(cache=True, nogil=True)
def _decode_subframe(buf, bp, dst, block, count, sample_bits, coefficients):  # pragma: no cover
    # Decodes one subframe's first `count` (<= block) samples into dst[:count] (int64 or int32; with
    # count < block the bit position returned is not the subframe's end). Returns (status, bit position).
    total_bits = buf.size * 8
    if bp + 8 > total_bits:
        return _E_TRUNCATED, bp
    header = _read_unsigned(buf, bp, 8)
    bp += 8
    if header & 0x80:
        return _E_SUBFRAME, bp
    kind = (header >> 1) & 0x3F
    wasted = 0
    if header & 1:
        zeros, bp = _read_unary(buf, bp)
        if zeros < 0:
            return _E_TRUNCATED, bp
        wasted = zeros + 1
        if wasted >= sample_bits:
            return _E_SUBFRAME, bp
    bits = sample_bits - wasted
    if kind == 0:  # CONSTANT
        value = _read_signed(buf, bp, bits)
        bp += bits
        for i in range(count):
            dst[i] = value
    elif kind == 1:  # VERBATIM
        if bp + block * bits > total_bits:
            return _E_TRUNCATED, bp
        for i in range(count):
            dst[i] = _read_signed(buf, bp, bits)
            bp += bits
        bp += (block - count) * bits
    elif 8 <= kind <= 12 or kind >= 32:  # FIXED or LPC
        order = kind - 8 if kind <= 12 else kind - 31
        if order >= block:
            return _E_SUBFRAME, bp
        if bp + order * bits > total_bits:
            return _E_TRUNCATED, bp
        warmup = min(order, count)
        for i in range(warmup):
            dst[i] = _read_signed(buf, bp, bits)
            bp += bits
        bp += (order - warmup) * bits
        shift = 0
        if kind >= 32:
            precision = _read_unsigned(buf, bp, 4) + 1
            shift = _read_signed(buf, bp + 4, 5)
            bp += 9
            if precision == 16 or shift < 0:
                return _E_SUBFRAME, bp
            for j in range(order):
                coefficients[j] = _read_signed(buf, bp, precision)
                bp += precision
        if count > order:
            if kind <= 12:  # FIXED
                status, bp = _decode_residual(buf, bp, dst, block, count, order, order)
            else:
                status, bp = _decode_residual(buf, bp, dst, block, count, order, 0)
                if status == _OK:
                    _restore_lpc(dst, count, coefficients, order, shift)
            if status != _OK:
                return status, bp
    else:
        return _E_SUBFRAME, bp
    if bp > total_bits:
        return _E_TRUNCATED, bp
    if wasted > 0:
        for i in range(count):
            dst[i] <<= wasted
    return _OK, bp


@numba.njit(cache=True, nogil=True)
def _decode_frame_body(buf, p, header_bytes, block, channel_code, channels, bits, dst, column, coefficients,
                       count, frame_end):  # pragma: no cover - compiled
    # Subframes, padding and CRC-16 of the frame at byte p, into dst[c, column:] (rows of at least
    # `block` samples, or `count` for the last channel; row slices of a C-contiguous array stay
    # contiguous for numba, sub-arrays out[:, a:b] would not). With count < block the last channel stops
    # after `count` samples; then frame_end, the byte where the next frame starts (from the seek table),
    # tells where the CRC-16 is, and the rest of the frame is only CRC-checked, not decoded.
    # Returns (status, end byte, channel).
    n = buf.size
    bp = (p + header_bytes) * 8
    for c in range(channels):
        sample_bits = bits
        if (channel_code == 8 and c == 1) or (channel_code == 9 and c == 0) or (channel_code == 10 and c == 1):
            sample_bits += 1  # the side channel needs one more bit
        wanted = count if c == channels - 1 else block
        status, bp = _decode_subframe(buf, bp, dst[c, column:column + wanted], block, wanted, sample_bits,
                                      coefficients)
        if status != _OK:
            return status, 0, c
    if count < block:
        end = frame_end - 2
        if end * 8 < bp or frame_end > n:
            return _E_FRAME_CRC, 0, 0
    else:
        if bp > n * 8:
            return _E_TRUNCATED, 0, 0
        if bp & 7:
            pad = 8 - (bp & 7)
            if _read_unsigned(buf, bp, pad) != 0:
                return _E_PADDING, 0, 0
            bp += pad
        end = bp >> 3
        if end + 2 > n:
            return _E_TRUNCATED, 0, 0
    if _crc16(buf, p, end) != ((np.int64(buf[end]) << 8) | np.int64(buf[end + 1])):
        return _E_FRAME_CRC, 0, 0
    return _OK, end + 2, 0


@numba.njit(cache=True, nogil=True)
def _in_range(out, column, channels, count, bits):  # pragma: no cover - compiled
    # Whether out[:channels, column:column + count] fits in `bits` bits (min/max reductions: vectorised).
    smallest = 0
    largest = 0
    for c in range(channels):
        row = out[c, column:column + count]
        for i in range(count):
            smallest = min(smallest, row[i])
            largest = max(largest, row[i])
    return smallest >= -(1 << (bits - 1)) and largest <= (1 << (bits - 1)) - 1


@numba.njit(cache=True, nogil=True)
def _emit(work, channel_code, channels, bits, lo, hi, out, column):  # pragma: no cover - compiled
    # Undo the stereo decorrelation for work[:, lo:hi], write out[:, column:], and check that the samples
    # fit in `bits` (min/max reductions, so the copy vectorises).
    low = -(1 << (bits - 1))
    high = (1 << (bits - 1)) - 1
    count = hi - lo
    smallest = 0
    largest = 0
    if channel_code < 8:
        for c in range(channels):
            src = work[c, lo:hi]
            dst = out[c, column:column + count]
            for i in range(count):
                v = src[i]
                smallest = min(smallest, v)
                largest = max(largest, v)
                dst[i] = v
        return smallest >= low and largest <= high
    a = work[0, lo:hi]
    b = work[1, lo:hi]
    left_out = out[0, column:column + count]
    right_out = out[1, column:column + count]
    if channel_code == 8:  # left, side
        for i in range(count):
            left = np.int64(a[i])
            right = left - b[i]
            smallest = min(smallest, min(left, right))
            largest = max(largest, max(left, right))
            left_out[i] = left
            right_out[i] = right
    elif channel_code == 9:  # side, right
        for i in range(count):
            right = np.int64(b[i])
            left = a[i] + right
            smallest = min(smallest, min(left, right))
            largest = max(largest, max(left, right))
            left_out[i] = left
            right_out[i] = right
    else:  # mid, side (in int64: mid << 1 needs one bit more than the samples)
        for i in range(count):
            side = np.int64(b[i])
            mid = (np.int64(a[i]) << 1) | (side & 1)
            left = (mid + side) >> 1
            right = (mid - side) >> 1
            smallest = min(smallest, min(left, right))
            largest = max(largest, max(left, right))
            left_out[i] = left
            right_out[i] = right
    return smallest >= low and largest <= high


@numba.njit(cache=True, nogil=True)
def _next_frame(buf, p, scan_from, expected_sample, channels, bits, si_min_block, si_max_block):  # pragma: no cover
    # The next frame after the one at byte p without decoding it: the first position from scan_from
    # with a valid frame header (sync, CRC-8) that starts at expected_sample with the same format, and
    # where the CRC-16 of bytes [p, q - 2) matches the two bytes before q. Returns q (buf.size when the
    # frame at p is the last one); -2 when such a header exists but no CRC-16 matches (the frame at p is
    # corrupt); -1 when there is none (the data end inside the frame at p, or it is corrupt).
    n = buf.size
    q = scan_from
    found = False
    while q + 1 < n:
        if buf[q] == 0xFF and (buf[q + 1] & 0xFE) == 0xF8:
            status, _, _, _, channels_q, bits_q, first_q = _parse_frame_header(buf, q, bits, si_min_block,
                                                                              si_max_block)
            if status == _OK and first_q == expected_sample and channels_q == channels and bits_q == bits:
                if _crc16(buf, p, q - 2) == ((np.int64(buf[q - 2]) << 8) | np.int64(buf[q - 1])):
                    return q
                found = True
        q += 1
    if n - 2 > p and _crc16(buf, p, n - 2) == ((np.int64(buf[n - 2]) << 8) | np.int64(buf[n - 1])):
        return n
    return -2 if found else -1


@numba.njit(cache=True, nogil=True)
def _frame_error(buf, p, sample, status, si_bits, si_min_block, si_max_block, channels, block, info,
                 detail):  # pragma: no cover - compiled
    # Record an error; an invalid subframe or padding inside a frame whose CRC-16 fails is reported as
    # the CRC mismatch (the data are corrupt, not the encoder wrong).
    if status == _E_SUBFRAME or status == _E_PADDING or status == _E_TRUNCATED or status == _E_RANGE:
        q = _next_frame(buf, p, p + 2, sample + block, channels, si_bits, si_min_block, si_max_block)
        if q == -2 or (q == -1 and status != _E_TRUNCATED):
            status = _E_FRAME_CRC
    info[0] = status
    info[1] = p
    info[2] = sample
    info[3] = sample // si_max_block if si_min_block == si_max_block else -1
    info[4] = detail


@numba.njit(cache=True, nogil=True)
def _seek_point_offset(buf, meta, sample):  # pragma: no cover - compiled
    # Byte offset of the frame starting at `sample` according to the seek table, or -1.
    lo = 0
    hi = meta[10]
    while lo < hi:
        mid = (lo + hi) >> 1
        point_sample = _read_u64(buf, meta[9] + 18 * mid)
        if 0 <= point_sample < sample:
            lo = mid + 1
        else:
            hi = mid
    if lo < meta[10] and _read_u64(buf, meta[9] + 18 * lo) == sample:
        offset = _read_u64(buf, meta[9] + 18 * lo + 8)
        if offset >= 0:
            return meta[0] + offset
    return -1


@numba.njit(cache=True, nogil=True)
def _decode_frames(buf, meta, p, sample, want_start, want_end, out, allow_skip, info, template):  # pragma: no cover
    # Decode the FLAC frames from byte p (which starts at `sample`) until want_end, writing samples
    # [want_start, want_end) to out[:, :]. Frames entirely before want_start are skipped without decoding
    # when allow_skip; with a seek table, the last frame is decoded only up to want_end. Frames inside
    # the range with independent channels decode straight into out. Subframes decode into arrays of
    # template's dtype: int32 (out's, so one compiled decoder serves both) unless the stream has 32-bit
    # samples, whose side channel needs 33 bits. Returns (status, byte after the last frame, sample
    # after the last frame).
    n = buf.size
    channels = meta[2]
    bits = meta[3]
    min_block = meta[5]
    max_block = meta[6]
    work = np.empty((channels, max_block), template.dtype)
    narrow = template.itemsize == 4
    coefficients = np.empty(32, np.int64)
    while sample < want_end:
        if p >= n:
            info[0] = _E_SHORT
            info[1] = p
            info[2] = sample
            info[3] = -1
            return _E_SHORT, p, sample
        status, header_bytes, block, channel_code, channels_f, bits_f, first = _parse_frame_header(
            buf, p, bits, min_block, max_block)
        detail = 0
        if status == _OK and (channels_f != channels or bits_f != bits):
            status, detail = _E_FORMAT, channels_f * 100 + bits_f
        elif status == _OK and block > max_block:
            status, detail = _E_BLOCK_SIZE, block
        elif status == _OK and first != sample:
            status, detail = _E_NUMBERING, first
        if status != _OK:
            _frame_error(buf, p, sample, status, bits, min_block, max_block, channels, 0, info, detail)
            return status, p, sample
        if allow_skip and sample + block <= want_start:
            q = _next_frame(buf, p, p + header_bytes, sample + block, channels, bits, min_block, max_block)
            if q < 0:
                status = _E_FRAME_CRC if q == -2 else _E_TRUNCATED
                _frame_error(buf, p, sample, status, bits, min_block, max_block, channels, block, info, 0)
                return status, p, sample
            p = q
            sample += block
            continue
        lo = max(want_start - sample, 0)
        hi = min(want_end - sample, block)
        count = block
        frame_end = -1
        if hi < block and meta[10] > 0:
            frame_end = _seek_point_offset(buf, meta, sample + block)
            if frame_end > p:
                count = hi
        direct = narrow and channel_code < 8 and lo == 0 and (count == block or channels == 1) and hi == count
        if direct:
            status, end, channel = _decode_frame_body(buf, p, header_bytes, block, channel_code, channels, bits,
                                                      out, sample - want_start, coefficients, count, frame_end)
            if status != _OK and count < block:  # seek table wrong? decode the whole frame to know
                count = block
                direct = False
        if not direct:
            status, end, channel = _decode_frame_body(buf, p, header_bytes, block, channel_code, channels, bits,
                                                      work, 0, coefficients, count, frame_end)
            if status != _OK and count < block:
                count = block
                status, end, channel = _decode_frame_body(buf, p, header_bytes, block, channel_code, channels,
                                                          bits, work, 0, coefficients, count, frame_end)
        if status != _OK:
            _frame_error(buf, p, sample, status, bits, min_block, max_block, channels, block, info, channel)
            return info[0], p, sample
        if direct:
            ok = _in_range(out, sample - want_start, channels, hi, bits)
        else:
            ok = lo >= hi or _emit(work, channel_code, channels, bits, lo, hi, out, sample + lo - want_start)
        if not ok:
            _frame_error(buf, p, sample, _E_RANGE, bits, min_block, max_block, channels, block, info, 0)
            return info[0], p, sample
        p = end
        sample += block
    return _OK, p, sample


@numba.njit(cache=True, nogil=True)
def _decode_all_kernel(buf, info, template):  # pragma: no cover - compiled
    # template: an empty array whose dtype the subframes decode into (see _decode_frames); with an int32
    # one and a 32-bit stream, returns status _E_WIDE at once (the caller retries with int64). Returns
    # (samples, meta).
    meta = np.zeros(12, np.int64)
    status = _parse_metadata(buf, meta)
    if status == _OK and meta[3] == 32 and template.itemsize == 4:
        status = _E_WIDE
    if status != _OK:
        info[0] = status
        info[1] = meta[11]
        return np.empty((0, 0), np.int32), meta
    channels = meta[2]
    total = meta[4]
    p = meta[0]
    n = buf.size
    if total > 0:
        # A frame takes at least 6 bytes per channel-free header and CRC, and holds at most max_block
        # samples: a larger total is a corrupt STREAMINFO (and would be a huge allocation).
        if total > (n // (6 + channels) + 1) * meta[6]:
            info[0] = _E_BAD_STREAMINFO
            return np.empty((0, 0), np.int32), meta
        out = np.empty((channels, total), np.int32)
        status, p, sample = _decode_frames(buf, meta, p, 0, 0, total, out, False, info, template)
        if status == _E_SHORT:
            info[4] = total
            return out, meta
        if status != _OK:
            return out, meta
        if sample > total:
            info[0] = _E_LONG
            info[1] = p
            info[2] = sample
            info[4] = total
            return out, meta
        if p < n:
            info[0] = _E_TRAILING
            info[1] = p
            info[4] = n - p
        return out, meta
    # Total unknown (0 in STREAMINFO): count the samples first, hopping from frame header to frame header
    # (each hop checks the skipped frame's CRC-16), then decode as usual.
    sample = 0
    while p < n:
        status, header_bytes, block, _, channels_f, bits_f, first = _parse_frame_header(buf, p, meta[3], meta[5],
                                                                                        meta[6])
        if status == _OK and first != sample:
            status = _E_NUMBERING
        if status != _OK:
            _frame_error(buf, p, sample, status, meta[3], meta[5], meta[6], channels, 0, info, first)
            return np.empty((0, 0), np.int32), meta
        q = _next_frame(buf, p, p + header_bytes, sample + block, channels, meta[3], meta[5], meta[6])
        if q < 0:
            status = _E_FRAME_CRC if q == -2 else _E_TRUNCATED
            _frame_error(buf, p, sample, status, meta[3], meta[5], meta[6], channels, block, info, 0)
            return np.empty((0, 0), np.int32), meta
        p = q
        sample += block
    out = np.empty((channels, sample), np.int32)
    _decode_frames(buf, meta, meta[0], 0, 0, sample, out, False, info, template)
    return out, meta


@numba.njit(cache=True, nogil=True)
def _int_to_float(out, bits):  # pragma: no cover - compiled
    # In place: out (int32) becomes float32 out / 2^(bits - 1), read back through out.view(np.float32).
    scale = np.float32(2.0 ** (1 - bits))
    for c in range(out.shape[0]):
        row = out[c]
        as_float = row.view(np.float32)
        for i in range(row.size):
            as_float[i] = np.float32(row[i]) * scale


@numba.njit(cache=True, nogil=True)
def _decode_range_kernel(buf, meta, start, frames, out, info, template):  # pragma: no cover - compiled
    # Frames [start, start + frames) into out, int32 (channels, frames), given the parsed metadata;
    # template: as in _decode_all_kernel. Returns a status (info describes errors).
    first = meta[0]
    p = first
    sample = 0
    seek_offset = meta[9]
    points = meta[10]
    if points > 0:
        # The last seek point at or before start (placeholders, 0xFF.., sort last and read as -1).
        lo = 0
        hi = points
        while lo < hi:
            mid = (lo + hi) >> 1
            point_sample = _read_u64(buf, seek_offset + 18 * mid)
            if 0 <= point_sample <= start:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0:
            point = seek_offset + 18 * (lo - 1)
            point_sample = _read_u64(buf, point)
            point_offset = _read_u64(buf, point + 8)
            q = first + point_offset
            if 0 <= point_offset and q < buf.size:
                # Trust the point only if a valid frame header starting at its sample is there.
                status, _, _, _, _, _, first_q = _parse_frame_header(buf, q, meta[3], meta[5], meta[6])
                if status == _OK and first_q == point_sample:
                    p = q
                    sample = point_sample
    status, p, sample = _decode_frames(buf, meta, p, sample, start, start + frames, out, True, info, template)
    if status == _E_SHORT:
        if meta[4] == 0:  # the stream did not say how long it is: the range is past its end
            info[0] = status = _E_BEYOND
            info[4] = sample
        else:
            info[4] = meta[4]
    return status


@numba.njit(cache=True, nogil=True, inline="always")
def _range_entry(data, start, frames, as_float, template):  # pragma: no cover - compiled
    # The one compiled call behind decode_flac_range: `data` is bytes (read in place, no conversion
    # in Python) or a read-only uint8 array; `as_float` and `template` are literals (one entry point
    # each, so each returns one array type). Returns (samples, status, byte offset, sample, FLAC frame,
    # detail): plain values, cheaper to return than an array to fill.
    buf = np.frombuffer(data, np.uint8)
    info = np.zeros(_INFO_FIELDS, np.int64)
    meta = np.zeros(12, np.int64)
    status = _parse_metadata(buf, meta)
    if status == _OK and meta[3] == 32 and template.itemsize == 4:
        status = _E_WIDE
    if status != _OK:
        info[0] = status
        info[1] = meta[11]
    elif meta[4] > 0 and start + frames > meta[4]:
        info[0] = status = _E_BEYOND
        info[4] = meta[4]
    shape = (meta[2], frames) if status == _OK else (0, 0)
    if as_float:
        result = np.empty(shape, np.float32)
        out = result.view(np.int32)
    else:
        out = np.empty(shape, np.int32)
        result = out
    if status == _OK and frames > 0:
        status = _decode_range_kernel(buf, meta, start, frames, out, info, template)
        if as_float and status == _OK:
            _int_to_float(out, meta[3])
    return result, info[0], info[1], info[2], info[3], info[4]


@numba.njit(cache=True, nogil=True)
def _range_int32(data, start, frames):  # pragma: no cover - compiled
    return _range_entry(data, start, frames, False, _NARROW)


@numba.njit(cache=True, nogil=True)
def _range_float32(data, start, frames):  # pragma: no cover - compiled
    return _range_entry(data, start, frames, True, _NARROW)


@numba.njit(cache=True, nogil=True)
def _range_int32_wide(data, start, frames):  # pragma: no cover - compiled
    return _range_entry(data, start, frames, False, _WIDE)


@numba.njit(cache=True, nogil=True)
def _range_float32_wide(data, start, frames):  # pragma: no cover - compiled
    return _range_entry(data, start, frames, True, _WIDE)


@numba.njit(cache=True, nogil=True)
def _all_entry(data, template):  # pragma: no cover - compiled
    # The one compiled call behind decode_flac (data as in _range_entry). Returns (samples, sample rate,
    # bits per sample, status, byte offset, sample, FLAC frame, detail).
    info = np.zeros(_INFO_FIELDS, np.int64)
    out, meta = _decode_all_kernel(np.frombuffer(data, np.uint8), info, template)
    return out, meta[1], meta[3], info[0], info[1], info[2], info[3], info[4]


# ------------------------------------------------------------------------------------------------
# Python API
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlacInfo:
    """What a FLAC stream's metadata says (STREAMINFO and SEEKTABLE).

    ``total_frames`` is 0 when the stream does not say (STREAMINFO allows "unknown"). Seek points map a
    sample number (the first sample of a FLAC frame) to that frame's byte offset from
    ``first_frame_offset``, the offset of the first frame in the stream; placeholder points are dropped.
    """

    sample_rate: int
    channels: int
    bits_per_sample: int
    total_frames: int
    min_block_frames: int
    max_block_frames: int
    min_frame_bytes: int
    max_frame_bytes: int
    first_frame_offset: int
    seek_sample_numbers: np.ndarray  # (points,) int64
    seek_byte_offsets: np.ndarray  # (points,) int64, relative to first_frame_offset
    md5: bytes = bytes(16)  # MD5 of the samples (see pcm_md5); all zeros means "not computed"


def _as_buffer(data) -> np.ndarray:
    """A read-only uint8 view of ``data`` (bytes, bytearray, memoryview or a 1-D uint8 array).

    Always read-only, so numba compiles the decoder once rather than once per writability.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ValueError(f"FLAC data must be bytes or a 1-D uint8 array, got {data.dtype} array of shape "
                             f"{data.shape}")
        view = np.ascontiguousarray(data).view()
    elif isinstance(data, bytes | bytearray | memoryview):
        view = np.frombuffer(data, dtype=np.uint8)
    else:
        raise ValueError(f"FLAC data must be bytes, bytearray, memoryview or a uint8 array, got {type(data).__name__}")
    view.flags.writeable = False
    return view


def _raise(info) -> None:
    """Raise the ValueError that a kernel's status fields (see _INFO_FIELDS) describe, if any."""
    status, offset, sample, frame, detail = (int(v) for v in info[:5])
    if status == _OK:
        return
    where = f"FLAC frame {frame} (sample {sample}) at byte {offset}" if frame >= 0 else \
        f"the FLAC frame at sample {sample}, byte {offset}"
    messages = {
        _E_NOT_FLAC: f"not a FLAC stream (no 'fLaC' marker at byte {offset})",
        _E_META_TRUNCATED: f"truncated FLAC metadata (the block at byte {offset} runs past the end)",
        _E_NO_STREAMINFO: "the first FLAC metadata block is not STREAMINFO",
        _E_BAD_STREAMINFO: "malformed FLAC STREAMINFO block (or its total length exceeds what the data hold)",
        _E_BAD_SEEKTABLE: "malformed FLAC SEEKTABLE block",
        _E_BAD_BLOCK_TYPE: f"invalid FLAC metadata block type 127 at byte {offset}",
        _E_TRUNCATED: f"truncated (or corrupt) FLAC stream: the data end inside {where}, before its CRC-16",
        _E_SYNC: f"lost sync: no FLAC frame header where {where} should start",
        _E_HEADER_CRC: f"frame header CRC-8 mismatch in {where} (corrupt data)",
        _E_FRAME_CRC: f"frame CRC-16 mismatch in {where} (corrupt data)",
        _E_HEADER: f"invalid or reserved value in the header of {where} (corrupt data?)",
        _E_SUBFRAME: f"invalid subframe (channel {detail}) in {where}, although its CRC-16 matches",
        _E_FORMAT: f"{where} has {detail // 100} channels of {detail % 100} bits, unlike STREAMINFO",
        _E_BLOCK_SIZE: f"{where} holds {detail} samples, more than STREAMINFO's maximum block size",
        _E_NUMBERING: f"{where} is numbered as starting at sample {detail} (frames missing or repeated)",
        _E_RANGE: f"decoded samples out of the bit depth's range in {where}, although its CRC-16 matches",
        _E_PADDING: f"non-zero padding bits in {where}, although its CRC-16 matches",
        _E_SHORT: f"truncated FLAC stream: it ends at sample {sample} (byte {offset}), STREAMINFO says {detail}",
        _E_TRAILING: f"{detail} unexpected bytes after the last FLAC frame (byte {offset})",
        _E_LONG: f"the FLAC frames hold {sample} samples, more than STREAMINFO's {detail}",
        _E_BEYOND: f"the requested range ends past the stream's {detail} frames",
    }
    raise ValueError(messages.get(status, f"FLAC decoding failed (status {status})"))


def read_flac_header(data: bytes | bytearray | memoryview | np.ndarray) -> FlacInfo:
    """Parse a FLAC stream's metadata (STREAMINFO, SEEKTABLE; other blocks are skipped) into a ``FlacInfo``.

    Raises ``ValueError`` if ``data`` is not a FLAC stream or its metadata are malformed or truncated.
    """
    buf = _as_buffer(data)
    meta = np.zeros(12, np.int64)
    status = _parse_metadata(buf, meta)
    if status != _OK:
        info = np.zeros(_INFO_FIELDS, np.int64)
        info[0], info[1] = status, meta[11]
        _raise(info)
    samples = np.zeros(0, np.int64)
    offsets = np.zeros(0, np.int64)
    if meta[10] > 0:
        points = np.frombuffer(buf[meta[9]:meta[9] + 18 * meta[10]].tobytes(), dtype=_SEEKPOINT_DTYPE)
        real = points["sample"] != np.uint64(0xFFFFFFFFFFFFFFFF)
        samples = points["sample"][real].astype(np.int64)
        offsets = points["offset"][real].astype(np.int64)
    return FlacInfo(sample_rate=int(meta[1]), channels=int(meta[2]), bits_per_sample=int(meta[3]),
                    total_frames=int(meta[4]), min_block_frames=int(meta[5]), max_block_frames=int(meta[6]),
                    min_frame_bytes=int(meta[7]), max_frame_bytes=int(meta[8]), first_frame_offset=int(meta[0]),
                    seek_sample_numbers=samples, seek_byte_offsets=offsets,
                    md5=buf[_MD5_START:_MD5_START + 16].tobytes())


def decode_flac(data: bytes | bytearray | memoryview | np.ndarray) -> tuple[np.ndarray, int, int]:
    """Decode a whole FLAC stream: ``(samples, sample_rate, bits_per_sample)``.

    ``samples`` is int32 of shape (channels, frames), the integers as coded (not shifted: a 16-bit stream
    gives values in [-32768, 32767]; see ``to_float32``). Every frame's header CRC-8 and CRC-16 are
    checked; corruption, truncation, frames missing or out of order, or bytes after the last frame raise
    ``ValueError`` naming the FLAC frame and byte offset.
    """
    buf = data if type(data) is bytes else _as_buffer(data)
    out, rate, bits, *info = _all_entry(buf, _NARROW)
    if info[0] == _E_WIDE:  # 32-bit samples: the int64 variant (compiled on first use)
        out, rate, bits, *info = _all_entry(buf, _WIDE)
    _raise(info)
    return out, int(rate), int(bits)


#: decode_flac_range's compiled entry points by (float32 output, 32-bit samples).
_RANGE_ENTRIES = {(False, False): _range_int32, (True, False): _range_float32,
                  (False, True): _range_int32_wide, (True, True): _range_float32_wide}


def decode_flac_range(data: bytes | bytearray | memoryview | np.ndarray, start_frame: int, frames: int,
                      dtype: type = np.int32) -> np.ndarray:
    """Decode frames [start_frame, start_frame + frames) of a FLAC stream: shape (channels, frames).

    ``dtype`` np.int32 (default) gives the integers as coded; np.float32 gives ``to_float32`` of them
    (the same values, converted in place, without a second array).

    Only the FLAC frames covering the range are decoded: the SEEKTABLE (when present) gives the byte
    offset of the last FLAC frame starting at or before ``start_frame``; FLAC frames between it and the
    range are skipped by finding the next frame header, not decoded (their CRC-16 is still checked), and
    the last FLAC frame is decoded only up to the range's end (its CRC-16 still covers all of it).
    Streams without a seek table are scanned from the first frame the same way. Raises ``ValueError`` if
    the range is past the end of the stream or on any corruption met on the way.

    One compiled call does all the work (bytes are read in place, the metadata parsed inside): the
    Python side costs about 1 us.
    """
    start_frame, frames = int(start_frame), int(frames)
    if start_frame < 0 or frames < 0:
        raise ValueError(f"start_frame and frames must be >= 0, got {start_frame} and {frames}")
    if dtype is np.float32 or dtype is np.int32:
        as_float = dtype is np.float32
    else:
        kind = np.dtype(dtype)
        if kind not in (np.dtype(np.int32), np.dtype(np.float32)):
            raise ValueError(f"dtype must be np.int32 or np.float32, got {dtype}")
        as_float = kind == np.float32
    buf = data if type(data) is bytes else _as_buffer(data)
    out, *info = _RANGE_ENTRIES[as_float, False](buf, start_frame, frames)
    if info[0] == _E_WIDE:  # 32-bit samples: the int64 variant (compiled on first use)
        out, *info = _RANGE_ENTRIES[as_float, True](buf, start_frame, frames)
    if info[0] != _OK:
        if info[0] == _E_BEYOND:
            raise ValueError(f"frames [{start_frame}, {start_frame + frames}) end past the stream's {info[4]} "
                             "frames")
        _raise(info)
    return out


def to_float32(samples: np.ndarray, bits_per_sample: int) -> np.ndarray:
    """``samples / 2**(bits_per_sample - 1)`` as float32, the same shape.

    This is what libsndfile returns for ``dtype="float32"`` on integer PCM FLAC (bit-exact: the scaling
    is by a power of two, and integers of up to 24 bits are exact in float32).
    """
    bits = int(bits_per_sample)
    if not 1 <= bits <= 32:
        raise ValueError(f"bits_per_sample must be in 1..32, got {bits_per_sample}")
    return np.multiply(samples, np.float32(2.0 ** (1 - bits)), dtype=np.float32)


@numba.njit(cache=True, nogil=True)
def _interleave_le(samples, width):  # pragma: no cover - compiled
    # The bytes STREAMINFO's MD5 covers: frame by frame, channel by channel, each sample as a little-endian
    # two's-complement integer of `width` bytes. Mono and stereo 24-bit (what datagen writes) have loops with
    # constant strides, which the compiler vectorises (about 1 ns a sample, ~10x the general loop, whose cost
    # rivals the MD5's own).
    channels, frames = samples.shape
    out = np.empty(frames * channels * width, np.uint8)
    if width == 3 and channels == 1:
        x = samples[0]
        for n in range(frames):
            value = x[n]
            out[3 * n] = value & 0xFF
            out[3 * n + 1] = (value >> 8) & 0xFF
            out[3 * n + 2] = (value >> 16) & 0xFF
    elif width == 3 and channels == 2:
        left, right = samples[0], samples[1]
        for n in range(frames):
            a = left[n]
            b = right[n]
            q = 6 * n
            out[q] = a & 0xFF
            out[q + 1] = (a >> 8) & 0xFF
            out[q + 2] = (a >> 16) & 0xFF
            out[q + 3] = b & 0xFF
            out[q + 4] = (b >> 8) & 0xFF
            out[q + 5] = (b >> 16) & 0xFF
    else:
        stride = channels * width
        for c in range(channels):
            x = samples[c]
            for n in range(frames):
                value = x[n]
                q = n * stride + c * width
                for b in range(width):
                    out[q + b] = (value >> (8 * b)) & 0xFF
    return out


def pcm_md5(samples: np.ndarray, bits_per_sample: int) -> bytes:
    """The 16-byte MD5 that FLAC's STREAMINFO holds for ``samples`` (integers, (channels, frames) or (frames,)).

    As RFC 9639 defines it: the MD5 of the samples interleaved (frame by frame, channel by channel), each
    as a little-endian signed integer of ceil(bits_per_sample / 8) bytes. ``decode_flac``'s output hashed
    with its bit depth gives the value a valid stream's STREAMINFO holds.
    """
    bits = int(bits_per_sample)
    if not 1 <= bits <= 32:
        raise ValueError(f"bits_per_sample must be in 1..32, got {bits_per_sample}")
    samples = np.asarray(samples)
    if samples.dtype.kind not in "iu":
        raise ValueError(f"samples must be integers, got dtype {samples.dtype}")
    if samples.ndim == 1:
        samples = samples[np.newaxis]
    if samples.ndim != 2:
        raise ValueError(f"samples must have shape (channels, frames), got {samples.shape}")
    wide = samples.dtype.itemsize > 4 or samples.dtype == np.uint32
    samples = np.ascontiguousarray(samples, dtype=np.int64 if wide else np.int32)
    return hashlib.md5(_interleave_le(samples, (bits + 7) // 8)).digest()


def _check_encoder_arguments(samples, sample_rate, bits_per_sample, block_frames) -> np.ndarray:
    if not isinstance(samples, np.ndarray):
        raise ValueError(f"samples must be a numpy array, got {type(samples).__name__}")
    if samples.dtype.kind not in "iu":
        raise ValueError(f"samples must be integers (quantised PCM), got dtype {samples.dtype}")
    if samples.ndim == 1:
        samples = samples[np.newaxis]
    if samples.ndim != 2:
        raise ValueError(f"samples must have shape (channels, frames), got {samples.shape}")
    channels, frames = samples.shape
    if not 1 <= channels <= 8:
        raise ValueError(f"FLAC holds 1 to 8 channels, got {channels}")
    if frames == 0:
        raise ValueError("samples are empty (0 frames)")
    if frames >= 1 << 36:
        raise ValueError(f"FLAC holds fewer than 2^36 frames, got {frames}")
    for name, value in (("bits_per_sample", bits_per_sample), ("sample_rate", sample_rate),
                        ("block_frames", block_frames)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 8 <= bits_per_sample <= 24:
        raise ValueError(f"bits_per_sample must be in 8..24, got {bits_per_sample}")
    if not 1 <= sample_rate <= 655350:
        raise ValueError(f"sample_rate must be in 1..655350 Hz, got {sample_rate}")
    if not 16 <= block_frames <= 65535:
        raise ValueError(f"block_frames must be in 16..65535, got {block_frames}")
    low, high = -(1 << (bits_per_sample - 1)), (1 << (bits_per_sample - 1)) - 1
    smallest, largest = int(samples.min()), int(samples.max())
    if smallest < low or largest > high:
        raise ValueError(f"samples span [{smallest}, {largest}], outside the {bits_per_sample}-bit range "
                         f"[{low}, {high}]")
    return np.ascontiguousarray(samples, dtype=np.int32)


def _rate_fields(sample_rate: int) -> tuple[int, int]:
    """(4-bit sample rate code, value of the extra header bytes) for the frame header."""
    if sample_rate in _RATE_CODES:
        return _RATE_CODES[sample_rate], 0
    if sample_rate % 1000 == 0 and sample_rate <= 255000:
        return 12, sample_rate // 1000
    if sample_rate <= 65535:
        return 13, sample_rate
    if sample_rate % 10 == 0:
        return 14, sample_rate // 10
    return 0, 0  # "see STREAMINFO"


def encode_flac(samples: np.ndarray, sample_rate: int, bits_per_sample: int, block_frames: int = 4096) -> bytes:
    """Encode integer PCM as a complete FLAC stream (the bytes of a .flac file).

    ``samples``: integers of shape (channels, frames) (or (frames,) for mono), 1 to 8 channels, already
    quantised to the signed range of ``bits_per_sample`` (8..24), e.g. int32 in [-2^23, 2^23) for 24 bits.
    ``block_frames`` (16..65535) is the FLAC frame size in frames (the last frame is shorter).

    The stream holds STREAMINFO, a SEEKTABLE with one point per FLAC frame, and the frames; no vendor
    string or timestamp, so equal input gives equal bytes. STREAMINFO holds the samples' MD5
    (:func:`pcm_md5`), so standard tools (``flac -t``) check the whole stream, not only its CRCs; hashing
    costs about as much as encoding (see benchmarks/bench_flac.py). Raises ``ValueError`` on bad arguments.
    """
    pcm = _check_encoder_arguments(samples, sample_rate, bits_per_sample, block_frames)
    sample_rate, bits_per_sample, block_frames = int(sample_rate), int(bits_per_sample), int(block_frames)
    channels, total = pcm.shape
    flac_frames = -(-total // block_frames)
    # Worst case: VERBATIM subframes (the encoder never writes a larger FIXED one), the side channel's
    # extra bit, and per FLAC frame a 16-byte header, 2-byte CRC, and per subframe header and padding.
    capacity = flac_frames * (18 + 6 * channels) + channels * (-(-total * (bits_per_sample + 1) // 8)) + 64
    out = np.empty(capacity, np.uint8)
    offsets = np.empty(flac_frames, np.int64)
    rate_code, rate_extra = _rate_fields(sample_rate)
    size_code = _SIZE_CODES.get(bits_per_sample, 0)
    length, min_frame_bytes, max_frame_bytes = _encode_frames(pcm, bits_per_sample, block_frames, rate_code,
                                                               rate_extra, size_code, out, offsets)
    # One seek point per FLAC frame (every k-th if a 24-bit block length cannot hold them all).
    stride = -(-flac_frames // _MAX_SEEKPOINTS)
    chosen = np.arange(0, flac_frames, stride)
    info = FlacInfo(sample_rate=sample_rate, channels=channels, bits_per_sample=bits_per_sample, total_frames=total,
                    min_block_frames=block_frames, max_block_frames=block_frames,
                    min_frame_bytes=int(min_frame_bytes), max_frame_bytes=int(max_frame_bytes), first_frame_offset=0,
                    seek_sample_numbers=chosen * block_frames, seek_byte_offsets=offsets[chosen],
                    md5=pcm_md5(pcm, bits_per_sample))
    return _stream_header(info, info.seek_sample_numbers, info.seek_byte_offsets) + out[:length].tobytes()


def _stream_header(info: FlacInfo, seek_samples: np.ndarray, seek_offsets: np.ndarray) -> bytes:
    """"fLaC", STREAMINFO from ``info`` (its MD5 included) and a SEEKTABLE of the given points."""
    streaminfo = bytearray()
    streaminfo += info.min_block_frames.to_bytes(2, "big") + info.max_block_frames.to_bytes(2, "big")
    streaminfo += info.min_frame_bytes.to_bytes(3, "big") + info.max_frame_bytes.to_bytes(3, "big")
    packed = ((info.sample_rate << 44) | ((info.channels - 1) << 41) | ((info.bits_per_sample - 1) << 36)
              | info.total_frames)
    streaminfo += packed.to_bytes(8, "big") + bytes(info.md5)
    points = np.empty(len(seek_samples), dtype=_SEEKPOINT_DTYPE)
    points["sample"] = seek_samples
    points["offset"] = seek_offsets
    # Frames in the point's FLAC frame: informative only (decoders, ours included, do not use it).
    remaining = info.total_frames - np.asarray(seek_samples, np.int64)
    points["frames"] = np.minimum(info.max_block_frames, np.maximum(remaining, 0))
    seektable = points.tobytes()
    return (b"fLaC" + bytes([0x00]) + len(streaminfo).to_bytes(3, "big") + bytes(streaminfo)
            + bytes([0x80 | 3]) + len(seektable).to_bytes(3, "big") + seektable)


class FlacSpans:
    """Where the FLAC frames of a sample range lie in a stream, for reading a crop of a stream stored in a
    file without reading the whole stream.

    Built once per stream from its ``read_flac_header`` (``info``) and its length in bytes; then
    ``span(start_frame, frames)`` returns ``(byte_start, byte_end, header)`` such that
    ``decode_flac_range(header + stream[byte_start:byte_end], start_frame, frames)`` decodes what
    ``decode_flac_range(stream, start_frame, frames)`` does, with the same CRC checks of the FLAC frames
    it touches. ``header`` is a stream header whose seek table holds two points, moved to the span's
    start: the span's first FLAC frame, where decoding starts, and the frame after the range, where the
    range's last FLAC frame ends (so that frame is still decoded only up to the range's end); frames in
    between are walked, not looked up. The span runs from the last seek point at or before
    ``start_frame`` to the first at or after the range's end (or the end of the stream): a stream without
    a seek table spans all its frames.
    """

    def __init__(self, info: FlacInfo, stream_bytes: int) -> None:
        self.info, self.stream_bytes = info, int(stream_bytes)
        self._samples = info.seek_sample_numbers.tolist()
        self._offsets = info.seek_byte_offsets.tolist()
        none = np.zeros(0, np.int64)
        self._streaminfo = _stream_header(info, none, none)[:_STREAMINFO_END]

    def span(self, start_frame: int, frames: int) -> tuple[int, int, bytes]:
        """``(byte_start, byte_end, header)`` for frames [start_frame, start_frame + frames) (see the class).

        Raises ``ValueError`` for a range outside the stream.
        """
        total = self.info.total_frames
        if start_frame < 0 or frames < 0 or (total and start_frame + frames > total):
            raise ValueError(f"frames [{start_frame}, {start_frame + frames}) outside the stream's {total} frames")
        samples, offsets = self._samples, self._offsets
        first = max(bisect.bisect_right(samples, start_frame) - 1, 0)
        last = bisect.bisect_left(samples, start_frame + frames)
        starts_at_point = bool(samples) and samples[first] <= start_frame
        first_offset = offsets[first] if starts_at_point else 0
        byte_start = self.info.first_frame_offset + first_offset
        byte_end = self.stream_bytes if last >= len(samples) else self.info.first_frame_offset + offsets[last]
        # Built with struct, not numpy: this runs per crop, holding the GIL (about 1 us).
        table = _SEEKPOINT.pack(samples[first], 0, 0) if starts_at_point else b""
        if last < len(samples):
            table += _SEEKPOINT.pack(samples[last], offsets[last] - first_offset, 0)
        return byte_start, byte_end, self._streaminfo + bytes([0x80 | 3]) + len(table).to_bytes(3, "big") + table
