"""The hash job: input -> twin values -> Parquet partitioned by ``run_date``.

Output schema (one row per input account)::

    account_id string       the account (file stem for --avatars)
    path string             the file read (null for --avatar-table without paths)
    content_sha256 string   SHA-256 of the file bytes (null if unreadable)
    width int, height int   decoded image size (null if not decoded)
    twin_value string       12 lowercase hex characters, null unless status = 'ok'
    twin_bits bigint        the same 48 bits as an integer, for bit_count(a ^ b)
    status string           ok | empty | decode_error | too_large | unsupported_format | read_error
    error string            why a row is not ok
    model_version string    the model that produced (or would have produced) the code
    hashed_at timestamp     when the code was computed (kept from the run it was reused from)
    file_size bigint        the file's size in bytes as listed (null for --avatar-table)
    file_modified timestamp the file's modification time as listed (null for --avatar-table)
    run_date string         partition column, YYYY-MM-DD

With ``--previous``, files whose path, size and modification time match an
``ok`` row of the previous run are not read at all (on local or mounted
filesystems); every other file is read, and its code is still reused when its
SHA-256 matches a previous row.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from silse_spark.config import ConfigError, HashJobConfig, pruned_dates, require_hash_columns, staging_note
from silse_spark.hashing import OUTPUT_COLUMNS, REUSED_COLUMNS, hash_accounts, split_unchanged_files
from silse_spark.isolation import CRASHED, TIMED_OUT
from silse_spark.model import get_model_spec, verify_weights
from silse_spark.sources import (
    ReadCounter,
    check_input_has_rows,
    check_output_directory,
    partition_dates,
    prune_partitions,
    read_accounts,
    read_listing,
    read_local_contents,
    read_partition,
    tidy_staging,
    write_night,
)

log = logging.getLogger(__name__)


@dataclass
class HashJobSummary:
    """What one run did, for logs and the console."""

    run_date: str
    model_version: str
    rows: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    distinct_contents: int = 0
    reused: int = 0
    inferred: int = 0
    seconds: float = 0.0
    files_read: int | None = None
    """Files opened by the Python reader; ``None`` where it did not run (Spark reader, avatar table)."""
    pruned: list[str] | None = None
    """Nights deleted by ``--keep-days``; ``None`` without it."""
    staging: list[tuple[str, int]] = field(default_factory=list)
    """Killed runs' staging folders in the output (``sources.stale_staging``), deleted with ``--keep-days``."""
    decoder_crashes: int = 0
    """Distinct files the image decoder crashed on (``decode_error`` rows, ``silse_spark.isolation``): a crafted
    upload may be probing the codecs; keep the files."""
    decode_timeouts: int = 0
    """Distinct files whose decoding was stopped at ``--decode-timeout``."""

    @property
    def images_per_second(self) -> float:
        return self.inferred / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        lines = [
            f"run_date        {self.run_date}",
            f"model_version   {self.model_version}",
            f"accounts        {self.rows}",
            f"distinct images {self.distinct_contents} ({self.inferred} inferred, {self.reused} reused)",
            *([f"files read      {self.files_read}"] if self.files_read is not None else []),
            *([f"nights deleted  {len(self.pruned)}{pruned_dates(self.pruned)}"] if self.pruned is not None else []),
            *([f"stale staging   {staging_note(self.staging, self.pruned is not None)}"]
              if self.staging else []),
            *([f"decoder crashed on {self.decoder_crashes} file(s), timed out on {self.decode_timeouts} (their rows: "
               "status decode_error; keep the files)"] if self.decoder_crashes or self.decode_timeouts else []),
            f"wall time       {self.seconds:.1f} s ({self.images_per_second:.1f} inferred images/s)",
            "status counts:",
        ]
        lines += [f"  {status:<20} {count}" for status, count in sorted(self.status_counts.items())]
        return "\n".join(lines)


def read_previous(spark: SparkSession, directory: str, run_date: str) -> DataFrame | None:
    """The latest partition of an earlier output strictly before ``run_date``, or ``None``.

    Only that partition's directory is read, so ``--previous`` may point at the
    output directory itself without reading the partition being overwritten.
    """
    earlier = [d for d in partition_dates(spark, directory) if d < run_date]
    if not earlier:
        log.warning("--previous %s has no run_date partition before %s; inferring everything",
                    directory, run_date)
        return None
    latest = earlier[-1]
    log.info("reusing codes from %s (run_date=%s)", directory, latest)
    previous = read_partition(spark, directory, latest, "--previous")
    require_hash_columns(previous.columns, ["model_version", *REUSED_COLUMNS], "--previous", directory)
    return previous


def check_model(version: str | None) -> str:
    """Fail fast on the driver: the version is registered and its weights verify."""
    spec = get_model_spec(version)
    verify_weights(spec)
    return spec.version


def run_hash_job(spark: SparkSession, config: HashJobConfig) -> HashJobSummary:
    """Run the whole job and return its summary.

    Raises
    ------
    ConfigError, UnknownModelError, ModelIntegrityError
        For bad configuration, before any image is read.
    """
    started = time.monotonic()
    model_version = check_model(config.model_version)
    check_output_directory(spark, config.output, "--output")
    check_input_has_rows(spark, config)
    scratch = tempfile.mkdtemp(prefix="silse-hash-")
    try:
        hashed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
        counter = ReadCounter(spark)
        result = hashed_rows(spark, config, model_version, hashed_at, scratch, counter).withColumn(
            "run_date", F.lit(config.run_date)
        )
        write_night(result.select(*OUTPUT_COLUMNS), config.output, sort_by="twin_bits")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        spark.catalog.clearCache()  # the rows hash_accounts kept on disk for its two branches
    seconds = time.monotonic() - started
    summary = summarise(spark, config.output, config.run_date, model_version, hashed_at, seconds)
    summary.files_read = counter.files
    if config.keep_days is not None:  # only once the night is written and read back
        summary.pruned = prune_partitions(spark, config.output, config.run_date, config.keep_days)
    summary.staging = tidy_staging(spark, [config.output], delete=config.keep_days is not None)
    return summary


def hashed_rows(
    spark: SparkSession, config: HashJobConfig, model_version: str, hashed_at: dt.datetime, scratch: str,
    counter: ReadCounter | None = None,
) -> DataFrame:
    """The output rows (without ``run_date``): read, reuse what the previous run already knows, infer the rest."""
    previous = read_previous(spark, config.previous, config.run_date) if config.previous else None

    def hashed(accounts: DataFrame) -> DataFrame:
        return hash_accounts(accounts, model_version, hashed_at, previous=previous, batch_size=config.batch_size,
                             max_pixels=config.max_pixels, allowed_formats=config.allowed_formats,
                             decode_timeout_s=config.decode_timeout_s)

    listed = None
    if previous is not None and config.reuse_unchanged_files:
        listed = read_listing(spark, config, scratch)
        split = split_unchanged_files(listed[0], previous, model_version) if listed and listed[1] else None
        if split is not None:
            unchanged, to_read = split
            return unchanged.unionByName(hashed(read_local_contents(spark, to_read, counter)))
        log.info("reading every file: the input is not on a local or mounted filesystem, or the previous "
                 "output has no file metadata")
    return hashed(read_accounts(spark, config, scratch, listed, counter))


def summarise(
    spark: SparkSession, output: str, run_date: str, model_version: str,
    hashed_at: dt.datetime, seconds: float,
) -> HashJobSummary:
    """Counts per status, reused vs inferred, from the partition just written (no per-row collect)."""
    # Only the partition's folder is read: other folders beside the partitions (a cluster job pointed at this
    # directory wrote clusters/ there) made Spark's partition discovery fail after the whole job had run.
    written = read_partition(spark, output, run_date)
    # One aggregation job. Rows with the same bytes share a status, so distinct counts per status add up.
    ok = F.col("status") == "ok"
    reused = F.col("hashed_at") < F.lit(hashed_at).cast("timestamp")
    per_status = written.groupBy("status").agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(F.when(ok & reused, F.col("content_sha256"))).alias("reused"),
        F.countDistinct(F.when(ok & ~reused, F.col("content_sha256"))).alias("new"),
        F.countDistinct(F.when(~ok, F.col("content_sha256"))).alias("failed"),
        F.countDistinct(F.when(F.col("error").startswith(CRASHED), F.col("content_sha256"))).alias("crashed"),
        F.countDistinct(F.when(F.col("error").startswith(TIMED_OUT), F.col("content_sha256"))).alias("timed_out"),
    ).collect()
    by_status = {r["status"]: int(r["rows"]) for r in per_status}
    reused_contents, new_contents, failed_contents = (sum(int(r[k]) for r in per_status)
                                                      for k in ("reused", "new", "failed"))
    summary = HashJobSummary(
        run_date=run_date,
        model_version=model_version,
        rows=sum(by_status.values()),
        status_counts=by_status,
        distinct_contents=reused_contents + new_contents + failed_contents,
        reused=reused_contents,
        inferred=new_contents + failed_contents,
        seconds=seconds,
        decoder_crashes=sum(int(r["crashed"]) for r in per_status),
        decode_timeouts=sum(int(r["timed_out"]) for r in per_status),
    )
    if summary.rows == 0:
        raise ConfigError("the input held no files or accounts; check --avatars/--manifest/--avatar-table")
    return summary
