"""Write tests/golden/crafx.npz: the authors' Keras CRAFx (DL-AFx) run on a fixed input with fixed weights.

Reference: mchijmma/DL-AFx at c7de3b46ba98acd90c3e2deff49e8e62ea14cf83, the last commit holding all of
``src/`` (the next commits deleted ``Config.py``, ``Layers.py`` and then the rest, one file a commit; the
CRAFx code itself is unchanged up to be887d1, which lacks ``Layers.py``). Its README pins
tensorflow-gpu 1.11 and keras 2.2.4, which no longer install on a current Python; this script runs the
unmodified reference files on TensorFlow 2.15's built-in Keras 2 with the import-time shims listed in
:func:`_shim` (each one restores what TF 1.11 / Keras 2.2.4 did). Usage, in a separate virtual
environment (never the project's own)::

    git clone https://github.com/mchijmma/DL-AFx /tmp/DL-AFx && git -C /tmp/DL-AFx checkout c7de3b4
    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1 "scipy<1.13" librosa scikit-learn
    /tmp/tfenv/bin/python tests/golden/make_crafx.py /tmp/DL-AFx/src

A small network: ``models.CRAFx(win_length=1024, filters=8, kernel_size_1=16)`` (its 4 context frames
each side and 64 pooled steps per frame are fixed in the reference; the pooling is then 16), with Keras's own
seeded initialisation and every bias (zero there) drawn at random so that it matters. The input is a
guitar-like note plus noise, 4608 samples, cut by the reference's ``GeneratorContext`` (10 frames of
1024 at hop 512, 4 zero frames around). Saved: the weights under their Keras layer names, the input, the
centre frames the generator made, the per-frame model output (``model.predict``), its overlap-add by
``Utils.overlap(..., windowing=True, rate=2)`` as ``Evaluate.py`` does, and the parameter count of the
full-size reference model (``CRAFx(4096, 32, 64)``). tests/test_model_parity.py::test_crafx_matches_the_keras_golden
loads the weights into ours and compares.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import numpy as np

WIN, FILTERS, KERNEL, CONTEXT = 1024, 8, 16, 4
LENGTH = 9 * WIN // 2  # 10 frames at hop 512


def _shim() -> None:
    """Make the TF-1.11/Keras-2.2.4 reference import and run on TF 2.15 without editing its files.

    1. Graph mode and v1 tensor shapes, as TF 1: ``x.shape[-1].value`` (``se_fn``) needs Dimension objects.
    2. ``tf.ConfigProto``/``tf.Session`` (``Models.py``'s first lines) live in ``tf.compat.v1``.
    3. Keras 2.2.4 names moved in Keras 2.15: ``keras.engine.Layer``/``InputSpec``, ``keras.utils.conv_utils``,
       ``K.set_session``, ``K.normalize_data_format``, ``K.common.normalize_data_format``. ``Layer`` gets back
       the ``trainable_weights`` setter Keras 2.2.4 had (``Conv1D_tied.build`` assigns it).
    4. ``keras.layers.LSTM``'s default ``recurrent_activation`` is ``'hard_sigmoid'`` as in Keras 2.2.4
       (Keras 2.3 changed it to ``'sigmoid'``); the reference leaves it at the default.
    5. ``Conv1D_tied.call`` passes ``strides=((1,), (1,))`` to ``K.conv2d``: TF 1.11 took it, TF 2.15 wants
       ``(1, 1)`` (the same strides).
    6. ``Conv1D_tied.call`` tests ``if self.bias:``. TF 1.11's variables were plain objects, always true;
       TF 2's resource variables read their value (impossible in a graph): they are made true again, and
       the reference's layers are not passed through AutoGraph (Keras 2.2.4 had none; it would turn the
       ``if`` into a ``tf.cond`` on the bias values).
    7. ``Adam(lr=...)`` (``Models.py`` compiles each model) is the legacy optimizer in Keras 2.15.
    """
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.disable_v2_tensorshape()
    tf.ConfigProto = tf.compat.v1.ConfigProto
    tf.Session = tf.compat.v1.Session
    from tensorflow.python.ops import resource_variable_ops

    resource_variable_ops.BaseResourceVariable.__bool__ = lambda self: True

    import keras
    import keras.backend as K
    from keras.src.engine import base_layer_utils
    from keras.src.utils import conv_utils

    K.set_session = tf.compat.v1.keras.backend.set_session
    K.normalize_data_format = conv_utils.normalize_data_format
    K.common = types.SimpleNamespace(normalize_data_format=conv_utils.normalize_data_format)
    keras.utils.conv_utils = conv_utils

    class Layer(keras.layers.Layer):
        @property
        def trainable_weights(self):
            return super().trainable_weights

        @trainable_weights.setter
        def trainable_weights(self, weights):
            self._trainable_weights = list(weights)

    engine = types.ModuleType("keras.engine")
    engine.Layer, engine.InputSpec = Layer, keras.layers.InputSpec
    sys.modules["keras.engine"] = engine
    keras.engine = engine

    class LSTM(keras.layers.LSTM):
        def __init__(self, units, recurrent_activation="hard_sigmoid", **kwargs):
            super().__init__(units, recurrent_activation=recurrent_activation, **kwargs)

    keras.layers.LSTM = LSTM

    conv2d = K.conv2d

    def conv2d_int_strides(x, kernel, strides=(1, 1), *args, **kwargs):
        strides = tuple(int(s[0]) if isinstance(s, tuple) else int(s) for s in strides)
        return conv2d(x, kernel, strides, *args, **kwargs)

    K.conv2d = conv2d_int_strides
    is_subclassed = base_layer_utils.is_subclassed
    base_layer_utils.is_subclassed = lambda layer: is_subclassed(layer) and layer.__module__ != "Layers"
    keras.optimizers.Adam = keras.optimizers.legacy.Adam


def _guitar_like(length: int, sample_rate: float = 16000.0) -> np.ndarray:
    """A plucked A2 (decaying harmonics) from sample 300 on, plus a little seeded noise; peak about 0.6."""
    rng = np.random.default_rng(7)
    t = np.arange(length) / sample_rate
    onset = np.clip(t - 300 / sample_rate, 0.0, None)
    note = sum(np.sin(2 * np.pi * 110.0 * h * onset + h) * np.exp(-onset * 3.0 * h) / h for h in range(1, 9))
    note = np.where(t * sample_rate >= 300, note, 0.0)
    return (0.4 * note + 0.02 * rng.standard_normal(length)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="DL-AFx's src/ folder at c7de3b4 (Models.py, Layers.py, Utils.py)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("crafx.npz"))
    args = parser.parse_args()
    _shim()
    sys.path.insert(0, str(args.reference))
    import keras.backend as K
    import tensorflow as tf

    models = importlib.import_module("Models")  # before Layers, which imports Models (that imports Layers)
    layers = importlib.import_module("Layers")
    utils = importlib.import_module("Utils")

    # The full-size model's parameter count (the tied decoder lists the front-end's kernel again: count once).
    full = models.CRAFx(4096, 32, 64, 1e-4)
    original_parameters = sum(int(np.prod(v.shape)) for v in {id(v): v for v in full.trainable_weights}.values())
    K.clear_session()

    np.random.seed(0)  # noqa: NPY002 (NumPy's global state, in case Keras draws from it)
    tf.compat.v1.set_random_seed(0)
    model = models.CRAFx(WIN, FILTERS, KERNEL, 1e-4)
    lstm = model.get_layer("birnn_in").forward_layer
    assert lstm.recurrent_activation.__name__ == "hard_sigmoid", lstm.recurrent_activation
    assert model.get_layer("birnn_2").forward_layer.activation.__name__ == "linear"
    rng = np.random.default_rng(1)
    arrays = {}
    seen = set()
    for layer in model.layers:
        for weight in layer.weights:
            if id(weight) in seen:  # the tied decoder's copy of the front-end kernel
                continue
            seen.add(id(weight))
            value = K.get_value(weight)
            if weight.name.split("/")[-1].startswith("bias"):
                value = value + rng.normal(0.0, 0.1, value.shape).astype(np.float32)
                K.set_value(weight, value)
            arrays["keras/" + weight.name.removesuffix(":0")] = value

    x = _guitar_like(LENGTH)
    generator = layers.GeneratorContext(x[None, :, None], x[None, :, None], CONTEXT, WIN, WIN // 2)
    batch = generator[0][0]  # (frames, 2·context + 1, WIN, 1), zero frames around
    frames_out = model.predict(batch, batch_size=len(batch))  # (frames, WIN, 1)
    signal_out = utils.overlap(frames_out, LENGTH, WIN, WIN // 2, windowing=True, rate=2)
    # How much of each SAAF's input lies inside its quadratic segments (so that they are exercised).
    probe = K.function([model.input], [model.get_layer("birnn_2").output, model.get_layer("dense_out").output])
    for name, value in zip(("saaf_1", "saaf_out"), probe([batch]), strict=True):
        inside = np.mean(np.abs(value) < 0.2)
        print(f"{name} input: {inside:.0%} within [-0.2, 0.2], std {value.std():.3f}")
    np.savez_compressed(args.out, input=x, frames=batch[:, CONTEXT, :, 0], frame_output=frames_out[..., 0],
                        output=signal_out, original_parameters=np.int64(original_parameters),
                        config=np.array([WIN, FILTERS, KERNEL, CONTEXT]), **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(batch)} frames of {WIN}; "
          f"full-size reference: {original_parameters} parameters")


if __name__ == "__main__":
    main()
