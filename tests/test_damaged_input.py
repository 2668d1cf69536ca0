"""Damaged Parquet inputs: a file cut short or changed after it was written is named (exit 2), never read as wrong values.

The jobs read through Spark, `silse match` and the gallery through pyarrow; both check pages' checksums.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import STANDIN_VERSION

from silse_spark.cli import CliError, match_accounts
from silse_spark.config import ConfigError
from silse_spark.sources import unreadable_input_file

REPO = Path(__file__).resolve().parents[1]


def spark_night(spark, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """A one-file Parquet table written by Spark (whose pages carry CRCs), without Hadoop's ``.crc`` side files.

    The local filesystem's side files would catch a changed byte before Parquet does; HDFS and S3 have none.
    """
    rows = [(f"acct{i:04d}", f"{(i * 2654435761) % 2**48:012x}") for i in range(300)]
    spark.createDataFrame(rows, "account_id string, twin_value string").coalesce(1).write.parquet(str(folder))
    for side in folder.glob(".*.crc"):
        side.unlink()
    return next(folder.glob("*.parquet"))


def read_error(spark, folder: Path) -> BaseException:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception) as caught:
        spark.read.parquet(str(folder)).collect()
    return caught.value


def test_a_changed_byte_in_a_data_page_fails_the_read_and_names_the_file(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # spark-defaults.conf turns on Parquet's page checksums: without it a changed byte was read as a wrong value.
    assert spark.sparkContext._jsc.hadoopConfiguration().get("parquet.page.verify-checksum.enabled") == "true"
    part = spark_night(spark, tmp_path / "night")
    chunk = pq.ParquetFile(part).metadata.row_group(0).column(1)  # twin_value
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    data = bytearray(part.read_bytes())
    data[end - 3] ^= 0x5A  # inside the last data page's body
    part.write_bytes(bytes(data))
    error = unreadable_input_file(read_error(spark, tmp_path / "night"))
    assert isinstance(error, ConfigError)
    assert part.name in str(error) and "CRC checksum verification failed" in str(error)
    assert "rerunning the job that wrote it with that --run-date" in str(error)


def test_a_file_cut_short_is_named(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    part = spark_night(spark, tmp_path / "night")
    part.write_bytes(part.read_bytes()[:200])  # a copy killed half-way
    error = unreadable_input_file(read_error(spark, tmp_path / "night"))
    assert isinstance(error, ConfigError) and part.name in str(error) and "cannot be read" in str(error)


def test_other_failures_are_not_called_damaged_files(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    part = spark_night(spark, tmp_path / "night")
    planned = spark.read.parquet(str(tmp_path / "night"))
    part.unlink()  # gone between planning and reading: not a damaged file (FILE_NOT_EXIST), exit 1 as before
    with pytest.raises(Exception) as caught:
        planned.collect()
    assert "FILE_NOT_EXIST" in str(caught.value) and unreadable_input_file(caught.value) is None
    assert unreadable_input_file(ValueError("no Java exception behind it")) is None


def hashes_night(spark, root: Path) -> Path:  # type: ignore[no-untyped-def]
    """A night of a hashes table with hash_all.py's columns, in two files written by Spark; its folder."""
    night = root / "run_date=2026-01-01"
    rows = [(f"acct{i:03d}", f"{i % 7:012x}", i % 7, "ok", STANDIN_VERSION) for i in range(60)]
    spark.createDataFrame(rows, "account_id string, twin_value string, twin_bits long, status string, "
                          "model_version string").selectExpr(
        "*", "concat('/avatars/', account_id, '.png') AS path", "CAST(NULL AS STRING) AS content_sha256",
        "96 AS width", "96 AS height", "CAST(NULL AS STRING) AS error", "TIMESTAMP'2026-01-01 00:00:00' AS hashed_at",
    ).repartition(2).write.parquet(str(night))
    for side in night.glob(".*.crc"):
        side.unlink()
    return night


def test_silse_match_names_a_damaged_file(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    night = hashes_night(spark, tmp_path / "hashes")
    found, _ = match_accounts("000000000003", str(tmp_path / "hashes"), radius=0, model_version=STANDIN_VERSION)
    assert sorted(a for a, *_ in found) == [f"acct{i:03d}" for i in range(3, 60, 7)]
    part = sorted(night.glob("*.parquet"))[1]
    chunk = pq.ParquetFile(part).metadata.row_group(0).column(0)  # account_id: a changed byte in its data page
    data = bytearray(part.read_bytes())
    data[(chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size - 3] ^= 0x5A
    part.write_bytes(bytes(data))
    with pytest.raises(CliError, match=f"the file {part} cannot be read .*rerunning the job that wrote it"):
        match_accounts("000000000003", str(tmp_path / "hashes"), radius=0, model_version=STANDIN_VERSION)
    part.write_bytes(bytes(data[:-50]))  # cut short: its footer is gone
    with pytest.raises(CliError, match=f"the file {part} cannot be read .*magic bytes not found in footer"):
        match_accounts("000000000003", str(tmp_path / "hashes"), radius=0, model_version=STANDIN_VERSION)


def test_cluster_job_on_a_damaged_night_exits_2_naming_the_file(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    night = hashes_night(spark, tmp_path / "hashes")
    damaged = sorted(night.glob("*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    record = tmp_path / "run.json"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--conf", "spark.ui.enabled=false",
         str(REPO / "jobs" / "detect_clusters.py"), "--hashes", str(tmp_path / "hashes"),
         "--output", str(tmp_path / "out"), "--run-date", "2026-01-01", "--no-register", "--summary-json", str(record)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    error = next(line for line in output.splitlines() if line.startswith("detect_clusters.py: error: "))
    assert damaged.name in error and "Traceback" not in output, error
    outcome = json.loads(record.read_text())
    assert outcome["exit_code"] == 2 and damaged.name in outcome["error"]
