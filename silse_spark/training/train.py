"""Train a silse model from a named configuration, with checkpoints, resume and export.

Usage::

    python -m silse_spark.training.train --config seed --data work/training --minutes 30 \\
        --export silse-seed-r1 --default
    python -m silse_spark.training.train --config seed --data work/training --resume --minutes 10

Configurations (:data:`CONFIGS`) are frozen, validated dataclasses:

``seed``
    The design: seed architecture, seed variation families (rotation,
    shift_h, shift_w, channel_scale, combined), the design's pair loss
    (:func:`silse_spark.training.losses.seed_pair_loss`), Adam.
``v1``
    The cheaper ``v1`` architecture; seed and extra variation families
    (jpeg, rescale, crop, border, blur, text, hflip, greyscale), sometimes
    stacked and sometimes on both sides of a pair; margin loss on signed
    outputs for copies, all in-batch different images as negatives with a
    hardest-negative term, bit balance, decorrelation and quantisation.
    Descendants (``v1-r2`` .. ``v1-r7``) start from earlier weights;
    ``v1-r5`` adds negatives beyond the batch (:class:`NegativeMemory`),
    ``v1-r6`` trains at batch 192 instead of 48 (4x the in-batch negatives).

The training step is Keras 3 (``compile`` + ``train_on_batch`` with a
``keras.ops`` loss), so it runs under the TensorFlow or the JAX backend.
Mixed ``bfloat16`` is used where the configuration asks for it (about twice
as fast on this CPU); exported weights are always float32.

Checkpoints (``--checkpoints/CONFIG``): ``model.weights.h5``,
``optimizer.npz`` and ``state.json`` (step, pairs seen, seconds trained),
written every ``checkpoint_minutes`` and at the end. ``--resume`` continues
from them; ``--minutes`` / ``--steps`` bound this run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from silse_spark.framing import FRAMINGS
from silse_spark.model import ARCHITECTURES, MODELS_DIR, build_model, file_sha256
from silse_spark.variations import EXTRA_FAMILIES, FAMILIES, SEED_FAMILIES

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

SEED_FAMILY_NAMES = tuple(SEED_FAMILIES)
ALL_FAMILY_NAMES = tuple(SEED_FAMILIES) + tuple(EXTRA_FAMILIES)
LOSS_KINDS = ("seed", "v1", "distill")


class TrainConfigError(ValueError):
    """A training configuration is invalid; the message says which field and what is expected."""


@dataclass(frozen=True)
class TrainConfig:
    """One named training configuration.

    Examples
    --------
    >>> TrainConfig(name="x", batch_size=8).batch_size
    8
    """

    name: str
    architecture: str = "seed"
    loss: str = "seed"
    families: tuple[str, ...] = SEED_FAMILY_NAMES
    batch_size: int = 16
    learning_rate: float = 3e-4
    mixed_bfloat16: bool = True
    anchor_alter_prob: float = 0.0
    max_chain: int = 1
    pos_margin: float = 0.5
    neg_margin: float = 0.0
    hard_weight: float = 0.5
    pos_weight: float = 1.0
    neg_weight: float = 1.0
    balance_weight: float = 0.0
    decorrelation_weight: float = 0.0
    quantisation_weight: float = 0.0
    weakest_bits_weight: float = 0.0
    weakest_bits_k: int = 4
    memory_batches: int = 0
    memory_weight: float = 1.0
    seed: int = 0
    checkpoint_minutes: float = 3.0
    init_from: str = ""
    init_weights: str = ""
    init_trunk: str = ""
    framing: str = "none"
    teacher: str = ""
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            problems.append(f"name {self.name!r} must be non-empty letters, digits, '-' or '_'")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture {self.architecture!r} is not one of {sorted(ARCHITECTURES)}")
        if self.loss not in LOSS_KINDS:
            problems.append(f"loss {self.loss!r} is not one of {list(LOSS_KINDS)}")
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            problems.append(f"families must be a non-empty subset of {sorted(FAMILIES)}; unknown: {unknown}")
        if self.batch_size < 2:
            problems.append(f"batch_size {self.batch_size} must be >= 2 (a batch needs different images)")
        if not 0.0 < self.learning_rate < 1.0:
            problems.append(f"learning_rate {self.learning_rate} must be in (0, 1), e.g. 3e-4")
        if not 0.0 <= self.anchor_alter_prob <= 1.0:
            problems.append(f"anchor_alter_prob {self.anchor_alter_prob} must be a probability in [0, 1]")
        if self.max_chain < 1:
            problems.append(f"max_chain {self.max_chain} must be >= 1")
        if not 0.0 <= self.pos_margin <= 1.0 or not -1.0 <= self.neg_margin <= 1.0:
            problems.append("pos_margin must be in [0, 1] and neg_margin in [-1, 1]")
        weights = {f.name: getattr(self, f.name) for f in fields(self) if f.name.endswith("_weight")}
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            problems.append(f"loss weights must be >= 0, got {negative}")
        if self.init_from == self.name:
            problems.append(f"init_from {self.init_from!r} names the configuration itself; use --resume instead")
        if sum(bool(x) for x in (self.init_from, self.init_weights, self.init_trunk)) > 1:
            problems.append("set at most one of init_from (a checkpoint), init_weights (a shipped model version) "
                            "and init_trunk (a shipped model version whose matching layers are copied)")
        if not 1 <= self.weakest_bits_k <= 48:
            problems.append(f"weakest_bits_k {self.weakest_bits_k} must be between 1 and 48")
        if self.memory_batches < 0:
            problems.append(f"memory_batches {self.memory_batches} must be >= 0 (0: no negative memory)")
        if self.memory_batches and self.loss != "v1":
            problems.append(f"memory_batches needs loss 'v1', not {self.loss!r}")
        if self.framing not in FRAMINGS:
            problems.append(f"framing {self.framing!r} is not one of {FRAMINGS}")
        if (self.loss == "distill") != bool(self.teacher):
            problems.append(f"loss 'distill' needs a teacher (a registered model version) and only it does; "
                            f"got loss {self.loss!r} with teacher {self.teacher!r}")
        if self.checkpoint_minutes <= 0:
            problems.append(f"checkpoint_minutes {self.checkpoint_minutes} must be > 0")
        if problems:
            raise TrainConfigError(
                f"invalid training configuration {self.name!r}: " + "; ".join(problems)
                + ". Fix the entry in silse_spark.training.train.CONFIGS"
            )


CONFIGS: dict[str, TrainConfig] = {
    "seed": TrainConfig(
        name="seed",
        description="design architecture, seed variations, design pair loss (s=0 copy, s=1 different), Adam",
    ),
    "v1": TrainConfig(
        name="v1",
        architecture="v1",
        loss="v1",
        # Seed families listed twice: drawn for ~half the copies, the extras for the rest.
        families=SEED_FAMILY_NAMES + ALL_FAMILY_NAMES,
        batch_size=48,
        learning_rate=1e-3,
        anchor_alter_prob=0.3,
        max_chain=2,
        pos_margin=0.6,
        neg_margin=0.0,
        hard_weight=0.5,
        balance_weight=1.0,
        decorrelation_weight=1.0,
        quantisation_weight=0.1,
        description=("v1 architecture, seed + extra variations (stacked, both sides), margin loss on signed "
                     "outputs, in-batch + hardest negatives, balance, decorrelation, quantisation"),
    ),
}
CONFIGS["v1-finetune"] = replace(
    CONFIGS["v1"],
    name="v1-finetune",
    learning_rate=2e-4,
    pos_weight=2.0,
    quantisation_weight=0.3,
    seed=1,
    init_from="v1",
    description=("second phase of v1: starts from the v1 checkpoint with a fresh Adam at a 5x lower learning "
                 "rate, double weight on copy agreement and 3x on quantisation"),
)
CONFIGS["v1-r2"] = replace(
    CONFIGS["v1-finetune"],
    name="v1-r2",
    learning_rate=3e-4,
    seed=2,
    init_from="",
    init_weights="silse-v1",
    weakest_bits_weight=0.5,
    description=("third phase of v1: starts from the shipped silse-v1 weights (fresh Adam at 3e-4) with the "
                 "v1-finetune loss weights plus the exact-code term on each copy's 4 weakest bits"),
)
CONFIGS["v1-r3"] = replace(
    CONFIGS["v1-r2"],
    name="v1-r3",
    learning_rate=2e-4,
    balance_weight=2.0,
    decorrelation_weight=3.0,
    seed=3,
    init_weights="",
    init_from="v1-r2",
    description=("fourth phase of v1: from the v1-r2 checkpoint (fresh Adam at 2e-4), 3x decorrelation and 2x "
                 "balance weight to win back the effective bits that the exact-code term traded for stability"),
)
CONFIGS["v1-r4"] = replace(
    CONFIGS["v1-r2"],
    name="v1-r4",
    learning_rate=1.5e-4,
    neg_weight=3.0,
    hard_weight=1.5,
    seed=4,
    init_weights="",
    init_from="v1-r2",
    description=("fifth phase of v1: from the v1-r2 checkpoint after its continuation to step 4147 (exact recall "
                 "up, false matches 8x up), fresh Adam at 1.5e-4 with 3x weight on the negative pairs and 3x on "
                 "each row's hardest negative, to win back distinctness"),
)
CONFIGS["v2"] = replace(
    CONFIGS["v1"],
    name="v2",
    architecture="v2",
    weakest_bits_weight=2.0,
    quantisation_weight=0.2,
    description=("v2 architecture (v1 trunk, global average+max pooled head for shift tolerance), the v1 "
                 "variations and loss plus an exact-code term on each copy's 4 weakest bits"),
)
CONFIGS["v1-r5"] = replace(
    CONFIGS["v1-r2"],
    name="v1-r5",
    learning_rate=2e-4,
    memory_batches=16,
    memory_weight=1.0,
    seed=5,
    description=("sixth phase of v1: from the shipped silse-v1 weights (fresh Adam at 2e-4), the v1-r2 loss plus "
                 "negatives beyond the batch: every row is also pushed away from a memory of the signed outputs "
                 "of the last 16 batches (1,536 rows, same source image masked), with a hardest-negative term"),
)
CONFIGS["v1p"] = replace(
    CONFIGS["v1-r2"],
    name="v1p",
    architecture="v1p",
    batch_size=192,
    learning_rate=5e-4,
    seed=8,
    init_weights="",
    init_trunk="silse-v1",
    description=("v1p architecture (v1's trunk, global average + max pooled head for shift, crop and border "
                 "tolerance) from silse-v1's convolutional trunk and code layer (fc_256 fresh: its input "
                 "differs), the v1-r2 loss at batch 192, Adam 5e-4"),
)
CONFIGS["v1p-2"] = replace(
    CONFIGS["v1"],
    name="v1p-2",
    architecture="v1p",
    batch_size=192,
    learning_rate=5e-4,
    seed=9,
    init_trunk="silse-v1",
    description=("second try of v1p: the first v1 loss (copy weight 1, quantisation 0.1, no exact-code term), "
                 "which trained v1 from scratch without collapse, instead of v1-r2's, from silse-v1's trunk at "
                 "batch 192, Adam 5e-4"),
)
CONFIGS["v1f"] = replace(
    CONFIGS["v1-r2"],
    name="v1f",
    framing="moments",
    batch_size=192,
    learning_rate=3e-4,
    seed=10,
    description=("v1 with content framing (silse_spark.framing: every image cropped to a square around its "
                 "drawing before the resize, so shifts, crops and rescales move little): from the shipped "
                 "silse-v1 weights (fresh Adam at 3e-4), the v1-r2 loss at batch 192"),
)
CONFIGS["v1f-2"] = replace(
    CONFIGS["v1-r4"],
    name="v1f-2",
    framing="moments",
    batch_size=192,
    seed=11,
    init_from="",
    init_weights="silse-v1",
    description=("v1 with content framing, second try: from the shipped silse-v1 weights with v1-r4's weights on "
                 "distinctness (3x negatives, 3x hardest negative, Adam 1.5e-4) at batch 192, because v1f "
                 "(v1-r2's loss) bought recall with 30x the false matches"),
)
CONFIGS["v1f-3"] = replace(
    CONFIGS["v1f-2"],
    name="v1f-3",
    learning_rate=5e-5,
    seed=12,
    description=("v1 with content framing, third try: v1f-2 at a 3x lower learning rate (Adam 5e-5), because "
                 "v1f-2 passed through a good point at step 148 and then collapsed (1.8e-2 false matches at "
                 "step 448)"),
)
CONFIGS["v1f-4"] = replace(
    CONFIGS["v1f-2"],
    name="v1f-4",
    families=SEED_FAMILY_NAMES * 3 + ALL_FAMILY_NAMES,
    learning_rate=5e-5,
    weakest_bits_weight=1.0,
    seed=13,
    init_weights="silse-v1f",
    description=("v1 with content framing, fourth try: from the shipped silse-v1f weights at Adam 5e-5 (v1f-3's "
                 "rate, which did not collapse), seed families drawn for ~70% of the copies instead of ~55% and "
                 "twice the exact-code term on each copy's 4 weakest bits, to win back the rotation and colour "
                 "robustness that framing cost (rotation exact recall 0.616 -> 0.362 on validation)"),
)
CONFIGS["v1-r6"] = replace(
    CONFIGS["v1-r2"],
    name="v1-r6",
    batch_size=192,
    learning_rate=3e-4,
    memory_batches=0,
    seed=6,
    init_from="",
    init_weights="silse-v1",
    description=("seventh phase of v1: from the shipped silse-v1 weights (fresh Adam at 3e-4), the v1-r2 loss at "
                 "batch 192 instead of 48, so each original meets 4x more in-batch negatives (the copies of 191 "
                 "other images against 47) and balance and decorrelation see 4x more rows; affordable with "
                 "native bfloat16 (AVX512-BF16/AMX)"),
)
CONFIGS["v1-r7"] = replace(
    CONFIGS["v1-r4"],
    name="v1-r7",
    batch_size=192,
    seed=7,
    init_from="v1-r6",
    description=("eighth phase of v1: from the v1-r6 checkpoint (batch 192; exact recall up, false matches 8x up), "
                 "fresh Adam at 1.5e-4 with 3x weight on the negative pairs and 3x on each row's hardest negative: "
                 "v1-r4's correction at 4x the in-batch negatives, to win back distinctness"),
)
CONFIGS["v1f-d1"] = replace(
    CONFIGS["v1f-2"],
    name="v1f-d1",
    loss="distill",
    teacher="silse-v1f-r5",
    init_weights="silse-v1f-r5",
    framing="moments-bleed-white",
    anchor_alter_prob=0.0,
    pos_weight=1.0,
    neg_weight=0.0,
    weakest_bits_weight=1.0,
    balance_weight=0.0,
    decorrelation_weight=0.0,
    quantisation_weight=0.0,
    batch_size=128,
    learning_rate=1e-4,
    seed=14,
    description=("self-distillation to fixed codes: from silse-v1f-r5 (weights and framing), every original and "
                 "its copy held to the code silse-v1f-r5 gives the original (margin 0.6, plus each row's 4 "
                 "weakest bits), Adam 1e-4 at batch 128; no negatives are needed since the targets are data, so "
                 "the codes cannot collapse, which the pair losses' continuations did"),
)
CONFIGS["v1f-d2"] = replace(
    CONFIGS["v1f-d1"],
    name="v1f-d2",
    init_weights="",
    init_from="v1f-d1",
    learning_rate=3e-4,
    seed=15,
    description=("v1f-d1 continued at 3x the learning rate (Adam 3e-4, fresh), same teacher and targets "
                 "(silse-v1f-r5's codes of the originals): v1f-d1's loss stopped falling after ~50 steps at 1e-4"),
)
CONFIGS["v1f-d3"] = replace(
    CONFIGS["v1f-d1"],
    name="v1f-d3",
    neg_weight=1.0,
    hard_weight=1.5,
    neg_margin=0.0,
    seed=16,
    description=("v1f-d1 (fixed targets: silse-v1f-r5's codes of the originals) plus v1's in-batch negative term "
                 "(weight 1, hardest negative 1.5), because v1f-d1's candidate held the training images' codes "
                 "apart but let unseen images drift onto one code (exact false matches 9x on make eval)"),
)
CONFIGS["v1f-d4"] = replace(
    CONFIGS["v1f-d3"],
    name="v1f-d4",
    init_weights="",
    init_from="v1f-d3",
    neg_weight=2.0,
    seed=17,
    description=("v1f-d3 continued from its checkpoint (step 3,481 on 2026-12-01) with twice the in-batch "
                 "negative weight (2, hardest negative 1.5), same teacher and targets: resumed for 85 min, "
                 "v1f-d3 raised exact recall on make eval (0.472 -> 0.481) but exact false matches 6x "
                 "(3.8e-6 -> 2.2e-5). Measured: collapsed within 12 min, every output at 0.5, which the "
                 "margin-0 negative term does not penalise (docs/training-log.md)"),
)
CONFIGS["v1f-d5"] = replace(
    CONFIGS["v1f-d4"],
    name="v1f-d5",
    quantisation_weight=1.0,
    seed=18,
    description=("v1f-d4 (v1f-d3's checkpoint, negative weight 2) plus the quantisation term at weight 1, "
                 "which costs outputs at 0.5 what the margin-0 negative term does not: the test of whether "
                 "that stops v1f-d4's collapse"),
)
CONFIGS["v1f-d6"] = replace(
    CONFIGS["v1f-d3"],
    name="v1f-d6",
    teacher="silse-v1f-r8",
    seed=19,
    description=("v1f-d3 (from silse-v1f-r5's weights, in-batch negatives) with silse-v1f-r8 as the teacher: "
                 "r5's weights averaged over the identity and mirror views, so the targets are mirror-invariant "
                 "and the student is taught in one pass what r8 computes in two. Measured (55 min, step 2,147): "
                 "seed exact 0.467, mirrored copies 0.391, exact FMR 1.4e-5 on make eval's suite; not shipped"),
)
CONFIGS["v1f-d7"] = replace(
    CONFIGS["v1f-d3"],
    name="v1f-d7",
    teacher="silse-v1f-r10",
    init_weights="silse-v1f-r10",
    seed=20,
    description=("v1f-d3's objective one generation on: from silse-v1f-r10 (the average of v1f-d3's snapshots), "
                 "every original and its copy held to silse-v1f-r10's code of the original, in-batch negatives "
                 "(weight 1, hardest 1.5); its snapshots are for averaging (silse_spark.training.average) before "
                 "step ~3,500, where v1f-d3 began to drift towards all outputs at 0.5"),
)
CONFIGS["v1aa-d1"] = replace(
    CONFIGS["v1f-d3"],
    name="v1aa-d1",
    architecture="v1aa",
    init_weights="",
    init_trunk="silse-v1f-r10",
    teacher="silse-v1f-r11",
    framing="moments-margin-white",
    seed=21,
    description=("v1aa (v1 with fixed binomial blurs before conv_2, conv_4 and conv_6) from every layer of "
                 "silse-v1f-r10, v1f-d3's objective with silse-v1f-r11 as the teacher (its codes of the originals, "
                 "its framing): the network learns around the blur that, untrained, already turned rotated copies "
                 "onto their source's code more often (make eval 0.362 -> 0.417). Measured (stop 29): drifted "
                 "towards outputs at 0.5 within ~1,000 steps and lost on every suite; not shipped (docs/training-log.md)"),
)
CONFIGS["v1f-d8"] = replace(
    CONFIGS["v1f-d3"],
    name="v1f-d8",
    teacher="silse-v1f-r11",
    init_weights="silse-v1f-r11",
    framing="moments-margin-white",
    neg_margin=0.25,
    seed=22,
    description=("v1f-d3's objective from silse-v1f-r11 (weights, framing, its codes as targets) with the negative "
                 "margin at 0.25 instead of 0: only pairs of different images whose outputs agree on more than "
                 "about 30 of 48 bits are pushed apart. With margin 0 every pair whose signed outputs have a "
                 "positive dot product (about half of all pairs) is pushed, which outputs at 0.5 satisfy; the test "
                 "of whether that is the drift v1f-d3, v1f-d7 and v1aa-d1 showed. Measured (stop 31, 2,107 steps, "
                 "45 min): the drift slowed but went on; the average of its snapshots 223-1,613 gave make eval's "
                 "suite seed exact 0.478, extra 0.473 against r11's 0.477 / 0.484; not shipped (docs/training-log.md)"),
)
"""Named configurations, selected with ``--config``."""


def get_config(name: str) -> TrainConfig:
    """Look up a configuration by name, or raise :class:`TrainConfigError` listing the names."""
    if name not in CONFIGS:
        raise TrainConfigError(f"unknown training configuration {name!r}; expected one of {sorted(CONFIGS)}")
    return CONFIGS[name]


# ----------------------------------------------------------------------- model


def make_objective(config: TrainConfig) -> Any:
    from silse_spark.training.losses import OBJECTIVE_SETTINGS, PairObjective

    return PairObjective(kind=config.loss, **{name: getattr(config, name) for name in OBJECTIVE_SETTINGS})


def fast_bfloat16() -> bool:
    """True where bfloat16 arithmetic is native: an accelerator, or a CPU with AVX512-BF16 or AMX.

    Elsewhere TensorFlow emulates bfloat16 and a mixed-precision step is about
    8x *slower* than float32 (measured on an AVX2-only AMD EPYC: 8.5 s against
    1.0 s per v2 step of batch 48).
    """
    import keras

    if keras.backend.backend() == "jax":
        import jax

        if jax.default_backend() != "cpu":
            return True
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def copy_matching_layers(version: str, model: keras.Model) -> list[str]:
    """Copy into ``model`` the weights of every layer of the shipped ``version`` with the same name and shapes.

    Returns the names of the copied layers (layers without weights are not
    counted). Raises :class:`TrainConfigError` when nothing matches, which
    means the two architectures share no trunk.
    """
    from silse_spark.model import load_model

    source = load_model(version)  # SHA-256 checked
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in model.layers:
        other = by_name.get(layer.name)
        weights = other.get_weights() if other is not None else []
        if weights and [w.shape for w in weights] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(weights)
            copied.append(layer.name)
    if not copied:
        raise TrainConfigError(f"no layer of {version!r} ({source.name}) matches a layer of this "
                               f"{model.name} by name and shape; init_trunk needs a model sharing its trunk")
    return copied


def build_trainable(config: TrainConfig) -> keras.Model:
    """Build and compile the hasher for training (mixed bfloat16 if configured and native here)."""
    import keras

    mixed = config.mixed_bfloat16 and fast_bfloat16()
    if config.mixed_bfloat16 and not mixed:
        log.warning("mixed_bfloat16 requested but this machine has no native bfloat16 (no AVX512-BF16/AMX, "
                    "no accelerator): training in float32, which is faster here")
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    try:
        model = build_model(config.architecture)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=make_objective(config),
        jit_compile=False,
    )
    return model


class NegativeMemory:
    """A queue of the signed outputs ``u = 2w - 1`` of the last ``batches`` training batches.

    Plain numpy arrays: a ring of ``batches * rows`` slots, each a source id
    (the corpus index, -1 while empty) and ``bits`` signed outputs. The
    objective receives it as ``y_true`` (:meth:`targets`), so the memory is
    data to the training step: no gradient, and the step stays a
    ``keras.ops`` loss under any backend. :meth:`push` overwrites the oldest
    batch. Not checkpointed: after ``--resume`` it refills in ``batches`` steps.

    >>> memory = NegativeMemory(batches=2, rows=2, bits=3)
    >>> memory.push(np.ones((2, 3)), np.array([7, 8]))
    >>> memory.targets(np.array([1, 2])).shape  # (rows, 1 + batches * (1 + bits))
    (2, 9)
    """

    def __init__(self, batches: int, rows: int, bits: int = 48) -> None:
        if batches < 1 or rows < 1:
            raise ValueError(f"a negative memory needs batches >= 1 and rows >= 1, got {batches}, {rows}")
        self.batches = batches
        self.rows = rows
        self.bits = bits
        self.ids = np.full(batches * rows, -1.0, np.float32)
        self.outputs = np.zeros((batches * rows, bits), np.float32)
        self.pushed = 0

    def push(self, u: np.ndarray, ids: np.ndarray) -> None:
        """Keep one batch: signed outputs ``(rows, bits)`` and source ids ``(rows,)``, replacing the oldest."""
        u = np.asarray(u, np.float32)
        if u.shape != (self.rows, self.bits) or len(ids) != self.rows:
            raise ValueError(f"memory expects {self.rows} rows of {self.bits} outputs and ids, got {u.shape} "
                             f"and {len(ids)} ids")
        start = (self.pushed % self.batches) * self.rows
        self.outputs[start : start + self.rows] = u
        self.ids[start : start + self.rows] = np.asarray(ids, np.float32)
        self.pushed += 1

    def targets(self, ids: np.ndarray) -> np.ndarray:
        """``y_true`` for a batch with row source ids ``ids``: ``(rows, 1 + batches * (1 + bits))``.

        Column 0: ``ids``; then the memory rows ``(id, u)``, row-major, as
        :class:`silse_spark.training.losses.PairObjective` unpacks them.
        """
        if len(ids) != self.rows:
            raise ValueError(f"memory targets need {self.rows} row ids, got {len(ids)}")
        packed = np.concatenate([self.ids[:, None], self.outputs], axis=1).reshape(self.rows, -1)
        return np.concatenate([np.asarray(ids, np.float32)[:, None], packed], axis=1)


def train_step(model: keras.Model, a: np.ndarray, b: np.ndarray, memory: NegativeMemory | None = None,
               ids: np.ndarray | None = None, targets: np.ndarray | None = None) -> float:
    """One optimisation step on a batch of originals ``a`` and copies ``b`` (uint8 images).

    With ``memory`` (and the rows' source ``ids``), the objective also gets the
    memory as negatives, and afterwards the batch's signed outputs (inference
    mode, after the update) are pushed into it, originals and copies. With
    ``targets`` (``(batch, bits)``, +-1: the originals' codes for loss
    ``distill``), each original and its copy are held to their row.
    """
    x = np.concatenate([a, b], axis=0).astype(np.float32)
    if targets is not None:
        return float(np.asarray(model.train_on_batch(x, np.concatenate([targets, targets]).astype(np.float32))))
    if memory is None:
        y = np.zeros((len(x), 1), np.float32)
        return float(np.asarray(model.train_on_batch(x, y)))
    if ids is None:
        raise ValueError("a step with a negative memory needs the rows' source ids")
    row_ids = np.concatenate([ids, ids])
    loss = float(np.asarray(model.train_on_batch(x, memory.targets(row_ids))))
    memory.push(2.0 * np.asarray(model.predict_on_batch(x), np.float32) - 1.0, row_ids)
    return loss


@dataclass
class TrainState:
    """Progress that a checkpoint carries across runs."""

    step: int = 0
    pairs: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def save_checkpoint(model: keras.Model, state: TrainState, config: TrainConfig, directory: Path) -> None:
    """Write weights, optimizer variables and state; each file replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp_weights = directory / "model.tmp.weights.h5"
    model.save_weights(str(tmp_weights))
    os.replace(tmp_weights, directory / "model.weights.h5")
    opt_vars = [np.asarray(v) for v in model.optimizer.variables]
    with open(directory / "optimizer.tmp.npz", "wb") as fh:
        np.savez(fh, *opt_vars)
    os.replace(directory / "optimizer.tmp.npz", directory / "optimizer.npz")
    payload = {"state": asdict(state), "config": asdict(config)}
    (directory / "state.tmp.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(directory / "state.tmp.json", directory / "state.json")
    log.info("checkpoint: step %d, %d pairs, %.0f s -> %s", state.step, state.pairs, state.seconds, directory)


def snapshot_path(directory: Path, step: int) -> Path:
    """Where :func:`save_snapshot` keeps step ``step``'s weights of the checkpoint folder ``directory``."""
    return directory / "snapshots" / f"step-{step:06d}.weights.h5"


def save_snapshot(model: keras.Model, state: TrainState, directory: Path) -> Path:
    """Keep this step's weights beside the checkpoint (``snapshots/step-NNNNNN.weights.h5``).

    The checkpoint itself is overwritten as training goes on; snapshots keep
    earlier states so the best one on the validation check can be chosen
    afterwards (``validate --checkpoint-config C --weights SNAPSHOT``).
    """
    path = snapshot_path(directory, state.step)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "snapshot.tmp.weights.h5"
    model.save_weights(str(tmp))
    os.replace(tmp, path)
    log.info("snapshot: step %d -> %s", state.step, path)
    return path


def load_checkpoint(model: keras.Model, directory: Path) -> TrainState:
    """Restore weights, optimizer variables and state written by :func:`save_checkpoint`."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(str(directory / "model.weights.h5"))
    with np.load(directory / "optimizer.npz") as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = model.optimizer.variables
    if len(values) != len(variables):
        raise ValueError(f"optimizer checkpoint has {len(values)} variables, the model {len(variables)}; "
                         "was it written by another configuration?")
    for var, value in zip(variables, values, strict=True):
        var.assign(value)
    raw = json.loads((directory / "state.json").read_text(encoding="utf-8"))["state"]
    return TrainState(**raw)


STOP = threading.Event()
"""Set by SIGTERM/SIGINT in :func:`main`: the loop stops after the current step and checkpoints."""


def distillation_teacher(config: TrainConfig) -> Any:
    """The frozen model whose codes of the originals are the targets of loss ``distill`` (else None)."""
    if not config.teacher:
        return None
    from silse_spark.model import TwinHasher, get_model_spec

    spec = get_model_spec(config.teacher)
    if spec.framing != config.framing:
        raise TrainConfigError(f"configuration {config.name!r} frames its images with {config.framing!r} but its "
                               f"teacher {spec.version!r} with {spec.framing!r}; the targets must be codes of the "
                               f"inputs the model sees: use the same framing")
    log.info("distillation targets: the codes of %s (framing %s, views %s)", spec.version, spec.framing,
             "+".join(spec.views))
    return TwinHasher(spec.version, batch_size=config.batch_size)


def pair_options(config: TrainConfig) -> dict[str, Any]:
    """The :class:`silse_spark.training.pairs.PairBatches` options (all but the seed) of ``config``'s pairs."""
    return dict(families=config.families, batch_size=config.batch_size, anchor_alter_prob=config.anchor_alter_prob,
                max_chain=config.max_chain, with_ids=config.memory_batches > 0, framing=config.framing)


def train(
    config: TrainConfig,
    data_dir: Path,
    checkpoint_dir: Path,
    minutes: float | None,
    steps: int | None,
    resume: bool,
    snapshot_minutes: float | None = None,
    workers: int = 1,
) -> tuple[keras.Model, TrainState]:
    """Train until ``minutes`` (this run) or ``steps`` (total) is reached; checkpoint on the way.

    With ``snapshot_minutes``, also keep the weights every that many minutes
    and at the end (:func:`save_snapshot`). ``workers`` > 1 makes the pairs in
    that many processes (:func:`silse_spark.training.pairs.parallel_batches`,
    for a GPU machine); 1 makes them on one background thread, the stream of
    every run so far.
    """
    from silse_spark.training.pairs import PairBatches, parallel_batches, prefetch

    canvases = np.load(data_dir / "train.npy", mmap_mode="r")
    model = build_trainable(config)
    state = TrainState()
    if resume and (checkpoint_dir / "state.json").is_file():
        state = load_checkpoint(model, checkpoint_dir)
        log.info("resumed %s at step %d (%d pairs, %.0f s)", config.name, state.step, state.pairs, state.seconds)
    elif config.init_from:
        source = checkpoint_dir.parent / get_config(config.init_from).name
        if not (source / "state.json").is_file():
            raise FileNotFoundError(f"configuration {config.name!r} starts from {config.init_from!r}, but "
                                    f"{source} has no checkpoint; train --config {config.init_from} first")
        model.load_weights(str(source / "model.weights.h5"))  # weights only: a fresh optimizer
        raw = json.loads((source / "state.json").read_text(encoding="utf-8"))["state"]
        state = TrainState(**raw)
        log.info("initialised %s from %s at step %d (%d pairs)", config.name, source, state.step, state.pairs)
    elif config.init_weights:
        from silse_spark.model import get_model_spec, verify_weights

        spec = get_model_spec(config.init_weights)
        if spec.architecture != config.architecture:
            raise TrainConfigError(f"configuration {config.name!r} ({config.architecture}) cannot start from "
                                   f"{spec.version!r}, a {spec.architecture} model; init_weights must name a "
                                   f"model of the same architecture")
        model.load_weights(str(verify_weights(spec)))  # SHA-256 checked; a fresh optimizer
        log.info("initialised %s from the shipped weights of %s", config.name, spec.version)
    elif config.init_trunk:
        copied = copy_matching_layers(config.init_trunk, model)
        log.info("initialised %s with %d layers of %s (%s); the rest is freshly initialised", config.name,
                 len(copied), config.init_trunk, ", ".join(copied))
    elif resume:
        log.warning("--resume: no checkpoint in %s, starting fresh", checkpoint_dir)
    options = pair_options(config)
    seed = config.seed + 7919 * state.step
    memory = NegativeMemory(config.memory_batches, 2 * config.batch_size) if config.memory_batches else None
    teacher = distillation_teacher(config)
    log.info("training %s (%s, %d params) on %d images, batch %d", config.name, config.architecture,
             model.count_params(), len(canvases), config.batch_size)
    if memory is not None:
        log.info("negative memory: the last %d batches, %d rows, weight %g", config.memory_batches,
                 len(memory.ids), config.memory_weight)
    started = time.time()
    last_ckpt = started
    last_snapshot = started
    saved_step, snapshot_step = -1, -1  # the steps last written, so the end does not write them again
    last_log = started
    window: list[float] = []
    budget_s = None if minutes is None else minutes * 60.0
    if workers > 1:
        log.info("pairs from %d worker processes", workers)
        stream = parallel_batches(data_dir / "train.npy", workers, seed, **options)
    else:
        stream = prefetch(PairBatches(canvases, seed=seed, **options))
    while True:
        if steps is not None and state.step >= steps:
            break
        if budget_s is not None and time.time() - started >= budget_s:
            break
        if STOP.is_set():
            log.warning("stop requested: checkpointing at step %d", state.step)
            break
        a, b, *ids = next(stream)
        t0 = time.time()
        targets = None if teacher is None else np.where(teacher.outputs(a) > 0.5, 1.0, -1.0)
        loss = train_step(model, a, b, memory, ids[0] if ids else None, targets)
        state.step += 1
        state.pairs += 2 * config.batch_size  # batch similar + batch different pairs
        state.seconds += time.time() - t0
        window.append(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {state.step}; lower the learning rate")
        now = time.time()
        if now - last_log >= 60:
            mean = float(np.mean(window))
            state.losses.append(round(mean, 5))
            log.info("step %d  loss %.4f  %.1f pairs/s", state.step, mean,
                     2 * config.batch_size * len(window) / (now - last_log))
            window = []
            last_log = now
        if now - last_ckpt >= config.checkpoint_minutes * 60:
            save_checkpoint(model, state, config, checkpoint_dir)
            last_ckpt, saved_step = time.time(), state.step
        if snapshot_minutes is not None and now - last_snapshot >= snapshot_minutes * 60:
            save_snapshot(model, state, checkpoint_dir)
            last_snapshot, snapshot_step = time.time(), state.step
    stream.close()  # stops the pair thread or processes
    if state.step != saved_step:
        save_checkpoint(model, state, config, checkpoint_dir)
    if snapshot_minutes is not None and state.step != snapshot_step:
        save_snapshot(model, state, checkpoint_dir)
    log.info("finished %s: step %d, %d pairs, %.0f s of training steps, %.0f s wall this run",
             config.name, state.step, state.pairs, state.seconds, time.time() - started)
    return model, state


# ---------------------------------------------------------------------- export


def float32_model(config: TrainConfig, weights: Path) -> keras.Model:
    """Rebuild the architecture in float32 and load (mixed-precision) training weights."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    model = build_model(config.architecture)
    model.load_weights(str(weights))
    return model


def permute_output_bits(model: keras.Model, order: Sequence[int]) -> None:
    """Reorder the code bits: output ``k`` becomes old output ``order[k]`` (last Dense layer)."""
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    order = list(order)
    if sorted(order) != list(range(kernel.shape[1])):
        raise ValueError(f"order must be a permutation of 0..{kernel.shape[1] - 1}")
    head.set_weights([kernel[:, order], bias[order]])


def register_model(version: str, architecture: str, weights_file: str, description: str,
                   make_default: bool, models_dir: Path = MODELS_DIR, framing: str = "none") -> dict[str, Any]:
    """Add or replace a registry entry (``models_dir/registry.json``) for a weights file there."""
    registry_file = models_dir / "registry.json"
    if registry_file.is_file():
        registry: dict[str, Any] = json.loads(registry_file.read_text(encoding="utf-8"))
    else:
        registry = {"default": version, "models": {}}
    registry["models"][version] = {
        "architecture": architecture,
        "weights": weights_file,
        "sha256": file_sha256(models_dir / weights_file),
        "description": description,
    }
    if framing != "none":
        registry["models"][version]["framing"] = framing
    if make_default or registry.get("default") not in registry["models"]:
        registry["default"] = version
    registry["models"] = dict(sorted(registry["models"].items()))
    registry_file.write_text(json.dumps(registry, indent=2) + "\n", encoding="utf-8")
    return registry


def export(config: TrainConfig, checkpoint_dir: Path, version: str, description: str, make_default: bool,
           order: Sequence[int] | None = None, models_dir: Path = MODELS_DIR, weights: Path | None = None) -> Path:
    """Write ``models_dir/VERSION.weights.h5`` (float32) and register it.

    ``weights``: a snapshot to export instead of the checkpoint's latest weights.
    """
    model = float32_model(config, weights or checkpoint_dir / "model.weights.h5")
    if order is not None:
        permute_output_bits(model, order)
    target = models_dir / f"{version}.weights.h5"
    model.save_weights(str(target))
    register_model(version, config.architecture, target.name, description, make_default, models_dir,
                   config.framing)
    log.info("exported %s (%s) to %s, sha256 %s", version, config.architecture, target, file_sha256(target))
    return target


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None
                      ) -> tuple[argparse.Namespace, TrainConfig]:
    """Parse ``argv`` (which has ``--config``), set up logging, and look the configuration up; an unknown name is a
    usage error that lists the known ones."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args, get_config(args.config)
    except TrainConfigError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a silse hashing model.")
    parser.add_argument("--config", default="seed", help=f"one of {sorted(CONFIGS)}")
    parser.add_argument("--data", type=Path, required=True, help="corpus folder from silse_spark.training.data")
    parser.add_argument("--checkpoints", type=Path, default=Path("work/checkpoints"))
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    parser.add_argument("--steps", type=int, default=None, help="stop at this total step count")
    parser.add_argument("--resume", action="store_true", help="continue from the configuration's checkpoint")
    parser.add_argument("--snapshot-minutes", type=float, default=None,
                        help="also keep the weights every this many minutes (CHECKPOINTS/CONFIG/snapshots/)")
    parser.add_argument("--export", metavar="VERSION", default=None,
                        help="after training, write silse_spark/models/VERSION.weights.h5 and register it")
    parser.add_argument("--export-only", action="store_true", help="export the checkpoint without training")
    parser.add_argument("--default", action="store_true", help="make the exported version the registry default")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where weights and registry.json go")
    parser.add_argument("--snapshot", type=int, default=None, metavar="STEP",
                        help="with --export-only: export CHECKPOINTS/CONFIG/snapshots/step-STEP instead of the "
                             "latest weights")
    parser.add_argument("--stable-order", action="store_true",
                        help="order exported bits by stability on validation copies (most stable first)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes making training pairs (default 1: one background thread); on a GPU "
                             "machine, about its CPU count")
    args, config = parse_with_config(parser, argv)
    if args.minutes is None and args.steps is None and not args.export_only:
        args.minutes = 30.0
        log.info("no --minutes/--steps given: training for %.0f minutes", args.minutes)
    checkpoint_dir = args.checkpoints / config.name
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())
    wall = time.time()
    if not args.export_only:
        if args.snapshot_minutes is not None and args.snapshot_minutes <= 0:
            parser.error(f"--snapshot-minutes must be > 0, got {args.snapshot_minutes}")
        if args.workers < 1:
            parser.error(f"--workers must be at least 1, got {args.workers}")
        _, state = train(config, args.data, checkpoint_dir, args.minutes, args.steps, args.resume,
                         args.snapshot_minutes, args.workers)
    else:
        raw = json.loads((checkpoint_dir / "state.json").read_text(encoding="utf-8"))["state"]
        state = TrainState(**raw)
    weights = checkpoint_dir / "model.weights.h5"
    if args.snapshot is not None:
        if not args.export_only:
            parser.error("--snapshot needs --export-only (it names weights that already exist)")
        weights = snapshot_path(checkpoint_dir, args.snapshot)
        if not weights.is_file():
            parser.error(f"no snapshot {weights}; the snapshots are {sorted(p.name for p in weights.parent.glob('*.h5'))}")
        state = replace(state, step=args.snapshot, pairs=args.snapshot * config.batch_size,
                        seconds=state.seconds * args.snapshot / max(state.step, 1))
    if args.export:
        order = None
        if args.stable_order:
            from silse_spark.training.validate import stability_order

            order = stability_order(float32_model(config, weights), args.data, framing=config.framing)
        description = (f"config {config.name}: {config.description}. {state.step} steps, {state.pairs} pairs "
                       f"(batch {config.batch_size}), {state.seconds / 60:.0f} min of training steps on a 2-core "
                       f"CPU (no GPU){', bits ordered by stability' if order is not None else ''}"
                       f"{' (a snapshot; its minutes estimated pro rata of the run)' if args.snapshot else ''}")
        export(config, checkpoint_dir, args.export, description, args.default, order, args.models_dir, weights)
    log.info("done in %.0f s", time.time() - wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
