"""SoX's ``overdrive`` effect (the paper's Eq. 6), sample-exact against the ``sox`` binary.

The effect is a recursion (a DC-blocking filter after the soft clipper), so it is written as a
numba kernel: numpy has no way to express the per-sample feedback, and ``scipy.signal.lfilter``
plus the separate shaper and mix passes is about three times slower on long signals. The kernel runs
in float64 like SoX and keeps one filter state per channel, which makes block-by-block streaming
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


#: Samples per inner block: the scratch arrays of one block stay in the L1/L2 cache.
_BLOCK = 2048
#: Four interleaved chains: y_n = Σ_{j<4} a^j u_{n−j} + a^4 y_{n−4} (see _overdrive_channel).
_CHAINS = 4


@numba.njit(cache=True, nogil=True)
def _overdrive_channel(x, gain, offset, state, out):  # pragma: no cover - compiled
    # x, out: (samples,); state: (8,) float64 = shaped samples s_{-4..-1}, filter outputs y_{-4..-1}.
    # Returns True if x held NaN or inf (checked here rather than in a separate pass over the signal).
    #
    # SoX runs y_n = u_n + a·y_{n−1} (u_n = s_n − s_{n−1}) one sample at a time: a chain of dependent
    # multiply-adds that bounds it at ~2 ns per sample. Unrolled four steps,
    #     y_n = (u_n + a·u_{n−1} + a²·u_{n−2} + a³·u_{n−3}) + a⁴·y_{n−4},
    # the bracket needs no feedback and vectorises, and four independent chains remain. The result
    # differs from SoX's order of operations by rounding only (~1e-16).
    a1 = DC_BLOCK_POLE
    a2 = a1 * a1
    a3 = a2 * a1
    a4 = a2 * a2
    one_third = 1.0 / 3.0
    dry = np.empty(_BLOCK)
    shaped = np.empty(_BLOCK + _CHAINS)  # the first _CHAINS entries carry the previous block's tail
    feed = np.empty(_BLOCK)
    wet = np.empty(_BLOCK + _CHAINS)
    shaped[:_CHAINS] = state[:_CHAINS]
    wet[:_CHAINS] = state[_CHAINS:]
    non_finite = False
    for start in range(0, x.shape[0], _BLOCK):
        count = min(_BLOCK, x.shape[0] - start)
        # Slices indexed from 0 let numba drop its negative-index checks, which keeps the loops vectorised.
        block_in = x[start:start + count]
        block_out = out[start:start + count]
        for i in range(count):
            sample = np.float64(block_in[i])
            non_finite |= (sample - sample) != 0.0  # NaN and ±inf, without a branch
            # SoX reads float files onto its 32-bit integer grid, truncating towards zero and clamping
            # to full scale. Only samples below 2^-7 move, by less than 2^-31, but at 100 dB of gain
            # that would shift the output by ~3e-5, so we quantise exactly as SoX 14.4 does.
            q = min(max(np.trunc(sample * _SOX_FULL_SCALE), -_SOX_FULL_SCALE),
                    _SOX_FULL_SCALE - 1.0) / _SOX_FULL_SCALE
            dry[i] = q
            # min/max instead of SoX's if/else chain: same values (λ_sc(±1) = ±2/3), no branches.
            m = min(max(q * gain + offset, -1.0), 1.0)
            shaped[_CHAINS + i] = m - m * m * m * one_third
        for i in range(count):
            k = _CHAINS + i
            feed[i] = (((shaped[k] - shaped[k - 1]) + a1 * (shaped[k - 1] - shaped[k - 2]))
                       + (a2 * (shaped[k - 2] - shaped[k - 3]) + a3 * (shaped[k - 3] - shaped[k - 4])))
        for i in range(count):
            wet[_CHAINS + i] = feed[i] + a4 * wet[i]
        for i in range(count):
            # SoX converts to its integer sample type here, which clamps to full scale.
            block_out[i] = min(max(dry[i] * DRY_GAIN + wet[_CHAINS + i] * WET_GAIN, -1.0), 1.0)
        shaped[:_CHAINS] = shaped[count:count + _CHAINS]
        wet[:_CHAINS] = wet[count:count + _CHAINS]
    state[:_CHAINS] = shaped[:_CHAINS]
    state[_CHAINS:] = wet[:_CHAINS]
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
        for channel in range(self.channels):
            if _overdrive_channel(frames[channel], self._gain, self._offset, self._state[channel], out[channel]):
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
