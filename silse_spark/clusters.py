"""Group accounts that reuse an altered copy of one avatar into clusters.

Input is the hash job's table (``jobs/hash_all.py``); rows whose status is not
``ok`` are ignored and counted. Accounts are linked by three methods, each
recorded on the output rows:

``exact``
    the same twin value.
``prefix``
    the same first ``prefix_length`` hex characters (off by default since
    2026-12-01: with densest radius links they only lowered precision; ``10``
    was the default before, see docs/clusters.md).
``radius``
    distinct codes within Hamming distance ``radius`` (<= 2), found without
    comparing all pairs: every distinct code is expanded to its 48 one-bit
    neighbours, the expansions are equi-joined on the neighbour value and each
    candidate pair is verified with ``bit_count(a ^ b)``. By default
    (``radius_links="densest"``) each code keeps one of its pairs: the edge to
    its *densest* neighbour (most accounts, then most accounts within the
    radius, then the smaller code), and only if that neighbour ranks above the
    code itself; codes with no such neighbour and at least two accounts climb
    once more within 2 bits, see :func:`densest_neighbour_edges`. With
    ``radius_links="all"`` every pair is a link (single linkage).

Clustering works on a graph whose nodes are *distinct codes* (all accounts of a
code are already linked by ``exact``), so the graph is as small as the number of
distinct codes that have any link at all. Its connected components are
computed with the alternating large-star / small-star algorithm of Kiveris et
al. (2014), see :func:`connected_components`. Components with fewer than
``min_accounts`` accounts are dropped.

Allowlisted codes (default avatars and other benign shared images) are removed
before anything is linked, so they never form a cluster. Low-information codes
(near-uniform images give near-constant codes: at most ``low_info_bits`` ones
or zeros) are flagged and linked only by ``exact``, never by prefix or radius.

A cluster's id is ``<first run_date>_<smallest twin value>`` when it is new; a
cluster that shares accounts with a cluster of the previous run_date inherits
that cluster's id (see :func:`assign_stable_ids`).

Examples
--------
>>> is_low_information(0x000000000003, low_info_bits=4)
True
>>> prefix_bits(0x0123456789AB, prefix_length=4)
291
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from silse_spark.codes import CODE_BITS, CODE_HEX_LENGTH, InvalidTwinValueError, validate_twin_value
from silse_spark.config import (
    ConfigError,
    pruned_dates,
    require_hash_columns,
    staging_note,
    validate_keep_days,
    validate_run_date,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

METHODS = ("exact", "prefix", "radius")
"""Link methods, in the order they are listed in ``method`` and ``methods``."""

MAX_RADIUS = 2
DEFAULT_PREFIX_LENGTH = 0
"""Prefix links are off by default (docs/clusters.md, "Choosing the prefix length and radius")."""
DEFAULT_RADIUS = 1
DEFAULT_MIN_ACCOUNTS = 3
DEFAULT_LOW_INFO_BITS = 4
DEFAULT_MAX_ITERATIONS = 60
RADIUS_LINKS = ("densest", "all")
"""How pairs within the radius become edges: see :func:`densest_neighbour_edges`."""
DEFAULT_RADIUS_LINKS = "densest"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class ClusterJobConfig:
    """Everything ``jobs/detect_clusters.py`` needs, validated once on creation.

    Parameters
    ----------
    hashes, output
        The hash job's output directory and this job's output directory
        (``clusters/`` and ``cluster_summary/`` are written under it).
    run_date
        The hashes partition to cluster; ``None`` means the latest one.
    prefix_length
        Hex characters that must agree for a ``prefix`` link; 0 turns prefix
        links off. 1..11.
    radius
        Largest Hamming distance for a ``radius`` link; 0 turns it off. 0..2.
    radius_links
        ``"densest"`` (default): each code links to its densest neighbour
        within the radius, if it is denser, and local maxima with two or more
        accounts to the densest such code within 2 bits (a forest; no chains
        through sparse codes). ``"all"``: every pair within the radius is a
        link (single linkage).
    min_accounts
        Smallest cluster kept (>= 2).
    allowlist
        Twin values that never form a cluster (see :func:`read_allowlist`).
    low_info_bits
        A code with at most this many ones, or at most this many zeros, is
        low-information: linked only by ``exact``. -1 turns the flag off.
    database
        Hive metastore database to register the tables in; ``None`` skips it.
    keep_days
        After writing, delete the nights of ``clusters`` and ``cluster_summary`` more than this many days
        older than the night clustered; ``None`` keeps every night.

    Examples
    --------
    >>> ClusterJobConfig("work/output/hashes", "work/output", radius=1).radius
    1
    >>> ClusterJobConfig("h", "o", radius=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    silse_spark.config.ConfigError: --radius 3 is out of range: expected 0, 1 or 2 ...
    """

    hashes: str
    output: str
    run_date: str | None = None
    prefix_length: int = DEFAULT_PREFIX_LENGTH
    radius: int = DEFAULT_RADIUS
    radius_links: str = DEFAULT_RADIUS_LINKS
    min_accounts: int = DEFAULT_MIN_ACCOUNTS
    allowlist: frozenset[str] = field(default_factory=frozenset)
    low_info_bits: int = DEFAULT_LOW_INFO_BITS
    database: str | None = "silse"
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    keep_days: int | None = None

    def __post_init__(self) -> None:
        if not self.hashes:
            raise ConfigError("no --hashes given; pass the output directory of jobs/hash_all.py")
        validate_keep_days(self.keep_days)
        if not self.output:
            raise ConfigError("no --output given; pass the directory to write clusters/ and cluster_summary/ to")
        if self.run_date is not None:
            validate_run_date(self.run_date)
        if not 0 <= self.prefix_length < CODE_HEX_LENGTH:
            raise ConfigError(
                f"--prefix-length {self.prefix_length} is out of range: expected 0 (off) to "
                f"{CODE_HEX_LENGTH - 1} hex characters; the documented default is {DEFAULT_PREFIX_LENGTH} (off)"
            )
        if not 0 <= self.radius <= MAX_RADIUS:
            raise ConfigError(
                f"--radius {self.radius} is out of range: expected 0, 1 or 2 (0 turns radius links off); "
                "larger radii need an O(48^R) expansion per code and link unrelated images"
            )
        if self.radius_links not in RADIUS_LINKS:
            raise ConfigError(
                f"--radius-links {self.radius_links!r} is not known: expected one of {', '.join(RADIUS_LINKS)}"
            )
        if self.min_accounts < 2:
            raise ConfigError(f"--min-accounts {self.min_accounts} is too small: a cluster needs at least 2 accounts")
        if not -1 <= self.low_info_bits < CODE_BITS // 2:
            raise ConfigError(
                f"--low-info-bits {self.low_info_bits} is out of range: expected -1 (off) to {CODE_BITS // 2 - 1}"
            )
        if self.max_iterations < 1:
            raise ConfigError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if self.database is not None and not _NAME.match(self.database):
            raise ConfigError(
                f"--database {self.database!r} is not a plain SQL name; use lowercase letters, digits and _"
            )
        for value in self.allowlist:
            try:
                validate_twin_value(value)
            except InvalidTwinValueError as exc:
                raise ConfigError(f"allowlist: {exc}") from exc

    @property
    def clusters_path(self) -> str:
        return f"{self.output.rstrip('/')}/clusters"

    @property
    def summary_path(self) -> str:
        return f"{self.output.rstrip('/')}/cluster_summary"


# ---------------------------------------------------------------------------
# Pure functions


def read_allowlist(path: str | Path) -> frozenset[str]:
    """Read an allowlist file: one twin value per line; blank lines and ``#`` comments ignored.

    Raises
    ------
    ConfigError
        If the file cannot be read or a line is not a twin value (the message
        names the line).

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    ...     _ = f.write("# default avatar\\n0123456789ab  # grey silhouette\\n")
    >>> sorted(read_allowlist(f.name)); os.remove(f.name)
    ['0123456789ab']
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not a code
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--allowlist {path}: cannot read it ({exc}); pass a UTF-8 text file of twin values") from exc
    values = set()
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        try:
            values.add(validate_twin_value(value))
        except InvalidTwinValueError as exc:
            raise ConfigError(f"--allowlist {path}, line {number}: {exc}") from exc
    return frozenset(values)


def is_low_information(bits: int, low_info_bits: int = DEFAULT_LOW_INFO_BITS) -> bool:
    """True if a code has at most ``low_info_bits`` ones or at most that many zeros.

    A blank, near-uniform image drives the model's outputs to one side, so its
    code is (nearly) all zeros or all ones; among uniformly random 48-bit codes
    the chance of this with ``low_info_bits=4`` is 1.5e-9.

    >>> is_low_information(0xFFFFFFFFFFFE)
    True
    >>> is_low_information(0x0123456789AB)
    False
    """
    ones = int(bits).bit_count()
    return ones <= low_info_bits or CODE_BITS - ones <= low_info_bits


def prefix_bits(bits: int, prefix_length: int) -> int:
    """The first ``prefix_length`` hex characters of a code, as an integer.

    >>> prefix_bits(0xABCDEF000000, 2)
    171
    """
    return int(bits) >> (4 * (CODE_HEX_LENGTH - prefix_length))


def method_label(methods: Iterable[str]) -> str:
    """The ``method`` column: the methods that link a code, in :data:`METHODS` order, joined by ``+``.

    >>> method_label({"radius", "exact"})
    'exact+radius'
    """
    chosen = set(methods)
    return "+".join(m for m in METHODS if m in chosen)


# ---------------------------------------------------------------------------
# Spark: links


def _F():  # noqa: N802 - pyspark.sql.functions, imported lazily so the pure part needs no Spark
    from pyspark.sql import functions

    return functions


def low_information_column(bits: Column, low_info_bits: int) -> Column:
    """Spark column twin of :func:`is_low_information`."""
    F = _F()
    if low_info_bits < 0:
        return F.lit(False)
    ones = F.bit_count(bits)
    return (ones <= low_info_bits) | (ones >= CODE_BITS - low_info_bits)


def one_bit_neighbours(codes: DataFrame, column: str = "bits") -> DataFrame:
    """Each code with its 48 one-bit neighbours: columns ``bits``, ``key`` (48 rows per code).

    >>> # spark.createDataFrame([(0,)], "bits long") -> keys 1, 2, 4, ..., 2**47
    """
    F = _F()
    masks = F.array(*[F.lit(1 << position).cast("long") for position in range(CODE_BITS)])
    return codes.select(F.col(column).alias("bits"), F.explode(masks).alias("mask")).select(
        "bits", F.col("bits").bitwiseXOR(F.col("mask")).alias("key")
    )


def radius_pairs(codes: DataFrame, radius: int) -> DataFrame:
    """All pairs of distinct codes within Hamming distance ``radius`` (1 or 2), without an O(n^2) step.

    ``codes`` has a ``bits`` column (BIGINT twin_bits). Each distinct code is
    expanded to its 48 one-bit neighbours. A pair at distance 1 is a code
    whose neighbour *is* the other code (neighbours equi-joined to the codes);
    a pair at distance 2 differs in bits i and j, so ``a ^ 2**i == b ^ 2**j``:
    the two expansions meet on a common neighbour (expansion self-joined on the
    neighbour). Every candidate is verified with ``bit_count(a ^ b)``, and each
    pair is returned once with ``a < b``. Rows: 48 (radius 1) or 49 (radius 2)
    per distinct code in one shuffle, so the cost is linear in the number of
    distinct codes; nothing compares all pairs.

    Returns
    -------
    DataFrame
        Columns ``a``, ``b`` (BIGINT, ``a < b``) and ``distance`` (INT).

    Examples
    --------
    >>> # radius_pairs(spark.createDataFrame([(0,), (1,), (3,)], "bits long"), 1)
    >>> # -> (0, 1, 1), (1, 3, 1)
    """
    F = _F()
    if not 1 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be 1 or 2 for a radius join, got {radius}")
    distinct = codes.select("bits").distinct()
    expanded = one_bit_neighbours(distinct)
    # Join hints: AQE sees the small pre-explode size and would otherwise broadcast 48 rows per code.
    if radius == 1:
        # A neighbour of a is b itself.
        targets = distinct.select(F.col("bits").alias("key"), F.col("bits").alias("other"))
        joined = expanded.join(targets.hint("shuffle_hash"), "key")
    else:
        # With each code also keyed by itself, keys shared by two codes give both distances: a code
        # meets a neighbour of b (distance 1), or two neighbours meet (a ^ 2**i == b ^ 2**j,
        # distance 2). A code occurs at most once per key, so one shuffle of 49 keys per code and a
        # hash aggregation (count, min, max; no sort) give every pair on keys held by exactly two
        # codes. The shuffle comes first: aggregating on the map side would hold every (unique) key
        # of a task in memory. The rare keys held by three or more codes (dense campaigns) are
        # broadcast and their rows self-joined.
        keyed = expanded.unionByName(distinct.select("bits", F.col("bits").alias("key")))
        shared = _persist(
            keyed.repartition("key")
            .groupBy("key")
            .agg(F.count("*").alias("codes"), F.min("bits").alias("a"), F.max("bits").alias("b"))
            .where(F.col("codes") > 1)
        )
        crowded = shared.where(F.col("codes") > 2).select("key")
        meeting = keyed.join(F.broadcast(crowded), "key", "left_semi")
        joined = (
            meeting.join(meeting.select("key", F.col("bits").alias("other")), "key")
            .select("bits", "other")
            .unionByName(shared.where(F.col("codes") == 2).select(F.col("a").alias("bits"), F.col("b").alias("other")))
        )
    pairs = joined.where(F.col("bits") < F.col("other")).select(F.col("bits").alias("a"), F.col("other").alias("b"))
    distance = F.bit_count(F.col("a").bitwiseXOR(F.col("b")))
    return (
        pairs.distinct()
        .withColumn("distance", distance.cast("int"))
        .where(F.col("distance") <= radius)
    )


def code_ranks(pairs: DataFrame, codes: DataFrame) -> DataFrame:
    """Each code's rank for :func:`densest_neighbour_edges`: columns ``bits``, ``accounts``, ``rank``.

    ``rank`` is a struct compared field by field: the code's accounts, then the
    accounts within the radius (its own and those of every code it is paired
    with in ``pairs``), then the negated code, so the smaller code wins a tie. A
    strict total order: no two codes rank equal.
    """
    F = _F()
    both = _both_ways(pairs)
    weight = codes.select(F.col("bits").alias("dst"), F.col("accounts").alias("dst_accounts"))
    nearby = both.join(weight, "dst").groupBy("src").agg(F.sum("dst_accounts").alias("near"))
    return codes.join(nearby.withColumnRenamed("src", "bits"), "bits", "left").select(
        "bits",
        "accounts",
        F.struct(
            F.col("accounts"),
            (F.col("accounts") + F.coalesce(F.col("near"), F.lit(0))).alias("near"),
            (-F.col("bits")).alias("neg"),
        ).alias("rank"),
    )


def _both_ways(pairs: DataFrame) -> DataFrame:
    F = _F()
    return pairs.select(F.col("a").alias("src"), F.col("b").alias("dst"), "distance").unionByName(
        pairs.select(F.col("b").alias("src"), F.col("a").alias("dst"), "distance")
    )


def _climb(pairs: DataFrame, ranks: DataFrame) -> DataFrame:
    """For every code of ``pairs`` with a paired code ranked above it: ``src``, ``dst`` (the highest
    such code) and ``distance``."""
    F = _F()
    ranked = (
        _both_ways(pairs)
        .join(ranks.select(F.col("bits").alias("src"), F.col("rank").alias("src_rank")), "src")
        .join(ranks.select(F.col("bits").alias("dst"), F.col("rank").alias("dst_rank")), "dst")
        .where(F.col("dst_rank") > F.col("src_rank"))
    )
    best = F.max(F.struct(F.col("dst_rank"), F.col("dst"), F.col("distance"))).alias("best")
    return ranked.groupBy("src").agg(best).select("src", "best.dst", "best.distance")


def densest_neighbour_edges(pairs: DataFrame, codes: DataFrame, mode_pairs: DataFrame | None = None) -> DataFrame:
    """Keep, for every code, only the pair to its densest neighbour, if that neighbour ranks above it.

    ``pairs`` are :func:`radius_pairs` rows (``a``, ``b``, ``distance``);
    ``codes`` has ``bits`` and ``accounts`` (the number of accounts with the
    code). Codes are ranked by :func:`code_ranks`: their accounts, then the
    accounts within the radius, then the *smaller* code. Each code points to
    the highest-ranked code within the radius when that code ranks above it; a
    local maximum (a *root*) points nowhere. Every kept edge goes up the
    ranking, so the edges form a forest: quick shift's mode seeking (Vedaldi
    and Soatto, 2008) on the code graph. A campaign's scattered variants climb
    to the code most of its accounts share (or, when every account has its own
    code, to the code at the centre of the others), while two crowded codes of
    different images are no longer joined through a chain of codes that each
    lie within the radius of the next, which is what single linkage
    (``"all"``) does in dense regions of code space.

    ``mode_pairs`` (optional) are pairs within a wider radius among codes with
    at least two accounts. Each root with at least two accounts then climbs
    once more along them, to the highest-ranked such code above it: modes of
    one campaign a bit further apart than the radius merge, as quick shift
    links at a wider distance than its density estimate. The result is still
    a forest (every edge goes up the same ranking).

    Returns
    -------
    DataFrame
        Columns ``a``, ``b`` (``a < b``) and ``distance``: at most one edge per code.

    Examples
    --------
    >>> # codes 0, 1, 3 with 1 account each; pairs (0, 1), (1, 3): 1 has 3 accounts within the radius,
    >>> # 0 and 3 have 2, so 0 -> 1 and 3 -> 1: edges (0, 1), (1, 3)
    """
    F = _F()
    ranks = code_ranks(pairs, codes)
    edges = _climb(pairs, ranks)
    if mode_pairs is not None:
        roots = (
            ranks.where(F.col("accounts") >= 2)
            .select(F.col("bits").alias("src"))
            .join(edges.select("src"), "src", "left_anti")
        )
        edges = edges.unionByName(_climb(mode_pairs, ranks).join(roots, "src", "left_semi"))
    return edges.select(F.least("src", "dst").alias("a"), F.greatest("src", "dst").alias("b"), "distance")


def prefix_edges(codes: DataFrame, prefix_length: int) -> DataFrame:
    """Star edges joining every code of a prefix group to the group's smallest code.

    ``codes`` has distinct ``bits``. A group of k codes gives k - 1 edges
    ``(hi, lo)`` (not the k(k-1)/2 pairs), which connect the same components.

    Examples
    --------
    >>> # codes 0xab0000000001, 0xab0000000002 with prefix_length=2 -> (0xab0000000002, 0xab0000000001)
    """
    from pyspark.sql import Window

    F = _F()
    group = F.shiftright(F.col("bits"), 4 * (CODE_HEX_LENGTH - prefix_length))
    smallest = F.min("bits").over(Window.partitionBy(group))
    return (
        codes.select("bits")
        .distinct()
        .select(F.col("bits").alias("hi"), smallest.alias("lo"))
        .where(F.col("hi") != F.col("lo"))
    )


# ---------------------------------------------------------------------------
# Spark: connected components


def _persist(frame: DataFrame) -> DataFrame:
    """Cut the lineage: a reliable checkpoint when a directory is set, else a local one."""
    if frame.sparkSession.sparkContext.getCheckpointDir():
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def _large_star(edges: DataFrame) -> DataFrame:
    """Connect every larger neighbour of u to the smallest node of u's closed neighbourhood."""
    from pyspark.sql import Window

    F = _F()
    both = edges.select(F.col("hi").alias("u"), F.col("lo").alias("v")).unionByName(
        edges.select(F.col("lo").alias("u"), F.col("hi").alias("v"))
    )
    smallest = F.least(F.col("u"), F.min("v").over(Window.partitionBy("u")))
    return both.select("u", "v", smallest.alias("m")).where(F.col("v") > F.col("u")).select(
        F.col("v").alias("hi"), F.col("m").alias("lo")
    ).distinct()


def _small_star(edges: DataFrame) -> DataFrame:
    """Connect u and its smaller neighbours to the smallest of them."""
    from pyspark.sql import Window

    F = _F()
    smallest = F.min("lo").over(Window.partitionBy("hi"))
    marked = edges.select("hi", "lo", smallest.alias("m"))
    return (
        marked.select(F.col("hi"), F.col("m").alias("lo"))
        .unionByName(marked.where(F.col("lo") != F.col("m")).select(F.col("lo").alias("hi"), F.col("m").alias("lo")))
        .distinct()
    )


def _is_star_forest(edges: DataFrame) -> bool:
    """True when every node with a smaller neighbour has exactly one, and that one has none."""
    F = _F()
    if edges.groupBy("hi").count().where(F.col("count") > 1).limit(1).count():
        return False
    centres = edges.select(F.col("lo").alias("node")).distinct()
    leaves = edges.select(F.col("hi").alias("node"))
    return centres.join(leaves, "node", "left_semi").limit(1).count() == 0


def connected_components(edges: DataFrame, max_iterations: int = DEFAULT_MAX_ITERATIONS) -> DataFrame:
    """Label every node of an undirected graph with the smallest node of its component.

    ``edges`` has BIGINT columns ``hi`` and ``lo`` (any orientation, self
    loops allowed). Rounds of large-star then small-star (Kiveris, Lattanzi,
    Mirrokni, Rastogi, Vassilvitskii, "Connected Components in MapReduce and
    Beyond", SoCC 2014) run until the edge set is a forest of stars each
    centred on its smallest node; the edges are checkpointed every round so
    the plan does not grow.

    Why it terminates with the right answer: both steps only replace an edge
    (u, v) by edges between nodes of the same component and keep every node
    connected to the smallest node of its neighbourhood, so components never
    split or merge. Kiveris et al. prove that alternating the two steps
    reaches, after O(log^2 n) rounds, a graph in which each component is a
    star centred on its minimum; that is exactly the condition checked after
    every round (each ``hi`` has one edge, and no ``lo`` is itself a ``hi``),
    so the loop stops on the first round where the labels are final.

    Returns
    -------
    DataFrame
        Columns ``node`` and ``component`` (the component's smallest node),
        one row per node with an edge to another node (a node seen only in a
        self loop is a component of its own and has no row).

    Raises
    ------
    RuntimeError
        If the graph is not a star forest after ``max_iterations`` rounds.

    Examples
    --------
    >>> # edges (2, 1), (3, 2), (9, 8) -> nodes 1, 2, 3 get component 1; 8, 9 get 8
    """
    F = _F()
    current = _persist(
        edges.select(F.greatest("hi", "lo").alias("hi"), F.least("hi", "lo").alias("lo"))
        .where(F.col("hi") != F.col("lo"))
        .distinct()
    )
    for iteration in range(1, max_iterations + 1):
        if _is_star_forest(current):
            log.info("connected components converged after %d rounds", iteration - 1)
            break
        current = _persist(_small_star(_large_star(current)))
    else:
        if not _is_star_forest(current):
            raise RuntimeError(
                f"connected components did not converge in {max_iterations} rounds; raise max_iterations"
            )
    return current.select(F.col("hi").alias("node"), F.col("lo").alias("component")).unionByName(
        current.select(F.col("lo").alias("node"), F.col("lo").alias("component")).distinct()
    )


# ---------------------------------------------------------------------------
# Spark: accounts to clusters


def _delete_partition(spark: SparkSession, directory: str, run_date: str) -> None:
    """Remove one date's partition: an empty result must still replace an earlier run of that date."""
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(f"{directory.rstrip('/')}/run_date={run_date}")
    path.getFileSystem(conf).delete(path, True)


def choose_run_date(spark: SparkSession, config: ClusterJobConfig) -> str:
    """The hashes partition to cluster: ``config.run_date`` if present, else the latest.

    Raises
    ------
    ConfigError
        If the hashes directory has no partitions, or not the requested one.
    """
    from silse_spark.sources import partition_dates

    dates = partition_dates(spark, config.hashes)
    if not dates:
        raise ConfigError(
            f"--hashes {config.hashes} has no run_date=YYYY-MM-DD partitions; run jobs/hash_all.py first "
            "and pass its --output directory"
        )
    if config.run_date is None:
        return dates[-1]
    if config.run_date not in dates:
        raise ConfigError(
            f"--run-date {config.run_date} is not in {config.hashes} (it has {', '.join(dates[-5:])}); "
            "pick one of those or leave --run-date out for the latest"
        )
    return config.run_date


def single_model_version(counted: list[tuple[str, str | None, int]], config: ClusterJobConfig,
                         run_date: str) -> str | None:
    """The one model version of a partition's ``ok`` rows, from ``(status, model_version, rows)`` counts.

    Raises
    ------
    ConfigError
        If the codes come from more than one model: codes of two models are not comparable (an image gets
        unrelated codes), so clustering them together would miss copies and link strangers. ``jobs/hash_all.py``
        writes one model's codes per run; a mix means the partition was written by something else.
    """
    versions: dict[str | None, int] = {}
    for status, version, count in counted:
        if status == "ok":
            versions[version] = versions.get(version, 0) + count
    if len(versions) > 1:
        listed = ", ".join(f"{v or 'null'} ({n} rows)" for v, n in sorted(versions.items(), key=lambda kv: str(kv[0])))
        raise ConfigError(
            f"--hashes {config.hashes} run_date={run_date} holds codes of {len(versions)} model versions: {listed}. "
            "Codes of different models are not comparable; rehash the date with one model "
            f"(spark-submit jobs/hash_all.py ... --output {config.hashes} --run-date {run_date} --model VERSION)"
        )
    return next(iter(versions), None)


def check_separate_from_hashes(spark: SparkSession, config: ClusterJobConfig) -> None:
    """Refuse output tables inside the hashes table's directory, or the hashes inside them.

    ``clusters/`` written beside the hashes' ``run_date=`` folders turns the hashes directory into something
    no reader can load: the next night's hash job ran to the end and then failed on Spark's partition
    discovery, and the registered ``hashes`` table could no longer be queried.
    """
    from silse_spark.sources import hadoop_path

    def qualified(path: str) -> str:
        fs, hpath = hadoop_path(spark, path)
        return str(fs.makeQualified(hpath).toString()).rstrip("/") + "/"

    hashes = qualified(config.hashes)
    for table in (config.clusters_path, config.summary_path):
        written = qualified(table)
        if written.startswith(hashes) or hashes.startswith(written):
            raise ConfigError(
                f"--output {config.output} puts {table} inside --hashes {config.hashes} (or the hashes inside it); "
                "keep them apart, e.g. --hashes OUT/hashes --output OUT, as make run does"
            )


def one_code_per_account(hashes: DataFrame) -> DataFrame:
    """Rows with status ``ok``, one per account (the smallest code if an account has several).

    Returns columns ``account_id``, ``twin_value``, ``twin_bits``, ``path``.
    """
    F = _F()
    best = F.min(F.struct("twin_bits", "twin_value", "path")).alias("best")
    return (
        hashes.where((F.col("status") == "ok") & F.col("twin_bits").isNotNull())
        .groupBy("account_id")
        .agg(best)
        .select("account_id", "best.twin_value", F.col("best.twin_bits").cast("long").alias("twin_bits"), "best.path")
    )


@dataclass(frozen=True)
class Links:
    """The graph built from the codes: what each method linked, before components."""

    codes: DataFrame
    """``bits``, ``accounts`` (count), ``low_info`` per distinct (non-allowlisted) code."""
    prefix: DataFrame
    """``hi``, ``lo`` star edges within prefix groups."""
    radius: DataFrame
    """``a``, ``b``, ``distance``: the radius edges kept (all pairs, or each code's densest neighbour)."""
    radius_pairs: DataFrame
    """``a``, ``b``, ``distance``: every pair of linkable codes within the radius."""


def build_links(accounts: DataFrame, config: ClusterJobConfig) -> Links:
    """Distinct codes and their prefix and radius links (exact links are implicit: one node per code).

    Low-information codes keep their node (so ``exact`` still groups their
    accounts) but get no prefix or radius edge.
    """
    F = _F()
    spark = accounts.sparkSession
    codes = _persist(
        accounts.groupBy(F.col("twin_bits").alias("bits"))
        .agg(F.count("*").alias("accounts"))
        .withColumn("low_info", low_information_column(F.col("bits"), config.low_info_bits))
    )
    linkable = codes.where(~F.col("low_info")).select("bits")
    empty_edges = spark.createDataFrame([], "hi long, lo long")
    prefix = _persist(prefix_edges(linkable, config.prefix_length)) if config.prefix_length else empty_edges
    if config.radius:
        pairs = _persist(radius_pairs(linkable, config.radius))
        if config.radius_links == "densest":
            strong = codes.where(~F.col("low_info") & (F.col("accounts") >= 2)).select("bits")
            modes = radius_pairs(strong, MAX_RADIUS) if config.radius < MAX_RADIUS else None
            radius = _persist(densest_neighbour_edges(pairs, codes, modes))
        else:
            radius = pairs
    else:
        pairs = radius = spark.createDataFrame([], "a long, b long, distance int")
    return Links(codes, prefix, radius, pairs)


def cluster_accounts(accounts: DataFrame, links: Links, config: ClusterJobConfig) -> DataFrame:
    """Accounts of every component with at least ``min_accounts`` accounts.

    Returns columns ``component`` (smallest twin_bits of the component),
    ``account_id``, ``twin_value``, ``twin_bits``, ``path``, ``method``,
    ``cluster_size``.
    """
    from pyspark.sql import Window

    F = _F()
    edges = links.prefix.unionByName(links.radius.select(F.col("b").alias("hi"), F.col("a").alias("lo")))
    components = connected_components(edges, config.max_iterations)
    prefix_nodes = links.prefix.select(F.explode(F.array("hi", "lo")).alias("bits")).distinct()
    radius_nodes = links.radius.select(F.explode(F.array("a", "b")).alias("bits")).distinct()
    per_code = (
        links.codes.join(components.withColumnRenamed("node", "bits"), "bits", "left")
        .join(prefix_nodes.withColumn("by_prefix", F.lit(True)), "bits", "left")
        .join(radius_nodes.withColumn("by_radius", F.lit(True)), "bits", "left")
        .select(
            "bits",
            F.coalesce("component", "bits").alias("component"),
            F.concat_ws(
                "+",
                F.when(F.col("accounts") > 1, F.lit("exact")),
                F.when(F.col("by_prefix"), F.lit("prefix")),
                F.when(F.col("by_radius"), F.lit("radius")),
            ).alias("method"),
        )
    )
    size = F.count("*").over(Window.partitionBy("component"))
    return (
        accounts.join(per_code.withColumnRenamed("bits", "twin_bits"), "twin_bits")
        .withColumn("cluster_size", size)
        .where(F.col("cluster_size") >= config.min_accounts)
        .select("component", "account_id", "twin_value", "twin_bits", "path", "method", "cluster_size")
    )


def assign_stable_ids(clustered: DataFrame, previous: DataFrame | None, run_date: str) -> DataFrame:
    """Replace ``component`` by a ``cluster_id`` that survives from one night to the next.

    A new cluster's id is ``<run_date>_<its smallest twin value>`` (unique
    within a night, and the date says when it was first seen). A cluster that
    shares accounts with clusters of the previous night (``previous``:
    ``cluster_id``, ``account_id``) inherits the id of the one it shares most
    accounts with, ties to the smallest id. If two clusters would inherit the
    same id (a split), the one sharing more accounts keeps it, ties to the
    smaller new id; the other gets a new id. Deterministic, so rerunning a
    date gives the same ids.

    Examples
    --------
    >>> # night 1: {a, b, c} -> '2026-01-01_00000000000a'; night 2: {b, c, d} keeps that id
    """
    from pyspark.sql import Window

    F = _F()
    provisional = F.concat(F.lit(f"{run_date}_"), F.lpad(F.lower(F.hex("component")), CODE_HEX_LENGTH, "0"))
    clustered = clustered.withColumn("new_id", provisional)
    if previous is None:
        return clustered.withColumnRenamed("new_id", "cluster_id").drop("component")
    overlap = (
        clustered.select("new_id", "account_id")
        .join(previous.select(F.col("cluster_id").alias("old_id"), "account_id"), "account_id")
        .groupBy("new_id", "old_id")
        .agg(F.count("*").alias("shared"))
    )
    best_old = F.row_number().over(Window.partitionBy("new_id").orderBy(F.desc("shared"), "old_id"))
    best_new = F.row_number().over(Window.partitionBy("old_id").orderBy(F.desc("shared"), "new_id"))
    inherited = (
        overlap.withColumn("rank", best_old)
        .where(F.col("rank") == 1)
        .withColumn("rank", best_new)
        .where(F.col("rank") == 1)
        .select("new_id", "old_id")
    )
    return (
        clustered.join(inherited, "new_id", "left")
        .withColumn("cluster_id", F.coalesce("old_id", "new_id"))
        .drop("new_id", "old_id", "component")
    )


def summarise_clusters(clusters: DataFrame, previous: DataFrame | None = None) -> DataFrame:
    """One row per cluster: ``cluster_id``, ``size``, ``distinct_codes``, ``methods``, the
    representative (the code most accounts share, ties to the smallest code, then the smallest
    account) as ``representative_twin_value`` and ``representative_path``, ``first_seen`` (the
    date in the cluster id), two triage measures, what changed since the previous night, and ``run_date``.

    ``previous`` is the previous night's ``clusters`` (``cluster_id``, ``account_id``), ``None`` on the
    first night. ``previous_size`` is the size of the same ``cluster_id`` that night (null: the cluster is
    new tonight, or no night came before), and ``new_accounts`` counts the accounts that were not in it
    that night (all of them for a new cluster), so the nightly review can start with the clusters that
    appeared or grew instead of re-reading the ones already handled.

    ``representative_share`` is the share of the cluster's accounts whose code is the
    representative's; ``spread`` is the largest Hamming distance from the representative code to
    any code of the cluster. A campaign climbs to one code; a cluster chained from several images
    has a low share and a wide spread (measured in docs/clusters.md), so reviewers can sort by
    them.
    """
    from pyspark.sql import Window

    F = _F()
    code_count = F.count("*").over(Window.partitionBy("cluster_id", "twin_bits"))
    pick = F.row_number().over(
        Window.partitionBy("cluster_id").orderBy(F.desc("code_accounts"), "twin_bits", "account_id")
    )
    representative = (
        clusters.withColumn("code_accounts", code_count)
        .withColumn("pick", pick)
        .where(F.col("pick") == 1)
        .select(
            "cluster_id",
            F.col("twin_value").alias("representative_twin_value"),
            F.col("path").alias("representative_path"),
            F.col("twin_bits").alias("representative_bits"),
            F.col("code_accounts").alias("representative_accounts"),
        )
    )
    methods = F.array_sort(F.array_distinct(F.flatten(F.collect_list(F.split("method", r"\+")))))
    distance = F.bit_count(F.col("twin_bits").bitwiseXOR(F.col("representative_bits")))
    if previous is None:
        members = clusters.withColumn("was_member", F.lit(None).cast("boolean"))
        previous_sizes = None
    else:
        members = clusters.join(
            previous.select("cluster_id", "account_id").withColumn("was_member", F.lit(True)),
            ["cluster_id", "account_id"], "left",
        )
        previous_sizes = previous.groupBy("cluster_id").agg(F.count("*").alias("previous_size"))
    summary = (
        members.join(representative, "cluster_id")
        .groupBy("cluster_id", "run_date", "representative_twin_value", "representative_path", "representative_accounts")
        .agg(
            F.count("*").alias("size"),
            F.countDistinct("twin_bits").alias("distinct_codes"),
            methods.alias("methods"),
            F.max(distance).cast("int").alias("spread"),
            F.count(F.when(F.col("was_member").isNull(), 1)).alias("new_accounts"),
        )
        .withColumn("first_seen", F.to_date(F.substring("cluster_id", 1, 10)))
        .withColumn("representative_share", F.round(F.col("representative_accounts") / F.col("size"), 3))
    )
    if previous_sizes is None:
        summary = summary.withColumn("previous_size", F.lit(None).cast("long"))
    else:
        summary = summary.join(previous_sizes, "cluster_id", "left")
    return summary.select(
        "cluster_id", "size", "distinct_codes", "methods", "representative_twin_value",
        "representative_path", "first_seen", "representative_share", "spread", "previous_size", "new_accounts",
        "run_date",
    )


# ---------------------------------------------------------------------------
# The job


@dataclass
class ClusterJobSummary:
    """What one run did, printed by the job."""

    run_date: str
    status_counts: dict[str, int]
    model_version: str | None = None
    accounts: int = 0
    allowlisted_accounts: int = 0
    distinct_codes: int = 0
    low_info_codes: int = 0
    exact_codes: int = 0
    prefix_links: int = 0
    radius_links: dict[int, int] = field(default_factory=dict)
    radius_pairs: int = 0
    radius_rule: str = DEFAULT_RADIUS_LINKS
    clusters: int = 0
    clustered_accounts: int = 0
    inherited_ids: int = 0
    new_accounts: int = 0
    """Clustered accounts that were not in their cluster the previous night (all of them on the first)."""
    changed_clusters: int = 0
    """Clusters new tonight or joined by an account they did not have the previous night."""
    previous_run_date: str | None = None
    seconds: float = 0.0
    largest: list[tuple[str, int, int, str, str]] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    registration_error: str | None = None
    pruned: list[str] | None = None
    """Nights deleted from clusters and cluster_summary by ``--keep-days``; ``None`` without it."""
    staging: list[tuple[str, int]] = field(default_factory=list)
    """Killed runs' staging folders in clusters and cluster_summary (``sources.stale_staging``), deleted with
    ``--keep-days``."""

    @property
    def exit_code(self) -> int:
        """0, or 3 when the output is written but the tables could not be registered."""
        return 3 if self.registration_error else 0

    def table(self) -> str:
        """Human-readable report; the largest clusters last."""
        ignored = sum(n for status, n in self.status_counts.items() if status != "ok")
        lines = [
            f"run_date             {self.run_date}",
            f"input rows           {sum(self.status_counts.values())} "
            f"({ignored} ignored: {', '.join(f'{s} {n}' for s, n in sorted(self.status_counts.items()) if s != 'ok') or '-'})",
            f"model                {self.model_version or '-'}",
            f"accounts with a code {self.accounts} ({self.allowlisted_accounts} allowlisted, left out)",
            f"distinct codes       {self.distinct_codes} ({self.low_info_codes} low-information: exact links only)",
            f"exact                {self.exact_codes} codes shared by 2+ accounts",
            f"prefix links         {self.prefix_links} (star edges within prefix groups)",
            "radius links         "
            + (", ".join(f"{n} at distance {d}" for d, n in sorted(self.radius_links.items())) or "0")
            + (f" (each code's densest neighbour, of {self.radius_pairs} pairs)" if self.radius_rule == "densest" else ""),
            f"clusters             {self.clusters} ({self.clustered_accounts} accounts; "
            f"{self.inherited_ids} ids kept from {self.previous_run_date or 'no previous run'})",
            f"new in their cluster {self.new_accounts} accounts, in {self.changed_clusters} "
            f"cluster{'' if self.changed_clusters == 1 else 's'} new or joined since "
            f"{self.previous_run_date or 'no previous run'}",
            f"wall time            {self.seconds:.1f} s",
        ]
        if self.pruned is not None:
            lines.append(f"nights deleted       {len(self.pruned)}{pruned_dates(self.pruned)}")
        if self.staging:
            lines.append(f"stale staging        {staging_note(self.staging, self.pruned is not None)}")
        if self.tables:
            lines.append(f"tables               {', '.join(self.tables)}")
        if self.registration_error:
            lines.append(f"tables               NOT registered (exit code 3): {self.registration_error}")
        if self.largest:
            lines.append("largest clusters:")
            lines.append(f"  {'cluster_id':<24} {'size':>5} {'codes':>5}  {'methods':<20} representative")
            lines += [
                f"  {cid:<24} {size:>5} {codes:>5}  {methods:<20} {path}"
                for cid, size, codes, methods, path in self.largest
            ]
        return "\n".join(lines)


def write_partition(frame: DataFrame, directory: str, run_date: str) -> None:
    """Replace ``directory/run_date=<run_date>`` with ``frame`` (dynamic partition overwrite), each file
    sorted by ``cluster_id`` with a bloom filter on ``account_id`` where it has one (``write_night``)."""
    from silse_spark.sources import write_night

    if frame.isEmpty():
        _delete_partition(frame.sparkSession, directory, run_date)
        return
    write_night(frame, directory, sort_by="cluster_id")


def run_cluster_job(spark: SparkSession, config: ClusterJobConfig, largest: int = 10) -> ClusterJobSummary:
    """Cluster one night's hashes and write ``clusters`` and ``cluster_summary``; register the tables.

    Examples
    --------
    >>> # run_cluster_job(spark, ClusterJobConfig("work/output/hashes", "work/output")).clusters
    """
    import time

    F = _F()
    from silse_spark.sources import (
        check_output_directory,
        partition_dates,
        prune_partitions,
        read_partition,
        tidy_staging,
    )

    started = time.monotonic()
    check_separate_from_hashes(spark, config)
    for path in (config.clusters_path, config.summary_path):
        check_output_directory(spark, path, f"--output {config.output}")
    run_date = choose_run_date(spark, config)
    hashes = read_partition(spark, config.hashes, run_date, "--hashes")
    require_hash_columns(hashes.columns, ["account_id", "path", "twin_value", "twin_bits", "status", "model_version"],
                         "--hashes", config.hashes)
    counted = [(row["status"], row["model_version"], row["count"])
               for row in hashes.groupBy("status", "model_version").count().collect()]
    status_counts: dict[str, int] = {}
    for status, _, count in counted:
        status_counts[status] = status_counts.get(status, 0) + count
    summary = ClusterJobSummary(run_date, status_counts, model_version=single_model_version(counted, config, run_date))
    log.info("clustering hashes of %s: %s", run_date, status_counts)

    accounts = one_code_per_account(hashes)
    if config.allowlist:
        # A broadcast join, not isin(): a literal list of 200,000 codes took the demo's job from 30 s to 136 s.
        allowed = spark.createDataFrame([(v, True) for v in sorted(config.allowlist)],
                                        "twin_value string, allowlisted boolean")
        accounts = accounts.join(F.broadcast(allowed), "twin_value", "left").withColumn(
            "allowlisted", F.coalesce("allowlisted", F.lit(False)))
    else:
        accounts = accounts.withColumn("allowlisted", F.lit(False))
    accounts = _persist(accounts)
    counts = accounts.agg(F.count("*"), F.sum(F.col("allowlisted").cast("int"))).collect()[0]
    summary.accounts, summary.allowlisted_accounts = int(counts[0]), int(counts[1] or 0)
    accounts = accounts.where(~F.col("allowlisted")).drop("allowlisted")

    links = build_links(accounts, config)
    code_counts = links.codes.agg(
        F.count("*"), F.sum(F.col("low_info").cast("int")), F.sum((F.col("accounts") > 1).cast("int"))
    ).collect()[0]
    summary.distinct_codes = int(code_counts[0])
    summary.low_info_codes, summary.exact_codes = int(code_counts[1] or 0), int(code_counts[2] or 0)
    summary.prefix_links = links.prefix.count()
    summary.radius_links = {row["distance"]: row["count"] for row in links.radius.groupBy("distance").count().collect()}
    summary.radius_pairs, summary.radius_rule = links.radius_pairs.count(), config.radius_links
    log.info("links: prefix %d, radius %s", summary.prefix_links, summary.radius_links)

    clustered = cluster_accounts(accounts, links, config)
    earlier = [d for d in partition_dates(spark, config.clusters_path) if d < run_date]
    summary.previous_run_date = earlier[-1] if earlier else None
    previous = read_partition(spark, config.clusters_path, earlier[-1], "--output") if earlier else None
    clusters = _persist(
        assign_stable_ids(clustered, previous, run_date).withColumn("run_date", F.lit(run_date))
    )
    cluster_summary = _persist(summarise_clusters(clusters, previous))

    write_partition(
        clusters.select("cluster_id", "account_id", "twin_value", "twin_bits", "method", "cluster_size", "run_date"),
        config.clusters_path,
        run_date,
    )
    write_partition(cluster_summary, config.summary_path, run_date)
    if config.keep_days is not None:  # before registering, so the tables list only the nights kept
        pruned = {d for path in (config.clusters_path, config.summary_path)
                  for d in prune_partitions(spark, path, run_date, config.keep_days)}
        summary.pruned = sorted(pruned)
    summary.staging = tidy_staging(spark, [config.clusters_path, config.summary_path],
                                   delete=config.keep_days is not None)
    if config.database:
        from silse_spark.catalog import MetastoreError, register_tables

        try:
            summary.tables = register_tables(
                spark,
                config.database,
                {"hashes": config.hashes, "clusters": config.clusters_path, "cluster_summary": config.summary_path},
            )
        except MetastoreError as exc:  # the night's output is written; say what was not done and go on
            log.error("%s", exc)
            summary.registration_error = str(exc)

    totals = cluster_summary.agg(
        F.count("*"), F.sum("size"), F.sum(F.col("cluster_id").startswith(run_date).cast("int")),
        F.sum("new_accounts"), F.count(F.when(F.col("new_accounts") > 0, 1)),
    ).collect()[0]
    summary.clusters, summary.clustered_accounts = int(totals[0]), int(totals[1] or 0)
    summary.inherited_ids = summary.clusters - int(totals[2] or 0)
    summary.new_accounts, summary.changed_clusters = int(totals[3] or 0), int(totals[4] or 0)
    summary.largest = [
        (r["cluster_id"], r["size"], r["distinct_codes"], ",".join(r["methods"]), r["representative_path"])
        for r in cluster_summary.orderBy(F.desc("size"), "cluster_id").limit(largest).collect()
    ]
    summary.seconds = time.monotonic() - started
    return summary
