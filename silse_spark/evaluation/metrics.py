"""Metrics of a hasher on a variant suite: pure NumPy and pandas, no Spark, no images.

A hasher's codes for the ``n`` items of a suite are held as a packed bit
matrix (``uint8``, shape ``(n, ceil(nbits / 8))``, first bit most significant)
plus a boolean ``valid`` mask; an item without a code (a file the hasher
could not read) never matches anything. Codes of any length work: 48-bit
twin values, 64-bit imagehash codes, 128-bit MD5, 256-bit PDQ.

Definitions
-----------
genuine pair
    An altered copy and its source image.
impostor pair
    An item (source, copy or distractor) and a *reference* image (a source
    or a distractor) that comes from a different source.
recall within radius ``r``
    Fraction of genuine pairs at Hamming distance ``<= r``; ``r = 0`` is
    exact-code recall.
false-match rate (FMR) at radius ``r``
    Fraction of impostor pairs at Hamming distance ``<= r``.
``r*``
    The largest radius whose FMR stays ``<= max_fmr`` (1e-4). It can only be
    trusted to about ``1 / n_impostor_pairs``, which the report states.
pairwise precision / recall / F1
    Over all pairs of a set of items: a pair is *true* when both come from
    the same source, *predicted* when both land in the same group (same
    exact code, or same cluster).
Daugman's degrees of freedom
    ``p (1 - p) / sigma^2`` of the impostor Hamming distances divided by
    ``nbits``: the number of independent fair coin flips that would spread
    impostor distances as widely. Equal to ``nbits`` for ideal codes.

Example
-------
>>> packed, valid = pack_codes([0b1010, 0b1011, None], nbits=4)
>>> pair_distances(packed, valid, np.array([0, 0]), np.array([1, 2]), nbits=4).tolist()
[1, 5]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MAX_FMR = 1e-4
"""False-match rate that defines ``r*``."""

RADII = (0, 1, 2, 3, 4)
"""Radii at which recall is always reported."""

ROLE_SOURCE = "source"
ROLE_COPY = "copy"
ROLE_DISTRACTOR = "distractor"


def pack_codes(codes: Sequence[int | None], nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack integer codes into a bit matrix; ``None`` becomes an invalid row.

    Parameters
    ----------
    codes
        One code per item, an int in ``[0, 2**nbits)`` or ``None``.
    nbits
        Code length in bits.

    Returns
    -------
    packed, valid
        ``uint8`` array ``(n, ceil(nbits / 8))`` (big-endian, zero-padded on
        the left) and boolean array ``(n,)``.

    Raises
    ------
    ValueError
        If a code does not fit in ``nbits`` bits or is negative.

    Examples
    --------
    >>> packed, valid = pack_codes([1, None], nbits=12)
    >>> packed.tolist(), valid.tolist()
    ([[0, 1], [0, 0]], [True, False])
    """
    if nbits < 1:
        raise ValueError(f"nbits must be >= 1, got {nbits}")
    nbytes = (nbits + 7) // 8
    packed = np.zeros((len(codes), nbytes), dtype=np.uint8)
    valid = np.zeros(len(codes), dtype=bool)
    for i, code in enumerate(codes):
        if code is None:
            continue
        value = int(code)
        if value < 0 or value.bit_length() > nbits:
            raise ValueError(
                f"code {value:#x} of item {i} does not fit in {nbits} bits; "
                "pass the hasher's true code length as nbits"
            )
        packed[i] = np.frombuffer(value.to_bytes(nbytes, "big"), dtype=np.uint8)
        valid[i] = True
    return packed, valid


def unpack_bits(packed: np.ndarray, nbits: int) -> np.ndarray:
    """The ``(n, nbits)`` 0/1 matrix of packed codes, first bit first.

    Examples
    --------
    >>> unpack_bits(np.array([[5]], dtype=np.uint8), nbits=3).tolist()
    [[1, 0, 1]]
    """
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1)
    return bits[:, bits.shape[1] - nbits :]


def pair_distances(
    packed: np.ndarray,
    valid: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    nbits: int,
    chunk: int = 1 << 19,
) -> np.ndarray:
    """Hamming distance of each pair ``(left[k], right[k])`` of items.

    A pair with an invalid item gets ``nbits + 1``, farther than any real
    distance, so it is never within a radius.

    Examples
    --------
    >>> packed, valid = pack_codes([0, 7], nbits=3)
    >>> pair_distances(packed, valid, np.array([0]), np.array([1]), nbits=3).tolist()
    [3]
    """
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if left.shape != right.shape:
        raise ValueError(f"left and right must have the same shape, got {left.shape} and {right.shape}")
    out = np.empty(len(left), dtype=np.int32)
    for start in range(0, len(left), chunk):
        lo, hi = left[start : start + chunk], right[start : start + chunk]
        xor = np.bitwise_xor(packed[lo], packed[hi])
        out[start : start + chunk] = np.bitwise_count(xor).sum(axis=1, dtype=np.int32)
    out[~(valid[left] & valid[right])] = nbits + 1
    return out


def recall_within(genuine: np.ndarray, radius: int) -> float:
    """Fraction of genuine pair distances ``<= radius`` (NaN if there are none).

    Examples
    --------
    >>> recall_within(np.array([0, 1, 5]), 1)
    0.6666666666666666
    """
    genuine = np.asarray(genuine)
    return float(np.mean(genuine <= radius)) if len(genuine) else float("nan")


def false_match_rate(impostor: np.ndarray, radius: int) -> float:
    """Fraction of impostor pair distances ``<= radius`` (NaN if there are none).

    Examples
    --------
    >>> false_match_rate(np.array([0, 30, 40, 50]), 0)
    0.25
    """
    return recall_within(impostor, radius)


def largest_safe_radius(impostor: np.ndarray, nbits: int, max_fmr: float = MAX_FMR) -> int | None:
    """``r*``: the largest radius in ``0..nbits`` whose false-match rate is ``<= max_fmr``.

    ``None`` when even exact codes match impostors too often (or there are
    no impostor pairs to tell).

    Examples
    --------
    >>> largest_safe_radius(np.array([3, 10, 12, 20]), nbits=32, max_fmr=0.3)
    9
    >>> largest_safe_radius(np.array([0, 0]), nbits=8) is None
    True
    """
    impostor = np.asarray(impostor)
    if len(impostor) == 0:
        return None
    counts = np.bincount(np.clip(impostor, 0, nbits + 1), minlength=nbits + 2)[: nbits + 1]
    fmr = np.cumsum(counts) / len(impostor)
    ok = np.nonzero(fmr <= max_fmr)[0]
    # FMR never decreases with the radius, so the admissible radii are a prefix.
    return int(ok[-1]) if len(ok) else None


@dataclass(frozen=True)
class PairScores:
    """Pairwise precision, recall and F1 of a grouping against the truth."""

    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _pairs(sizes: np.ndarray) -> int:
    sizes = np.asarray(sizes, dtype=np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_scores(true_groups: Sequence[object], predicted_groups: Sequence[object]) -> PairScores:
    """Pairwise precision, recall and F1 of ``predicted_groups`` against ``true_groups``.

    Counts pairs through group sizes, never by listing pairs, so it is linear
    in the number of items. Precision is NaN when nothing is predicted to
    pair (there is nothing to be right or wrong about); F1 is then 0 if
    there were true pairs to find.

    Parameters
    ----------
    true_groups
        Group label of each item in the ground truth (its source).
    predicted_groups
        Group label of each item from the method (its code, or its cluster).
        Give items without a code a label of their own.

    Examples
    --------
    >>> s = pairwise_scores(["a", "a", "b"], [1, 1, 1])
    >>> s.precision, s.recall, round(s.f1, 3)
    (0.3333333333333333, 1.0, 0.5)
    """
    if len(true_groups) != len(predicted_groups):
        raise ValueError(
            f"true_groups has {len(true_groups)} items but predicted_groups has {len(predicted_groups)}"
        )
    frame = pd.DataFrame({"t": list(true_groups), "p": list(predicted_groups)})
    true_pairs = _pairs(frame.groupby("t").size().to_numpy())
    predicted_pairs = _pairs(frame.groupby("p").size().to_numpy())
    correct_pairs = _pairs(frame.groupby(["t", "p"]).size().to_numpy())
    precision = correct_pairs / predicted_pairs if predicted_pairs else float("nan")
    recall = correct_pairs / true_pairs if true_pairs else float("nan")
    if correct_pairs == 0:
        f1 = 0.0 if true_pairs else float("nan")
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return PairScores(precision, recall, f1, true_pairs, predicted_pairs, correct_pairs)


def exact_code_groups(packed: np.ndarray, valid: np.ndarray) -> list[str]:
    """A group label per item: its code in hex, or a label of its own if it has none.

    Examples
    --------
    >>> packed, valid = pack_codes([3, 3, None], nbits=8)
    >>> exact_code_groups(packed, valid)
    ['03', '03', 'nocode-2']
    """
    return [row.tobytes().hex() if ok else f"nocode-{i}" for i, (row, ok) in enumerate(zip(packed, valid))]


def bit_balance(bits: np.ndarray) -> np.ndarray:
    """Mean of each bit over items: 0.5 is ideal, 0 or 1 is a wasted bit.

    Examples
    --------
    >>> bit_balance(np.array([[1, 0], [1, 1]])).tolist()
    [1.0, 0.5]
    """
    bits = np.asarray(bits, dtype=np.float64)
    if bits.ndim != 2 or len(bits) == 0:
        raise ValueError(f"expected a non-empty (n_items, nbits) matrix, got shape {bits.shape}")
    return bits.mean(axis=0)


def mean_abs_bit_correlation(bits: np.ndarray) -> float:
    """Mean absolute Pearson correlation between distinct bits (0 is ideal).

    Constant bits have no correlation and are left out; NaN if fewer than
    two bits vary.

    Examples
    --------
    >>> mean_abs_bit_correlation(np.array([[0, 0], [1, 1], [0, 0], [1, 1]]))
    1.0
    """
    bits = np.asarray(bits, dtype=np.float64)
    varying = bits[:, bits.std(axis=0) > 0]
    if varying.shape[1] < 2:
        return float("nan")
    corr = np.corrcoef(varying, rowvar=False)
    off = ~np.eye(corr.shape[0], dtype=bool)
    return float(np.abs(corr[off]).mean())


def daugman_dof(impostor: np.ndarray, nbits: int) -> float:
    """Daugman's degrees of freedom of impostor distances: ``p (1 - p) / var``.

    ``p`` and ``var`` are the mean and variance of ``impostor / nbits``;
    pairs with a missing code (distance ``nbits + 1``) are left out. NaN
    when the distances do not vary (e.g. a constant hasher).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = rng.binomial(64, 0.5, size=200_000)
    >>> round(daugman_dof(d, 64))
    64
    """
    d = np.asarray(impostor, dtype=np.float64)
    d = d[d <= nbits] / nbits
    if len(d) < 2 or d.var() == 0:
        return float("nan")
    p = d.mean()
    return float(p * (1 - p) / d.var())


def genuine_pairs(manifest: pd.DataFrame, families: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of (copy, its source) for the copies of the given families.

    ``manifest`` needs columns ``role``, ``family``, ``source_id``; exactly
    one ``source`` row per ``source_id`` that has copies.

    Examples
    --------
    >>> m = pd.DataFrame({"role": ["source", "copy", "copy"], "family": [None, "blur", "jpeg"],
    ...                   "source_id": ["a", "a", "a"]})
    >>> [x.tolist() for x in genuine_pairs(m, ["blur"])]
    [[1], [0]]
    """
    roles = manifest["role"].to_numpy()
    source_row = pd.Series(np.nonzero(roles == ROLE_SOURCE)[0],
                           index=manifest["source_id"].to_numpy()[roles == ROLE_SOURCE])
    if not source_row.index.is_unique:
        raise ValueError("the manifest has more than one source row for some source_id")
    copies = np.nonzero((roles == ROLE_COPY) & manifest["family"].isin(list(families)).to_numpy())[0]
    sources = source_row.reindex(manifest["source_id"].to_numpy()[copies]).to_numpy()
    if np.isnan(sources.astype(np.float64)).any():
        raise ValueError("some copies have no source row in the manifest")
    return copies, sources.astype(np.int64)


def scored_items(manifest: pd.DataFrame, families: Sequence[str]) -> np.ndarray:
    """Which items a family set's pairwise scores cover: every source and distractor, and the
    copies of those families.

    Examples
    --------
    >>> m = pd.DataFrame({"role": ["source", "copy", "copy", "distractor"], "family": [None, "blur", "jpeg", None]})
    >>> scored_items(m, ["blur"]).tolist()
    [True, True, False, True]
    """
    roles = manifest["role"].to_numpy()
    is_ref = (roles == ROLE_SOURCE) | (roles == ROLE_DISTRACTOR)
    return is_ref | ((roles == ROLE_COPY) & np.isin(manifest["family"].to_numpy(), list(families)))


def impostor_pairs(
    manifest: pd.DataFrame, max_pairs: int = 6_000_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of every (item, reference of another source) pair.

    References are the sources and distractors. A pair is kept once whatever
    its order among references. If there are more than ``max_pairs``, a
    deterministic sample of ``max_pairs`` is returned.

    Examples
    --------
    >>> m = pd.DataFrame({"role": ["source", "copy", "distractor"], "family": [None, "blur", None],
    ...                   "source_id": ["a", "a", "d"]})
    >>> [x.tolist() for x in impostor_pairs(m)]
    [[0, 1], [2, 2]]
    """
    roles = manifest["role"].to_numpy()
    groups = pd.factorize(manifest["source_id"])[0]
    refs = np.nonzero((roles == ROLE_SOURCE) | (roles == ROLE_DISTRACTOR))[0]
    is_ref = np.zeros(len(manifest), dtype=bool)
    is_ref[refs] = True
    items = np.arange(len(manifest))
    left = np.repeat(items, len(refs))
    right = np.tile(refs, len(items))
    # Reference-reference pairs would appear twice (a, b) and (b, a): keep a < b.
    keep = (groups[left] != groups[right]) & ~(is_ref[left] & (left > right))
    left, right = left[keep], right[keep]
    if len(left) > max_pairs:
        chosen = np.sort(np.random.default_rng(seed).choice(len(left), size=max_pairs, replace=False))
        left, right = left[chosen], right[chosen]
    return left, right


@dataclass
class HasherScores:
    """Everything measured for one hasher on one suite.

    Attributes
    ----------
    families
        Family (or family set such as ``seed``) -> metric name -> value.
    code
        Properties of the code itself: bit balance, correlation, degrees of
        freedom, ``r*`` and the number of impostor pairs behind it.
    genuine
        Family (or set) -> genuine pair distances, for plots.
    impostor
        All impostor pair distances, for plots.
    """

    nbits: int
    families: dict[str, dict[str, object]]
    code: dict[str, object]
    genuine: dict[str, np.ndarray]
    impostor: np.ndarray


def score_codes(
    manifest: pd.DataFrame,
    packed: np.ndarray,
    valid: np.ndarray,
    nbits: int,
    family_sets: Mapping[str, Sequence[str]],
    impostors: tuple[np.ndarray, np.ndarray],
    groupings: Mapping[str, Sequence[object]] | None = None,
    max_fmr: float = MAX_FMR,
) -> HasherScores:
    """Score one hasher's codes on a suite, per family and per set of families.

    Parameters
    ----------
    manifest
        The suite, one row per item, in the order of ``packed``; columns
        ``role``, ``family``, ``source_id``.
    packed, valid
        The codes, from :func:`pack_codes`.
    nbits
        Code length.
    family_sets
        Name -> families scored together, e.g. ``{"blur": ["blur"],
        "seed": [...]}``.
    impostors
        ``(left, right)`` row positions from :func:`impostor_pairs`.
    groupings
        Extra groupings of the items to score pairwise besides exact codes,
        name -> one label per item (e.g. clusters from the cluster job).
    max_fmr
        The false-match rate that defines ``r*``.

    Examples
    --------
    >>> m = pd.DataFrame({"role": ["source", "copy", "source", "copy"],
    ...                   "family": [None, "blur", None, "blur"], "source_id": ["a", "a", "b", "b"]})
    >>> packed, valid = pack_codes([1, 1, 2, 2], nbits=8)
    >>> s = score_codes(m, packed, valid, 8, {"blur": ["blur"]}, impostor_pairs(m))
    >>> s.families["blur"]["recall_r0"], s.families["blur"]["fmr_r0"], s.families["blur"]["exact_f1"]
    (1.0, 0.0, 1.0)
    """
    roles = manifest["role"].to_numpy()
    is_ref = (roles == ROLE_SOURCE) | (roles == ROLE_DISTRACTOR)
    left, right = impostors
    impostor = pair_distances(packed, valid, left, right, nbits)
    r_star = largest_safe_radius(impostor, nbits, max_fmr)
    exact = exact_code_groups(packed, valid)
    all_groupings: dict[str, Sequence[object]] = {"exact": exact, **(groupings or {})}
    true_groups = manifest["source_id"].to_numpy()

    families: dict[str, dict[str, object]] = {}
    genuine_by_family: dict[str, np.ndarray] = {}
    for name, members in family_sets.items():
        copies, sources = genuine_pairs(manifest, members)
        genuine = pair_distances(packed, valid, copies, sources, nbits)
        genuine_by_family[name] = genuine
        in_set = scored_items(manifest, members)
        imp = impostor[in_set[left]]
        row: dict[str, object] = {
            "n_copies": len(copies),
            "n_copies_without_code": int((~valid[copies]).sum()),
            "n_impostor_pairs": len(imp),
        }
        for r in RADII:
            row[f"recall_r{r}"] = recall_within(genuine, r)
        row["r_star"] = r_star
        row["recall_r_star"] = recall_within(genuine, r_star) if r_star is not None else float("nan")
        row["fmr_r0"] = false_match_rate(imp, 0)
        row["fmr_r_star"] = false_match_rate(imp, r_star) if r_star is not None else float("nan")
        row["mean_genuine_distance"] = float(genuine[genuine <= nbits].mean()) if (genuine <= nbits).any() else float("nan")
        members_idx = np.nonzero(in_set)[0]
        for gname, labels in all_groupings.items():
            chosen = [labels[int(i)] for i in members_idx]
            scores = pairwise_scores(true_groups[members_idx], chosen)
            for key, value in scores.as_dict().items():
                row[f"{gname}_{key}"] = value
        families[name] = row

    ref_bits = unpack_bits(packed[is_ref & valid], nbits)
    code: dict[str, object] = {
        "nbits": nbits,
        "n_items": len(manifest),
        "n_items_without_code": int((~valid).sum()),
        "n_impostor_pairs": len(impostor),
        "fmr_resolution": 1.0 / len(impostor) if len(impostor) else float("nan"),
        "r_star": r_star,
        "max_fmr": max_fmr,
        "fmr_r0": false_match_rate(impostor, 0),
        "fmr_r_star": false_match_rate(impostor, r_star) if r_star is not None else float("nan"),
        "mean_impostor_distance": float(impostor[impostor <= nbits].mean()) if (impostor <= nbits).any() else float("nan"),
        "daugman_dof": daugman_dof(impostor, nbits),
    }
    if len(ref_bits):
        balance = bit_balance(ref_bits)
        code["bit_balance"] = [round(float(b), 4) for b in balance]
        code["bit_balance_max_deviation"] = float(np.abs(balance - 0.5).max())
        code["constant_bits"] = int(((balance == 0) | (balance == 1)).sum())
        code["mean_abs_bit_correlation"] = mean_abs_bit_correlation(ref_bits)
    return HasherScores(nbits, families, code, genuine_by_family, impostor)
