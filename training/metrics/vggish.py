"""VGGish (Hershey et al., ICASSP 2017) in torch: the log-mel front end, the network, PCA postprocessing.

VGGish is the embedding FAD uses (Kilgour et al. 2019). This module rebuilds the published model:

- **Front end** (numpy): mono audio resampled to 16 kHz (soxr), frames of 25 ms (400 samples) every
  10 ms (160 samples) under a periodic Hann window, 512-point FFT magnitudes, 64 HTK-mel triangles
  from 125 to 7500 Hz, ``log(mel + 0.01)``; the frames are cut into non-overlapping 0.96-s examples of
  96 frames x 64 bands. Trailing frames that do not fill an example are dropped, as in the release.
- **Network** (torch): conv64-pool-conv128-pool-conv256-conv256-pool-conv512-conv512-pool (3x3
  convolutions with ReLU, 2x2 max pools), then fully connected 4096-4096-128 with ReLU.
- **Postprocessing** (optional): the release's PCA whitening and 8-bit quantisation to [0, 255].

Parameter names, shapes and the flattening order follow the widely used PyTorch port
harritaylor/torchvggish, so its weights file ``vggish-10086976.pth`` (and ``vggish_pca_params-970ea276.pth``
for the PCA, or Google's ``vggish_pca_params.npz``) can be passed to :func:`load_vggish`. Nothing is
downloaded here: the user supplies the files.

About the last ReLU: torchvggish (and the first TensorFlow release) apply a ReLU to the 128-d
embedding; the current TensorFlow release makes that layer linear, and the FAD toolkits built on
torchvggish (``frechet_audio_distance``, ``fadtk``) drop that ReLU and skip the PCA by default.
``final_relu=False`` with ``postprocess=False`` reproduces their embeddings; the defaults here follow
torchvggish's forward pass. Resampling uses soxr where torchvggish uses resampy, so audio that is not
already at 16 kHz gives slightly different features.

Example (with weights on disk)::

    model = load_vggish("vggish-10086976.pth")
    embed = VGGishEmbedder(model)
    embeddings = embed(audio, 44100)          # (examples, 128) float32
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import nn

VGGISH_SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # 25 ms at 16 kHz
HOP_SAMPLES = 160  # 10 ms at 16 kHz
FFT_SIZE = 512  # the next power of two above the window, as in the release
MEL_BANDS = 64
MEL_LOW_HZ = 125.0
MEL_HIGH_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10-ms frames, non-overlapping
EMBEDDING_SIZE = 128
#: Shortest audio that yields one example: 95 hops plus one window, 15600 samples = 0.975 s at 16 kHz.
MIN_SAMPLES = (EXAMPLE_FRAMES - 1) * HOP_SAMPLES + WINDOW_SAMPLES
QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0

# The network: channel counts of the 3x3 convolutions, "M" for a 2x2 max pool.
_CONV_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
# After four 2x2 pools a 96x64 example is 6 (time) x 4 (mel) cells of 512 channels.
_FLAT_FEATURES = 512 * (EXAMPLE_FRAMES // 16) * (MEL_BANDS // 16)
_PCA_KEYS = ("pca_eigen_vectors", "pca_means")  # names in the release's PCA files
_TORCHVGGISH_PCA_KEYS = ("pproc.pca_matrix", "pproc.pca_means")  # in a saved torchvggish model


# ---------------------------------------------------------------------------------------------- front end


def hertz_to_mel(frequency_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 · ln(1 + f / 700). Accepts scalars or arrays in Hz; returns float64 mel."""
    return 1127.0 * np.log1p(np.asarray(frequency_hz, dtype=np.float64) / 700.0)


def mel_filterbank(sample_rate: int = VGGISH_SAMPLE_RATE, fft_size: int = FFT_SIZE, mel_bands: int = MEL_BANDS,
                   low_hz: float = MEL_LOW_HZ, high_hz: float = MEL_HIGH_HZ) -> np.ndarray:
    """Triangular HTK-mel weights, shape ``(fft_size // 2 + 1, mel_bands)``, float64, peak 1 per band.

    Band ``i`` rises linearly *in mel* from edge ``i`` to its centre ``i + 1`` and falls to edge ``i + 2``,
    with ``mel_bands + 2`` edges equally spaced in mel from ``low_hz`` to ``high_hz``; neighbouring
    triangles therefore sum to 1 between the first and the last centre. The DC bin gets no weight (HTK).
    Post-multiplies a magnitude spectrogram (frames, bins) to give (frames, mel_bands).
    """
    if not 0 <= low_hz < high_hz <= sample_rate / 2:
        raise ValueError(f"mel edges must satisfy 0 <= low_hz < high_hz <= Nyquist ({sample_rate / 2} Hz), "
                         f"got {low_hz} and {high_hz}")
    if fft_size < 2 or mel_bands < 1:
        raise ValueError(f"fft_size must be >= 2 and mel_bands >= 1, got {fft_size} and {mel_bands}")
    bin_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2, fft_size // 2 + 1))[:, None]
    edges_mel = np.linspace(hertz_to_mel(low_hz), hertz_to_mel(high_hz), mel_bands + 2)
    lower, centre, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    rising = (bin_mel - lower) / (centre - lower)
    falling = (upper - bin_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


def periodic_hann(window_samples: int) -> np.ndarray:
    """Periodic Hann window (one full cosine period of length ``window_samples``), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(window_samples) / window_samples)


_MEL_MATRIX = mel_filterbank()
_WINDOW = periodic_hann(WINDOW_SAMPLES)
_STFT_CHUNK_FRAMES = 4096  # bounds the framed copy to ~13 MB however long the clip is


def log_mel_spectrogram(audio_16k: np.ndarray) -> np.ndarray:
    """VGGish log-mel spectrogram of mono 16-kHz audio ``(samples,)``: ``(frames, 64)`` float64.

    ``frames = 1 + (samples - 400) // 160``; values are ``log(mel magnitude + 0.01)``.
    """
    x = np.asarray(audio_16k, dtype=np.float64)
    if x.ndim != 1 or x.size < WINDOW_SAMPLES:
        raise ValueError(f"need mono audio of at least {WINDOW_SAMPLES} samples, got shape {x.shape}")
    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW_SAMPLES)[::HOP_SAMPLES]
    out = np.empty((frames.shape[0], MEL_BANDS))
    for start in range(0, frames.shape[0], _STFT_CHUNK_FRAMES):
        chunk = frames[start:start + _STFT_CHUNK_FRAMES] * _WINDOW
        magnitude = np.abs(np.fft.rfft(chunk, n=FFT_SIZE, axis=-1))
        out[start:start + _STFT_CHUNK_FRAMES] = np.log(magnitude @ _MEL_MATRIX + LOG_OFFSET)
    return out


def example_count(samples_16k: int) -> int:
    """Number of 0.96-s examples VGGish gets from ``samples_16k`` samples at 16 kHz (0 when too short)."""
    if samples_16k < MIN_SAMPLES:
        return 0
    frames = 1 + (samples_16k - WINDOW_SAMPLES) // HOP_SAMPLES
    return frames // EXAMPLE_FRAMES


def vggish_examples(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Network input for mono ``audio`` ``(samples,)`` at ``sample_rate`` Hz: ``(N, 1, 96, 64)`` float32.

    Audio at another rate is resampled to 16 kHz with soxr (HQ). ``N = example_count(samples at 16 kHz)``,
    about ``floor(seconds / 0.96)``; trailing audio short of a full example is dropped. Raises ValueError
    for multi-channel, empty, non-finite or too short (< 0.975 s) audio, or a bad rate. Silence is valid.
    """
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"VGGish takes mono audio (samples,), got shape {x.shape}; mix channels first")
    if x.size == 0:
        raise ValueError("audio is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or inf")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    x = x.astype(np.float64)
    if sample_rate != VGGISH_SAMPLE_RATE:
        x = soxr.resample(x, int(sample_rate), VGGISH_SAMPLE_RATE, quality="HQ")
    count = example_count(x.size)
    if count == 0:
        raise ValueError(f"audio of {x.size / VGGISH_SAMPLE_RATE:.3f} s is shorter than the "
                         f"{MIN_SAMPLES / VGGISH_SAMPLE_RATE:.3f} s one VGGish example needs")
    log_mel = log_mel_spectrogram(x)[:count * EXAMPLE_FRAMES]
    return log_mel.reshape(count, 1, EXAMPLE_FRAMES, MEL_BANDS).astype(np.float32)


# ---------------------------------------------------------------------------------------------- network


class VGGishPCA(nn.Module):
    """The release's postprocessing: PCA whitening, clipping to [-2, 2], 8-bit quantisation.

    Args:
        eigen_vectors: (128, 128) matrix, rows are output dimensions (``pca_eigen_vectors``).
        means: (128,) or (128, 1) mean subtracted first (``pca_means``).

    Shape: ``(N, 128)`` raw embeddings -> ``(N, 128)`` float values that are integers in [0, 255].
    The tensors are non-persistent buffers, so a :class:`VGGish` state dict keeps torchvggish's layout.
    """

    def __init__(self, eigen_vectors: torch.Tensor | np.ndarray, means: torch.Tensor | np.ndarray) -> None:
        super().__init__()
        matrix = torch.as_tensor(np.asarray(eigen_vectors), dtype=torch.float32)
        mean = torch.as_tensor(np.asarray(means), dtype=torch.float32).reshape(-1)
        if matrix.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or mean.shape != (EMBEDDING_SIZE,):
            raise ValueError(f"PCA parameters must be ({EMBEDDING_SIZE}, {EMBEDDING_SIZE}) and ({EMBEDDING_SIZE},), "
                             f"got {tuple(matrix.shape)} and {tuple(mean.shape)}")
        if not (torch.isfinite(matrix).all() and torch.isfinite(mean).all()):
            raise ValueError("PCA parameters contain NaN or inf")
        self.register_buffer("eigen_vectors", matrix, persistent=False)
        self.register_buffer("means", mean, persistent=False)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        whitened = (embeddings - self.means) @ self.eigen_vectors.T
        clipped = whitened.clamp(QUANTIZE_MIN, QUANTIZE_MAX)
        return torch.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))


class VGGish(nn.Module):
    """The VGGish network on log-mel examples.

    Args:
        final_relu: apply a ReLU to the 128-d output, as torchvggish does (see the module docstring).

    Shape: ``(N, 1, 96, 64)`` float32 log-mel examples (time x mel) -> ``(N, 128)`` embeddings.

    ``state_dict()`` has torchvggish's keys: ``features.{0,3,6,8,11,13}.{weight,bias}`` for the
    convolutions and ``embeddings.{0,2,4}.{weight,bias}`` for the fully connected layers. ``pca`` holds an
    optional :class:`VGGishPCA`, used by :meth:`postprocess`.
    """

    def __init__(self, final_relu: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for step in _CONV_PLAN:
            if step == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, step, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = step
        self.features = nn.Sequential(*layers)
        # The 128-d layer's ReLU is applied in forward(), so that it can be switched off without
        # changing the Sequential's indices (and so the state-dict keys).
        self.embeddings = nn.Sequential(
            nn.Linear(_FLAT_FEATURES, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_SIZE),
        )
        self.final_relu = final_relu
        self.pca: VGGishPCA | None = None

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        if examples.ndim != 4 or tuple(examples.shape[1:]) != (1, EXAMPLE_FRAMES, MEL_BANDS):
            raise ValueError(f"VGGish expects (N, 1, {EXAMPLE_FRAMES}, {MEL_BANDS}) examples, "
                             f"got {tuple(examples.shape)}")
        x = self.features(examples)  # (N, 512, 6, 4): channels x time x mel
        # Flatten in (time, mel, channel) order, the NHWC order of the TensorFlow original that the
        # converted fully connected weights expect (torchvggish transposes the same way).
        x = x.permute(0, 2, 3, 1).flatten(1)
        x = self.embeddings(x)
        return torch.relu(x) if self.final_relu else x

    def postprocess(self, embeddings: torch.Tensor) -> torch.Tensor:
        """PCA whitening + 8-bit quantisation of ``(N, 128)`` embeddings; needs :attr:`pca`."""
        if self.pca is None:
            raise ValueError("this VGGish has no PCA parameters; pass pca_params_path to load_vggish")
        return self.pca(embeddings)


class VGGishEmbedder:
    """FAD embedder: ``embedder(audio (samples,), sample_rate) -> (N, 128)`` float32 numpy embeddings.

    Args:
        model: a :class:`VGGish` (usually from :func:`load_vggish`); put in eval mode here.
        postprocess: apply the PCA + quantisation (needs ``model.pca``); off by default, as in the FAD
            toolkits, since quantisation throws information away.
        batch_examples: 0.96-s examples per forward pass; bounds memory on long clips.

    The model runs on the device its parameters are on, under ``torch.inference_mode``.
    """

    def __init__(self, model: VGGish, postprocess: bool = False, batch_examples: int = 32) -> None:
        if not isinstance(model, VGGish):
            raise ValueError(f"model must be a VGGish, got {type(model).__name__}")
        if postprocess and model.pca is None:
            raise ValueError("postprocess=True needs PCA parameters; pass pca_params_path to load_vggish")
        if batch_examples < 1:
            raise ValueError(f"batch_examples must be >= 1, got {batch_examples}")
        self.model = model.eval()
        self.postprocess = postprocess
        self.batch_examples = int(batch_examples)
        self.dimension = EMBEDDING_SIZE

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        examples = torch.from_numpy(vggish_examples(audio, sample_rate))
        device = next(self.model.parameters()).device
        outputs = []
        with torch.inference_mode():
            for batch in examples.split(self.batch_examples):
                embeddings = self.model(batch.to(device))
                if self.postprocess:
                    embeddings = self.model.postprocess(embeddings)
                outputs.append(embeddings.float().cpu())
        return torch.cat(outputs).numpy()


# ---------------------------------------------------------------------------------------------- loading


def _numpy_safe_globals() -> list:
    """What unpickling numpy arrays needs, for files (such as a PCA file) that hold numpy arrays.

    Loading stays ``weights_only``: only these array constructors are allowed, never arbitrary code.
    """
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array-unpickling function
    allowed: list = [np.ndarray, np.dtype, (reconstruct, "numpy.core.multiarray._reconstruct"),
                     (reconstruct, "numpy._core.multiarray._reconstruct")]
    for kind in (np.float16, np.float32, np.float64, np.int32, np.int64):
        allowed.append(type(np.dtype(kind)))
    return allowed


def _read_torch_file(path: Path, what: str) -> object:
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types here (UnpicklingError, RuntimeError, KeyError...)
        raise ValueError(f"{what} file {path} could not be read as a PyTorch weights file: {error}") from error


def _as_tensor_dict(content: object, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(content, Mapping) or not content:
        raise ValueError(f"{what} file {path} does not hold a state dict (a mapping of names to tensors), "
                         f"it holds {type(content).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    for name, value in content.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor | np.ndarray):
            raise ValueError(f"{what} file {path} does not hold a state dict: entry {name!r} is a "
                             f"{type(value).__name__}, not a tensor")
        tensors[name] = torch.as_tensor(value)
    return tensors


def _all_finite(tensor: torch.Tensor) -> bool:
    # A float32 sum is ~20x faster than torch.isfinite on the 50M-weight layer; NaN or inf always make
    # it non-finite, and only then (or on overflow of huge finite values) is the exact check needed.
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def load_vggish_pca(path: str | Path) -> VGGishPCA:
    """PCA parameters from torchvggish's ``vggish_pca_params-970ea276.pth`` or Google's ``vggish_pca_params.npz``.

    Both hold ``pca_eigen_vectors`` (128, 128) and ``pca_means`` (128,). Raises ValueError naming the file
    when it is missing, unreadable or lacks those entries.
    """
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise ValueError(f"VGGish PCA file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as archive:
                content: object = {name: archive[name] for name in archive.files}
        except Exception as error:
            raise ValueError(f"VGGish PCA file {path} could not be read as .npz: {error}") from error
    else:
        content = _read_torch_file(path, "VGGish PCA")
    tensors = _as_tensor_dict(content, path, "VGGish PCA")
    missing = [key for key in _PCA_KEYS if key not in tensors]
    if missing:
        raise ValueError(f"VGGish PCA file {path} lacks {', '.join(missing)} (has {', '.join(sorted(tensors))})")
    try:
        return VGGishPCA(tensors["pca_eigen_vectors"], tensors["pca_means"])
    except ValueError as error:
        raise ValueError(f"VGGish PCA file {path}: {error}") from error


def load_vggish(path: str | Path, pca_params_path: str | Path | None = None, device: str | torch.device = "cpu",
                final_relu: bool = True) -> VGGish:
    """A :class:`VGGish` with weights from ``path`` (torchvggish's ``vggish-10086976.pth`` layout), in eval mode.

    Args:
        path: a ``torch.save``-d state dict with torchvggish's keys and shapes. A state dict of a whole
            torchvggish model (with ``pproc.pca_matrix`` and ``pproc.pca_means``) is accepted too; its PCA
            is then used unless ``pca_params_path`` is given.
        pca_params_path: optional PCA file for :meth:`VGGish.postprocess` (see :func:`load_vggish_pca`).
        device: where the model lives ("cpu", "cuda", ...).
        final_relu: see :class:`VGGish`.

    Raises:
        ValueError naming the file: missing file, not a readable weights file, not a state dict, missing
        or unexpected keys, or tensors of the wrong shape.

    The file is read with ``torch.load(weights_only=True)``: loading cannot run code from the file.
    """
    path = Path(path)
    tensors = _as_tensor_dict(_read_torch_file(path, "VGGish weights"), path, "VGGish weights")
    pca = None
    if all(key in tensors for key in _TORCHVGGISH_PCA_KEYS):
        matrix, means = (tensors.pop(key) for key in _TORCHVGGISH_PCA_KEYS)
        try:
            pca = VGGishPCA(matrix, means)
        except ValueError as error:
            raise ValueError(f"VGGish weights file {path}: {error}") from error
    # Shapes from a model on the meta device: no memory, no random initialisation.
    with torch.device("meta"):
        model = VGGish(final_relu=final_relu)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    wrong = [f"{name} is {tuple(tensors[name].shape)}, expected {shape}"
             for name, shape in expected.items() if name in tensors and tuple(tensors[name].shape) != shape]
    if wrong:
        problems.append("wrong shapes: " + "; ".join(wrong))
    bad_values = [name for name, t in tensors.items()
                  if name in expected and (not t.is_floating_point() or not _all_finite(t))]
    if bad_values:
        problems.append(f"non-float or non-finite values in {bad_values}")
    if problems:
        raise ValueError(f"VGGish weights file {path} does not match the torchvggish layout: " + "; ".join(problems))
    state = {name: t.to(torch.float32).contiguous() for name, t in tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if pca_params_path is not None:
        pca = load_vggish_pca(pca_params_path)
    model.pca = pca
    model.requires_grad_(False)
    return model.to(device).eval()


__all__ = [
    "EMBEDDING_SIZE", "MIN_SAMPLES", "VGGISH_SAMPLE_RATE", "VGGish", "VGGishEmbedder", "VGGishPCA", "example_count",
    "hertz_to_mel", "load_vggish", "load_vggish_pca", "log_mel_spectrogram", "mel_filterbank", "periodic_hann",
    "vggish_examples",
]
