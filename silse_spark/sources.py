"""Read the job's input into one DataFrame of accounts with their file bytes.

Whatever the input, the result has one row per input account::

    account_id string, path string, content binary (null if unreadable),
    read_status string (null if read), read_error string,
    file_size bigint, file_modified timestamp (null for an avatar table)

Bytes are read by Spark's ``binaryFile`` source, so paths may be local or any
Hadoop filesystem URI. A file that is listed (or named in the manifest) but
cannot be read keeps its row with ``read_status = 'read_error'``: reads use
``ignoreCorruptFiles``/``ignoreMissingFiles`` and the listing is joined back,
so nothing is silently dropped.

For incremental runs, :func:`read_listing` lists files with their size and
modification time *without* reading any bytes, and :func:`read_local_contents`
reads the bytes of just the listed rows it is given (files that changed).
That Python reader (the default for local files) also gives ``content_sha256``
and reads a file named by many rows once per task: its later rows carry the
digest without the bytes (:class:`TaskReader`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import stat
import tempfile
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from silse_spark.config import REWRITE_DAMAGED_FILE, STALE_STAGING_HOURS, ConfigError, HashJobConfig
from silse_spark.decode import STATUS_EMPTY, STATUS_READ_ERROR

log = logging.getLogger(__name__)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

ACCOUNT_COLUMNS = ["account_id", "path", "content", "read_status", "read_error", "file_size", "file_modified"]
READ_COLUMNS = [*ACCOUNT_COLUMNS[:3], "content_sha256", *ACCOUNT_COLUMNS[3:]]
"""What the Python reader gives: ACCOUNT_COLUMNS and each read file's digest (its bytes on its first row only)."""
LISTING_COLUMNS = ["account_id", "path", "_key", "file_size", "file_modified"]

MAX_LENGTH_CONF = "spark.sql.sources.binaryFile.maxLength"
UNREADABLE = ("file could not be read: missing, empty, unreadable, or larger than "
              "spark.sql.sources.binaryFile.maxLength")
BYTES_KEY_PREFIX = "fsbytes:"
"""``_key`` of a local file whose name is not valid UTF-8: this prefix, then the path's bytes percent-encoded.

Spark strings are UTF-8, so such a name cannot be a ``file:`` key; this one decodes back to the exact
bytes (:func:`_local_path`), so the Python reader still opens the file."""

NO_PATH = "file could not be read: the manifest row has no path; give every row a path to an image file"
NOT_UTF8_NAME = ("file could not be read: its name is not valid UTF-8, which Spark's binaryFile reader "
                 "cannot open; read it with spark.silse.localReader=python (the default)")


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
        .select("path", "content", "length", "modificationTime")
    )


def _attach_content(listing: DataFrame, content: DataFrame, shared_files: bool = False) -> DataFrame:
    """Left-join read bytes onto the listing by ``_key`` (the path as ``binaryFile`` spells it): READ_COLUMNS.

    Listing rows with no bytes become read errors; the listing's own ``path`` is kept, and its
    ``file_size``/``file_modified`` where it has them (else the scan's).
    """
    for name, kind in (("file_size", "long"), ("file_modified", "timestamp")):
        if name not in listing.columns:
            listing = listing.withColumn(name, F.lit(None).cast(kind))
    # With ``shared_files`` (a manifest: many rows may name one file, such as a default avatar), a file's
    # bytes ride on one row only, the first with an account, and its digest on all: they are neither
    # hashed nor kept on disk once per account. A folder's listing names each file once.
    first = (F.row_number().over(Window.partitionBy("_key").orderBy(missing_account(), "account_id")) == 1
             if shared_files else F.lit(True))
    listing = listing.withColumn("_first", first)
    content = content.withColumnRenamed("path", "_read_path").withColumn("content_sha256", F.sha2("content", 256))
    joined = listing.join(content, listing["_key"] == F.col("_read_path"), "left")
    missing = F.col("_read_path").isNull()
    # Spark's file scan skips zero-length files, so a listed empty file has no bytes row.
    empty = missing & (F.col("file_size") == 0)
    error = (F.when(empty, F.lit("file is empty (0 bytes)"))
             .when(missing & F.col("_key").startswith(BYTES_KEY_PREFIX), F.lit(NOT_UTF8_NAME))
             .when(missing, F.lit(UNREADABLE)))
    return joined.select(
        "account_id",
        "path",
        F.when(F.col("_first"), F.col("content")).alias("content"),
        "content_sha256",
        F.when(empty, F.lit(STATUS_EMPTY)).when(missing, F.lit(STATUS_READ_ERROR)).alias("read_status"),
        error.alias("read_error"),
        F.coalesce("file_size", "length").alias("file_size"),
        F.coalesce("file_modified", "modificationTime").alias("file_modified"),
    )


def hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """``(FileSystem, Path)`` of the JVM's Hadoop client for ``path`` (any scheme Spark can read)."""
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    try:
        return hpath.getFileSystem(conf), hpath
    except Exception as exc:  # py4j: no filesystem for the scheme, unknown host, bad URI
        raise ConfigError(filesystem_error(path, exc)) from exc


FILESYSTEM_HINTS = {
    "s3a": "Spark needs the hadoop-aws jar and the AWS SDK for s3a:// paths (spark-submit --packages or --jars, "
           "see docs/deploy.md)",
    "hdfs": "check the namenode host and port in the path (or fs.defaultFS) and that this machine can reach it",
}


def filesystem_error(path: str, exc: BaseException) -> str:
    """What to tell the operator when Hadoop cannot open the filesystem of ``path``.

    >>> filesystem_error("s3a://b/x", RuntimeError("java.lang.ClassNotFoundException: S3AFileSystem not found"))
    "cannot open 's3a://b/x': java.lang.ClassNotFoundException: S3AFileSystem not found; Spark needs ..."
    """
    java = getattr(exc, "java_exception", None)
    reason = str(java.toString()) if java is not None else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    scheme = path.split("://", 1)[0].lower() if "://" in path else ""
    hint = FILESYSTEM_HINTS.get(scheme, "check the path's scheme and the cluster's Hadoop configuration")
    return f"cannot open {path!r}: {reason[:300]}; {hint}"


def _hadoop_exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = hadoop_path(spark, path)
    return bool(fs.exists(hpath))


def check_output_directory(spark: SparkSession, path: str, flag: str) -> None:
    """Fail before any work if ``path`` cannot be an output directory: it, or a folder above it, is a file.

    Raises
    ------
    ConfigError
        Naming the file in the way, e.g. ``--output out.parquet`` pointing at an existing file.
    """
    fs, target = hadoop_path(spark, path)
    hpath = target
    while hpath is not None:
        if fs.exists(hpath):
            if fs.getFileStatus(hpath).isFile():
                where = "is" if hpath is target else f"is under {hpath}, which is"
                raise ConfigError(f"{flag}: {path!r} {where} a file, not a directory; pass a directory to write the "
                                  "Parquet output into (it is created if missing)")
            return
        hpath = hpath.getParent()


def _is_local(path: str) -> bool:
    return path.startswith("file:") or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", path) is None


def _local_path(path: str) -> str:
    return re.sub(r"^file:/*", "/", path) if path.startswith("file:") else os.path.abspath(path)


def _file_of_key(key: str) -> str | bytes:
    """The local file a listing's ``_key`` names: a ``file:`` URI, or a :data:`BYTES_KEY_PREFIX` key (as bytes)."""
    if key.startswith(BYTES_KEY_PREFIX):
        return urllib.parse.unquote_to_bytes(key[len(BYTES_KEY_PREFIX):])
    return _local_path(key)


LISTING_ROWS_PER_GROUP = 65_536
"""Rows per Parquet row group of a local listing: the listing streams to disk in pieces this size."""

_LISTING_SCHEMA = pa.schema([("path", pa.string()), ("_key", pa.string()), ("account_id", pa.string())])


def _printable(text: str) -> str:
    """``text`` as valid UTF-8: bytes a file name could not decode (surrogate escapes) become ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


ListingRow = tuple[str, str, str]
"""``(path, _key, account_id)``: one row of a local listing file (sizes and times are the executors')."""


def _size_and_mtime(path: str | bytes) -> tuple[int | None, int | None]:
    """A local file's size and modification time in milliseconds (truncated, as Hadoop's local FileSystem
    reports them); ``(None, None)`` where it cannot be examined."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns // 1_000_000


def _listing_row(root: str, name: str) -> ListingRow:
    """``(path, _key, account_id)`` of one directory entry, never raising."""
    full = os.path.join(root, name)
    account = os.path.splitext(name)[0]
    shown = _printable(full)
    if shown == full:
        return full, "file:" + full, account
    return shown, BYTES_KEY_PREFIX + urllib.parse.quote_from_bytes(os.fsencode(full)), _printable(account)


def _list_local_files(directory: str, listing_file: str) -> int:
    """Write every non-directory entry under ``directory`` to a Parquet file, streaming (constant memory).

    Unlike Hadoop's listing, this keeps entries that cannot be read (broken
    symbolic links, special files), so they get a ``read_error`` row instead of
    vanishing; follows links to folders (once per folder: no loops); and keeps
    any file name: one with a line break or quotes (Parquet, not CSV), or one
    that is not valid UTF-8 (shown with ``\\xNN`` escapes in ``path`` and
    ``account_id``, keyed by its bytes, see :data:`BYTES_KEY_PREFIX`), which
    Hadoop's listing skips without a word.
    """
    count, rows = 0, list[ListingRow]()
    with pq.ParquetWriter(listing_file, _LISTING_SCHEMA) as writer:
        def flush() -> None:
            columns: list[tuple[Any, ...]] = list(zip(*rows)) if rows else [() for _ in _LISTING_SCHEMA.names]
            writer.write_table(pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, _LISTING_SCHEMA.types)],
                                                    schema=_LISTING_SCHEMA))
            rows.clear()

        seen: set[tuple[int, int]] = set()
        # Links to folders are followed (shards mounted or linked into the tree), each folder listed once
        # (by device and inode), so a link back up the tree cannot loop.
        for root, dirs, files in os.walk(directory, followlinks=True):
            try:
                st = os.stat(root)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs.sort()
            for name in sorted(files):
                rows.append(_listing_row(root, name))
                count += 1
                if len(rows) >= LISTING_ROWS_PER_GROUP:
                    flush()
        flush()  # an empty directory still gets a (row-less) file with the schema
    return count


def _local_listing(spark: SparkSession, local: str, scratch: str | None) -> DataFrame:
    """The listing of a local directory (see :func:`_list_local_files`) as a DataFrame of LISTING_COLUMNS."""
    scratch_dir = scratch or tempfile.mkdtemp(prefix="silse-listing-")
    os.makedirs(scratch_dir, exist_ok=True)
    listing_file = os.path.join(scratch_dir, "listing.parquet")
    count = _list_local_files(local, listing_file)
    log.info("listed %d files under %s", count, local)
    if count == 0:  # an unmounted share looks like this: fail loudly rather than write an empty night
        raise ConfigError(f"--avatars {local!r} holds no files (searched recursively); pass the directory of "
                          "avatar images, and check that it is mounted")
    # The driver only reads the folders; each file's size and time come from a stat by the executors
    # (a dangling link or unreadable entry gets nulls, then a read_error row). Listing 80,000 files on
    # the driver took 0.61 s with a stat per file, 0.30 s without (2026-12-03, work/bench/images-x10).
    return _stat_on_executors(spark.read.parquet("file:" + listing_file))


def _remote_listing(spark: SparkSession, directory: str) -> DataFrame:
    """Hadoop's listing of a directory tree: no bytes are read (binaryFile prunes the content column)."""
    return (
        spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(directory)
        .select(
            "path",
            F.col("path").alias("_key"),
            F.regexp_extract("path", r"([^/]+?)(\.[^./]*)?$", 1).alias("account_id"),
            F.col("length").alias("file_size"),
            F.col("modificationTime").alias("file_modified"),
        )
        .select(*LISTING_COLUMNS)
    )


def partition_dates(spark: SparkSession, directory: str) -> list[str]:
    """The ``run_date=...`` partitions under ``directory``, sorted; ``[]`` if it does not exist."""
    fs, path = hadoop_path(spark, directory)
    if not fs.exists(path):
        return []
    return sorted(
        status.getPath().getName().split("=", 1)[1]
        for status in fs.listStatus(path)
        if status.isDirectory() and status.getPath().getName().startswith("run_date=")
    )


def prune_partitions(spark: SparkSession, directory: str, run_date: str, keep_days: int) -> list[str]:
    """Delete the ``run_date=`` partitions of ``directory`` dated more than ``keep_days`` days before
    ``run_date``; return their dates. Newer nights (a backfill runs an old date) are never touched.

    Each night holds every account again, so without this a table grows by a full copy a night. Only
    folders named ``run_date=YYYY-MM-DD`` are considered; anything else in ``directory`` is left alone.
    """
    cutoff = (dt.date.fromisoformat(run_date) - dt.timedelta(days=keep_days)).isoformat()
    old = [d for d in partition_dates(spark, directory) if _DATE.fullmatch(d) and d < cutoff]
    fs, _ = hadoop_path(spark, directory)
    jvm: Any = spark.sparkContext._jvm
    for date in old:
        partition = f"{directory.rstrip('/')}/run_date={date}"
        if not fs.delete(jvm.org.apache.hadoop.fs.Path(partition), True):
            raise OSError(f"could not delete {partition} (--keep-days {keep_days}); check its permissions")
        log.info("deleted %s (older than %s, --keep-days %d)", partition, cutoff, keep_days)
    return old


BLOOM_FILTER_COLUMNS = ("account_id",)
"""Columns written with a Parquet bloom filter per row group, so that looking up one account skips the row
groups that cannot hold it (the rows are sorted by another column, the code or the cluster id)."""


def write_night(frame: DataFrame, directory: str, sort_by: str) -> None:
    """Write ``frame`` (one ``run_date``) into ``directory``, replacing that night only (dynamic overwrite).

    Each file's rows are sorted by ``sort_by`` (``twin_bits`` for hashes: one code's rows, a code's prefix
    range, lie in one or two row groups per file, and Parquet's min/max statistics let a lookup skip the
    rest) and carry a bloom filter on ``account_id``. A synthetic hashes night of 10 million rows in 80 row
    groups of 8 MB (``.venv/bin/python scripts/lookup_layout.py --rows 10000000``, ``local[2]``, 2026-12-03),
    ``SELECT *`` lookups, best of 3: one code 2.06 s ordered as the join leaves the rows, 0.27 s written this
    way; an 8-character prefix 1.88 s against 0.21 s; one account 0.72 s against 0.14 s; files 546 MB against
    544 MB.
    """
    writer = (
        frame.sortWithinPartitions("run_date", sort_by)  # run_date first: the writer needs it, and keeps this order
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .option("parquet.bloom.filter.adaptive.enabled", "true")
    )
    for column in BLOOM_FILTER_COLUMNS:
        # Adaptive: the smallest of 12 sizes (1 MB halved 11 times, down to 512 bytes) that holds the row
        # group's distinct values; with parquet's 5 a small night's 5 KB file carried a 64 KB filter.
        writer = (writer.option(f"parquet.bloom.filter.enabled#{column}", "true")
                  .option(f"parquet.bloom.filter.candidates.number#{column}", "12"))
    writer.partitionBy("run_date").parquet(directory)


STAGING_PREFIX = ".spark-staging-"
"""Spark's folder for a dynamic-overwrite write in progress; a run killed while writing leaves it behind."""


def stale_staging(spark: SparkSession, directory: str, now: float | None = None) -> list[tuple[str, int]]:
    """``(path, bytes)`` of the ``.spark-staging-*`` folders under ``directory`` untouched for
    :data:`STALE_STAGING_HOURS`: left by runs killed while writing (a lost driver, a preempted
    container). Readers skip them (hidden names) and the night before is intact, but at full scale one
    holds up to a night's worth of Parquet, so the jobs report them and ``--keep-days`` deletes them.
    """
    fs, path = hadoop_path(spark, directory)
    if not fs.exists(path):
        return []
    jvm: Any = spark.sparkContext._jvm
    cutoff_ms = ((now if now is not None else dt.datetime.now().timestamp()) - STALE_STAGING_HOURS * 3600) * 1000

    def stale(status: Any) -> bool:
        # A live write's tasks commit into _temporary/0 (its time moves with each); the folder's own time
        # moves only at the job's start and commit.
        tasks = jvm.org.apache.hadoop.fs.Path(status.getPath(), "_temporary/0")
        tasks_ms = fs.getFileStatus(tasks).getModificationTime() if fs.exists(tasks) else 0

        def newest_file_ms() -> int | None:
            files, newest = fs.listFiles(status.getPath(), True), None
            while files.hasNext():
                newest = max(newest or 0, int(files.next().getModificationTime()))
            return newest

        return _is_stale(int(status.getModificationTime()), int(tasks_ms), newest_file_ms, cutoff_ms)

    return [
        (str(status.getPath().toString()), int(fs.getContentSummary(status.getPath()).getLength()))
        for status in fs.listStatus(path)
        if status.isDirectory() and status.getPath().getName().startswith(STAGING_PREFIX) and stale(status)
    ]


def _is_stale(folder_ms: int, tasks_ms: int, newest_file_ms: Callable[[], int | None], cutoff_ms: float) -> bool:
    """Whether a staging folder was last touched before ``cutoff_ms``. Object stores (S3) keep no folder
    times (0): there the newest file under it decides, and a folder with no file, whose age is unknown, is
    never stale (a live write may not have committed a task yet).

    >>> _is_stale(1_000, 0, lambda: None, cutoff_ms=5_000), _is_stale(1_000, 7_000, lambda: None, cutoff_ms=5_000)
    (True, False)
    >>> _is_stale(0, 0, lambda: 9_000, cutoff_ms=5_000), _is_stale(0, 0, lambda: 1_000, cutoff_ms=5_000)
    (False, True)
    >>> _is_stale(0, 0, lambda: None, cutoff_ms=5_000)
    False
    """
    touched = max(folder_ms, tasks_ms)
    if touched == 0:
        newest = newest_file_ms()
        if newest is None:
            return False
        touched = newest
    return touched < cutoff_ms


def tidy_staging(spark: SparkSession, directories: list[str], delete: bool) -> list[tuple[str, int]]:
    """The :func:`stale_staging` folders under each of ``directories``, deleted if ``delete`` (``--keep-days``)."""
    folders = [found for directory in directories for found in stale_staging(spark, directory)]
    if not delete:
        return folders
    for folder, _ in folders:
        fs, path = hadoop_path(spark, folder)
        if not fs.delete(path, True):
            raise OSError(f"could not delete {folder} (a killed run's staging folder); check its permissions")
        log.info("deleted %s (a killed run's staging folder, untouched for %d h)", folder, STALE_STAGING_HOURS)
    return folders


def read_partition(spark: SparkSession, directory: str, run_date: str, what: str | None = None) -> DataFrame:
    """One ``run_date`` partition of a Parquet table, with its ``run_date`` column; only its folder is read.

    With ``what`` (the option that named ``directory``, e.g. ``--hashes``), a partition Spark cannot read
    is a :class:`ConfigError`, not a stack trace: a file that is damaged or not Parquet, named
    (:func:`unreadable_input_file`); a type Spark does not read (pandas' nanosecond timestamps), with the folder,
    Spark's reason and the fix.
    """
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException

    folder = f"{directory.rstrip('/')}/run_date={run_date}"
    try:
        return spark.read.option("basePath", directory).parquet(folder)
    except (AnalysisException, Py4JJavaError) as exc:  # a bad type; a file that is not Parquet or is damaged
        damaged = unreadable_input_file(exc) if what is not None else None
        if damaged is not None:  # names the file, not only the folder
            raise damaged from exc
        if what is None or isinstance(exc, Py4JJavaError):
            raise  # an I/O failure (a lost connection, a permission) is not the input's fault: exit 1, as before
        reason = str(exc).strip().splitlines()[0][:500].rstrip(".")
        raise ConfigError(
            f"{what} {folder} cannot be read as a table written by this project's jobs: {reason}. Point {what} at the "
            "jobs' output; a night rewritten by another tool must keep their Parquet types (timestamps in "
            "microseconds: pandas' to_parquet(..., coerce_timestamps='us'))"
        ) from exc


UNREADABLE_FILE_ERROR = "[FAILED_READ_FILE"
"""Spark's error class for a file it could not read (``FAILED_READ_FILE.NO_HINT``, ``.CANNOT_READ_FILE_FOOTER``, ...)."""

OUTAGE_CLASSES = ("java.net.", "javax.net.", "java.io.InterruptedIOException", "java.nio.file.AccessDeniedException",
                  "org.apache.hadoop.security.AccessControlException", "java.util.concurrent.TimeoutException",
                  "org.apache.http.", "software.amazon.", "com.amazonaws.", "com.google.cloud.", "com.azure.")
"""Causes that say the storage failed, not the file: a lost connection, a timeout, a permission."""

_READ_FILE = re.compile(r"Encountered error while reading file (\S+?)\.?(?:\s|$)")


def unreadable_input_file(exc: BaseException) -> ConfigError | None:
    """The error to report when ``exc`` (from a job) is Spark failing to read one damaged input file, else ``None``.

    A Parquet file cut short (a copy killed half-way), or whose bytes changed after it was written, made a job
    fail with exit 1 and a Java stack trace, which at best named the file deep inside. Spark reports such a
    file with the error class ``FAILED_READ_FILE`` and the file's path; unless it is a ``FILE_NOT_EXIST`` or
    a cause says the storage failed (:data:`OUTAGE_CLASSES`: retrying may succeed, exit 1 as before), this
    becomes a :class:`ConfigError` (exit 2) naming the file, Spark's deepest reason and what to do. With
    ``spark.hadoop.parquet.page.verify-checksum.enabled`` (``spark-defaults.conf``) a changed byte in a data
    page is found by its checksum instead of being read as a wrong value.
    """
    java = getattr(exc, "java_exception", None)
    chain: list[tuple[str, str]] = []
    while java is not None and len(chain) < 20:
        chain.append((str(java.getClass().getName()), str(java.getMessage() or "")))
        java = java.getCause()
    read = next((m for _, m in chain if m.startswith(UNREADABLE_FILE_ERROR)), "")
    found = _READ_FILE.search(read)
    if found is None or "FILE_NOT_EXIST" in read.split("]", 1)[0]:
        return None
    if any(name.startswith(OUTAGE_CLASSES) for name, _ in chain):
        return None
    name, message = chain[-1]
    reason = f"{name.rsplit('.', 1)[-1]}: {message.strip().splitlines()[0][:300] if message.strip() else '(no message)'}"
    path = found.group(1)
    parquet = path.endswith(".parquet") or any("parquet" in f"{n} {m}".lower() for n, m in chain[1:])
    return ConfigError(
        f"the input file {path} cannot be read ({reason}): it is damaged (cut short, or changed after it was "
        f"written){' or is not the Parquet this job reads' if parquet else ''}. {REWRITE_DAMAGED_FILE}"
    )


def _check_avatar_dir(spark: SparkSession, directory: str) -> None:
    fs, hpath = hadoop_path(spark, directory)
    if not fs.exists(hpath):
        raise ConfigError(f"--avatars {directory!r} does not exist; pass a directory of avatar images")
    if not fs.getFileStatus(hpath).isDirectory():
        raise ConfigError(f"--avatars {directory!r} is a file; pass the directory that holds the avatar images "
                          "(or list files with --manifest)")


def read_avatar_dir(spark: SparkSession, directory: str, scratch: str | None = None) -> DataFrame:
    """All files under ``directory`` (recursive); account_id is the file name without extension.

    ``scratch`` is a local directory for the listing of a local input folder
    (it must be visible to executors: local mode or a shared filesystem).
    """
    _check_avatar_dir(spark, directory)
    if _is_local(directory):
        local = _local_path(directory)
        return _attach_content(_local_listing(spark, local, scratch),
                               _binary_files(spark, ["file:" + local], recursive=True))
    return _attach_content(_remote_listing(spark, directory), _binary_files(spark, [directory], recursive=True))


def _read_table(spark: SparkSession, path: str, what: str) -> DataFrame:
    if not _hadoop_exists(spark, path):
        raise ConfigError(f"{what} {path!r} does not exist; pass an existing CSV or Parquet file")
    if path.lower().endswith((".csv", ".csv.gz", ".txt")):
        # RFC 4180 as Python's csv module and spreadsheets write it: a quoted field may hold commas,
        # line breaks and doubled quotes. (multiLine reads each CSV file in one task; for very large
        # manifests prefer Parquet, which splits.)
        return (spark.read.option("header", "true").option("mode", "PERMISSIVE")
                .option("multiLine", "true").option("escape", '"').csv(path))
    return spark.read.parquet(path)


def check_input_has_rows(spark: SparkSession, config: HashJobConfig) -> None:
    """A manifest or avatar table with no rows is a configuration error, found before any work.

    (An empty ``--avatars`` folder is found when it is listed.) Without this, rerunning a date on an
    empty input would write nothing and leave that date's earlier rows in place.
    """
    flag = {"manifest": "--manifest", "avatar_table": "--avatar-table"}.get(config.input_kind)
    if flag and _read_table(spark, config.input_path, flag).limit(1).count() == 0:
        raise ConfigError(f"{flag} {config.input_path!r} has no rows; pass a file listing the accounts to hash")


def _column_hint(name: str, found: list[str]) -> str:
    """What probably went wrong when column ``name`` is missing from ``found``: another separator, another case.

    >>> _column_hint("account_id", ["account_id;path"])
    "; the header looks separated by ';': write the manifest with commas (CSV) or as Parquet"
    >>> _column_hint("path", ["Account_ID", "Path"])
    "; column names are case-sensitive: rename 'Path' to 'path'"
    >>> _column_hint("path", ["account_id", "file"])
    ''
    """
    if len(found) == 1:
        for separator in (";", "\t", "|"):
            if separator in found[0]:
                return f"; the header looks separated by {separator!r}: write the manifest with commas (CSV) or as Parquet"
    same = [f for f in found if f.lower() == name.lower()]
    return f"; column names are case-sensitive: rename {same[0]!r} to {name!r}" if same else ""


def _require_columns(df: DataFrame, required: dict[str, tuple[type[T.DataType], ...]], what: str, path: str) -> None:
    fields = {f.name: f.dataType for f in df.schema.fields}
    for name, types in required.items():
        if name not in fields:
            raise ConfigError(
                f"{what} {path!r} has no column {name!r}; found {sorted(fields)}. "
                f"Expected columns {sorted(required)}{_column_hint(name, list(fields))}"
            )
        if not isinstance(fields[name], types):
            expected = " or ".join(t.typeName() for t in types)
            raise ConfigError(
                f"{what} {path!r}: column {name!r} is {fields[name].simpleString()}, expected {expected}; "
                f"write the column as {expected} (for example with CAST({name} AS {types[0].typeName()}))"
            )


ACCOUNT_ID_TYPES = (T.StringType, T.LongType, T.IntegerType, T.ShortType, T.ByteType)
"""Types an input's ``account_id`` may have: integer ids (as upload databases keep them) are read as their
decimal text, so the output's ``account_id`` is always a string."""


def _account_id() -> Column:
    return F.col("account_id").cast("string").alias("account_id")


def missing_account() -> Column:
    """True where a row's ``account_id`` is null or blank (such a row gets ``STATUS_NO_ACCOUNT``)."""
    return F.col("account_id").isNull() | (F.trim("account_id") == "")


def _manifest_rows(spark: SparkSession, manifest: str) -> DataFrame:
    """The manifest's ``account_id``, ``path`` and ``_key`` (the path as ``binaryFile`` reports it)."""
    table = _read_table(spark, manifest, "--manifest")
    _require_columns(table, {"account_id": ACCOUNT_ID_TYPES, "path": (T.StringType,)}, "--manifest", manifest)
    return table.select(_account_id(), "path", normalise_path(F.col("path")).alias("_key"))


def _manifest_listing(
    spark: SparkSession, manifest: str, rows: DataFrame | None = None
) -> tuple[DataFrame, list[str]]:
    """The manifest's rows with their ``_key``, and the parent directories of its files that exist."""
    listing = rows if rows is not None else _manifest_rows(spark, manifest)
    # Read whole parent directories (one Spark scan) rather than collecting every path to the driver.
    directories = [
        row["d"]
        for row in listing.select(F.regexp_extract("_key", r"^(.*)/[^/]*$", 1).alias("d")).distinct().collect()
        if row["d"]
    ]
    existing = [d for d in directories if _hadoop_exists(spark, d)]
    log.info("manifest %s: %d parent directories (%d exist)", manifest, len(directories), len(existing))
    return listing, existing


def _files_in(spark: SparkSession, directories: list[str]) -> DataFrame:
    """The files under ``directories`` as ``binaryFile`` rows (joined to the manifest's rows by path).

    Spark lists a directory's leaf files at any depth either way; without ``recursiveFileLookup`` its
    partition discovery failed the job (``CONFLICTING_DIRECTORY_STRUCTURES``) when a manifest's folder
    also held a ``key=value`` folder below it, such as a silse output directory. The price: nested files
    now come back as rows too. Where only sizes and times are selected no bytes are read; with
    ``spark.silse.localReader=spark`` (or HDFS/S3 manifests) the scan reads the bytes of every file
    under the manifest's folders, nested ones included, so keep manifests' files in folders of their own.
    """
    if directories:
        return _binary_files(spark, directories, recursive=True)
    return spark.createDataFrame([], "path string, content binary, length long, modificationTime timestamp")


def read_manifest(spark: SparkSession, manifest: str) -> DataFrame:
    """Accounts listed in a CSV or Parquet manifest with columns ``account_id``, ``path``."""
    listing, existing = _manifest_listing(spark, manifest)
    return _attach_content(listing, _files_in(spark, existing), shared_files=True)


def max_content_length(spark: SparkSession) -> int:
    """Largest avatar, in bytes, that the job reads (``spark.sql.sources.binaryFile.maxLength``)."""
    return int(spark.conf.get(MAX_LENGTH_CONF, None) or 2**31 - 1)


def read_avatar_table(spark: SparkSession, table_path: str) -> DataFrame:
    """Accounts from a Parquet table with ``account_id`` and binary ``content`` (``path`` optional)."""
    table = _read_table(spark, table_path, "--avatar-table")
    _require_columns(
        table, {"account_id": ACCOUNT_ID_TYPES, "content": (T.BinaryType,)}, "--avatar-table", table_path
    )
    path = F.col("path").cast("string") if "path" in table.columns else F.lit(None).cast("string")
    # The same byte limit as for files, so an oversized blob never enters the shuffle or a Python worker.
    max_length = max_content_length(spark)
    size = F.octet_length("content")
    oversized = size > F.lit(max_length)
    problem = (
        F.when(F.col("content").isNull(), F.lit("content is null in the avatar table"))
        .when(oversized, F.format_string(
            f"content is %d bytes, larger than {MAX_LENGTH_CONF} ({max_length} bytes): not read", size))
    )
    return table.select(
        _account_id(),
        path.alias("path"),
        F.when(~oversized, F.col("content")).alias("content"),
        F.when(problem.isNotNull(), F.lit(STATUS_READ_ERROR)).alias("read_status"),
        problem.alias("read_error"),
        F.lit(None).cast("long").alias("file_size"),
        F.lit(None).cast("timestamp").alias("file_modified"),
    )


LOCAL_READER_CONF = "spark.silse.localReader"
"""``python`` (default): local files are read by the executors' Python workers, one ``open`` per file;
``spark``: by Spark's ``binaryFile`` scan (Hadoop's checksummed local filesystem, several system calls
per file; the way HDFS/S3 inputs are always read)."""


def python_reader(spark: SparkSession) -> bool:
    """Whether local files are read by :func:`read_local_contents` (see :data:`LOCAL_READER_CONF`)."""
    value = (spark.conf.get(LOCAL_READER_CONF, None) or "python").strip().lower()
    if value not in ("python", "spark"):
        raise ConfigError(f"{LOCAL_READER_CONF}={value!r}; expected 'python' or 'spark'")
    return value == "python"


def read_accounts(
    spark: SparkSession, config: HashJobConfig, scratch: str | None = None,
    listed: tuple[DataFrame, bool] | None = None, counter: ReadCounter | None = None,
) -> DataFrame:
    """The job's input as one accounts DataFrame (see module docstring).

    ``listed`` is the input's :func:`read_listing` where the caller already has it, so the
    input is not listed twice; ``counter`` counts the files the Python reader opens.
    """
    if config.input_kind == "avatar_table":
        return read_avatar_table(spark, config.input_path)
    if python_reader(spark):
        listed = listed or read_listing(spark, config, scratch)
        if listed is not None and listed[1]:
            return read_local_contents(spark, listed[0], counter)
    if config.input_kind == "avatars":
        return read_avatar_dir(spark, config.input_path, scratch)
    return read_manifest(spark, config.input_path)


def read_listing(
    spark: SparkSession, config: HashJobConfig, scratch: str | None = None
) -> tuple[DataFrame, bool] | None:
    """The input's files with ``file_size`` and ``file_modified``, reading no bytes.

    Returns ``(listing, local)`` with :data:`LISTING_COLUMNS` (a file that is
    listed but cannot be examined has null size and time), ``local`` true when
    every file is on the local (or a mounted shared) filesystem, so that
    :func:`read_local_contents` can read them (the ``stat`` of a local listing
    runs in :data:`READ_PARTITIONS_CONF` tasks); ``None`` for an avatar table,
    whose bytes are the input itself.
    """
    if config.input_kind == "avatar_table":
        return None
    if config.input_kind == "avatars":
        _check_avatar_dir(spark, config.input_path)
        if _is_local(config.input_path):
            return _local_listing(spark, _local_path(config.input_path), scratch), True
        return _remote_listing(spark, config.input_path), False
    manifest = _manifest_rows(spark, config.input_path)
    if manifest.where(~F.col("_key").startswith("file:")).limit(1).count() == 0:
        return _stat_on_executors(manifest), True
    listing, existing = _manifest_listing(spark, config.input_path, manifest)
    files = _files_in(spark, existing).select(
        F.col("path").alias("_found"), F.col("length").alias("file_size"),
        F.col("modificationTime").alias("file_modified"),
    )
    return listing.join(files, listing["_key"] == F.col("_found"), "left").select(*LISTING_COLUMNS), False


READ_PARTITIONS_CONF = "spark.silse.readPartitions"
"""Tasks that examine and read local files: ``4 x`` the cores unless set. A listing or manifest under
Spark's split size (128 MB, about a million files) is one partition, and reading it as it came ran every
``stat`` and ``open`` of the night in one task on one core (the rest of the cluster idle)."""


def partitions_for(spark: SparkSession, conf: str) -> int:
    """``conf``'s value if set (at least 1), else 4 x the cores (``spark.default.parallelism``)."""
    configured = spark.conf.get(conf, None)
    if configured:
        return max(1, int(configured))
    return max(1, 4 * spark.sparkContext.defaultParallelism)


def _spread(rows: DataFrame) -> DataFrame:
    """``rows`` dealt round-robin over :data:`READ_PARTITIONS_CONF` partitions (a shuffle of paths, no bytes).

    Round-robin, not by path: a default avatar named by a hundred million rows must not make one task
    the night's straggler; each task then reads it once (:class:`TaskReader`).
    """
    return rows.repartition(partitions_for(rows.sparkSession, READ_PARTITIONS_CONF))


def _stat_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """``file_size`` and ``_mtime_ms`` of each row's local file (null where it cannot be examined)."""
    examined = [_size_and_mtime(_file_of_key(key)) if isinstance(key, str) else (None, None)
                for key in batch["_key"]]
    return batch.assign(file_size=pd.array([e[0] for e in examined], dtype="Int64"),
                        _mtime_ms=pd.array([e[1] for e in examined], dtype="Int64"))


def _stat_on_executors(manifest: DataFrame) -> DataFrame:
    """A local manifest's LISTING_COLUMNS, each file examined (``os.stat``) by the executors' Python workers.

    No directory is listed and the driver sees no path: a manifest whose files sit in a million folders
    (one per account) costs a million ``stat`` calls spread over the cluster, where listing the folders
    through Hadoop took 62 s for 20,000 of them (driver-side existence checks, then a 10,000-task
    listing job; 2026-12-02).
    """
    schema = "account_id string, path string, _key string, file_size bigint, _mtime_ms bigint"

    def stat_rows(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return (_stat_batch(batch) for batch in batches)

    return _spread(manifest.select("account_id", "path", "_key")).mapInPandas(stat_rows, schema).select(
        *LISTING_COLUMNS[:-1], F.timestamp_millis("_mtime_ms").alias("file_modified")
    )


def _read_local_file(path: str | bytes, max_length: int) -> tuple[bytes | None, str | None, str | None]:
    """``(content, read_status, read_error)`` for one local file, never raising."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, STATUS_READ_ERROR, "file could not be read: not a regular file"
        with open(path, "rb") as fh:
            content = fh.read(max_length + 1)
    except OSError as exc:
        return None, STATUS_READ_ERROR, f"file could not be read: {exc.strerror or exc}"
    if not content:
        return None, STATUS_EMPTY, "file is empty (0 bytes)"
    if len(content) > max_length:
        return None, STATUS_READ_ERROR, f"file could not be read: larger than {MAX_LENGTH_CONF} ({max_length} bytes)"
    return content, None, None


READ_CHUNK_BYTES = 32 * 2**20
"""The reader hands file bytes to Spark in pieces of about this size, whatever the Arrow batch's row count."""

REPEAT_CACHE_FILES = 100_000
"""Files per task whose digest and read status the reader remembers, so that rows naming a file it has
already read (a default avatar every new account points at) are not read again."""


class TaskReader:
    """Reads one task's files, each at most once (see :data:`REPEAT_CACHE_FILES`).

    The first row naming a file carries its bytes; later rows of the same task naming it carry
    ``content = None`` with the same ``content_sha256``, ``read_status`` and ``read_error``: the hash job
    infers the first row's bytes and joins every row to that code by digest. ``opened`` counts the files
    actually read. The cache holds digests, never bytes, and forgets the least recently named file first.
    """

    def __init__(self, max_length: int, max_files: int = REPEAT_CACHE_FILES) -> None:
        self.max_length = max_length
        self.max_files = max_files
        self.opened = 0
        self._seen: OrderedDict[str, tuple[str | None, str | None, str | None]] = OrderedDict()

    def read(self, key: object) -> tuple[bytes | None, str | None, str | None, str | None]:
        """``(content, content_sha256, read_status, read_error)`` for one listing row's ``_key``."""
        if not isinstance(key, str):
            return None, None, STATUS_READ_ERROR, NO_PATH
        if key in self._seen:
            self._seen.move_to_end(key)
            return (None, *self._seen[key])
        content, status, error = _read_local_file(_file_of_key(key), self.max_length)
        self.opened += 1
        digest = hashlib.sha256(content).hexdigest() if content is not None else None
        self._seen[key] = (digest, status, error)
        if len(self._seen) > self.max_files:
            self._seen.popitem(last=False)
        return content, digest, status, error


def _read_batch(
    batch: pd.DataFrame, reader: TaskReader, chunk_bytes: int = READ_CHUNK_BYTES
) -> Iterator[pd.DataFrame]:
    """Read the files of one listing batch; yield READ_COLUMNS frames of at most ~``chunk_bytes`` of content.

    A batch of large (hostile) files is never held in memory whole: a frame is
    yielded as soon as its bytes pass ``chunk_bytes`` (one file at the least).
    A row with no account (``_no_account``) is not read: the hash job gives it its status.
    """
    start, size, read = 0, 0, []
    for i, (key, no_account) in enumerate(zip(batch["_key"], batch["_no_account"], strict=True)):
        read.append((None, None, None, None) if no_account else reader.read(key))
        size += len(read[-1][0] or b"")
        if size >= chunk_bytes or i == len(batch) - 1:
            rows = batch.iloc[start: i + 1]
            yield pd.DataFrame(
                {
                    "account_id": rows["account_id"].reset_index(drop=True),
                    "path": rows["path"].reset_index(drop=True),
                    "content": [r[0] for r in read], "content_sha256": [r[1] for r in read],
                    "read_status": [r[2] for r in read], "read_error": [r[3] for r in read],
                    "file_size": rows["file_size"].astype("Int64").reset_index(drop=True),
                    "file_modified": rows["file_modified"].reset_index(drop=True),
                }
            )
            start, size, read = i + 1, 0, []


class ReadCounter:
    """Counts the files the Python reader opens, for the job's summary (a Spark accumulator).

    ``used`` says whether the Python reader ran at all (it does not for the Spark reader or an avatar
    table). A retried task's reads are counted again, as Spark counts accumulator updates in
    transformations once per attempt.
    """

    def __init__(self, spark: SparkSession) -> None:
        self.accumulator = spark.sparkContext.accumulator(0)
        self.used = False

    @property
    def files(self) -> int | None:
        return int(self.accumulator.value) if self.used else None


def read_local_contents(spark: SparkSession, listing: DataFrame, counter: ReadCounter | None = None) -> DataFrame:
    """The bytes of exactly the listed local files, read on the executors: READ_COLUMNS.

    Used for the files an incremental run must read (new or changed since the
    previous run), where scanning the whole input directory would read every
    file again. Each row keeps its account; a file that cannot be read gets
    ``read_status`` and ``read_error`` as in a full scan. A file named by many
    rows is read once per task (:class:`TaskReader`). The rows are first dealt
    over :data:`READ_PARTITIONS_CONF` tasks, always, even where they already are
    (a listing from :func:`read_listing`, whose ``stat`` is a Python UDF too):
    two Python UDFs in one task hold two Python workers at once, so on 2 cores
    the night started 4 workers instead of 2, and the inference stage later
    loaded TensorFlow and the model in all 4 (2,000 images: 22.5-27.8 s of job
    against 18.0-20.1 s with the shuffle; 2026-12-03).
    """
    max_length = max_content_length(spark)
    schema = ("account_id string, path string, content binary, content_sha256 string, read_status string, "
              "read_error string, file_size bigint, file_modified timestamp")

    accumulator = None
    if counter is not None:
        counter.used, accumulator = True, counter.accumulator

    def read(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        reader = TaskReader(max_length)
        for batch in batches:
            opened = reader.opened
            yield from _read_batch(batch, reader)
            if accumulator is not None:
                accumulator.add(reader.opened - opened)

    rows = listing.select(*LISTING_COLUMNS, missing_account().alias("_no_account"))
    return _spread(rows).mapInPandas(read, schema)
