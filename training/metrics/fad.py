"""Fréchet Audio Distance (Kilgour et al., Interspeech 2019) between two whole sets of clips.

Every clip of a reference set (clean audio) and of a test set (the audio under evaluation) is embedded
frame by frame; a Gaussian N(μ, Σ) is fitted to each set's embeddings and FAD is the Fréchet distance

    ‖μ_r − μ_t‖² + tr(Σ_r + Σ_t − 2 (Σ_r Σ_t)^{1/2}).

The paper (Sec. V-C 4) embeds with VGGish; :class:`training.metrics.vggish.VGGishEmbedder` is that
embedder (its weights come from a file the user gives). Any callable
``embed(audio (samples,) float32, sample_rate) -> (frames, D)`` works: see :class:`Embedder`.

Statistics accumulate in float64 as (count, mean, scatter matrix), so a test set is never held in
memory, and the reference statistics can be saved once and reused for every model (:meth:`GaussianStats.save`).
FAD is biased upwards for small sets (the covariance of N < D embeddings is rank-deficient): compare
scores computed from sets of the same size.

This module needs numpy and scipy only; torch is needed only by the VGGish embedder.

Example::

    fad = FrechetAudioDistance(VGGishEmbedder(load_vggish("vggish-10086976.pth")))
    for clean, restored in pairs:
        fad.add_reference(clean, 16000)
        fad.add_test(restored, 16000)
    print(fad.score())
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.linalg


@runtime_checkable
class Embedder(Protocol):
    """What FAD needs from an embedding model.

    ``embed(audio, sample_rate)`` takes mono audio ``(samples,)`` float32 at ``sample_rate`` Hz and returns
    ``(frames, D)`` embeddings (any float dtype), one row per analysis frame, with the same ``D`` for
    every clip. It should raise ValueError for audio it cannot embed (for example, too short).
    """

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------- distance


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via its eigen-decomposition."""
    values, vectors = scipy.linalg.eigh(matrix)
    # Rounding leaves eigenvalues of a singular covariance slightly negative; they are zero.
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((Σa Σb)^{1/2}) as Σ sqrt(eig(√Σa Σb √Σa)).

    Σa Σb is not symmetric, but it is similar to the symmetric PSD matrix √Σa Σb √Σa, so both have
    the same (real, non-negative) eigenvalues: a symmetric eigen-solver applies and no complex parts
    arise, unlike scipy.linalg.sqrtm on the product.
    """
    root_a = _symmetric_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    values = scipy.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sum(np.sqrt(np.clip(values, 0.0, None))))


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mean_a, cov_a) and N(mean_b, cov_b).

    Args:
        mean_a, mean_b: means, shape (D,).
        cov_a, cov_b: covariances, shape (D, D), symmetric positive semi-definite (singular is fine).
        eps: if the eigen-solver fails to converge (badly conditioned input), ``eps · I`` is added to
            both covariances and the computation is repeated once.

    Returns:
        ‖μa − μb‖² + tr(Σa) + tr(Σb) − 2 tr((Σa Σb)^{1/2}) as a float ≥ 0, in squared embedding units.

    Numerics: float64 throughout; covariances are symmetrised; the trace of the matrix square root comes
    from the symmetric form √Σa Σb √Σa (see :func:`_trace_sqrt_product`), which handles singular and
    near-singular covariances without regularisation and has no imaginary parts to discard. Rounding can
    leave a result of about −1e-12 for identical inputs; it is clipped to 0. The result is symmetric in
    (a, b) up to rounding.
    """
    mu_a, mu_b = (np.asarray(m, dtype=np.float64) for m in (mean_a, mean_b))
    sigma_a, sigma_b = (np.asarray(c, dtype=np.float64) for c in (cov_a, cov_b))
    if mu_a.ndim != 1 or mu_a.shape != mu_b.shape:
        raise ValueError(f"means must be 1-D of equal length, got shapes {mu_a.shape} and {mu_b.shape}")
    dimension = mu_a.shape[0]
    if sigma_a.shape != (dimension, dimension) or sigma_b.shape != (dimension, dimension):
        raise ValueError(f"covariances must be ({dimension}, {dimension}), got {sigma_a.shape} and {sigma_b.shape}")
    if dimension == 0:
        raise ValueError("means are empty")
    for name, value in (("mean_a", mu_a), ("mean_b", mu_b), ("cov_a", sigma_a), ("cov_b", sigma_b)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} contains NaN or inf")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    sigma_a = (sigma_a + sigma_a.T) / 2
    sigma_b = (sigma_b + sigma_b.T) / 2
    try:
        trace_sqrt = _trace_sqrt_product(sigma_a, sigma_b)
    except np.linalg.LinAlgError:
        offset = eps * np.eye(dimension)
        sigma_a, sigma_b = sigma_a + offset, sigma_b + offset
        trace_sqrt = _trace_sqrt_product(sigma_a, sigma_b)
    difference = mu_a - mu_b
    distance = float(difference @ difference + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


# ---------------------------------------------------------------------------------------------- statistics


class GaussianStats:
    """Streaming mean and covariance of embeddings, in float64.

    Keeps (count, mean, scatter matrix Σ(x − mean)(x − mean)ᵀ) and combines batches with Chan et al.'s
    pairwise update, which avoids the cancellation of the naive "sum of outer products minus n·mean²"
    when the mean is large against the spread. Memory is O(D²) whatever the number of embeddings.

    Args:
        dimension: embedding size D; inferred from the first :meth:`add` when None.
    """

    def __init__(self, dimension: int | None = None) -> None:
        if dimension is not None and dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        self.dimension = dimension
        self.count = 0
        self._mean = None if dimension is None else np.zeros(dimension)
        self._scatter = None if dimension is None else np.zeros((dimension, dimension))

    def add(self, embeddings: np.ndarray) -> GaussianStats:
        """Accumulate ``embeddings`` of shape (N, D) (N ≥ 1, finite); returns self."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (N, D), got shape {x.shape}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"embeddings are empty, shape {x.shape}")
        if self.dimension is not None and x.shape[1] != self.dimension:
            raise ValueError(f"embeddings have dimension {x.shape[1]}, these statistics have {self.dimension}")
        if not np.all(np.isfinite(x)):
            raise ValueError("embeddings contain NaN or inf")
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        self._combine(x.shape[0], batch_mean, centred.T @ centred)
        return self

    def _combine(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        if self.count == 0:
            self.dimension = mean.shape[0]
            self.count, self._mean, self._scatter = count, mean.copy(), scatter.copy()
            return
        total = self.count + count
        delta = mean - self._mean
        self._scatter = self._scatter + scatter + np.outer(delta, delta) * (self.count * count / total)
        self._mean = self._mean + delta * (count / total)
        self.count = total

    def merge(self, other: GaussianStats) -> GaussianStats:
        """New statistics of the union of both sets (neither input changes)."""
        if not isinstance(other, GaussianStats):
            raise ValueError(f"can only merge GaussianStats, got {type(other).__name__}")
        if self.dimension is not None and other.dimension is not None and self.dimension != other.dimension:
            raise ValueError(f"cannot merge statistics of dimensions {self.dimension} and {other.dimension}")
        merged = GaussianStats(self.dimension if self.dimension is not None else other.dimension)
        for part in (self, other):
            if part.count:
                merged._combine(part.count, part._mean, part._scatter)
        return merged

    @property
    def mean(self) -> np.ndarray:
        """Mean embedding, shape (D,), float64. Needs at least one embedding."""
        if self.count == 0:
            raise ValueError("no embeddings accumulated: the mean is undefined")
        return self._mean.copy()

    @property
    def covariance(self) -> np.ndarray:
        """Unbiased covariance (divided by N − 1), shape (D, D), float64. Needs at least two embeddings."""
        if self.count < 2:
            raise ValueError(f"the covariance needs at least 2 embeddings, have {self.count}")
        return self._scatter / (self.count - 1)

    def save(self, path: str | Path) -> None:
        """Write the statistics to an ``.npz`` file (count, mean, scatter), for example a reference set's."""
        if self.count == 0:
            raise ValueError("no embeddings accumulated: nothing to save")
        with open(path, "wb") as file:  # a file object keeps numpy from appending ".npz" to the name
            np.savez(file, count=np.int64(self.count), mean=self._mean, scatter=self._scatter)

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read statistics written by :meth:`save`; ValueError naming the file if it is missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"statistics file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as archive:
                count, mean, scatter = int(archive["count"]), archive["mean"], archive["scatter"]
        except Exception as error:
            raise ValueError(f"statistics file {path} could not be read: {error}") from error
        if count < 1 or mean.ndim != 1 or scatter.shape != (mean.size, mean.size):
            raise ValueError(f"statistics file {path} is malformed: count {count}, mean {mean.shape}, "
                             f"scatter {scatter.shape}")
        stats = cls(mean.size)
        stats._combine(count, mean.astype(np.float64), scatter.astype(np.float64))
        return stats

    def __repr__(self) -> str:
        return f"GaussianStats(count={self.count}, dimension={self.dimension})"


# ---------------------------------------------------------------------------------------------- FAD


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Mono float32 ``(samples,)`` from ``(samples,)`` or channels-first ``(channels, samples)`` audio.

    Channels are averaged (VGGish's release mixes the same way). Raises ValueError for other shapes,
    empty or non-finite audio.
    """
    x = np.asarray(audio)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"audio is empty, shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"audio must be floating point, got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or inf")
    mono = x if x.ndim == 1 else x.mean(axis=0, dtype=np.float64)
    return np.ascontiguousarray(mono, dtype=np.float32)


class FrechetAudioDistance:
    """FAD between a reference set and a test set of clips, accumulated clip by clip.

    Args:
        embedder: any :class:`Embedder`, e.g. :class:`training.metrics.vggish.VGGishEmbedder`.
        reference: precomputed reference statistics (e.g. :meth:`GaussianStats.load`), else empty.

    Multi-channel clips ``(channels, samples)`` are mixed to mono by averaging before embedding.
    """

    def __init__(self, embedder: Embedder, reference: GaussianStats | None = None) -> None:
        if not callable(embedder):
            raise ValueError(f"embedder must be callable as embed(audio, sample_rate), got {type(embedder).__name__}")
        self.embedder = embedder
        self.reference = reference if reference is not None else GaussianStats()
        self.test = GaussianStats()

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Embeddings ``(frames, D)`` float64 of one clip, checked (2-D, finite, at least one frame)."""
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
        embeddings = np.asarray(self.embedder(to_mono(audio), int(sample_rate)), dtype=np.float64)
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"the embedder returned shape {embeddings.shape}; expected (frames >= 1, D)")
        if not np.all(np.isfinite(embeddings)):
            raise ValueError("the embedder returned NaN or inf")
        return embeddings

    def add_reference(self, audio: np.ndarray, sample_rate: int) -> int:
        """Embed a clean clip into the reference statistics; returns the number of embeddings added."""
        embeddings = self.embed(audio, sample_rate)
        self.reference.add(embeddings)
        return embeddings.shape[0]

    def add_test(self, audio: np.ndarray, sample_rate: int) -> int:
        """Embed a clip of the evaluated set into the test statistics; returns the number added."""
        embeddings = self.embed(audio, sample_rate)
        self.test.add(embeddings)
        return embeddings.shape[0]

    def reset_test(self) -> None:
        """Forget the test set, keeping the reference (to score another system against it)."""
        self.test = GaussianStats()

    def score(self) -> float:
        """FAD between the reference and test sets (≥ 0; 0 for identical sets), in squared embedding units."""
        if self.reference.count < 2 or self.test.count < 2:
            raise ValueError(f"FAD needs at least 2 embeddings per set; the reference set has "
                             f"{self.reference.count} and the test set {self.test.count}")
        if self.reference.dimension != self.test.dimension:
            raise ValueError(f"reference embeddings have dimension {self.reference.dimension}, "
                             f"test embeddings {self.test.dimension}")
        return frechet_distance(self.reference.mean, self.reference.covariance, self.test.mean, self.test.covariance)


def frechet_audio_distance(embedder: Embedder, reference_clips: Iterable[np.ndarray],
                           test_clips: Iterable[np.ndarray], sample_rate: int) -> float:
    """FAD between two iterables of clips (each ``(samples,)`` or ``(channels, samples)``) at ``sample_rate`` Hz."""
    fad = FrechetAudioDistance(embedder)
    for clip in reference_clips:
        fad.add_reference(clip, sample_rate)
    for clip in test_clips:
        fad.add_test(clip, sample_rate)
    return fad.score()


__all__ = ["Embedder", "FrechetAudioDistance", "GaussianStats", "frechet_audio_distance", "frechet_distance",
           "to_mono"]
