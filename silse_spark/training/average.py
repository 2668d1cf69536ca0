"""Average a run's snapshots into one model and recompute its batch-norm statistics (stochastic weight averaging).

The continuations trained on this CPU wander: consecutive snapshots of one
run differ by up to 0.016 in exact recall and by up to 10x in exact false
matches on ``make eval`` (docs/training-log.md). Averaging the weights of snapshots of
one run, all descended from the same start, keeps what they share and
averages out the wandering (Izmailov et al., "Averaging Weights Leads to
Wider Optima", 2018). The averaged batch-norm statistics do not describe the
averaged network's activations, so they are recomputed from training pairs
(the original and its copy, as the configuration makes them) in training
mode: each batch moves them by ``1 - momentum``, starting from the average.

Usage (``silse-v1f-r10``: ``v1f-d3``'s snapshots from ``silse-v1f-r9``'s step on)::

    python -m silse_spark.training.average --config v1f-d3 --data work/training \\
        --steps 447 1150 1820 2404 3011 3231 3481 --export silse-v1f-r10 --default

Example
-------
>>> import numpy as np
>>> [a.tolist() for a in mean_weights([[np.array([1., 2.])], [np.array([3., 6.])]])]
[[2.0, 4.0]]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from silse_spark.model import MODELS_DIR
from silse_spark.training.train import (
    TrainConfig,
    float32_model,
    pair_options,
    parse_with_config,
    register_model,
    snapshot_path,
)

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

BN_BATCHES = 300
"""Batches of pairs that recompute the batch-norm statistics (``silse-v1f-r10``: 300 of 128 pairs)."""
BN_MOMENTUM = 0.99
"""Share of the statistics kept at each batch: after 300 batches, 95% of them come from the recomputation."""
BN_SEED = 2026
"""Seed of the pair stream that recomputes the statistics."""


def mean_weights(weight_lists: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several models' weight lists (same layout), in each weight's dtype."""
    if not weight_lists:
        raise ValueError("no weights to average")
    layouts = {tuple(np.shape(w) for w in ws) for ws in weight_lists}
    if len(layouts) != 1:
        raise ValueError("the weights to average have different layouts; they must come from one architecture")
    return [np.mean(np.stack(group), axis=0).astype(np.asarray(group[0]).dtype) for group in zip(*weight_lists)]


def snapshot_paths(checkpoint_dir: Path, steps: Sequence[int]) -> list[Path]:
    """``checkpoint_dir/snapshots/step-NNNNNN.weights.h5`` for each step; a clear error naming the missing ones."""
    paths = [snapshot_path(checkpoint_dir, step) for step in steps]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        have = sorted(p.name for p in (checkpoint_dir / "snapshots").glob("step-*.weights.h5"))
        raise FileNotFoundError(f"{checkpoint_dir / 'snapshots'} has no {', '.join(missing)}; it has "
                                f"{', '.join(have) or 'no snapshots'} (train with --snapshot-minutes to keep them)")
    return paths


def average_snapshots(config: TrainConfig, paths: Sequence[Path]) -> keras.Model:
    """A float32 model of ``config``'s architecture holding the mean of the snapshots' weights (statistics too)."""
    model = float32_model(config, paths[0])
    weight_lists = [model.get_weights()] + [float32_model(config, path).get_weights() for path in paths[1:]]
    model.set_weights(mean_weights(weight_lists))
    return model


def recompute_batch_norm(model: keras.Model, batches: Iterator[tuple[np.ndarray, ...]], count: int,
                         momentum: float = BN_MOMENTUM) -> int:
    """Run ``count`` batches ``(originals, copies, ...)`` through ``model`` in training mode so that every
    batch-norm layer's moving statistics move towards the batches' by ``1 - momentum`` each; returns
    how many batch-norm layers there are. Only those statistics change: no weight is trained."""
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = momentum
    try:
        for _ in range(count):
            a, b, *_ = next(batches)
            model(np.concatenate([a, b]).astype(np.float32), training=True)
    finally:
        for layer, value in zip(norms, saved, strict=True):
            layer.momentum = value
    return len(norms)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Average a training run's snapshots (stochastic weight averaging), "
                                                 "recompute the batch-norm statistics, export the model.")
    parser.add_argument("--config", required=True, help="the configuration whose snapshots are averaged")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder (train.npy) for the statistics")
    parser.add_argument("--checkpoints", type=Path, default=Path("work/checkpoints"))
    parser.add_argument("--steps", type=int, nargs="+", required=True, metavar="STEP",
                        help="snapshot steps to average (CHECKPOINTS/CONFIG/snapshots/step-STEP.weights.h5)")
    parser.add_argument("--bn-batches", type=int, default=BN_BATCHES,
                        help=f"batches of pairs recomputing the batch-norm statistics (default {BN_BATCHES}; 0: keep "
                             "the averaged statistics)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per batch (default: the configuration's)")
    parser.add_argument("--seed", type=int, default=BN_SEED, help=f"seed of those pairs (default {BN_SEED})")
    parser.add_argument("--export", metavar="VERSION", required=True,
                        help="write MODELS_DIR/VERSION.weights.h5 and register it")
    parser.add_argument("--default", action="store_true", help="make the exported version the registry default")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where weights and registry.json go")
    args, config = parse_with_config(parser, argv)
    if args.bn_batches < 0:
        parser.error(f"--bn-batches must be 0 or more, got {args.bn_batches}")
    try:
        paths = snapshot_paths(args.checkpoints / config.name, args.steps)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if args.bn_batches and not (args.data / "train.npy").is_file():
        parser.error(f"no {args.data / 'train.npy'}: the batch-norm statistics are recomputed from the training corpus; "
                     "build it with `make data`, or pass --bn-batches 0 to keep the averaged statistics")
    model = average_snapshots(config, paths)
    log.info("averaged %d snapshots of %s: steps %s", len(paths), config.name, ", ".join(map(str, args.steps)))
    batch_size = args.batch_size or config.batch_size
    if args.bn_batches:
        from silse_spark.training.pairs import PairBatches, prefetch

        canvases = np.load(args.data / "train.npy", mmap_mode="r")
        stream = prefetch(PairBatches(canvases, seed=args.seed, **{**pair_options(config), "batch_size": batch_size}))
        try:
            norms = recompute_batch_norm(model, stream, args.bn_batches)
        finally:
            stream.close()
        log.info("batch-norm statistics of %d layers recomputed from %d batches of %d pairs (seed %d)", norms,
                 args.bn_batches, batch_size, args.seed)
    target = args.models_dir / f"{args.export}.weights.h5"
    model.save_weights(str(target))
    statistics = (f"batch-norm statistics recomputed from {args.bn_batches} batches of {batch_size} of its pairs "
                  f"(seed {args.seed}, momentum {BN_MOMENTUM})" if args.bn_batches else "statistics averaged too")
    description = (f"config {config.name}: {config.description}. Uniform average of its snapshots at steps "
                   f"{', '.join(map(str, args.steps))} (stochastic weight averaging), {statistics}; "
                   "trained on a 2-core CPU (no GPU)")
    register_model(args.export, config.architecture, target.name, description, args.default, args.models_dir,
                   config.framing)
    log.info("exported %s to %s", args.export, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
