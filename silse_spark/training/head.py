"""Refit a trained model's code layer on frozen features: which 48 directions stay put under copying?

The code is ``sign(W f + b)`` of the last hidden features ``f`` (``fc_256``).
A bit survives an alteration when the copy's projection stays on the same
side of the threshold as the original's, so a good direction ``w`` spreads
different images far apart (between-image scatter ``S_b``) while moving little
between an image and its altered copies (within scatter ``S_w``, of
copy - original feature differences). The best directions for that ratio are
the leading generalised eigenvectors of ``S_b w = l S_w w`` (linear
discriminant analysis with every image its own class); they are uncorrelated
over images, so their bits are close to independent. Each threshold is the
median projection of the originals (every bit balanced), and ``W`` is scaled
so that a copy moves a logit by about 1 on average.

The trunk is unchanged, so the refitted model is the same architecture with
another last layer: the Spark job, the registry and the golden-codes test
need nothing new. Fitting takes minutes on a CPU (forward passes only, then a
256x256 eigenproblem).

Run ``python -m silse_spark.training.head --base silse-v1 --data work/training --copies 4``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from silse_spark.codes import CODE_BITS
from silse_spark.training.validate import families_argument

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

FEATURE_LAYER = "fc_256"


def feature_model(model: keras.Model, layer: str = FEATURE_LAYER) -> keras.Model:
    """``model`` cut at ``layer``: uint8-valued float pixels -> that layer's output."""
    import keras

    return keras.Model(model.inputs, model.get_layer(layer).output)


def features(model: keras.Model, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
    out = [np.asarray(model.predict_on_batch(pixels[i : i + batch_size].astype(np.float32)), dtype=np.float64)
           for i in range(0, len(pixels), batch_size)]
    return np.concatenate(out)


def copy_features(model: keras.Model, canvases: np.ndarray, families: Sequence[str], copies: int, seed: int,
                  layer: str = FEATURE_LAYER, framing: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """``layer``'s features of every canvas ``(n, d)`` and of ``copies`` altered copies each ``(n, copies, d)``.

    ``framing``: the model version's (``ModelSpec.framing``), applied to originals and copies alike.
    """
    from PIL import Image

    from silse_spark.training.pairs import altered, to_input

    rng = np.random.default_rng(seed)
    feats = feature_model(model, layer)
    base = []
    moved = []
    chunk = 512
    for start in range(0, len(canvases), chunk):
        block = np.asarray(canvases[start : start + chunk])
        base.append(features(feats, np.stack([to_input(Image.fromarray(c, "RGB"), framing) for c in block])))
        altered_block = np.stack([altered(c, families, rng, framing=framing) for c in block for _ in range(copies)])
        moved.append(features(feats, altered_block).reshape(len(block), copies, -1))
        log.info("features of %d / %d images", min(start + chunk, len(canvases)), len(canvases))
    return np.concatenate(base), np.concatenate(moved)


def fit_directions(base: np.ndarray, moved: np.ndarray, ridge: float = 1e-3, bits: int = CODE_BITS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W (d, bits), b (bits,), ratios (bits,))``: the most copy-stable balanced projections.

    ``ridge`` is added to the within scatter in units of its mean diagonal
    (features that never move under copying would otherwise get infinite
    weight from a handful of images).

    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(400, 6)) * [5, 5, 1, 1, 1, 1]
    >>> moved = base[:, None, :] + rng.normal(size=(400, 3, 6)) * [0.1, 1, 1, 1, 1, 1]
    >>> W, b, ratio = fit_directions(base, moved, bits=2)
    >>> int(np.argmax(np.abs(W[:, 0])))   # the direction that spreads images and barely moves
    0
    >>> bool(ratio[0] > ratio[1])
    True
    """
    diffs = (moved - base[:, None, :]).reshape(-1, base.shape[1])
    s_w = diffs.T @ diffs / len(diffs)
    s_b = np.cov(base, rowvar=False)
    s_w += ridge * np.trace(s_w) / len(s_w) * np.eye(len(s_w))
    from scipy.linalg import eigh

    ratios, vecs = eigh(s_b, s_w)
    order = np.argsort(ratios)[::-1][:bits]
    w = vecs[:, order]
    spread = np.sqrt(np.einsum("ik,ij,jk->k", w, s_w, w))  # copy movement of each projection
    w = w / spread
    proj = base @ w
    b = -np.median(proj, axis=0)
    return w, b, ratios[order]


def set_code_layer(model: keras.Model, w: np.ndarray, b: np.ndarray) -> None:
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    if kernel.shape != w.shape:
        raise ValueError(f"code layer kernel is {kernel.shape}, the fitted one {w.shape}")
    head.set_weights([w.astype(kernel.dtype), b.astype(bias.dtype)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Refit a model's code layer on copy-stable directions.")
    parser.add_argument("--base", default="silse-v1", help="registered model version whose trunk is kept")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="training images used (default all)")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--families", type=families_argument, default="seed",
                        help="'seed', 'all' or a comma-separated list")
    parser.add_argument("--ridge", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None, help="keep/reuse the features here (.npz)")
    parser.add_argument("--weights-out", type=Path, default=None)
    parser.add_argument("--validate", type=int, default=500, help="validation images for the report (0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from silse_spark.model import get_model_spec, load_model
    from silse_spark.training.validate import parse_families, validation_report

    families: list[str] = args.families
    model = load_model(args.base)
    framing = get_model_spec(args.base).framing
    started = time.time()
    if args.cache and args.cache.is_file():
        cached = np.load(args.cache)
        base, moved = cached["base"], cached["moved"]
    else:
        canvases = np.load(args.data / "train.npy", mmap_mode="r")[: args.limit]
        base, moved = copy_features(model, canvases, families, args.copies, args.seed, framing=framing)
        if args.cache:
            np.savez(args.cache, base=base, moved=moved)
    log.info("features %s + %s in %.0f s", base.shape, moved.shape, time.time() - started)
    w, b, ratios = fit_directions(base, moved, args.ridge)
    log.info("ratios %s", np.round(ratios, 1).tolist())
    set_code_layer(model, w, b)
    if args.weights_out:
        model.save_weights(str(args.weights_out))
    if args.validate:
        canvases = np.load(args.data / "val.npy", mmap_mode="r")[: args.validate]
        report: dict[str, Any] = validation_report(model, canvases, parse_families("seed"), framing=framing)
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
