"""Hash avatars with the model inside Spark: a pandas UDF per batch, one model per worker.

:func:`hash_contents` is the pure core: raw bytes in, one result row per
input out. :func:`twin_value_udf` wraps it in an Iterator pandas UDF that
loads the model once per Python worker (TensorFlow is imported inside the
worker, never on the driver) and limits its threads to ``spark.task.cpus``.
:func:`hash_accounts` infers each distinct ``content_sha256`` once, reuses
codes from a previous run, and joins the results back to every account.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from silse_spark.codes import twin_values_from_outputs
from silse_spark.decode import (
    DEFAULT_ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    STATUS_NO_ACCOUNT,
    STATUS_OK,
    DecodedAvatar,
    decode_avatar,
)
from silse_spark.isolation import DEFAULT_DECODE_TIMEOUT_S, in_process_decoder, worker_decoder
from silse_spark.sources import missing_account, partitions_for

log = logging.getLogger(__name__)

RESULT_SCHEMA = T.StructType(
    [
        T.StructField("width", T.IntegerType()),
        T.StructField("height", T.IntegerType()),
        T.StructField("twin_value", T.StringType()),
        T.StructField("twin_bits", T.LongType()),
        T.StructField("status", T.StringType()),
        T.StructField("error", T.StringType()),
    ]
)

OUTPUT_COLUMNS = [
    "account_id", "path", "content_sha256", "width", "height", "twin_value", "twin_bits",
    "status", "error", "model_version", "hashed_at", "file_size", "file_modified", "run_date",
]
REUSED_COLUMNS = ["content_sha256", "width", "height", "twin_value", "twin_bits", "status", "error", "hashed_at"]
"""What a row takes over from the previous run when its code is reused."""

FAIL_FIRST_ATTEMPT_ENV = "SILSE_TEST_FAIL_FIRST_ATTEMPT"
"""Test-only switch: when set to ``1``, every UDF task fails on its first attempt."""


def hash_contents(
    contents: pd.Series,
    outputs_fn: Any,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_ALLOWED_FORMATS,
    framing: str = "none",
    decode_many: Callable[[list[Any]], list[DecodedAvatar]] | None = None,
) -> pd.DataFrame:
    """Decode and hash a batch of image bytes.

    Parameters
    ----------
    contents
        Image file bytes (``None`` allowed).
    outputs_fn
        Callable mapping uint8 images ``(n, 108, 108, 3)`` to outputs ``(n, 48)``,
        e.g. :meth:`silse_spark.model.TwinHasher.outputs`.
    framing
        The model version's framing (``ModelSpec.framing``), passed to the decoder.
    decode_many
        Decodes the whole batch (``decode_avatar`` with its settings, in this process or in a helper:
        :mod:`silse_spark.isolation`); ``None``: ``decode_avatar`` with the settings above, in this process.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`RESULT_SCHEMA`, one row per input, in input order.
    """
    if decode_many is None:
        decode_many = in_process_decoder(functools.partial(decode_avatar, max_pixels=max_pixels,
                                                           allowed_formats=allowed_formats, framing=framing))
    decoded = decode_many(list(contents))
    ok = [i for i, d in enumerate(decoded) if d.status == STATUS_OK]
    values: list[str | None] = [None] * len(decoded)
    bits: list[int | None] = [None] * len(decoded)
    if ok:
        pixels = np.stack([decoded[i].pixels for i in ok])  # type: ignore[misc]
        hexes, packed = twin_values_from_outputs(outputs_fn(pixels))
        for j, i in enumerate(ok):
            values[i] = hexes[j]
            bits[i] = int(packed[j])
    return pd.DataFrame(
        {
            "width": pd.array([d.width for d in decoded], dtype="Int32"),
            "height": pd.array([d.height for d in decoded], dtype="Int32"),
            "twin_value": values,
            "twin_bits": pd.array(bits, dtype="Int64"),
            "status": [d.status for d in decoded],
            "error": [d.error for d in decoded],
        }
    )


def _worker_hasher(model_version: str, batch_size: int) -> Any:
    """The model for this Python worker, loaded once and cached (see ``cached_hasher``)."""
    from pyspark import TaskContext

    from silse_spark.model import cached_hasher, configure_threads

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    ctx = TaskContext.get()
    cpus = ctx.cpus() if ctx is not None else os.cpu_count() or 1
    configure_threads(int(cpus))
    return cached_hasher(model_version, batch_size)


def _attempt() -> int | None:
    """This task's attempt number (0 for the first); ``None`` outside a Spark task."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return ctx.attemptNumber() if ctx is not None else None


def _maybe_fail_first_attempt() -> None:
    if os.environ.get(FAIL_FIRST_ATTEMPT_ENV) == "1" and _attempt() == 0:
        raise RuntimeError(f"{FAIL_FIRST_ATTEMPT_ENV}=1: failing the first attempt of this task on purpose")


def twin_value_udf(
    model_version: str,
    *,
    batch_size: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_ALLOWED_FORMATS,
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
) -> Any:
    """An Iterator pandas UDF: binary column -> struct of :data:`RESULT_SCHEMA`.

    A task's first attempt decodes in the Python worker itself. A retry (Spark runs one after a task fails, for
    instance because a codec crashed the worker on one file) decodes in a helper process of the worker
    (:mod:`silse_spark.isolation`), each image within ``decode_timeout_s``, so that the file costs its own row
    and the rest of the task is hashed. ``0``: never isolated (a crash fails the task on every attempt).
    Decoding every attempt in the helper would cost 5-8% more time per image (docs/reliability.md).
    """
    from silse_spark.model import get_model_spec

    framing = get_model_spec(model_version).framing  # resolved on the driver: part of the model version
    decode = functools.partial(decode_avatar, max_pixels=max_pixels, allowed_formats=allowed_formats, framing=framing)
    helper_key = (max_pixels, allowed_formats, framing, decode_timeout_s)  # one helper per settings per worker

    @F.pandas_udf(RESULT_SCHEMA)  # type: ignore[call-overload]
    def _hash(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        _maybe_fail_first_attempt()
        loaded: list[Any] = []

        def outputs(pixels: np.ndarray) -> np.ndarray:
            # Load (and import TensorFlow) at the first decodable image, not at task start: a task with
            # nothing new to infer (an incremental run, an empty partition) never pays for it.
            if not loaded:
                loaded.append(_worker_hasher(model_version, batch_size))
            return loaded[0].outputs(pixels)

        decoder: Callable[[list[Any]], list[DecodedAvatar]]
        if decode_timeout_s > 0 and (_attempt() or 0) > 0:
            decoder = worker_decoder(helper_key, decode, decode_timeout_s).decode_many
        else:
            decoder = in_process_decoder(decode)
        for contents in batches:
            yield hash_contents(contents, outputs, decode_many=decoder)

    # Non-deterministic stops the optimiser from re-running the UDF once per struct field.
    return _hash.asNondeterministic()


INFERENCE_PARTITIONS_CONF = "spark.silse.inferencePartitions"


def inference_partitions_for(spark: Any) -> int:
    """Partitions for the inference stage: ``spark.silse.inferencePartitions`` or 4x the cores."""
    return partitions_for(spark, INFERENCE_PARTITIONS_CONF)


NO_ACCOUNT_ERROR = "the input row has no account_id (null or blank); give every manifest or table row its account"


def contents_to_infer(accounts: DataFrame, known: DataFrame | None, partitions: int | None = None) -> DataFrame:
    """``content_sha256, content`` of each distinct content with no reusable code, in ``partitions`` tasks
    (``spark.silse.inferencePartitions``, 4 x the cores, unless given).

    Inference is CPU-bound per image, not per byte, so the images are hashed over an explicit number of
    partitions, and before the de-duplication: adaptive execution coalesces the shuffle of an aggregation
    (by bytes, 64 MB) but not a repartition by number. Repartitioned after it, as until 2026-12-03, the
    repartition was folded into the aggregation's shuffle whenever it asked for as many partitions as
    ``spark.sql.shuffle.partitions`` (8 and 8 by default on 2 cores), and the distinct images of 2,000 small
    files ran as 3 tasks on 2 cores (seen in Spark's event log; with the read's own shuffle, see
    ``sources.read_local_contents``, the job went from 22.5-27.8 s to 18.0-20.1 s).
    """
    spark = accounts.sparkSession
    contents = (
        accounts.where(F.col("content").isNotNull())
        .select("content_sha256", "content")
        .repartition(partitions or inference_partitions_for(spark), "content_sha256")
        .dropDuplicates(["content_sha256"])
    )
    if known is not None:
        contents = contents.join(known.select("content_sha256"), "content_sha256", "left_anti")
    return contents


def hash_accounts(
    accounts: DataFrame,
    model_version: str,
    hashed_at: dt.datetime,
    *,
    previous: DataFrame | None = None,
    batch_size: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: frozenset[str] = DEFAULT_ALLOWED_FORMATS,
    inference_partitions: int | None = None,
    decode_timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
) -> DataFrame:
    """Hash every account's avatar; infer each distinct content once.

    Parameters
    ----------
    accounts
        ``account_id, path, content, read_status, read_error`` (see
        :mod:`silse_spark.sources`).
    previous
        An earlier output; its ``ok`` rows for the same ``model_version`` are
        reused by ``content_sha256`` instead of running the model again.

    Returns
    -------
    DataFrame
        The output columns (without ``run_date``), one row per account.
    """
    # A row without an account cannot be clustered (null ids would all group as one account): it keeps
    # its row, with a status saying so, and its file is not hashed.
    no_account = missing_account()
    # The Python reader gives each row's digest, and a file's bytes only on the first of its task's rows
    # naming it (TaskReader); other readers give bytes on every row, hashed here.
    digest = F.when(F.col("content").isNotNull(), F.sha2("content", 256))
    if "content_sha256" in accounts.columns:
        digest = F.coalesce(F.col("content_sha256"), digest)
    accounts = accounts.select(
        *(c for c in accounts.columns if c not in ("content", "content_sha256", "read_status", "read_error")),
        F.when(~no_account, F.col("content")).alias("content"),
        F.when(~no_account, digest).alias("content_sha256"),
        F.when(no_account, F.lit(STATUS_NO_ACCOUNT)).otherwise(F.col("read_status")).alias("read_status"),
        F.when(no_account, F.lit(NO_ACCOUNT_ERROR)).otherwise(F.col("read_error")).alias("read_error"),
    )
    # Two branches use these rows (the distinct contents to infer, and every account joined to its code):
    # without this, Spark ran the read twice, every file opened and hashed twice (seen with strace), which
    # on HDFS or S3 doubles the requests. Kept on the executors' disks, not in memory; released by the caller.
    accounts = accounts.persist(StorageLevel.DISK_ONLY)
    known = None
    if previous is not None:
        known = reusable(previous, model_version).select(*REUSED_COLUMNS).dropDuplicates(["content_sha256"])
    contents = contents_to_infer(accounts, known, inference_partitions)
    udf = twin_value_udf(model_version, batch_size=batch_size, max_pixels=max_pixels,
                         allowed_formats=allowed_formats, decode_timeout_s=decode_timeout_s)
    inferred = contents.select("content_sha256", udf(F.col("content")).alias("r")).select(
        "content_sha256", "r.*", F.lit(hashed_at).cast("timestamp").alias("hashed_at")
    )
    codes = inferred if known is None else inferred.unionByName(known)
    joined = accounts.drop("content").join(codes, "content_sha256", "left")
    return joined.select(
        "account_id",
        "path",
        "content_sha256",
        F.col("width").cast("int"),
        F.col("height").cast("int"),
        "twin_value",
        F.col("twin_bits").cast("long"),
        F.coalesce("read_status", "status").alias("status"),
        F.coalesce("read_error", "error").alias("error"),
        F.lit(model_version).alias("model_version"),
        F.coalesce("hashed_at", F.lit(hashed_at).cast("timestamp")).alias("hashed_at"),
        "file_size",
        "file_modified",
    )


def reusable(previous: DataFrame, model_version: str) -> DataFrame:
    """The rows of an earlier output whose code can stand for this run: ``ok`` and the same model."""
    return previous.where((F.col("status") == STATUS_OK) & (F.col("model_version") == model_version))


def split_unchanged_files(
    listing: DataFrame, previous: DataFrame, model_version: str
) -> tuple[DataFrame, DataFrame] | None:
    """Split a listing into rows whose file is unchanged since ``previous`` and rows to read.

    A file is unchanged when the previous run had an ``ok`` row for the same
    ``path`` with the same ``file_size`` and ``file_modified`` (the quick check
    rsync and make use): its code, hash and ``hashed_at`` are taken over without
    reading the file. Everything else (new, changed, failed before, or unlisted
    metadata) is returned for reading.

    Returns
    -------
    (unchanged, to_read) or None
        ``unchanged`` has the output columns (without ``run_date``),
        ``to_read`` the listing's columns; ``None`` when ``previous`` was
        written before the job recorded file metadata.
    """
    if not {"file_size", "file_modified"} <= set(previous.columns):
        log.info("the previous output has no file_size/file_modified columns; reading every file")
        return None
    keys = ["path", "file_size", "file_modified"]
    known = (
        reusable(previous, model_version)
        .where(F.col("path").isNotNull() & F.col("file_size").isNotNull() & F.col("file_modified").isNotNull())
        .select(*keys, *REUSED_COLUMNS)
        .dropDuplicates(keys)
        .withColumn("_reused", F.lit(True))
    )
    # Both returned frames come from this join: kept (small rows, no bytes) so the listing (a stat per file
    # for a local manifest) and the previous output are not computed twice; released by the caller.
    joined = listing.join(known, keys, "left").persist(StorageLevel.DISK_ONLY)
    # A row without an account is never carried over: it is read, so hash_accounts gives it its status.
    reused = F.col("_reused").isNotNull() & ~missing_account()
    unchanged = joined.where(reused).select(
        "account_id", "path", "content_sha256",
        F.col("width").cast("int"), F.col("height").cast("int"), "twin_value", F.col("twin_bits").cast("long"),
        "status", "error", F.lit(model_version).alias("model_version"), "hashed_at", "file_size", "file_modified",
    )
    to_read = joined.where(~reused).select(*listing.columns)
    return unchanged, to_read
