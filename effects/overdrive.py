"""SoX's ``overdrive`` effect (the paper's Eq. 6), sample-exact against the ``sox`` binary.

The effect is a recursion (a DC-blocking filter after the soft clipper), so it is written as a
numba kernel: numpy has no way to express the per-sample feedback, and ``scipy.signal.lfilter``
plus the separate shaper and mix passes is about thirty times slower on long signals. The recursion runs
in float64 like SoX and keeps its filter state per channel, which makes block-by-block streaming
(``Overdrive.process``) give exactly the same output as one call on the whole signal.
"""

from __future__ import annotations

import numba
import numpy as np

from ._validation import check_audio, check_number, db_to_amplitude, non_finite_error

#: SoX's parameter ranges for ``overdrive [gain [colour]]``.
GAIN_DB_RANGE = (0.0, 100.0)
COLOUR_RANGE = (0.0, 100.0)
#: Pole of SoX's DC-blocking recursion d_k = s_k − s_{k−1} + 0.995 d_{k−1}.
DC_BLOCK_POLE = 0.995
DRY_GAIN = 0.5
WET_GAIN = 0.75
#: SoX processes 32-bit integer samples: full scale is 2^31.
_SOX_FULL_SCALE = 2147483648.0
#: Recorded in dataset.json: bump it whenever a change to the kernel moves any output sample (even within
#: its 1e-6 of SoX), so that a rebuild of a published corpus can say why its checksums differ.
#: "1": float64 throughout; "2": float32 shaper for float32 audio, one-pole-sum DC blocker, FMA.
KERNEL_VERSION = "2"


#: Samples per inner block: the scratch arrays of one block stay in the L1 cache.
_BLOCK = 2048
#: The recursion is unrolled four steps: r_n = Σ_{j<4} a^j s_{n−j} + a^4 r_{n−4} (see _overdrive_channel).
_CHAINS = 4
_FULL_SCALE_32 = np.float32(_SOX_FULL_SCALE)
_INVERSE_FULL_SCALE_32 = np.float32(1.0 / _SOX_FULL_SCALE)
_ONE_32 = np.float32(1.0)
_DRY_GAIN_32 = np.float32(DRY_GAIN)
_ZERO_32 = np.float32(0.0)
#: d_n = s_n − (1 − a)·r_{n−1} = (s_n − (1 − a)·r_n) / a, folded into the 0.75 wet gain.
_WET_SHAPED = WET_GAIN / DC_BLOCK_POLE
_WET_RUNNING = WET_GAIN * (1.0 - DC_BLOCK_POLE) / DC_BLOCK_POLE


def _kernel_scalars(dtype: type, gain: float, offset: float) -> tuple:
    """The kernel's scalars in the audio's precision: gain, offset, 1/3, SoX's top sample on its 2^31 grid
    (2^31 − 1, which float32 rounds to 2^31: 2e-10 off at full scale only), the wet gain on s_n, a, a², a³."""
    a = DC_BLOCK_POLE
    return tuple(dtype(v) for v in (gain, offset, 1.0 / 3.0, _SOX_FULL_SCALE - 1.0, _WET_SHAPED, a, a**2, a**3))


# fastmath "contract" only lets LLVM fuse a·b + c into one FMA (rounding once instead of twice); it keeps
# NaN, infinity and the order of operations, so the kernel still detects bad samples and stays within
# 1.5e-7 of SoX. It takes ~1 cycle per sample off the recursion, which is latency-bound.
@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _overdrive_channel(x, scalars, state, out):  # pragma: no cover - compiled
    # x, out: (samples,) float32 or float64; scalars: _kernel_scalars in x's dtype; state: (8,) float64 =
    # shaped samples s_{-4..-1}, running sums r_{-4..-1}. Returns True if x held NaN or inf (checked here
    # rather than in a separate pass over the signal).
    #
    # SoX runs d_n = s_n − s_{n−1} + a·d_{n−1} one sample at a time. The same filter is
    # d_n = s_n − (1 − a)·r_{n−1} with the plain one-pole sum r_n = s_n + a·r_{n−1}, and since
    # r_{n−1} = (r_n − s_n)/a, d_n = (s_n − (1 − a)·r_n)/a needs no lagged value. r itself is unrolled
    # four steps, r_n = w_n + a⁴·r_{n−4} with the window w_n = s_n + a·s_{n−1} + a²·s_{n−2} + a³·s_{n−3}:
    # w needs no feedback and has its own pass, and the recursion vectorises four samples wide with one
    # fused multiply-add on the feedback path. r runs in float64: it grows to 200x the DC of s (colour).
    #
    # The shaper and the window run in x's precision: for float32 input, sixteen lanes per vector instead
    # of four. SoX's quantisation to its 32-bit grid, trunc(x·2^31)/2^31, is exact in float32 (scaling by a
    # power of two and truncation never round). The float32 rounding of s and of the dry-plus-shaped sum
    # moves the output by < 1.5e-7 (measured against the sox binary over gains, colours and levels; the
    # tests allow 1e-6). w reaches the output only through r·0.75·(1 − a)/a, r summing w with gain
    # 1/(1 − a⁴) ≈ 50, so w's float32 rounding (< 5e-7) moves the output by < 1e-7 even when it adds up.
    gain, offset, one_third, top, wet_shaped, a1, a2, a3 = scalars
    a4 = DC_BLOCK_POLE ** 4
    lowest = -_ONE_32
    shaped = np.empty(_BLOCK + _CHAINS, x.dtype)  # the first _CHAINS entries carry the previous block's tail
    dry_and_shaped = np.empty(_BLOCK, x.dtype)  # 0.5·q_n + 0.75/a·s_n: all of the output but the running sum
    window = np.empty(_BLOCK, x.dtype)  # Σ_{j<4} a^j s_{n−j}
    running = np.empty(_BLOCK + _CHAINS)
    for j in range(_CHAINS):
        shaped[j] = state[j]
        running[j] = state[_CHAINS + j]
    non_finite = False
    for start in range(0, x.shape[0], _BLOCK):
        count = min(_BLOCK, x.shape[0] - start)
        # Slices indexed from 0 let numba drop its negative-index checks, which keeps the loops vectorised.
        block_in = x[start:start + count]
        block_out = out[start:start + count]
        for i in range(count):
            sample = block_in[i]
            non_finite |= (sample - sample) != _ZERO_32  # NaN and ±inf, without a branch
            # SoX reads float files onto its 32-bit integer grid, truncating towards zero and clamping
            # to full scale. Only samples below 2^-7 move, by less than 2^-31, but at 100 dB of gain
            # that would shift the output by ~3e-5, so we quantise exactly as SoX 14.4 does.
            q = min(max(np.trunc(sample * _FULL_SCALE_32), -_FULL_SCALE_32), top) * _INVERSE_FULL_SCALE_32
            # min/max instead of SoX's if/else chain: same values (λ_sc(±1) = ±2/3), no branches.
            m = min(max(q * gain + offset, lowest), _ONE_32)
            s = m - m * m * m * one_third
            shaped[_CHAINS + i] = s
            dry_and_shaped[i] = q * _DRY_GAIN_32 + s * wet_shaped
        for i in range(count):
            k = _CHAINS + i
            window[i] = (shaped[k] + a1 * shaped[k - 1]) + (a2 * shaped[k - 2] + a3 * shaped[k - 3])
        for i in range(count):
            r = np.float64(window[i]) + a4 * running[i]
            running[_CHAINS + i] = r
            # SoX converts to its integer sample type here, which clamps to full scale.
            block_out[i] = min(max(np.float64(dry_and_shaped[i]) - r * _WET_RUNNING, -1.0), 1.0)
        for j in range(_CHAINS):
            shaped[j] = shaped[count + j]
            running[j] = running[count + j]
    for j in range(_CHAINS):
        state[j] = shaped[j]
        state[_CHAINS + j] = running[j]
    return non_finite


class Overdrive:
    """Streaming SoX overdrive: feed consecutive blocks of one signal to :meth:`process`.

    Args:
        gain_db: drive gain in dB, SoX's range [0, 100]. 0 dB passes audio through untouched, as SoX does.
        colour: SoX's colour in [0, 100]; adds a DC offset of colour/200 before the shaper, which
            makes the clipping asymmetric (even harmonics). The paper's Eq. 6 is colour 0.
        channels: number of channels of the blocks to come; each keeps its own filter state.
    """

    def __init__(self, gain_db: float, colour: float = 0.0, channels: int = 1) -> None:
        self.gain_db = check_number(gain_db, "gain_db", *GAIN_DB_RANGE)
        self.colour = check_number(colour, "colour", *COLOUR_RANGE)
        if int(channels) != channels or channels < 1:
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.channels = int(channels)
        self._gain = db_to_amplitude(self.gain_db)
        self._offset = self.colour / 200.0
        # The shaper runs in the blocks' precision (see _overdrive_channel), so its scalars match it.
        self._scalars = {np.dtype(t): _kernel_scalars(t, self._gain, self._offset) for t in (np.float32, np.float64)}
        self._state = np.zeros((self.channels, 2 * _CHAINS), dtype=np.float64)

    def reset(self) -> None:
        """Forget the filter state, as at the start of a new signal."""
        self._state[:] = 0.0

    def process(self, block: np.ndarray, name: str = "block") -> np.ndarray:
        """Process the next block, shape ``(channels, samples)`` or ``(samples,)`` when mono.

        Returns a new array of the same shape and dtype, within [-1, 1]. ``name`` is what errors call it.
        """
        block = check_audio(block, name, require_finite=False)
        frames = block if block.ndim == 2 else block[np.newaxis, :]
        if frames.shape[0] != self.channels:
            raise ValueError(f"block has {frames.shape[0]} channels, this Overdrive was made for "
                             f"{self.channels}")
        if self.gain_db == 0.0:
            # SoX treats unity gain as a null effect: the audio is copied, not shaped.
            return check_audio(block, name).copy()
        out = np.empty_like(frames)
        scalars = self._scalars[frames.dtype]
        for channel in range(self.channels):
            if _overdrive_channel(frames[channel], scalars, self._state[channel], out[channel]):
                raise non_finite_error(block, name)
        return out if block.ndim == 2 else out[0]


def overdrive(x: np.ndarray, gain_db: float, colour: float = 0.0) -> np.ndarray:
    """SoX's overdrive: soft clipper, DC blocker, 0.5 dry + 0.75 wet (Eq. 6 of the paper).

    Per channel and sample k, with s = λ_sc(10^(γ/20) · x_k + colour/200)::

        d_k = s_k − s_{k−1} + 0.995 · d_{k−1}        (filter state starts at zero)
        y_k = clamp(0.5 · x_k + 0.75 · d_k, −1, 1)

    This equals ``sox -D in.wav -e floating-point -b 32 out.wav overdrive GAIN COLOUR`` within 1e-6
    (the tests run the sox binary). Note the defaults differ: the paper's Eq. 6 has no DC offset,
    which is ``colour=0`` here, whereas SoX's default colour is 20.

    Args:
        x: audio, float32 or float64, shape ``(samples,)`` or ``(channels, samples)``.
        gain_db: drive gain γ in dB, [0, 100]; 0 dB returns the input unchanged, as SoX does.
        colour: SoX colour in [0, 100] (DC offset colour/200 before the shaper).

    Returns:
        Same shape and dtype as ``x``, within [-1, 1].
    """
    x = check_audio(x, require_finite=False)  # the kernel rejects NaN and inf in its own pass
    channels = x.shape[0] if x.ndim == 2 else 1
    return Overdrive(gain_db, colour, channels).process(x, "x")
