"""``dedistort evaluate`` and ``dedistort run``: scoring a method on a split, restoring a file.

``evaluate`` runs a method (a checkpoint, ``aspade``, ``irm`` or ``input``; see :mod:`training.methods`)
on every example of a split once, in key order, and scores the distorted input and the method's output
against the clean target with the chosen metrics (:mod:`training.metrics`). It writes, into the results
folder:

- ``scores.parquet``: one row per example: key, method, effect and its parameters, the nominal input
  SDR (the clip-sdr target, when there is one), then ``input_<metric>`` and ``output_<metric>`` for each
  metric and ``si_sdr_improvement_db``;
- ``summary.json``: medians, quartiles and means per column, FAD of input and output sets when asked,
  the method's own speed (x real time, restoration only), and how many examples the method returned
  unchanged (``unchanged_examples``, with their keys and the reason; also said on stderr);
- ``audio/KEY.{input,target,output}.wav`` for the first few examples (``dedistort report`` draws their
  spectrograms).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from tqdm import tqdm

from manifests.dataset_info import atomic_path

from .data import PairStream, apply_online, make_loader
from .methods import Method, resolve, unchanged_examples
from .metrics import METRICS, parse_metric_names

#: What ``evaluate`` scores when not told otherwise (FAD needs VGGish weights, so it is asked for).
DEFAULT_METRICS = ("si-sdr", "sdr", "peaq", "rnonlin")


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def score_pair(reference: np.ndarray, noisy: np.ndarray, output: np.ndarray, sample_rate: int,
               metrics: tuple[str, ...]) -> dict:
    """``input_<column>`` and ``output_<column>`` of every per-example metric, and the SI-SDR improvement.

    Arrays are (channels, samples) float32 at ``sample_rate`` Hz. A metric that cannot be computed for
    an example (e.g. SDR of a silent reference) is None, never an aborted evaluation.
    """
    row = {}
    for name in metrics:
        if name not in METRICS:
            continue
        metric = METRICS[name]
        for prefix, estimate in (("input", noisy), ("output", output)):
            try:
                row[f"{prefix}_{metric.column}"] = _finite(metric(reference, estimate, sample_rate))
            except ValueError:
                row[f"{prefix}_{metric.column}"] = None
    if "si-sdr" in metrics and None not in (row.get("input_si_sdr_db"), row.get("output_si_sdr_db")):
        row["si_sdr_improvement_db"] = row["output_si_sdr_db"] - row["input_si_sdr_db"]
    elif "si-sdr" in metrics:
        row["si_sdr_improvement_db"] = None
    return row


def _score_job(job: tuple) -> tuple[str, dict]:
    key, reference, noisy, output, rate, metrics = job
    return key, score_pair(reference, noisy, output, rate, metrics)


def _nominal_input_sdr(row: dict, online_parameter: float | None, online_effect: str | None) -> float | None:
    """The input SDR an example was made for: clip-sdr's target, offline or online; None otherwise."""
    parameters = json.loads(row["parameters"]) if row.get("parameters") else {}
    if "sdr_db" in parameters:
        return float(parameters["sdr_db"])
    if online_effect == "clip-sdr" and online_parameter is not None:
        return float(online_parameter)
    return None


class _FadSets:
    """FAD of the input set and of the output set against the target set, embedding as examples arrive.

    Only running sums of the embeddings are kept (:class:`~training.metrics.fad.GaussianStats`), so the
    sets never sit in memory. Multi-channel audio is mixed to mono, as VGGish takes one channel.
    """

    def __init__(self, embedder) -> None:
        from .metrics.fad import GaussianStats

        self._embed = embedder
        self._stats = {role: GaussianStats() for role in ("target", "input", "output")}

    def add(self, reference: np.ndarray, noisy: np.ndarray, output: np.ndarray, rate: int) -> None:
        for role, audio in (("target", reference), ("input", noisy), ("output", output)):
            self._stats[role].add(self._embed(audio.mean(axis=0), rate))

    def scores(self) -> dict:
        from .metrics.fad import frechet_distance

        target = self._stats["target"]
        return {role: frechet_distance(target.mean, target.covariance, self._stats[role].mean,
                                       self._stats[role].covariance) for role in ("input", "output")}


def evaluate(method: str | Path | Method, data: str | Path, split: str = "test", out_dir: str | Path = "results",
             metrics: tuple[str, ...] = DEFAULT_METRICS, vggish_path: str | Path | None = None,
             device: torch.device | None = None, batch_size: int = 4, workers: int | None = None,
             save_examples: int = 3, progress: bool = True, fad_embedder=None, warn=None) -> dict:
    """Score ``method`` on every example of ``split`` once; writes scores.parquet, summary.json and audio/.

    Args:
        method: a checkpoint path, "aspade", "irm", "input", or a :class:`~training.methods.Method`.
        data: a ``datagen build`` output folder.
        metrics: names from :data:`training.metrics.METRIC_NAMES`; "fad" needs ``vggish_path`` (VGGish
            weights) or ``fad_embedder`` (any ``embed(audio (samples,), rate) -> (frames, D)`` callable).
        workers: processes scoring the per-example metrics (None: one per core; 0: in this process).
        save_examples: how many examples (the first in key order) to write as WAV for the report.
        warn: called with a one-line message when the method returned examples unchanged (default: stderr).

    Returns the summary (what summary.json holds).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    metrics = parse_metric_names(",".join(metrics))
    if "fad" in metrics and vggish_path is None and fad_embedder is None:
        raise ValueError("the fad metric needs VGGish weights: pass --vggish PATH (e.g. torchvggish's "
                         "vggish-10086976.pth); nothing is downloaded")
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    method = method if isinstance(method, Method) else resolve(method, device)
    stream = PairStream(data, split, None, training=False)
    if method.sample_rate is not None and method.sample_rate != stream.sample_rate:
        raise ValueError(f"{method.name} was trained at {method.sample_rate} Hz; {data} is at {stream.sample_rate} Hz")
    manifest = {row["key"]: row for row in stream.rows}
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    fad = None
    if "fad" in metrics:
        if fad_embedder is None:
            from .metrics.vggish import VGGishEmbedder, load_vggish

            fad_embedder = VGGishEmbedder(load_vggish(vggish_path, device=device))
        fad = _FadSets(fad_embedder)
    workers = (os.cpu_count() or 1) if workers is None else workers
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    pending: deque[Future] = deque()
    scored: dict[str, dict] = {}
    rows: list[dict] = []
    unchanged: list[str] = []
    method_seconds = audio_seconds = 0.0
    try:
        for batch in tqdm(make_loader(stream, batch_size=batch_size), desc=f"{method.name} on {split}",
                          unit="batch", disable=not progress):
            noisy, clean = apply_online(batch, stream, device)
            started = time.perf_counter()
            output = method(noisy, clean, stream.sample_rate)
            if output.device.type == "cuda":
                torch.cuda.synchronize()
            method_seconds += time.perf_counter() - started
            audio_seconds += noisy.shape[0] * noisy.shape[-1] / stream.sample_rate
            unchanged += [key for key, same in zip(batch["key"], unchanged_examples(noisy, output).tolist(),
                                                   strict=True) if same]
            for b, key in enumerate(batch["key"]):
                reference, distorted, restored = (t[b].detach().cpu().numpy().astype(np.float32)
                                                  for t in (clean, noisy, output))
                if len(rows) < save_examples:
                    _save_example(out_dir / "audio", key, reference, distorted, restored, stream.sample_rate)
                if fad is not None:
                    fad.add(reference, distorted, restored, stream.sample_rate)
                job = (key, reference, distorted, restored, stream.sample_rate, metrics)
                if pool is None:
                    scored.update([_score_job(job)])
                else:
                    pending.append(pool.submit(_score_job, job))
                    while len(pending) > 4 * workers:  # bounded memory: a few examples in flight per worker
                        scored.update([pending.popleft().result()])
                online_parameter = _finite(float(batch["parameter"][b]))
                row = manifest[key]
                rows.append({"key": key, "method": method.name, "effect": row["effect"],
                             "parameters": row["parameters"], "online_parameter": online_parameter,
                             "nominal_input_sdr_db": _nominal_input_sdr(
                                 row, online_parameter, stream.online.effect if stream.online else None)})
        while pending:
            scored.update([pending.popleft().result()])
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for row in rows:
        row.update(scored[row["key"]])
    rows.sort(key=lambda r: r["key"])
    with atomic_path(out_dir / "scores.parquet") as temporary:
        pq.write_table(pa.Table.from_pylist(rows), temporary)
    summary = {"method": method.name, "description": method.description, "data": str(data), "split": split,
               "examples": len(rows), "sample_rate": stream.sample_rate, "metrics_computed": list(metrics),
               "metrics": summarise(rows),
               "speed": {"audio_seconds": audio_seconds, "method_seconds": method_seconds,
                         "times_real_time": audio_seconds / max(method_seconds, 1e-9), "device": str(device)},
               "unchanged_examples": len(unchanged), "unchanged_keys": sorted(unchanged),
               "unchanged_reason": method.unchanged_reason if unchanged else None}
    if unchanged and method.unchanged_reason is not None:  # the input method is the identity by definition
        (warn or _stderr)(f"warning: {method.name} returned {len(unchanged)} of {len(rows)} {split} examples "
                          f"unchanged (e.g. {min(unchanged)}): {method.unchanged_reason}")
    if fad is not None:
        summary["fad"] = fad.scores()
    with atomic_path(out_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def summarise(rows: list[dict]) -> dict:
    """Median, quartiles and mean of every numeric score column (input_*, output_*, *_improvement_db)."""
    summary = {}
    columns = [c for c in rows[0] if c.startswith(("input_", "output_")) or c.endswith("_improvement_db")] if rows \
        else []
    for column in columns:
        values = np.array([r[column] for r in rows if r.get(column) is not None], dtype=float)
        if values.size:
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            summary[column] = {"median": float(median), "q1": float(q1), "q3": float(q3), "mean": float(values.mean()),
                               "count": int(values.size)}
    return summary


def _save_example(folder: Path, key: str, reference: np.ndarray, noisy: np.ndarray, output: np.ndarray,
                  rate: int) -> None:
    for role, audio in (("input", noisy), ("target", reference), ("output", output)):
        with atomic_path(folder / f"{key}.{role}.wav") as temporary:
            sf.write(temporary, audio.T, rate, subtype="FLOAT", format="WAV")


def run_file(input_path: str | Path, output_path: str | Path, method: str | Path | Method, chunk_seconds: float = 10.0,
             overlap_seconds: float = 1.0, device: torch.device | None = None,
             aspade_options: dict | None = None, warn=None, progress: bool = False) -> dict:
    """Restore one audio file of any length and sample rate with a trained model or A-SPADE.

    A model's file is resampled to the model's rate and back; A-SPADE runs at the file's own rate (resampling
    would smear the clipped plateaus it detects), channel by channel, each with its clipping threshold taken
    from the whole channel (:func:`clipping_levels`; a channel without a plateau at its peak passes through).
    The signal is cut into ``chunk_seconds`` chunks overlapping by ``overlap_seconds`` (cross-faded with a
    linear ramp), run channel by channel if the method is mono, and written as 32-bit float WAV or 24-bit
    FLAC. When the method returns every chunk of a channel exactly as given (A-SPADE finding no clipped
    samples), ``warn`` (default: stderr) is told so and why, in one line. ``progress`` shows a bar over the
    chunks (on stderr). Returns {"audio_seconds",
    "wall_seconds", "times_real_time", "unchanged_channels"}.
    """
    if not 0 <= overlap_seconds < chunk_seconds:
        raise ValueError(f"need 0 <= overlap_seconds < chunk_seconds, got {overlap_seconds} and {chunk_seconds}")
    suffix = Path(output_path).suffix.lower()
    container, subtype = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}.get(suffix, (None, None))
    if container is None:
        raise ValueError(f"{output_path}: output must end in .wav or .flac")
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    try:
        audio, rate = sf.read(input_path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{input_path}: not readable as audio ({error})") from None
    if audio.size == 0:
        raise ValueError(f"{input_path}: contains no samples")
    if not np.isfinite(audio).all():
        raise ValueError(f"{input_path}: contains non-finite samples (NaN or inf)")
    per_channel = None  # A-SPADE: one method per channel (its own clipping level), None for an unclipped channel
    if str(method) == "aspade":
        # One threshold per channel for the whole file: a chunk's own peak would be below the clipping level,
        # and channels clip at their own levels (one threshold for all left a quieter channel untouched).
        per_channel = [None if math.isnan(level) else resolve("aspade", device, {"threshold": level,
                                                                                **(aspade_options or {})})
                       for level in clipping_levels(audio.T)]
        method = resolve("aspade", device, aspade_options)
    elif not isinstance(method, Method):
        method = resolve(method, device)
    if method.needs_target:
        raise ValueError(f"{method.name} is an oracle: it needs the clean target, so it runs in evaluate only")
    started = time.perf_counter()
    model_rate = method.sample_rate or rate
    resampled = soxr.resample(audio, rate, model_rate, quality="VHQ") if rate != model_rate else audio
    signal = np.ascontiguousarray(resampled.T)  # (channels, samples)
    if per_channel is not None:
        parts = [(signal[c:c + 1], np.ones(1, dtype=bool)) if per_channel[c] is None else
                 _overlap_add(per_channel[c], signal[c:c + 1], model_rate, chunk_seconds, overlap_seconds, device,
                              progress)
                 for c in range(signal.shape[0])]
        restored, unchanged = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    elif method.channels in (None, signal.shape[0]):
        restored, unchanged = _overlap_add(method, signal, model_rate, chunk_seconds, overlap_seconds, device,
                                           progress)
    elif method.channels == 1:
        parts = [_overlap_add(method, signal[c:c + 1], model_rate, chunk_seconds, overlap_seconds, device, progress)
                 for c in range(signal.shape[0])]
        restored, unchanged = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    else:
        raise ValueError(f"{input_path} has {signal.shape[0]} channels; {method.name} takes {method.channels}")
    output = soxr.resample(restored.T, model_rate, rate, quality="VHQ") if rate != model_rate else restored.T
    output = output[: audio.shape[0]]
    output = np.pad(output, ((0, audio.shape[0] - output.shape[0]), (0, 0)))
    with atomic_path(output_path) as temporary:
        sf.write(temporary, np.clip(output, -1, 1) if subtype != "FLOAT" else output, rate, subtype=subtype,
                 format=container)
    wall = time.perf_counter() - started
    seconds = audio.shape[0] / rate
    if unchanged.any() and method.unchanged_reason is not None:
        which = ("" if unchanged.all() else f" in channel {', '.join(str(c + 1) for c in np.flatnonzero(unchanged))}"
                 f" of {unchanged.size}")
        (warn or _stderr)(f"warning: {input_path}: {method.name} left the audio unchanged{which} "
                          f"({rate} Hz, peak {float(np.abs(audio).max()):.6g}): {method.unchanged_reason}")
    return {"audio_seconds": seconds, "wall_seconds": wall, "times_real_time": seconds / max(wall, 1e-9),
            "unchanged_channels": int(unchanged.sum())}


def clipping_levels(audio: np.ndarray) -> list[float]:
    """Clipping level θ of each channel of (C, T) ``audio``: its peak magnitude where at least two samples
    reach it (a plateau, by A-SPADE's rule), NaN where the peak is a lone sample or the channel is silent."""
    from .baselines.aspade import CLIP_RELATIVE_TOLERANCE

    magnitude = np.abs(audio)
    peaks = magnitude.max(axis=-1)
    plateau = (magnitude >= peaks[:, None] * (1.0 - CLIP_RELATIVE_TOLERANCE)).sum(axis=-1)
    return [float(p) if p > 0 and n >= 2 else math.nan for p, n in zip(peaks, plateau, strict=True)]


@torch.no_grad()
def _overlap_add(method: Method, signal: np.ndarray, rate: int, chunk_seconds: float, overlap_seconds: float,
                 device: torch.device, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Method output for (C, T) ``signal`` chunk by chunk, cross-fading the overlaps (a bar over the chunks
    when ``progress``).

    Returns the (C, T) output and a (C,) bool: channels the method returned exactly as given in every chunk.
    """
    chunk = max(1, round(chunk_seconds * rate))
    overlap = round(overlap_seconds * rate)
    hop = chunk - overlap
    length = signal.shape[1]
    output = np.zeros_like(signal, dtype=np.float64)
    weight = np.zeros(length)
    ramp = np.linspace(0.0, 1.0, overlap + 2)[1:-1] if overlap else np.zeros(0)
    unchanged = np.ones(signal.shape[0], dtype=bool)
    starts = range(0, max(length - overlap, 1), hop)
    for start in tqdm(starts, desc=f"{method.name}, {signal.shape[0]} channel(s)", unit="chunk", leave=False,
                      disable=not progress or len(starts) < 2):
        piece = signal[:, start:start + chunk]
        estimate = method(torch.from_numpy(piece).unsqueeze(0).to(device), None, rate)[0].cpu().numpy()
        unchanged &= (estimate.shape == piece.shape) and (estimate == piece).all(axis=-1)
        window = np.ones(piece.shape[1])
        if start > 0 and overlap:
            window[:overlap] = ramp[: piece.shape[1]] if piece.shape[1] < overlap else ramp
        if start + chunk < length and overlap:
            window[-overlap:] = ramp[::-1]
        output[:, start:start + piece.shape[1]] += estimate * window
        weight[start:start + piece.shape[1]] += window
    return (output / np.maximum(weight, 1e-12)).astype(np.float32), unchanged
