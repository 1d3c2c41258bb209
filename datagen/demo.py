"""A deterministic synthetic guitar: Karplus–Strong plucked strings playing chords, strums and lines.

It stands in for clean recordings wherever the toolkit needs music and none is given: the default
input of the CLI, and the music-like signals of the tests. The same ``seed`` always gives the same
samples on any machine (numpy's PCG64 stream and two small compiled loops are all it uses).
"""

from __future__ import annotations

import numba
import numpy as np

#: Open-string MIDI notes of a guitar in standard tuning, E2 to E4.
_OPEN_STRINGS = (40, 45, 50, 55, 59, 64)
_CHORDS = {"major": (0, 4, 7), "minor": (0, 3, 7), "seventh": (0, 4, 7, 10), "sus4": (0, 5, 7)}


def _midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


@numba.njit(cache=True)
def _one_pole_lowpass(x, coefficient):  # pragma: no cover - compiled
    # y[n] = c · x[n] + (1 − c) · y[n−1]; numba rather than scipy.signal, which would be imported into
    # every build worker for this one filter of a few hundred samples.
    out = np.empty_like(x)
    state = 0.0
    for n in range(x.size):
        state = coefficient * x[n] + (1.0 - coefficient) * state
        out[n] = state
    return out


@numba.njit(cache=True)
def _string_loop(excitation, period, loop_gain):  # pragma: no cover - compiled
    # y[n] = x[n] + g · (y[n−P] + y[n−P−1]) / 2: the two-tap average damps high partials first.
    # A loop, not scipy's lfilter: lfilter treats the P-long feedback as dense, O(P) per sample.
    out = excitation.copy()
    for n in range(period + 1, out.size):
        out[n] += 0.5 * loop_gain * (out[n - period] + out[n - period - 1])
    return out


def pluck(frequency_hz: float, duration_seconds: float, sample_rate: int, rng: np.random.Generator,
          brightness: float = 0.5, sustain: float = 0.996) -> np.ndarray:
    """One plucked string (Karplus–Strong): shape (samples,), float64, peak about 1.

    ``brightness`` in (0, 1] low-passes the noise burst (lower is a softer, thumb-like pluck);
    ``sustain`` < 1 is the loop gain per period (higher rings longer).
    """
    period = max(2, int(round(sample_rate / frequency_hz)))
    samples = int(duration_seconds * sample_rate)
    burst = rng.uniform(-1.0, 1.0, period)
    burst = _one_pole_lowpass(burst, brightness)  # a softer or brighter pluck
    excitation = np.zeros(samples)
    excitation[: min(period, samples)] = burst[: min(period, samples)]
    return _string_loop(excitation, period, sustain)


def _place(out: np.ndarray, note: np.ndarray, start: int) -> None:
    end = min(out.size, start + note.size)
    if start < end:
        out[start:end] += note[: end - start]


def guitar_phrase(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """A few seconds of guitar playing: shape (samples,), float64, unnormalised.

    Each call picks a tempo, a key and a texture (strummed chords, arpeggios, or a single-note line)
    from ``seed`` alone, with dynamics varying note by note.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(int(round(seconds * sample_rate)))
    beat = 60.0 / rng.uniform(70.0, 160.0)
    root = int(rng.integers(40, 53))
    texture = rng.choice(["strum", "arpeggio", "line"], p=[0.4, 0.3, 0.3])
    time = 0.0
    while time < seconds:
        velocity = rng.uniform(0.25, 1.0)
        brightness = rng.uniform(0.2, 0.9)
        if texture == "line":
            note = root + 12 + int(rng.choice([0, 2, 3, 5, 7, 9, 10, 12]))
            length = beat * rng.choice([0.5, 1.0, 1.5])
            _place(out, velocity * pluck(_midi_to_hz(note), length + 0.5, sample_rate, rng, brightness),
                   int(time * sample_rate))
            time += length
            continue
        chord = _CHORDS[rng.choice(list(_CHORDS))]
        degree = root + int(rng.choice([0, 5, 7, 9]))
        strings = [s for s in _OPEN_STRINGS if s + 12 >= degree]
        notes = [degree + chord[i % len(chord)] + 12 * (i // len(chord)) for i in range(len(strings))]
        down = rng.random() < 0.7
        spacing = rng.uniform(0.008, 0.03) if texture == "strum" else beat / 2
        for i, note in enumerate(notes if down else notes[::-1]):
            onset = time + i * spacing
            _place(out, velocity * rng.uniform(0.7, 1.0)
                   * pluck(_midi_to_hz(note), 2.5 * beat, sample_rate, rng, brightness),
                   int(onset * sample_rate))
        time += beat * (2 if texture == "strum" else len(notes) / 2)
    return out


def demo_guitar(seconds: float = 10.0, sample_rate: int = 16000, seed: int = 0,
                peak: float = 0.5) -> np.ndarray:
    """A demo guitar recording: shape (1, samples), float32, peak amplitude ``peak``.

    Consecutive phrases of 4 to 8 seconds, each with its own tempo, key and texture, so a few
    minutes of it cover chords, strums and single-note lines at varied pitch and dynamics.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if sample_rate < 4000:
        raise ValueError(f"sample_rate must be at least 4000 Hz, got {sample_rate}")
    rng = np.random.default_rng(seed)
    total = int(round(seconds * sample_rate))
    out = np.zeros(total)
    position = 0
    while position < total:
        length = int(rng.uniform(4.0, 8.0) * sample_rate)
        phrase = guitar_phrase(length / sample_rate, sample_rate, int(rng.integers(2**31)))
        count = min(phrase.size, total - position)
        out[position:position + count] = phrase[:count]
        position += count
    out *= peak / max(np.abs(out).max(), 1e-12)
    return out[np.newaxis, :].astype(np.float32)
