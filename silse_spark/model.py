"""The silse hashing network: architectures built in code, weights loaded by version.

Only weights are ever loaded from disk. The architecture is rebuilt here from
code (no model config is deserialised, no Lambda layer, no pickle), and the
weights file's SHA-256 is checked against the registry before Keras opens it.

Architectures
-------------
``seed``
    The original design (``silse-design.md``): 108x108x3 input scaled to
    (-1, 1) by a ``Rescaling`` layer, nine 3x3 ReLU convolutions (64, 64, 64,
    then 128 x 6) with stride 2 on conv2d_3/6/9, a batch norm after each
    stride-2 convolution, flatten and a 48-unit sigmoid head.
    2,092,976 parameters, 640 of them non-trainable.

Other architectures register themselves in :data:`ARCHITECTURES`.

Views
-----
A registered version may name several *views* of its input (:data:`VIEWS`):
its outputs are then the mean of the network's outputs on each view, computed
in one forward pass over the views stacked in the batch. ``identity`` +
``hflip`` makes the code of an image and of its left-right mirror image the
same by construction, at twice the network's cost per image.

Keras 3 only: the same code runs under the TensorFlow backend (production,
CPU) and under JAX (training on a GPU machine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keras is imported lazily so Spark drivers need not load it
    import keras

from silse_spark.codes import CODE_BITS

log = logging.getLogger(__name__)

VIEWS = ("identity", "hflip")
"""Views of the input a model version may average its outputs over (``hflip``: mirrored left to right)."""

INPUT_SIZE = 108
"""Height and width of the model input, in pixels."""

PACKAGED_MODELS_DIR = Path(__file__).resolve().parent / "models"
MODELS_DIR = PACKAGED_MODELS_DIR  # where shipped weights and registry.json live
MODELS_DIR_ENV = "SILSE_MODELS_DIR"
"""Environment variable naming another models directory (with its own registry.json);
used by tests for stand-in models. Weights there are SHA-256 checked the same way."""


def models_dir() -> Path:
    """The directory holding ``registry.json`` and the weights files."""
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override) if override else PACKAGED_MODELS_DIR


def registry_file() -> Path:
    return models_dir() / "registry.json"


class UnknownModelError(ValueError):
    """A model version or architecture name is not registered."""


class ModelIntegrityError(ValueError):
    """A weights file is missing or its SHA-256 does not match the registry."""


def _build_seed(keras_mod: Any) -> keras.Model:
    layers = keras_mod.layers
    inputs = keras_mod.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="universal_input")
    # (x / 127.5) - 1 maps 0..255 pixels onto [-1, 1] without a Lambda layer.
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="color_preprocessing")(inputs)
    spec = [(64, 1), (64, 1), (64, 2), (128, 1), (128, 1), (128, 2), (128, 1), (128, 1), (128, 2)]
    for i, (filters, stride) in enumerate(spec, start=1):
        x = layers.Conv2D(
            filters, 3, strides=stride, padding="same", activation="relu", name=f"conv2d_{i}"
        )(x)
        if stride == 2:
            x = layers.BatchNormalization(name=f"batch_normalization_{i // 3}")(x)
    x = layers.Flatten(name="flatten_layer")(x)
    outputs = layers.Dense(CODE_BITS, activation="sigmoid", name="fc2_160", dtype="float32")(x)
    return keras_mod.Model(inputs, outputs, name="silse_seed")


ARCHITECTURES: dict[str, Callable[[Any], keras.Model]] = {"seed": _build_seed}
"""Architecture name -> builder taking the ``keras`` module."""


def build_model(architecture: str = "seed") -> keras.Model:
    """Build an untrained silse model.

    Parameters
    ----------
    architecture
        A key of :data:`ARCHITECTURES`.

    Examples
    --------
    >>> build_model("seed").count_params()  # doctest: +SKIP
    2092976
    """
    if architecture not in ARCHITECTURES:
        raise UnknownModelError(
            f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}"
        )
    import keras

    return ARCHITECTURES[architecture](keras)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model version: which architecture, which weights file."""

    version: str
    architecture: str
    weights: str
    sha256: str
    description: str = ""
    framing: str = "none"
    views: tuple[str, ...] = ("identity",)

    @property
    def weights_path(self) -> Path:
        return models_dir() / self.weights


def _read_registry() -> dict[str, Any]:
    path = registry_file()
    if not path.is_file():
        raise UnknownModelError(
            f"no model registry at {path}; reinstall the package (weights ship in silse_spark/models) "
            f"or unset {MODELS_DIR_ENV}"
        )
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def default_model_version() -> str:
    """The version ``jobs/hash_all.py`` uses when ``--model`` is not given."""
    return str(_read_registry()["default"])


def version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders numbered releases by number (``r2`` before ``r10``).

    >>> sorted(["silse-v1f-r10", "silse-v1f", "silse-v1f-r2", "silse-seed-r1"], key=version_order)
    ['silse-seed-r1', 'silse-v1f', 'silse-v1f-r2', 'silse-v1f-r10']
    """
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", version))


def available_model_versions() -> list[str]:
    """All registered model versions, releases in numeric order (``r2`` before ``r10``)."""
    return sorted(_read_registry()["models"], key=version_order)


def get_model_spec(version: str | None = None) -> ModelSpec:
    """Look up a model version (default: the registry's default).

    Raises
    ------
    UnknownModelError
        If the version is not in ``silse_spark/models/registry.json``.
    """
    registry = _read_registry()
    version = version or registry["default"]
    models = registry["models"]
    if version not in models:
        raise UnknownModelError(
            f"unknown model version {version!r}; available: {sorted(models)}. "
            "Pass one of them with --model, or register new weights in "
            f"{registry_file()}"
        )
    entry = models[version]
    from silse_spark.framing import FRAMINGS

    if entry.get("framing", "none") not in FRAMINGS:
        raise UnknownModelError(
            f"model version {version!r} asks for framing {entry['framing']!r}, which this silse does not know "
            f"(expected one of {FRAMINGS}); upgrade silse_spark or fix {registry_file()}"
        )
    views = tuple(entry.get("views", ["identity"]))
    if not views or len(set(views)) != len(views) or not set(views) <= set(VIEWS):
        raise UnknownModelError(
            f"model version {version!r} asks for views {list(views)!r}; expected distinct names from {VIEWS}, "
            f"at least one; upgrade silse_spark or fix {registry_file()}"
        )
    return ModelSpec(
        version=version,
        architecture=entry["architecture"],
        weights=entry["weights"],
        sha256=entry["sha256"],
        description=entry.get("description", ""),
        framing=entry.get("framing", "none"),
        views=views,
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(spec: ModelSpec) -> Path:
    """Check that the weights file exists and matches its registered SHA-256.

    Raises
    ------
    ModelIntegrityError
        Naming the expected and actual digest, so a tampered or truncated
        file is never loaded.
    """
    path = spec.weights_path
    if not path.is_file():
        raise ModelIntegrityError(
            f"weights for model {spec.version!r} not found at {path}; "
            "reinstall the package or restore the file from git"
        )
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ModelIntegrityError(
            f"weights for model {spec.version!r} at {path} failed the SHA-256 check: "
            f"expected {spec.sha256}, got {actual}. The file is corrupt or was replaced; "
            "restore it from git or register the new digest deliberately"
        )
    return path


def load_model(version: str | None = None) -> keras.Model:
    """Build the registered architecture and load its verified weights."""
    spec = get_model_spec(version)
    path = verify_weights(spec)
    model = build_model(spec.architecture)
    model.load_weights(str(path))
    log.info("loaded model %s (%s) from %s", spec.version, spec.architecture, path)
    return model


def _producer(tensor: Any) -> Any:
    """The layer that made a symbolic Keras tensor."""
    return tensor._keras_history.operation


def fold_batch_norms(model: keras.Model, dtype: str = "float32") -> keras.Model:
    """An inference copy of ``model`` with each batch norm folded into the convolution before it.

    A ``Conv2D`` or ``SeparableConv2D`` without activation whose only consumer
    is a ``BatchNormalization`` becomes one biased convolution: kernel scaled
    by ``gamma / sqrt(var + eps)`` (the pointwise kernel for separable ones),
    bias ``beta - mean * gamma / sqrt(var + eps)``; the batch norm becomes a
    pass-through. Batch norms after an activation (the seed's) stay as they
    are, since folding them across zero padding would not be exact. Outputs
    agree with ``model`` to float32 rounding (tested), and the copy is
    inference only.

    ``dtype`` sets every layer but the float32 code head, e.g. ``"bfloat16"``
    for the benchmark's reduced-precision measurement.
    """
    import keras
    import numpy as np

    conv_types = (keras.layers.Conv2D, keras.layers.SeparableConv2D)
    consumers: Counter[int] = Counter()  # id of a layer -> how many layers take its output
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        consumers.update(id(_producer(t)) for t in inputs)
    folded: dict[str, Any] = {}  # conv name -> (gamma/std, bias)
    skipped: set[str] = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer.input)
        if (isinstance(conv, conv_types) and consumers.get(id(conv)) == 1
                and conv.get_config().get("activation") == "linear" and layer.center and layer.scale):
            gamma, beta, mean, var = (np.asarray(w, np.float64) for w in layer.get_weights())
            scale = gamma / np.sqrt(var + layer.epsilon)
            bias = beta - mean * scale
            if conv.use_bias:
                bias = bias + np.asarray(conv.get_weights()[-1], np.float64) * scale
            folded[conv.name] = (scale, bias)
            skipped.add(layer.name)

    class FoldedAway(keras.layers.Layer):  # the batch norm's place: passes its input through
        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return inputs

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if layer.name in skipped:
            return FoldedAway(name=layer.name, dtype=dtype)
        if layer.dtype_policy.name == "float32" and layer.name != model.layers[-1].name:
            config["dtype"] = dtype
        if layer.name in folded:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, copy.layers):
        weights = old.get_weights()
        if old.name in skipped or not weights:
            continue
        if old.name in folded:
            scale, bias = folded[old.name]
            kernels = [np.asarray(w) for w in (weights[:-1] if old.use_bias else weights)]
            kernels[-1] = (kernels[-1] * scale).astype(np.float32)  # output channels are the last axis
            weights = [*kernels, bias.astype(np.float32)]
        new.set_weights(weights)
    return copy


def _view(ops: Any, x: Any, name: str) -> Any:
    """One of :data:`VIEWS` of an NHWC batch."""
    return ops.flip(x, axis=2) if name == "hflip" else x


def inference_function(model: keras.Model, views: tuple[str, ...] = ("identity",)) -> Callable[[Any], Any]:
    """``model``'s forward pass as one compiled call: ``f(uint8 or float32 batch) -> outputs``.

    Under TensorFlow a ``tf.function`` of the model called directly, with the
    pixels cast to float32 inside the graph (a uint8 batch crosses into
    TensorFlow at a quarter of the bytes); this skips ``predict_on_batch``'s
    per-call data-adapter work. Elsewhere ``predict_on_batch`` on float32.
    With several ``views`` the outputs are their mean: the views of a batch
    are stacked into one batch of ``len(views)`` times its size.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def forward(x: Any) -> Any:
            x = tf.cast(x, tf.float32)
            if views == ("identity",):
                return model(x, training=False)
            out = model(tf.concat([_view(tf.experimental.numpy, x, v) for v in views], axis=0), training=False)
            return tf.reduce_mean(tf.stack(tf.split(out, len(views), axis=0)), axis=0)

        return tf.function(forward, reduce_retracing=True)  # type: ignore[no-any-return]

    return lambda x: predict_views(model, x, views)


def predict_views(model: keras.Model, pixels: Any, views: tuple[str, ...] = ("identity",)) -> Any:
    """``model.predict_on_batch`` over ``views`` of a batch (stacked into one batch), averaged."""
    import numpy as np

    x = np.asarray(pixels, dtype=np.float32)
    out = np.asarray(model.predict_on_batch(np.concatenate([_view(np, x, v) for v in views])))
    return out.reshape(len(views), len(x), *out.shape[1:]).mean(axis=0)


def configure_threads(num_threads: int) -> None:
    """Limit the backend's CPU threads, e.g. to ``spark.task.cpus``.

    Must run before the first TensorFlow operation of the process; later
    calls are ignored (TensorFlow refuses to change threads once started).
    """
    if num_threads < 1:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(num_threads))
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, num_threads)))
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread settings left as they are")


class TwinHasher:
    """Batched inference: uint8 pixel arrays in, model outputs out.

    Parameters
    ----------
    version
        Registered model version; ``None`` for the default.
    batch_size
        Images per forward pass.
    """

    def __init__(self, version: str | None = None, batch_size: int = 64) -> None:
        self.spec = get_model_spec(version)
        self.model = load_model(self.spec.version)
        self.batch_size = batch_size
        # Batch norms folded into their convolutions and one compiled call per batch (over the
        # version's views): the same codes as ``self.model`` at a fraction of the cost (make bench).
        self.forward = inference_function(fold_batch_norms(self.model), self.spec.views)

    @property
    def version(self) -> str:
        return self.spec.version

    def outputs(self, pixels: Any) -> Any:
        """Sigmoid outputs ``(n, 48)`` for uint8 images ``(n, 108, 108, 3)``."""
        import numpy as np

        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or pixels.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"expected images of shape (n, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {pixels.shape}; "
                "decode them with silse_spark.decode.decode_avatar first"
            )
        if len(pixels) == 0:
            return np.zeros((0, CODE_BITS), dtype=np.float32)
        out = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                # Pad to the fixed batch shape: a new shape would retrace the compiled forward pass.
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), chunk.dtype)])
            out.append(np.asarray(self.forward(chunk), dtype=np.float32)[:n])
        return np.concatenate(out, axis=0)


@lru_cache(maxsize=4)
def cached_hasher(version: str | None = None, batch_size: int = 64) -> TwinHasher:
    """One :class:`TwinHasher` per (version, batch size) per Python process."""
    return TwinHasher(version, batch_size)


BLUR_KERNEL = ((1, 2, 1), (2, 4, 2), (1, 2, 1))
"""The binomial low-pass filter of ``v1aa`` (divided by 16): ``[1, 2, 1]`` outer ``[1, 2, 1]``."""


def binomial_blur(shape: tuple[int, ...]) -> Any:
    """A ``(3, 3, channels, 1)`` depthwise kernel: :data:`BLUR_KERNEL` / 16 for every channel.

    >>> binomial_blur((3, 3, 2, 1))[:, :, 1, 0].tolist()
    [[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]]
    """
    import numpy as np

    kernel = np.asarray(BLUR_KERNEL, dtype=np.float32) / 16.0
    return np.ascontiguousarray(np.broadcast_to(kernel[:, :, None, None], shape), dtype=np.float32)


def _build_v1(keras_mod: Any, blur_before: tuple[str, ...] = ()) -> keras.Model:
    """silse-v1: the seed's input contract at a fraction of its CPU cost.

    Downsamples at the first layer (the seed's full-resolution 64-channel
    convolutions are ~80% of its work), uses a separable convolution at 14x14,
    and keeps a coarse spatial layout (flatten of 7x7) so different drawings
    stay apart. About 20x fewer multiply-adds than ``seed``.

    ``blur_before`` (``v1aa``) names stride-2 convolutions whose input is first
    low-passed by a fixed depthwise :func:`binomial_blur` (not trained), layer
    ``blur_<name>``; every other layer keeps v1's name and shape.
    """
    layers = keras_mod.layers
    inputs = keras_mod.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="universal_input")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="color_preprocessing")(inputs)

    def blurred(x: Any, name: str) -> Any:
        if name not in blur_before:
            return x
        blur = layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name=f"blur_{name}")
        x = blur(x)
        blur.set_weights([binomial_blur(tuple(blur.kernel.shape))])  # set, not an initializer: clones keep it
        return x

    spec = [("stem", 32, 5, 2), ("conv_2", 64, 3, 2), ("conv_3", 64, 3, 1), ("conv_4", 128, 3, 2)]
    for name, filters, kernel, stride in spec:
        x = blurred(x, name)
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.SeparableConv2D(128, 3, padding="same", use_bias=False, name="sep_5")(x)
    x = layers.BatchNormalization(name="sep_5_bn")(x)
    x = layers.ReLU(name="sep_5_relu")(x)
    x = blurred(x, "conv_6")
    x = layers.Conv2D(192, 3, strides=2, padding="same", use_bias=False, name="conv_6")(x)
    x = layers.BatchNormalization(name="conv_6_bn")(x)
    x = layers.ReLU(name="conv_6_relu")(x)
    x = layers.Flatten(name="flatten_layer")(x)
    x = layers.Dense(256, activation="relu", name="fc_256")(x)
    outputs = layers.Dense(CODE_BITS, activation="sigmoid", name="code", dtype="float32")(x)
    return keras_mod.Model(inputs, outputs, name="silse_v1aa" if blur_before else "silse_v1")


ARCHITECTURES["v1"] = _build_v1


def _build_v1aa(keras_mod: Any) -> keras.Model:
    """silse-v1aa: v1 with anti-aliased downsampling (Zhang, "Making convolutional networks shift-invariant
    again", 2019) at its three inner stride-2 convolutions.

    ``conv_2``, ``conv_4`` and ``conv_6`` sample their input every other pixel;
    a sub-pixel move of the frame (recompression, a turn) then moves what the
    7x7 flatten reads. Each gets a fixed binomial blur first. Same trainable
    weights as v1, layer for layer (``TrainConfig.init_trunk`` copies them
    all); the three depthwise blurs add 1.49 M multiply-adds to v1's 78.5 M
    (1.9%, counted from the layers' output shapes).
    """
    return _build_v1(keras_mod, blur_before=("conv_2", "conv_4", "conv_6"))


ARCHITECTURES["v1aa"] = _build_v1aa


def _build_v1p(keras_mod: Any) -> keras.Model:
    """silse-v1p: the v1 trunk, layer for layer, with a pooled head instead of flatten.

    v1's flatten gives each of the 7x7 cells its own weights in ``fc_256``, so
    a shift of 10% (about one cell) moves features onto other weights; shift,
    crop, border and combined copies are where v1 loses most. Here the
    192-channel 7x7 map is summarised by global average and global max pooling
    (384 values, unchanged when the drawing moves inside the frame) before the
    same ``fc_256`` -> 48 head. Every trunk layer keeps v1's name and shape, so
    training can start from ``silse-v1``'s trunk (``TrainConfig.init_trunk``);
    same cost per image as v1 (the head is 10x smaller).
    """
    v1 = _build_v1(keras_mod)
    layers = keras_mod.layers
    trunk = v1.get_layer("conv_6_relu").output
    pooled = layers.Concatenate(name="pool_concat")([
        layers.GlobalAveragePooling2D(name="avg_pool")(trunk),
        layers.GlobalMaxPooling2D(name="max_pool")(trunk),
    ])
    x = layers.Dense(256, activation="relu", name="fc_256")(pooled)
    outputs = layers.Dense(CODE_BITS, activation="sigmoid", name="code", dtype="float32")(x)
    return keras_mod.Model(v1.inputs, outputs, name="silse_v1p")


ARCHITECTURES["v1p"] = _build_v1p


def _build_v2(keras_mod: Any) -> keras.Model:
    """silse-v2 candidate: the v1 trunk with a translation-tolerant head.

    v1 flattens its 7x7 feature map, so a 10% shift (about one cell) moves
    every feature to another weight of the dense head and flips bits. v2 ends
    with global average and global max pooling of a wider 7x7 map (both are
    unchanged when the drawing moves inside the frame), then the same
    dense 256 -> 48 head. A second separable block at 14x14 and one at 7x7
    widen the receptive field so that pooled features still encode layout.
    """
    layers = keras_mod.layers
    inputs = keras_mod.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="universal_input")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="color_preprocessing")(inputs)

    def block(x: Any, name: str, filters: int, kernel: int = 3, stride: int = 1, separable: bool = False) -> Any:
        conv = layers.SeparableConv2D if separable else layers.Conv2D
        x = conv(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    x = block(x, "stem", 32, kernel=5, stride=2)          # 54x54
    x = block(x, "conv_2", 64, stride=2)                  # 27x27
    x = block(x, "conv_3", 64)
    x = block(x, "conv_4", 128, stride=2)                 # 14x14
    x = block(x, "sep_5", 128, separable=True)
    x = block(x, "sep_6", 128, separable=True)
    x = block(x, "conv_7", 256, stride=2)                 # 7x7
    x = block(x, "sep_8", 256, separable=True)
    pooled = layers.Concatenate(name="pool_concat")([
        layers.GlobalAveragePooling2D(name="avg_pool")(x),
        layers.GlobalMaxPooling2D(name="max_pool")(x),
    ])
    x = layers.Dense(256, activation="relu", name="fc_256")(pooled)
    outputs = layers.Dense(CODE_BITS, activation="sigmoid", name="code", dtype="float32")(x)
    return keras_mod.Model(inputs, outputs, name="silse_v2")


ARCHITECTURES["v2"] = _build_v2
