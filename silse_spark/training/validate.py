"""Validation of a trained model on the held-out split (``val.npy``): do copies keep their code?

For ``--limit`` validation images (held-out source groups, never trained on)
and every variation family, one altered copy per image is made with a fixed
seed. Reported, per family: exact-code recall (copy's twin value equals the
original's), recall within 2 bits and the mean Hamming distance. Over the
distinct originals: the false-match rate at exact code (share of image pairs
with identical codes) and within 2 bits, bit balance, and effective bits.

Effective bits is the participation ratio of the eigenvalues of the bits'
covariance matrix, ``(sum l)^2 / sum l^2``: 48 for independent balanced
bits, 1 when all bits are copies of one bit, lower for constant bits. Also
reported: the sum of per-bit entropies and the number of distinct codes.

Run ``python -m silse_spark.training.validate --version silse-seed-r1 --data work/training``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from silse_spark.codes import bits_from_outputs
from silse_spark.variations import FAMILIES, SEED_FAMILIES

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


def predict_bits(model: keras.Model | Callable[[np.ndarray], Any], pixels: np.ndarray, batch_size: int = 64
                 ) -> np.ndarray:
    """Code bits ``(n, 48)`` of uint8 model inputs, from a Keras model or an outputs function
    (e.g. :meth:`silse_spark.model.TwinHasher.outputs`, which averages a version's views)."""
    forward = model.predict_on_batch if hasattr(model, "predict_on_batch") else model
    out = [np.asarray(forward(pixels[i : i + batch_size].astype(np.float32)))
           for i in range(0, len(pixels), batch_size)]
    return bits_from_outputs(np.concatenate(out))


def effective_bits(bits: np.ndarray) -> float:
    """Participation ratio of the bit covariance spectrum (48 = independent balanced bits).

    >>> rng = np.random.default_rng(0)
    >>> round(effective_bits(rng.integers(0, 2, (4000, 48))))
    47
    >>> effective_bits(np.repeat(rng.integers(0, 2, (100, 1)), 48, axis=1))
    1.0
    """
    cov = np.cov(np.asarray(bits, dtype=np.float64), rowvar=False)
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    if eig.sum() <= 0:
        return 0.0
    return float(round(eig.sum() ** 2 / np.square(eig).sum(), 3))


def bit_entropy_sum(bits: np.ndarray) -> float:
    """Sum over bits of the binary entropy of each bit's frequency (an upper bound on information)."""
    p = np.clip(np.asarray(bits, dtype=np.float64).mean(axis=0), 1e-12, 1 - 1e-12)
    return float(round(float(np.sum(-p * np.log2(p) - (1 - p) * np.log2(1 - p))), 3))


def false_match_rates(bits: np.ndarray) -> dict[str, float]:
    """Share of pairs of distinct images whose codes are identical / within 2 bits."""
    packed = np.packbits(bits.astype(np.uint8), axis=1)
    n = len(bits)
    same = 0
    near = 0
    for i in range(n - 1):
        xor = np.bitwise_xor(packed[i + 1 :], packed[i])
        dist = np.unpackbits(xor, axis=1).sum(axis=1)
        same += int((dist == 0).sum())
        near += int((dist <= 2).sum())
    pairs = n * (n - 1) // 2
    _, counts = np.unique(packed, axis=0, return_counts=True)
    return {
        "pairs": pairs,
        "false_match_rate_exact": same / pairs if pairs else 0.0,
        "false_match_rate_within_2": near / pairs if pairs else 0.0,
        "images_sharing_a_code": float(counts[counts > 1].sum() / n) if n else 0.0,
        "distinct_codes": int(len(counts)),
    }


def make_copies(canvases: np.ndarray, family: str, seed: int, framing: str = "none") -> np.ndarray:
    from silse_spark.training.pairs import altered

    rng = np.random.default_rng(seed)
    return np.stack([altered(np.asarray(c), [family], rng, framing=framing) for c in canvases])


def originals(canvases: np.ndarray, framing: str = "none") -> np.ndarray:
    from PIL import Image

    from silse_spark.training.pairs import to_input

    return np.stack([to_input(Image.fromarray(np.asarray(c), "RGB"), framing) for c in canvases])


def validation_report(model: keras.Model | Callable[[np.ndarray], Any], canvases: np.ndarray, families: Sequence[str],
                      seed: int = 1234, framing: str = "none") -> dict[str, Any]:
    """All metrics for ``model`` on ``canvases`` (``(n, 128, 128, 3)`` uint8), inputs framed as the model's."""
    base = predict_bits(model, originals(canvases, framing))
    report: dict[str, Any] = {"images": len(canvases), "framing": framing, "families": {}}
    for k, family in enumerate(families):
        copy_bits = predict_bits(model, make_copies(canvases, family, seed + k, framing))
        dist = (copy_bits != base).sum(axis=1)
        report["families"][family] = {
            "exact_recall": round(float((dist == 0).mean()), 4),
            "recall_within_2": round(float((dist <= 2).mean()), 4),
            "mean_hamming": round(float(dist.mean()), 3),
        }
    seed_names = [f for f in families if f in SEED_FAMILIES]
    if seed_names:
        report["seed_families_exact_recall"] = round(
            float(np.mean([report["families"][f]["exact_recall"] for f in seed_names])), 4)
    report.update(false_match_rates(base))
    freq = base.mean(axis=0)
    report["bit_balance_mean_abs_dev"] = round(float(np.abs(freq - 0.5).mean()), 4)
    report["bit_balance_max_abs_dev"] = round(float(np.abs(freq - 0.5).max()), 4)
    report["constant_bits"] = int(((freq == 0) | (freq == 1)).sum())
    report["effective_bits"] = effective_bits(base)
    report["bit_entropy_sum"] = bit_entropy_sum(base)
    return report


def stability_order(model: keras.Model, data_dir: Path, limit: int = 300, seed: int = 99, framing: str = "none"
                    ) -> list[int]:
    """Bit indices sorted from most to least stable under seed-family copies of validation images."""
    canvases = np.load(data_dir / "val.npy", mmap_mode="r")[:limit]
    base = predict_bits(model, originals(canvases, framing))
    flips = np.zeros(base.shape[1])
    for k, family in enumerate(SEED_FAMILIES):
        flips += (predict_bits(model, make_copies(canvases, family, seed + k, framing)) != base).mean(axis=0)
    return [int(i) for i in np.argsort(flips, kind="stable")]


def parse_families(text: str) -> list[str]:
    """``'seed'``, ``'all'`` or a comma-separated list -> variation family names.

    >>> parse_families("seed")[:2]
    ['rotation', 'shift_h']
    >>> parse_families("jpeg,blurry")
    Traceback (most recent call last):
    ...
    ValueError: unknown families ['blurry']; expected 'seed', 'all' or a comma-separated list of ...
    """
    if text == "seed":
        return list(SEED_FAMILIES)
    if text == "all":
        return list(FAMILIES)
    families = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown families {unknown}; expected 'seed', 'all' or a comma-separated list of "
                         f"{sorted(FAMILIES)}")
    return families


def families_argument(text: str) -> list[str]:
    """``--families`` parser: :func:`parse_families`, its error reported by argparse."""
    try:
        return parse_families(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate a silse model on held-out copies.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--version", help="a registered model version")
    source.add_argument("--checkpoint-config", help="validate work/checkpoints/CONFIG instead")
    parser.add_argument("--checkpoints", type=Path, default=Path("work/checkpoints"))
    parser.add_argument("--weights", type=Path, default=None,
                        help="with --checkpoint-config: these weights (e.g. a snapshot) instead of the checkpoint's")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=500, help="validation images used")
    parser.add_argument("--families", type=families_argument, default="seed",
                        help="'seed', 'all' or a comma-separated list")
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    families: list[str] = args.families
    if args.version:
        from silse_spark.model import TwinHasher, get_model_spec

        model = TwinHasher(args.version).outputs  # the version's views, as the job hashes
        label = args.version
        framing = get_model_spec(args.version).framing
    else:
        from silse_spark.training.train import float32_model, get_config

        config = get_config(args.checkpoint_config)
        weights = args.weights or args.checkpoints / config.name / "model.weights.h5"
        if not weights.is_file():
            parser.error(f"no weights file {weights}; train --config {config.name} first or fix --weights")
        model = float32_model(config, weights)
        label = f"checkpoint:{config.name}" + (f" ({weights.name})" if args.weights else "")
        framing = config.framing
    canvases = np.load(args.data / "val.npy", mmap_mode="r")[: args.limit]
    started = time.time()
    report = {"model": label, **validation_report(model, canvases, families, framing=framing)}
    report["seconds"] = round(time.time() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
