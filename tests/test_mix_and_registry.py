import numpy as np
import pytest

from effects import clip_to_sdr, effect_names, get_effect, hard_clip, mix, overdrive, register, sdr_db
from effects.registry import Effect, Parameter


def test_mix_hand_computed():
    wet = np.array([1.0, -1.0, 0.5], dtype=np.float32)
    dry = np.array([0.2, 0.4, -0.2], dtype=np.float32)
    np.testing.assert_allclose(mix(wet, dry, 0.75, 0.5), [0.85, -0.55, 0.275], rtol=1e-6)


def test_mix_superimposes_clipping_with_clean(guitar):
    # The paper's side experiment: hard clipping plus the dry signal is less distorted than clipping alone.
    wet = hard_clip(guitar, 20) / 10.0
    assert sdr_db(guitar, mix(wet, guitar, 0.5, 0.5)) > sdr_db(guitar, wet)
    np.testing.assert_array_equal(mix(wet, guitar, 1.0, 0.0), wet)


def test_mix_rejects_mismatch_and_bad_gains():
    a = np.zeros((2, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="same shape"):
        mix(a, a[:1], 1, 1)
    with pytest.raises(ValueError, match="dry_gain"):
        mix(a, a, 1, -0.5)
    with pytest.raises(ValueError, match="wet_gain"):
        mix(a, a, float("nan"), 1)


def test_registry_names_and_units():
    assert effect_names() == ["clip-sdr", "hardclip", "overdrive", "softclip"]
    for name in effect_names():
        effect = get_effect(name)
        assert effect.primary in [p.name for p in effect.parameters]
        assert all(p.unit or p.name == "threshold" for p in effect.parameters)
    assert get_effect("clip-sdr").parameter("sdr_db").unit == "dB"


def test_registry_resolves_cli_strings_and_defaults(guitar):
    overdrive_effect = get_effect("overdrive")
    assert overdrive_effect.resolve({"gain_db": "35"}) == {"gain_db": 35.0, "colour": 0.0}
    y, extras = overdrive_effect.apply(guitar, {"gain_db": "35", "colour": "20"})
    np.testing.assert_array_equal(y, overdrive(guitar, 35, 20))
    assert extras == {}
    y, extras = get_effect("clip-sdr").apply(guitar, {"sdr_db": 7})
    expected, gain_db = clip_to_sdr(guitar, 7)
    np.testing.assert_array_equal(y, expected)
    assert extras == {"gain_db": gain_db}


@pytest.mark.parametrize("values,match", [
    ({"gain": 3}, "no parameter 'gain'"), ({"gain_db": "loud"}, "gain_db must be a number"),
    ({"gain_db": 500}, r"gain_db must be in \[0, 100\]"), ({"colour": "nan"}, "colour must be finite"),
])
def test_registry_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        get_effect("overdrive").resolve(values)


def test_registry_sdr_range_is_open_at_zero():
    with pytest.raises(ValueError, match=r"\(0, 60\]"):
        get_effect("clip-sdr").resolve({"sdr_db": 0})


def test_unknown_effect_lists_known():
    with pytest.raises(ValueError, match="known effects: clip-sdr, hardclip"):
        get_effect("fuzz")


def test_streams_equal_whole_renders(stereo_guitar):
    for name in ("hardclip", "softclip", "overdrive"):
        effect = get_effect(name)
        whole, _ = effect.apply(stereo_guitar, {"gain_db": 30})
        process = effect.stream(2, {"gain_db": 30})
        blocks = [process(stereo_guitar[:, s:s + 5000]) for s in range(0, stereo_guitar.shape[1], 5000)]
        np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)
    with pytest.raises(ValueError, match="whole signal"):
        get_effect("clip-sdr").stream(1, {})


def test_registering_a_new_effect_and_duplicates():
    effect = Effect("test-invert", "polarity inversion", (Parameter("gain_db", "dB", "gain", -10, 10, 0.0),),
                    "gain_db", render=lambda x, gain_db: (-x * 10 ** (gain_db / 20), {}))
    register(effect)
    try:
        y, _ = get_effect("test-invert").apply(np.ones(3, dtype=np.float32), {"gain_db": "0"})
        np.testing.assert_array_equal(y, -np.ones(3))
        with pytest.raises(ValueError, match="already registered"):
            register(effect)
    finally:
        from effects import registry
        del registry._REGISTRY["test-invert"]
    with pytest.raises(ValueError, match="primary"):
        Effect("bad", "", (), "gain_db", render=lambda x: (x, {}))


def test_one_pass_sdrs_match_the_definitions(guitar):
    from effects import input_sdrs_db, sdr_db, si_sdr_db

    for gain_db in (3.0, 10.0, 30.0):  # SI-SDR below 100 dB, where the one-pass form is exact
        estimate = hard_clip(guitar, gain_db) / 10 ** (gain_db / 20) * 0.7
        sdr, si_sdr = input_sdrs_db(guitar, estimate)
        assert sdr == pytest.approx(sdr_db(guitar, estimate), abs=1e-9)
        assert si_sdr == pytest.approx(si_sdr_db(guitar, estimate), abs=1e-6)
    assert input_sdrs_db(guitar, guitar) == (np.inf, np.inf)
    with pytest.raises(ValueError, match="silent"):
        input_sdrs_db(guitar * 0, guitar)
