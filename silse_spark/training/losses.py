"""Training objectives for silse models, written with ``keras.ops`` (any Keras 3 backend).

All functions take model outputs in (0, 1) (the 48 sigmoid outputs, the same
numbers :mod:`silse_spark.codes` thresholds at 0.5) and return a scalar.

``seed_pair_loss``
    The design's loss (``silse-design.md``): with ``L_mae`` the mean absolute
    error between two output vectors,
    ``L = s * (1 - log L_mae) + (s - 1) * (-L_mae)``; ``s = 0`` for an image and
    its altered copy (the loss is ``L_mae``, pulled to 0), ``s = 1`` for two
    different images (the loss is ``1 - log L_mae``, pushing them apart).

The silse-v1 terms work on the signed outputs ``u = 2 * w - 1`` in (-1, 1)
(``tanh`` of half the logit), whose signs are the code bits:

``positive_margin_loss``
    Per bit ``relu(margin - u_a * u_b)``: a copy must agree with its original
    in the sign of every bit, with a margin, which is what an exact code needs.
``negative_similarity_loss``
    All in-batch pairs of distinct images: their mean bit agreement
    ``u_i . u_j / 48`` is pushed below ``margin``, with extra weight on the
    hardest negative of each row.
``memory_negative_loss``
    The same push against the signed outputs of earlier batches (a queue,
    :class:`silse_spark.training.train.NegativeMemory`), passed in as data so
    no gradient flows into them; rows of the same source image are masked.
``balance_loss``
    Each bit should be 1 for half the images: squared batch mean of ``u``.
``decorrelation_loss``
    Bits should be uncorrelated: squared off-diagonal batch correlations.
``quantisation_loss``
    Outputs should sit at 0 or 1, far from the 0.5 threshold: ``(|u| - 1)^2``.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
from keras import ops

log = logging.getLogger(__name__)

EPSILON = 1e-6
"""Floor of ``L_mae`` inside the logarithm, so identical outputs give a finite loss."""

Tensor = Any


def mean_absolute_error(out_a: Tensor, out_b: Tensor) -> Tensor:
    """Per-pair mean absolute error over the last axis, shape ``(batch,)``."""
    return ops.mean(ops.abs(out_a - out_b), axis=-1)


def seed_pair_loss(out_a: Tensor, out_b: Tensor, s: Tensor) -> Tensor:
    """The design's pair loss, averaged over the batch.

    Parameters
    ----------
    out_a, out_b
        Outputs ``(batch, 48)`` of the two images of each pair.
    s
        ``(batch,)``: 0 where the pair is an image and its altered copy,
        1 where the images are different.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full((1, 48), 0.2, "float32"); b = np.full((1, 48), 0.7, "float32")
    >>> round(float(seed_pair_loss(a, b, np.zeros(1, "float32"))), 3)  # L_mae
    0.5
    >>> round(float(seed_pair_loss(a, b, np.ones(1, "float32"))), 3)   # 1 - log 0.5
    1.693
    """
    s = ops.cast(ops.reshape(s, (-1,)), "float32")
    mae = ops.maximum(mean_absolute_error(ops.cast(out_a, "float32"), ops.cast(out_b, "float32")), EPSILON)
    return ops.mean(s * (1.0 - ops.log(mae)) + (s - 1.0) * (-mae))


def seed_batch_loss(out_a: Tensor, out_b: Tensor) -> Tensor:
    """Seed loss over a batch of (original, copy) rows: each row is a similar pair (s=0),
    and each original with the next row's copy is a different pair (s=1).

    Every forward pass thus serves ``batch`` similar and ``batch`` different pairs.
    """
    n = ops.shape(out_a)[0]
    zeros = ops.zeros((n,), dtype="float32")
    ones = ops.ones((n,), dtype="float32")
    shifted = ops.roll(out_b, shift=1, axis=0)
    return 0.5 * (seed_pair_loss(out_a, out_b, zeros) + seed_pair_loss(out_a, shifted, ones))


def signed(outputs: Tensor) -> Tensor:
    """Sigmoid outputs in (0, 1) -> signed outputs in (-1, 1); the sign is the bit."""
    return 2.0 * ops.cast(outputs, "float32") - 1.0


def positive_margin_loss(u_a: Tensor, u_b: Tensor, margin: float) -> Tensor:
    """Mean over bits and pairs of ``relu(margin - u_a * u_b)`` (0 when every bit agrees firmly).

    >>> import numpy as np
    >>> u = np.ones((2, 48), "float32")
    >>> float(positive_margin_loss(u, u, 0.5)), float(positive_margin_loss(u, -u, 0.5))
    (0.0, 1.5)
    """
    return ops.mean(ops.relu(margin - u_a * u_b))


def weakest_bits_loss(u_a: Tensor, u_b: Tensor, margin: float, k: int) -> Tensor:
    """Mean over pairs of the ``k`` largest per-bit hinges ``relu(margin - u_a * u_b)``.

    The exact-code objective: a copy keeps its twin value only if *every* bit
    agrees, so this term puts the gradient on each pair's weakest bits, where
    :func:`positive_margin_loss` spreads it over all 48 (one flipped bit costs
    only 1/48 there).

    >>> import numpy as np
    >>> u = np.ones((1, 48), "float32")
    >>> v = u.copy(); v[0, 5] = -1.0
    >>> float(weakest_bits_loss(u, u, 0.5, 2)), float(weakest_bits_loss(u, v, 0.5, 2))
    (0.0, 0.75)
    """
    hinge = ops.relu(margin - u_a * u_b)
    top, _ = ops.top_k(hinge, k)
    return ops.mean(top)


def similarity_matrix(u_a: Tensor, u_b: Tensor) -> Tensor:
    """Mean bit agreement ``u_a[i] . u_b[j] / bits`` for all pairs, in [-1, 1]."""
    bits = ops.cast(ops.shape(u_a)[-1], "float32")
    return ops.matmul(u_a, ops.transpose(u_b)) / bits


def negative_similarity_loss(u_a: Tensor, u_b: Tensor, margin: float, hard_weight: float) -> Tensor:
    """Push distinct images (all ``i != j`` pairs of the batch) below ``margin`` agreement.

    ``mean(relu(sim - margin)^2)`` over all off-diagonal pairs plus
    ``hard_weight`` times the mean over rows of the hardest (largest) one.

    >>> import numpy as np
    >>> u = np.array([[1.0] * 48, [-1.0] * 48], "float32")
    >>> float(negative_similarity_loss(u, u, 0.0, 0.0))   # opposite codes: no loss
    0.0
    >>> float(negative_similarity_loss(u, u[[0, 0]], 0.0, 0.0))  # row 1 vs row 0 identical
    0.5
    """
    sim = similarity_matrix(u_a, u_b)
    n = ops.shape(sim)[0]
    off = 1.0 - ops.eye(n, dtype="float32")
    excess = ops.relu(sim - margin) * off
    soft = ops.sum(excess * excess) / ops.maximum(ops.sum(off), 1.0)
    hard = ops.mean(ops.max(excess, axis=1))
    return soft + hard_weight * hard


def memory_negative_loss(
    u: Tensor, ids: Tensor, memory: Tensor, memory_ids: Tensor, margin: float, hard_weight: float
) -> Tensor:
    """:func:`negative_similarity_loss` of the rows ``u`` against a memory of earlier outputs.

    Parameters
    ----------
    u
        ``(n, bits)`` signed outputs of this batch.
    ids
        ``(n,)`` source image of each row of ``u``.
    memory
        ``(m, bits)`` signed outputs kept from earlier batches (data: no gradient).
    memory_ids
        ``(m,)`` source image of each memory row; negative for an empty slot.
        A memory row counts only where it is filled and from another image.

    ``mean(relu(sim - margin)^2)`` over the counted (row, memory row) pairs,
    plus ``hard_weight`` times the mean over rows of each row's hardest one
    (0 for a row with no counted memory row).

    >>> import numpy as np
    >>> u = np.ones((1, 48), "float32")
    >>> mem = np.stack([np.ones(48), -np.ones(48)]).astype("float32")
    >>> float(memory_negative_loss(u, np.array([0.0]), mem, np.array([5.0, 6.0]), 0.0, 1.0))  # (1 + 0) / 2 + 1
    1.5
    >>> float(memory_negative_loss(u, np.array([5.0]), mem, np.array([5.0, 6.0]), 0.0, 1.0))  # own image masked
    0.0
    """
    sim = similarity_matrix(ops.cast(u, "float32"), ops.cast(memory, "float32"))
    ids = ops.reshape(ops.cast(ids, "float32"), (-1, 1))
    memory_ids = ops.reshape(ops.cast(memory_ids, "float32"), (1, -1))
    counted = ops.cast(ops.logical_and(memory_ids >= 0.0, ops.not_equal(memory_ids, ids)), "float32")
    excess = ops.relu(sim - margin) * counted
    soft = ops.sum(excess * excess) / ops.maximum(ops.sum(counted), 1.0)
    hard = ops.mean(ops.max(excess, axis=1))
    return soft + hard_weight * hard


def balance_loss(u: Tensor) -> Tensor:
    """Mean over bits of the squared batch mean of ``u`` (0 when every bit is half 1, half 0).

    >>> import numpy as np
    >>> float(balance_loss(np.array([[1.0] * 48, [-1.0] * 48], "float32")))
    0.0
    >>> float(balance_loss(np.ones((2, 48), "float32")))
    1.0
    """
    return ops.mean(ops.square(ops.mean(u, axis=0)))


def decorrelation_loss(u: Tensor) -> Tensor:
    """Mean squared off-diagonal correlation between bits over the batch.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> col = rng.choice([-1.0, 1.0], size=(256, 1)).astype("float32")
    >>> round(float(decorrelation_loss(np.repeat(col, 48, axis=1))), 2)  # all bits equal
    1.0
    """
    centred = u - ops.mean(u, axis=0, keepdims=True)
    std = ops.sqrt(ops.mean(ops.square(centred), axis=0, keepdims=True) + 1e-4)
    z = centred / std
    n = ops.cast(ops.shape(u)[0], "float32")
    corr = ops.matmul(ops.transpose(z), z) / n
    bits = ops.shape(u)[-1]
    off = 1.0 - ops.eye(bits, dtype="float32")
    return ops.sum(ops.square(corr) * off) / ops.sum(off)


def quantisation_loss(u: Tensor) -> Tensor:
    """Mean ``(|u| - 1)^2``: 0 when outputs are exactly 0 or 1, 1 when they sit at 0.5.

    >>> import numpy as np
    >>> float(quantisation_loss(np.zeros((1, 48), "float32")))
    1.0
    """
    return ops.mean(ops.square(ops.abs(u) - 1.0))


OBJECTIVE_SETTINGS = (
    "pos_margin", "neg_margin", "hard_weight", "pos_weight", "neg_weight", "balance_weight",
    "decorrelation_weight", "quantisation_weight", "weakest_bits_weight", "weakest_bits_k", "memory_batches",
    "memory_weight",
)
""":class:`PairObjective`'s settings besides ``kind``: same-named fields of a training configuration
(:func:`silse_spark.training.train.make_objective`) and of the loss's saved config."""


@keras.saving.register_keras_serializable(package="silse")
class PairObjective(keras.losses.Loss):
    """The training loss on ``y_pred = f(concat(a, b))``, shape ``(2 * batch, 48)``.

    The first half of the rows are originals, the second half their altered
    copies in the same order. ``y_true`` is ignored (the design trains "with
    label purposely set to all zero"): original ``i`` and copy ``i`` are a
    similar pair, original ``i`` and copy ``j != i`` different images. ``kind="seed"`` is the design's loss; ``kind="v1"`` the
    weighted sum of the silse-v1 terms.

    ``kind="distill"`` (self-distillation to fixed codes): ``y_true`` holds,
    for every row, the code of its original as a frozen teacher computes it,
    as +-1 per bit; each row's signed outputs are held to it with the copy
    margin (and the weakest-bits and quantisation terms where weighted). The
    targets are data, so the codes cannot collapse: distinct originals keep
    the teacher's distinct codes while their copies are pulled onto them.
    With ``neg_weight > 0`` the in-batch negative term of ``v1`` is added, to
    keep images other than the targets' apart as well.

    With ``memory_batches > 0`` (``kind="v1"`` only), ``y_true`` is not
    ignored but carries the negative memory, laid out by
    :meth:`silse_spark.training.train.NegativeMemory.targets`: column 0 the
    source id of each row of ``y_pred``, the other columns the memory rows
    ``(id, u_1 .. u_bits)`` in row-major order. Every row of this batch
    (originals and copies) is pushed away from the memory with
    :func:`memory_negative_loss`, at ``neg_weight * memory_weight``. Being
    data, the memory gets no gradient. ``memory_batches = 0`` is the loss
    without memory, term for term.
    """

    def __init__(
        self,
        kind: str = "seed",
        pos_margin: float = 0.5,
        neg_margin: float = 0.0,
        hard_weight: float = 0.5,
        pos_weight: float = 1.0,
        neg_weight: float = 1.0,
        balance_weight: float = 0.0,
        decorrelation_weight: float = 0.0,
        quantisation_weight: float = 0.0,
        weakest_bits_weight: float = 0.0,
        weakest_bits_k: int = 4,
        memory_batches: int = 0,
        memory_weight: float = 1.0,
        name: str = "silse_pair_objective",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if kind not in ("seed", "v1", "distill"):
            raise ValueError(f"loss kind {kind!r} unknown; expected 'seed', 'v1' or 'distill'")
        if memory_batches and kind != "v1":
            raise ValueError("a negative memory (memory_batches > 0) needs loss kind 'v1'")
        self.kind = kind
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.hard_weight = hard_weight
        self.pos_weight = pos_weight
        self.neg_weight = neg_weight
        self.balance_weight = balance_weight
        self.decorrelation_weight = decorrelation_weight
        self.quantisation_weight = quantisation_weight
        self.weakest_bits_weight = weakest_bits_weight
        self.weakest_bits_k = weakest_bits_k
        self.memory_batches = memory_batches
        self.memory_weight = memory_weight

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = ops.cast(y_pred, "float32")
        half = ops.shape(y_pred)[0] // 2
        out_a, out_b = y_pred[:half], y_pred[half:]
        if self.kind == "seed":
            return seed_batch_loss(out_a, out_b)
        if self.kind == "distill":
            u = signed(y_pred)
            loss = self._distill(ops.cast(y_true, "float32"), u)
            if self.neg_weight:
                loss = loss + self.neg_weight * negative_similarity_loss(u[:half], u[half:], self.neg_margin,
                                                                         self.hard_weight)
            return loss
        u_a, u_b = signed(out_a), signed(out_b)
        both = ops.concatenate([u_a, u_b], axis=0)
        loss = self.pos_weight * positive_margin_loss(u_a, u_b, self.pos_margin)
        loss = loss + self.neg_weight * negative_similarity_loss(u_a, u_b, self.neg_margin, self.hard_weight)
        if self.weakest_bits_weight:
            loss = loss + self.weakest_bits_weight * weakest_bits_loss(u_a, u_b, self.pos_margin, self.weakest_bits_k)
        if self.memory_batches and self.memory_weight:
            y_true = ops.cast(y_true, "float32")
            bits = y_pred.shape[-1]
            memory = ops.reshape(y_true[:, 1:], (-1, bits + 1))
            memory_loss = memory_negative_loss(both, y_true[:, 0], memory[:, 1:], memory[:, 0],
                                               self.neg_margin, self.hard_weight)
            loss = loss + self.neg_weight * self.memory_weight * memory_loss
        if self.balance_weight:
            loss = loss + self.balance_weight * balance_loss(both)
        if self.decorrelation_weight:
            loss = loss + self.decorrelation_weight * decorrelation_loss(both)
        if self.quantisation_weight:
            loss = loss + self.quantisation_weight * quantisation_loss(both)
        return loss

    def _distill(self, targets: Tensor, u: Tensor) -> Tensor:
        """Every row (original and copy) held to its original's code in ``targets`` (+-1 per bit)."""
        loss = self.pos_weight * positive_margin_loss(targets, u, self.pos_margin)
        if self.weakest_bits_weight:
            loss = loss + self.weakest_bits_weight * weakest_bits_loss(targets, u, self.pos_margin,
                                                                       self.weakest_bits_k)
        if self.quantisation_weight:
            loss = loss + self.quantisation_weight * quantisation_loss(u)
        return loss

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(kind=self.kind, **{name: getattr(self, name) for name in OBJECTIVE_SETTINGS})
        return config
