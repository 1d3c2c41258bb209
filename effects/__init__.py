"""Distortion effects of Imort et al. (2022), Section II, as pure numpy functions.

Audio is float32 (float64 is accepted too), shaped ``(channels, samples)`` or ``(samples,)``; every
function returns the shape and dtype it was given. Torch twins for batches live in
:mod:`effects.torch_batch` (they need the ``train`` extra).
"""

from ._validation import NonFiniteAudioError
from .clip_sdr import SDR_DB_RANGE, clip_to_sdr, clipping_threshold_for_sdr
from .clipping import MAX_GAIN_DB, MIN_GAIN_DB, hard_clip, soft_clip
from .measure import input_sdrs_db, sdr_db, si_sdr_db
from .mix import mix
from .overdrive import COLOUR_RANGE, GAIN_DB_RANGE, Overdrive, overdrive
from .registry import Effect, Parameter, effect_names, get_effect, online_effect_names, register

__all__ = [
    "Effect", "NonFiniteAudioError", "Overdrive", "Parameter", "clip_to_sdr", "clipping_threshold_for_sdr",
    "effect_names", "get_effect", "hard_clip", "input_sdrs_db", "mix", "online_effect_names", "overdrive", "register",
    "sdr_db", "si_sdr_db", "soft_clip",
]

_GAIN_HELP = "gain applied before the wave-shaper"


def _no_extras(function):
    def render(x, **params):
        return function(x, **params), {}
    return render


def _memoryless_stream(function):
    def make_stream(channels, **params):
        return lambda block: function(block, **params)
    return make_stream


def _torch_twin(name, first_of_pair=False):
    # torch is the train extra's: imported when a batch is rendered, not when effects is.
    def render(x, values, **params):
        from . import torch_batch

        y = getattr(torch_batch, name)(x, values, **params)
        return y[0] if first_of_pair else y
    return render


def _clip_sdr_render(x, sdr_db):
    clipped, gain_db = clip_to_sdr(x, sdr_db)
    return clipped, {"gain_db": gain_db}


register(Effect(
    name="hardclip",
    summary="hard clipping at a fixed threshold after a gain (Eq. 3, 4)",
    parameters=(
        Parameter("gain_db", "dB", _GAIN_HELP, MIN_GAIN_DB, MAX_GAIN_DB, default=20.0),
        Parameter("threshold", "", "clipping threshold, linear amplitude", 1e-4, 1.0, default=1.0),
    ),
    primary="gain_db",
    render=_no_extras(hard_clip),
    make_stream=_memoryless_stream(hard_clip),
    torch_render=_torch_twin("hard_clip"),
))
register(Effect(
    name="softclip",
    summary="cubic soft clipping saturating at ±2/3 after a gain (Eq. 5)",
    parameters=(Parameter("gain_db", "dB", _GAIN_HELP, MIN_GAIN_DB, MAX_GAIN_DB, default=20.0),),
    primary="gain_db",
    render=_no_extras(soft_clip),
    make_stream=_memoryless_stream(soft_clip),
    torch_render=_torch_twin("soft_clip"),
))
register(Effect(
    name="overdrive",
    summary="SoX's overdrive: soft clipper, DC blocker, 0.5 dry + 0.75 wet (Eq. 6)",
    parameters=(
        Parameter("gain_db", "dB", "drive gain (SoX's first argument)", *GAIN_DB_RANGE, default=20.0),
        Parameter("colour", "SoX colour", "DC offset colour/200 before the shaper; the paper's Eq. 6 "
                  "is 0, SoX's default 20", *COLOUR_RANGE, default=0.0),
    ),
    primary="gain_db",
    render=_no_extras(overdrive),
    make_stream=lambda channels, gain_db, colour: Overdrive(gain_db, colour, channels).process,
    torch_render=_torch_twin("overdrive"),
))
register(Effect(
    name="clip-sdr",
    summary="hard clipping at the threshold that gives a chosen input SDR",
    parameters=(Parameter("sdr_db", "dB", "input SDR of the clipped signal", *SDR_DB_RANGE, default=10.0,
                          minimum_inclusive=False),),
    primary="sdr_db",
    render=_clip_sdr_render,
    torch_render=_torch_twin("clip_to_sdr", first_of_pair=True),
))
