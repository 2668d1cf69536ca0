"""Time analysts' lookups on a synthetic hashes night written as the job used to write it and with write_night.

    .venv/bin/python scripts/lookup_layout.py --rows 10000000 --work work/layout

"before": each file ordered by content_sha256 (as the join leaves the rows), no bloom filter; "write_night": the
job's writer (sorted by twin_bits, bloom filter on account_id). Row groups of 8 MB so that a night of this size
has many, as a full-size night has. Prints the best of 3 for each ``SELECT *`` lookup.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import time

import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from silse_spark.sources import write_night


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--work", default="work/layout")
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.hadoop.parquet.block.size", str(8 << 20)).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    shutil.rmtree(args.work, ignore_errors=True)
    rows = (spark.range(args.rows, numPartitions=8)
            .withColumn("account_id", F.concat(F.lit("acct_"), F.col("id").cast("string")))
            .withColumn("twin_bits", F.abs(F.xxhash64("id")) % F.lit(1 << 48))
            .withColumn("twin_value", F.lpad(F.lower(F.hex("twin_bits")), 12, "0"))
            .withColumn("path", F.concat(F.lit("/avatars/"), F.col("id").cast("string"), F.lit(".png")))
            .withColumn("content_sha256", F.sha2(F.col("path"), 256))
            .withColumn("status", F.lit("ok")).withColumn("model_version", F.lit("silse-v1f-r11"))
            .withColumn("run_date", F.lit("2026-01-01")).drop("id"))
    started = time.time()
    (rows.sortWithinPartitions("content_sha256").write.partitionBy("run_date").parquet(f"{args.work}/before"))
    print(f"before      write {time.time() - started:.1f} s")
    started = time.time()
    write_night(rows, f"{args.work}/write_night", sort_by="twin_bits")
    print(f"write_night write {time.time() - started:.1f} s")
    probe = spark.read.parquet(f"{args.work}/before").limit(1).collect()[0]
    for name in ("before", "write_night"):
        files = glob.glob(f"{args.work}/{name}/run_date=*/*.parquet")
        size = sum(pq.ParquetFile(f).metadata.serialized_size for f in files)
        groups = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
        print(f"{name:<11} {len(files)} files, {groups} row groups, footers {size / 1e6:.1f} MB")
        night = spark.read.parquet(f"{args.work}/{name}").where("run_date = '2026-01-01'")
        for what, condition in [("code", F.col("twin_value") == probe.twin_value),
                                ("prefix8", F.col("twin_value").startswith(probe.twin_value[:8])),
                                ("account", F.col("account_id") == probe.account_id)]:
            times = []
            for _ in range(3):
                started = time.time()
                found = len(night.where(condition).collect())
                times.append(time.time() - started)
            print(f"{name:<11} {what:<8} {found} rows  best of 3 {min(times):.2f} s")


if __name__ == "__main__":
    main()
