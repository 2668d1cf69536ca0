"""Validate weighted averages of two checkpoints' weights of one architecture.

For each ``alpha``, the model gets ``alpha * A + (1 - alpha) * B`` (every
weight, batch-norm statistics included) and is scored with the training-side
validation check on the seed families (``silse_spark.training.validate``):
exact-code recall, exact-code false-match rate, effective bits, constant bits.
Used for the weight-average lines of docs/training-log.md ("Longer `v1-r2`, then `v1-r4`"):

    python scripts/average_checkpoints.py --config v1-r2 --data work/training \\
        A.weights.h5 B.weights.h5 --alpha 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from silse_spark.training.train import float32_model, get_config
from silse_spark.training.validate import validation_report
from silse_spark.variations import SEED_FAMILIES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path, help="weights A (.weights.h5)")
    parser.add_argument("second", type=Path, help="weights B (.weights.h5)")
    parser.add_argument("--config", required=True, help="training configuration naming the architecture")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder with val.npy")
    parser.add_argument("--alpha", default="0.5", help="comma-separated weights of A, each in [0, 1]")
    parser.add_argument("--limit", type=int, default=500, help="validation images used")
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alpha.split(",")]
    if any(not 0.0 <= a <= 1.0 for a in alphas):
        parser.error(f"--alpha values must be in [0, 1], got {alphas}")
    for path in (args.first, args.second):
        if not path.is_file():
            parser.error(f"no weights file {path}")
    config = get_config(args.config)
    model = float32_model(config, args.first)
    first = model.get_weights()
    second = float32_model(config, args.second).get_weights()
    canvases = np.load(args.data / "val.npy", mmap_mode="r")[: args.limit]
    print("alpha  seed_exact_recall  fmr_exact  effective_bits  constant_bits")
    for alpha in alphas:
        model.set_weights([alpha * a + (1.0 - alpha) * b for a, b in zip(first, second, strict=True)])
        r = validation_report(model, canvases, list(SEED_FAMILIES))
        print(f"{alpha:5.2f}  {r['seed_families_exact_recall']:17.4f}  {r['false_match_rate_exact']:9.1e}  "
              f"{r['effective_bits']:14.3f}  {r['constant_bits']:13d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
