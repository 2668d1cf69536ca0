"""Read the job's input into one DataFrame of accounts with their file bytes.

Whatever the input, the result has one row per input account::

    account_id string, path string, content binary (null if unreadable),
    read_status string (null if read), read_error string

Bytes are read by Spark's ``binaryFile`` source, so paths may be local or any
Hadoop filesystem URI. A file that is listed (or named in the manifest) but
cannot be read keeps its row with ``read_status = 'read_error'``: reads use
``ignoreCorruptFiles``/``ignoreMissingFiles`` and the listing is joined back,
so nothing is silently dropped.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import tempfile
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from silse_spark.config import ConfigError, HashJobConfig
from silse_spark.decode import STATUS_EMPTY, STATUS_READ_ERROR

log = logging.getLogger(__name__)

ACCOUNT_COLUMNS = ["account_id", "path", "content", "read_status", "read_error"]


def normalise_path(path: Column) -> Column:
    """Spark expression: a manifest path in the form ``binaryFile`` reports.

    Absolute local paths become ``file:/abs/path``; ``file:///x`` becomes
    ``file:/x``; relative paths are resolved against the driver's working
    directory; other URIs (``hdfs://``, ``s3a://``) are kept as they are.
    """
    cwd = os.getcwd().rstrip("/")
    trimmed = F.trim(path)
    return (
        F.when(trimmed.startswith("file://"), F.regexp_replace(trimmed, r"^file:/+", "file:/"))
        .when(trimmed.rlike(r"^[A-Za-z][A-Za-z0-9+.\-]*:"), trimmed)
        .when(trimmed.startswith("/"), F.concat(F.lit("file:"), F.regexp_replace(trimmed, r"^/+", "/")))
        .otherwise(F.concat(F.lit(f"file:{cwd}/"), trimmed))
    )


def _binary_files(spark: SparkSession, paths: list[str], recursive: bool) -> DataFrame:
    return (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", str(recursive).lower())
        .option("ignoreCorruptFiles", "true")
        .option("ignoreMissingFiles", "true")
        .load(paths)
        .select("path", "content")
    )


def _attach_content(listing: DataFrame, content: DataFrame) -> DataFrame:
    """Left-join read bytes onto the listing by ``_key`` (the path as ``binaryFile`` spells it).

    Listing rows with no bytes become read errors; the listing's own ``path`` is kept.
    """
    if "_size" not in listing.columns:
        listing = listing.withColumn("_size", F.lit(None).cast("long"))
    joined = listing.join(content.withColumnRenamed("path", "_read_path"),
                          listing["_key"] == F.col("_read_path"), "left")
    missing = F.col("_read_path").isNull()
    # Spark's file scan skips zero-length files, so a listed empty file has no bytes row.
    empty = missing & (F.col("_size") == 0)
    return joined.select(
        "account_id",
        "path",
        "content",
        F.when(empty, F.lit(STATUS_EMPTY)).when(missing, F.lit(STATUS_READ_ERROR)).alias("read_status"),
        F.when(empty, F.lit("file is empty (0 bytes)"))
        .when(missing, F.lit("file could not be read: missing, empty, unreadable, or larger than "
                             "spark.sql.sources.binaryFile.maxLength"))
        .alias("read_error"),
    )


def hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """``(FileSystem, Path)`` of the JVM's Hadoop client for ``path`` (any scheme Spark can read)."""
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(conf), hpath


def _hadoop_exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = hadoop_path(spark, path)
    return bool(fs.exists(hpath))


def _is_local(path: str) -> bool:
    return path.startswith("file:") or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", path) is None


def _local_path(path: str) -> str:
    return re.sub(r"^file:/*", "/", path) if path.startswith("file:") else os.path.abspath(path)


def _list_local_files(directory: str, listing_file: str) -> int:
    """Write every non-directory entry under ``directory`` to a CSV, streaming (constant memory).

    Unlike Hadoop's listing, this keeps entries that cannot be read (broken
    symbolic links, special files), so they get a ``read_error`` row instead of
    vanishing.
    """
    count = 0
    with open(listing_file, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "_key", "account_id", "_size"])
        for root, dirs, files in os.walk(directory, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                try:
                    size: int | str = os.stat(full).st_size
                except OSError:
                    size = ""  # dangling link or unreadable entry: read_error later
                writer.writerow([full, "file:" + full, os.path.splitext(name)[0], size])
                count += 1
    return count


def read_avatar_dir(spark: SparkSession, directory: str, scratch: str | None = None) -> DataFrame:
    """All files under ``directory`` (recursive); account_id is the file name without extension.

    ``scratch`` is a local directory for the listing of a local input folder
    (it must be visible to executors: local mode or a shared filesystem).
    """
    if not _hadoop_exists(spark, directory):
        raise ConfigError(f"--avatars {directory!r} does not exist; pass a directory of avatar images")
    if _is_local(directory):
        local = _local_path(directory)
        scratch_dir = scratch or tempfile.mkdtemp(prefix="silse-listing-")
        os.makedirs(scratch_dir, exist_ok=True)
        listing_file = os.path.join(scratch_dir, "listing.csv")
        log.info("listed %d files under %s", _list_local_files(local, listing_file), local)
        listing = spark.read.option("header", "true").schema(
            "path string, _key string, account_id string, _size long"
        ).csv("file:" + listing_file)
        return _attach_content(listing, _binary_files(spark, ["file:" + local], recursive=True))
    # Remote filesystems: Hadoop's listing reads no bytes (binaryFile prunes the content column).
    listing = (
        spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(directory)
        .select("path", F.col("path").alias("_key"))
        .withColumn("account_id", F.regexp_extract("path", r"([^/]+?)(\.[^./]*)?$", 1))
    )
    return _attach_content(listing, _binary_files(spark, [directory], recursive=True))


def _read_table(spark: SparkSession, path: str, what: str) -> DataFrame:
    if not _hadoop_exists(spark, path):
        raise ConfigError(f"{what} {path!r} does not exist; pass an existing CSV or Parquet file")
    if path.lower().endswith((".csv", ".csv.gz", ".txt")):
        return spark.read.option("header", "true").option("mode", "PERMISSIVE").csv(path)
    return spark.read.parquet(path)


def _require_columns(df: DataFrame, required: dict[str, tuple[type, ...]], what: str, path: str) -> None:
    fields = {f.name: f.dataType for f in df.schema.fields}
    for name, types in required.items():
        if name not in fields:
            raise ConfigError(
                f"{what} {path!r} has no column {name!r}; found {sorted(fields)}. "
                f"Expected columns {sorted(required)}"
            )
        if not isinstance(fields[name], types):
            raise ConfigError(
                f"{what} {path!r}: column {name!r} is {fields[name].simpleString()}, expected "
                f"{' or '.join(t.__name__.replace('Type', '').lower() for t in types)}"
            )


def read_manifest(spark: SparkSession, manifest: str) -> DataFrame:
    """Accounts listed in a CSV or Parquet manifest with columns ``account_id``, ``path``."""
    table = _read_table(spark, manifest, "--manifest")
    _require_columns(table, {"account_id": (T.StringType,), "path": (T.StringType,)}, "--manifest", manifest)
    listing = table.select("account_id", "path", normalise_path(F.col("path")).alias("_key"))
    # Read whole parent directories (one Spark scan) rather than collecting every path to the driver.
    directories = [
        row["d"]
        for row in listing.select(F.regexp_extract("_key", r"^(.*)/[^/]*$", 1).alias("d")).distinct().collect()
        if row["d"]
    ]
    existing = [d for d in directories if _hadoop_exists(spark, d)]
    log.info("manifest %s: %d parent directories (%d exist)", manifest, len(directories), len(existing))
    if existing:
        content = _binary_files(spark, existing, recursive=False)
    else:
        content = spark.createDataFrame([], "path string, content binary")
    return _attach_content(listing, content)


def read_avatar_table(spark: SparkSession, table_path: str) -> DataFrame:
    """Accounts from a Parquet table with ``account_id`` and binary ``content`` (``path`` optional)."""
    table = _read_table(spark, table_path, "--avatar-table")
    _require_columns(
        table, {"account_id": (T.StringType,), "content": (T.BinaryType,)}, "--avatar-table", table_path
    )
    path = F.col("path").cast("string") if "path" in table.columns else F.lit(None).cast("string")
    return table.select(
        F.col("account_id"),
        path.alias("path"),
        F.col("content"),
        F.when(F.col("content").isNull(), F.lit(STATUS_READ_ERROR)).alias("read_status"),
        F.when(F.col("content").isNull(), F.lit("content is null in the avatar table")).alias("read_error"),
    )


def read_accounts(spark: SparkSession, config: HashJobConfig, scratch: str | None = None) -> DataFrame:
    """The job's input as one accounts DataFrame (see module docstring)."""
    if config.input_kind == "avatars":
        return read_avatar_dir(spark, config.input_path, scratch)
    if config.input_kind == "manifest":
        return read_manifest(spark, config.input_path)
    return read_avatar_table(spark, config.input_path)
