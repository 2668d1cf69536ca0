"""How many damaged copies of a Parquet file Spark reads without an error, with and without page checksums.

Makes copies of FILE with four bytes changed at about 60 offsets spread over it, and 8 copies cut short, and reads each
back with ``spark.read.parquet(...).collect()`` in a local session, once with Parquet's page-checksum
verification off (Spark's default) and once on (``spark-defaults.conf``). Prints, for each setting, how many
copies were read without an error and where their changed bytes were. For docs/reliability.md.

    .venv/bin/python scripts/parquet_damage.py work/output/hashes/run_date=2026-01-01/part-00000-*.parquet
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def damaged_copies(source: Path, folder: Path, changes: int = 60) -> list[tuple[str, Path]]:
    """``(what, directory)`` for each damaged copy (one file per directory)."""
    data = source.read_bytes()
    n = len(data)
    made = []
    step = max(1, (n - 12) // changes)
    for offset in range(4, n - 8, step):
        changed = bytearray(data)
        for i in range(offset, min(offset + 4, n)):
            changed[i] ^= 0xA5
        made.append((f"bytes {offset}-{offset + 3} changed", bytes(changed)))
    for cut in (0, 3, 7, 100, n // 2, n - 9, n - 4, n - 1):
        made.append((f"cut to {cut} bytes", data[:cut]))
    out = []
    for k, (what, content) in enumerate(made):
        directory = folder / f"copy{k:03d}"
        directory.mkdir(parents=True)
        (directory / "part.parquet").write_bytes(content)
        out.append((what, directory))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    folder = Path(tempfile.mkdtemp(prefix="silse-damage-"))
    try:
        copies = damaged_copies(args.file, folder)
        for verify in ("false", "true"):
            spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
                     .config("spark.ui.showConsoleProgress", "false")
                     .config("spark.hadoop.parquet.page.verify-checksum.enabled", verify).getOrCreate())
            spark.sparkContext.setLogLevel("OFF")
            unnoticed = []
            for what, directory in copies:
                try:
                    spark.read.parquet(str(directory)).collect()
                    unnoticed.append(what)
                except Exception:  # noqa: BLE001 - any failure to read is what is counted  # nosec B112
                    continue
            spark.stop()
            print(f"page checksums verified: {verify}: {len(unnoticed)} of {len(copies)} damaged copies read "
                  f"without an error: {'; '.join(unnoticed) or 'none'}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
