"""``dedistort evaluate`` and ``dedistort run``: scoring a checkpoint on a split, restoring a file."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from tqdm import tqdm

from effects import input_sdrs_db
from manifests.dataset_info import atomic_path

from .data import PairStream, apply_online, make_loader
from .train import default_device, load_checkpoint, model_from_checkpoint

#: Columns of the per-example results file.
RESULT_COLUMNS = ("key", "method", "effect", "parameters", "online_parameter", "input_sdr_db", "input_si_sdr_db",
                  "output_sdr_db", "output_si_sdr_db", "si_sdr_improvement_db")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@torch.no_grad()
def evaluate(checkpoint: str | Path, data: str | Path, split: str = "test", out_dir: str | Path = "results",
             device: torch.device | None = None, batch_size: int = 4, progress: bool = True) -> dict:
    """Score every example of ``split`` once; writes ``out_dir``/scores.parquet and summary.json.

    Returns the summary: per metric, the median and quartiles over the examples.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    device = device or default_device()
    model, config = model_from_checkpoint(load_checkpoint(checkpoint, device), device)
    stream = PairStream(data, split, None, training=False)
    manifest = {row["key"]: row for row in stream.rows}
    rows = []
    for batch in tqdm(make_loader(stream, batch_size=batch_size), desc=f"evaluating {split}", unit="batch",
                      disable=not progress):
        noisy, clean = apply_online(batch, stream, device)
        output = model(noisy)
        for b, key in enumerate(batch["key"]):
            reference = clean[b].cpu().numpy()
            input_sdr, input_si_sdr = input_sdrs_db(reference, noisy[b].cpu().numpy())
            output_sdr, output_si_sdr = input_sdrs_db(reference, output[b].cpu().numpy())
            row = manifest[key]
            rows.append({"key": key, "method": f"{config['model']}-{config['size']}", "effect": row["effect"],
                         "parameters": row["parameters"], "online_parameter": _finite(float(batch["parameter"][b])),
                         "input_sdr_db": _finite(input_sdr), "input_si_sdr_db": _finite(input_si_sdr),
                         "output_sdr_db": _finite(output_sdr), "output_si_sdr_db": _finite(output_si_sdr),
                         "si_sdr_improvement_db": _finite(output_si_sdr - input_si_sdr)})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["key"]))
    with atomic_path(out_dir / "scores.parquet") as temporary:
        pq.write_table(table, temporary)
    summary = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "examples": len(rows),
               "method": f"{config['model']}-{config['size']}", "metrics": {}}
    for metric in RESULT_COLUMNS[5:]:
        values = np.array([r[metric] for r in rows if r[metric] is not None], dtype=float)
        if values.size:
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            summary["metrics"][metric] = {"median": median, "q1": q1, "q3": q3, "mean": float(values.mean())}
    with atomic_path(out_dir / "summary.json") as temporary:
        temporary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


@torch.no_grad()
def run_file(input_path: str | Path, output_path: str | Path, checkpoint: str | Path, chunk_seconds: float = 10.0,
             overlap_seconds: float = 1.0, device: torch.device | None = None) -> dict:
    """Restore one audio file of any length and sample rate with a trained model.

    The file is resampled to the model's rate, cut into ``chunk_seconds`` chunks overlapping by
    ``overlap_seconds`` (cross-faded with a linear ramp), run through the model channel by channel if
    the model is mono, resampled back to the file's rate and written (32-bit float WAV or 24-bit FLAC).
    Returns {"audio_seconds", "wall_seconds", "times_real_time"}.
    """
    if not 0 <= overlap_seconds < chunk_seconds:
        raise ValueError(f"need 0 <= overlap_seconds < chunk_seconds, got {overlap_seconds} and {chunk_seconds}")
    device = device or default_device()
    state = load_checkpoint(checkpoint, device)
    model, _ = model_from_checkpoint(state, device)
    model_rate, model_channels = int(state["sample_rate"]), int(state["channels"])
    try:
        audio, rate = sf.read(input_path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{input_path}: not readable as audio ({error})") from None
    if audio.size == 0:
        raise ValueError(f"{input_path}: contains no samples")
    if not np.isfinite(audio).all():
        raise ValueError(f"{input_path}: contains non-finite samples (NaN or inf)")
    started = time.perf_counter()
    resampled = soxr.resample(audio, rate, model_rate, quality="VHQ") if rate != model_rate else audio
    signal = np.ascontiguousarray(resampled.T)  # (channels, samples)
    if model_channels == 1:
        restored = np.concatenate([_overlap_add(model, signal[c:c + 1], model_rate, chunk_seconds, overlap_seconds,
                                                device) for c in range(signal.shape[0])])
    elif signal.shape[0] == model_channels:
        restored = _overlap_add(model, signal, model_rate, chunk_seconds, overlap_seconds, device)
    else:
        raise ValueError(f"{input_path} has {signal.shape[0]} channels; the model takes {model_channels}")
    output = soxr.resample(restored.T, model_rate, rate, quality="VHQ") if rate != model_rate else restored.T
    output = output[: audio.shape[0]]
    output = np.pad(output, ((0, audio.shape[0] - output.shape[0]), (0, 0)))
    suffix = Path(output_path).suffix.lower()
    container, subtype = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_24")}.get(suffix, (None, None))
    if container is None:
        raise ValueError(f"{output_path}: output must end in .wav or .flac")
    with atomic_path(output_path) as temporary:
        sf.write(temporary, np.clip(output, -1, 1) if subtype != "FLOAT" else output, rate, subtype=subtype,
                 format=container)
    wall = time.perf_counter() - started
    seconds = audio.shape[0] / rate
    return {"audio_seconds": seconds, "wall_seconds": wall, "times_real_time": seconds / max(wall, 1e-9)}


def _overlap_add(model: torch.nn.Module, signal: np.ndarray, rate: int, chunk_seconds: float,
                 overlap_seconds: float, device: torch.device) -> np.ndarray:
    """Model output for (C, T) ``signal`` chunk by chunk, cross-fading the overlaps; returns (C, T)."""
    chunk = max(1, round(chunk_seconds * rate))
    overlap = round(overlap_seconds * rate)
    hop = chunk - overlap
    length = signal.shape[1]
    output = np.zeros_like(signal, dtype=np.float64)
    weight = np.zeros(length)
    ramp = np.linspace(0.0, 1.0, overlap + 2)[1:-1] if overlap else np.zeros(0)
    for start in range(0, max(length - overlap, 1), hop):
        piece = signal[:, start:start + chunk]
        estimate = model(torch.from_numpy(piece).unsqueeze(0).to(device))[0].cpu().numpy()
        window = np.ones(piece.shape[1])
        if start > 0 and overlap:
            window[:overlap] = ramp[: piece.shape[1]] if piece.shape[1] < overlap else ramp
        if start + chunk < length and overlap:
            window[-overlap:] = ramp[::-1]
        output[:, start:start + piece.shape[1]] += estimate * window
        weight[start:start + piece.shape[1]] += window
    return (output / np.maximum(weight, 1e-12)).astype(np.float32)
