"""Apply one registered effect to an audio file, streaming block by block where the effect allows."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from effects import Effect, NonFiniteAudioError, get_effect, mix

from .audio_io import AudioFileError, atomic_output, open_audio, output_format
from .float_wav import MAX_DATA_BYTES, FloatWavReader, FloatWavWriter

#: Frames per block when streaming: large enough that per-call overhead vanishes, small enough to
#: stay in cache and keep memory flat for any file length.
BLOCK_FRAMES = 65536


@dataclass(frozen=True)
class ApplyReport:
    """What :func:`apply_file` did: parameters as resolved, audio seconds, wall seconds."""

    effect: str
    parameters: dict[str, float]
    extras: dict[str, float]
    audio_seconds: float
    wall_seconds: float
    compile_seconds: float = 0.0

    @property
    def times_real_time(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-12)


def warm_up(effect: Effect, parameters: Mapping[str, float]) -> float:
    """Run ``effect`` once on a short ramp so numba compiles (or loads) its kernels; returns the seconds.

    The first run on a machine compiles for a few seconds and caches the result; doing it here keeps
    that one-off cost out of the x-real-time figure.
    """
    started = time.perf_counter()
    effect.render(np.linspace(-0.5, 0.5, 64, dtype=np.float32), **parameters)
    return time.perf_counter() - started


def _open_sink(path: Path, temporary: Path, rate: int, channels: int, frames: int):
    """A writer for ``(frames, channels)`` float32 blocks: our fast float WAV writer where it applies."""
    container, subtype = output_format(path)
    if container == "WAV" and channels <= 2 and frames * channels * 4 <= MAX_DATA_BYTES:
        return FloatWavWriter(temporary, rate, channels)
    return sf.SoundFile(temporary, "w", rate, channels, subtype=subtype, format=container)


def apply_file(input_path: str | os.PathLike, output_path: str | os.PathLike, effect_name: str,
               effect_args: Mapping[str, float | str] | None = None, dry_gain: float = 0.0,
               block_frames: int = BLOCK_FRAMES, progress: bool = True) -> ApplyReport:
    """Render ``effect_name`` on ``input_path`` into ``output_path`` (.wav float32 or .flac 24-bit).

    Streamable effects (hardclip, softclip, overdrive) run block by block in constant memory; the
    others (clip-sdr needs the whole signal to choose its threshold) load the file once. With
    ``dry_gain`` > 0 the clean input is added to the effect output, y = wet + dry_gain · x (Eq. 1).
    The output appears atomically: a failure leaves no partial file. Bad audio (NaN or inf samples)
    raises :class:`AudioFileError` naming the file and where.
    """
    effect = get_effect(effect_name)
    parameters = effect.resolve(effect_args or {})
    compile_seconds = warm_up(effect, parameters)
    started = time.perf_counter()
    input_path = Path(input_path)
    extras: dict[str, float] = {}
    with open_audio(input_path) as probe:  # refuses unreadable and empty files with their reasons
        rate, channels, frames = probe.samplerate, probe.channels, probe.frames
    fast = FloatWavReader.open(input_path) if effect.streamable else None
    with fast or open_audio(input_path) as source:
        output_format(output_path)  # refuse an unsupported extension before any work
        with atomic_output(output_path) as temporary, \
                _open_sink(Path(output_path), temporary, rate, channels, frames) as sink:
            bar = tqdm(total=frames, unit="frame", unit_scale=True, desc=f"{effect.name} {input_path.name}",
                       disable=not progress, leave=False)
            position = 0
            try:
                if effect.streamable:
                    process = effect.stream(channels, parameters)
                    buffer = np.empty((block_frames, channels), dtype=np.float32)
                    while True:
                        block = buffer[:fast.read_into(buffer)] if fast else source.read(block_frames,
                                                                                           dtype="float32", out=buffer)
                        if len(block) == 0:
                            break
                        dry = block.T  # (channels, frames) view
                        wet = process(dry)
                        sink.write((mix(wet, dry, 1.0, dry_gain) if dry_gain else wet).T)
                        position += len(block)
                        bar.update(len(block))
                else:
                    dry = np.ascontiguousarray(source.read(dtype="float32", always_2d=True).T)
                    wet, extras = effect.render(dry, **parameters)
                    sink.write((mix(wet, dry, 1.0, dry_gain) if dry_gain else wet).T)
                    bar.update(frames)
            except NonFiniteAudioError as error:
                raise AudioFileError(f"{input_path}: non-finite samples (NaN or inf) in frames from {position}: "
                                     f"{error}") from None
            except OSError as error:  # the float WAV reader on a file shorter than its header says
                raise AudioFileError(f"{input_path}: {error}") from None
            finally:
                bar.close()
    return ApplyReport(effect.name, parameters, extras, frames / rate, time.perf_counter() - started,
                       compile_seconds)
