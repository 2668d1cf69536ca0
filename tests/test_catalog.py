"""spark-submit jobs/detect_clusters.py with an embedded Hive metastore, then spark-sql as an analyst would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_clusters import RADIUS, RADIUS_BASE, planted_rows, write_hashes

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def hive_conf(root: Path) -> list[str]:
    """A private warehouse and Derby metastore under ``root`` (the project's defaults point at work/)."""
    settings = {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "2",
    }
    return [x for key, value in settings.items() for x in ("--conf", f"{key}={value}")]


def run(tool: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run([str(BIN / tool), "--master", "local[2]", *hive_conf(root), *args], capture_output=True,
                          text=True, env=env, cwd=root, timeout=600, check=False)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hive")
    write_hashes(root / "hashes", "2026-01-01", planted_rows())
    done = run("spark-submit", root, str(REPO / "jobs" / "detect_clusters.py"), "--hashes", str(root / "hashes"),
               "--output", str(root / "out"), "--allowlist", str(write_allowlist(root)),
               "--radius", "2", "--prefix-length", "8")  # the settings the planted rows are built for
    assert done.returncode == 0, done.stderr[-3000:]
    assert "clusters             4 (12 accounts" in done.stdout
    return root


def write_allowlist(root: Path) -> Path:
    from test_clusters import ALLOWED

    path = root / "allowlist.txt"
    path.write_text(f"# the default avatar\n{ALLOWED}\n")
    return path


def test_analyst_queries_the_registered_tables(registered: Path) -> None:
    query = (
        "SELECT account_id, method FROM silse.clusters WHERE cluster_id = '2026-01-01_" + RADIUS_BASE + "' "
        "ORDER BY account_id;"
        "SELECT cluster_id, size FROM silse.cluster_summary ORDER BY size DESC, cluster_id LIMIT 1;"
        "SELECT twin_value, bit_count(twin_bits ^ CAST(conv('" + RADIUS_BASE + "', 16, 10) AS BIGINT)) AS d FROM silse.hashes "
        "WHERE status = 'ok' AND bit_count(twin_bits ^ CAST(conv('" + RADIUS_BASE + "', 16, 10) AS BIGINT)) <= 2 ORDER BY d;"
    )
    done = run("spark-sql", registered, "-e", query)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split("\t") for line in done.stdout.strip().splitlines()]
    assert lines[:3] == [["radius_0", "radius"], ["radius_1", "radius"], ["radius_2", "radius"]]
    assert lines[3] == [f"2026-01-01_{RADIUS_BASE}", "3"]  # four clusters of 3: the smallest id
    assert lines[4:] == [[RADIUS[0], "0"], [RADIUS[1], "1"], [RADIUS[2], "2"]]


def test_missing_hashes_exit_2_with_a_fix(tmp_path: Path) -> None:
    done = run("spark-submit", tmp_path, str(REPO / "jobs" / "detect_clusters.py"), "--hashes",
               str(tmp_path / "none"), "--output", str(tmp_path / "out"), "--no-register")
    assert done.returncode == 2
    # spark-submit's Python runner merges the script's stderr into stdout
    assert "has no run_date=YYYY-MM-DD partitions; run jobs/hash_all.py first" in done.stdout + done.stderr


HOLDER = """
import os, sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.enableHiveSupport().getOrCreate()
spark.sql("SHOW DATABASES").collect()  # boots the embedded Derby metastore and keeps it
print("holding", flush=True)
deadline = time.monotonic() + 300
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:  # until the test says done
    time.sleep(0.2)
"""


def test_busy_metastore_keeps_the_output_and_exits_3(registered: Path, tmp_path: Path) -> None:
    """An analyst's open spark-sql session holds the embedded Derby metastore: the night's clusters are still
    written, the summary says the tables were not registered and why, and the exit code (3) tells the scheduler."""
    (tmp_path / "holder.py").write_text(HOLDER)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    holder = subprocess.Popen([str(BIN / "spark-submit"), "--master", "local[1]", *hive_conf(registered),
                               str(tmp_path / "holder.py"), str(tmp_path / "done")], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env, cwd=registered)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        done = run("spark-submit", registered, str(REPO / "jobs" / "detect_clusters.py"), "--hashes",
                   str(registered / "hashes"), "--output", str(tmp_path / "out"),
                   "--summary-json", str(tmp_path / "status" / "clusters.json"))
    finally:
        (tmp_path / "done").touch()
        holder.communicate(timeout=120)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "tables               NOT registered (exit code 3)" in done.stdout
    assert "admits one Spark process at a time" in done.stdout
    # spark-defaults.conf: Hive's handler retries once, not 10 times 2 s apart, before the job can say so.
    assert (done.stdout + done.stderr).count("Retrying HMSHandler") == 1
    # The same outcome for a scheduler or monitoring, as JSON.
    record = json.loads((tmp_path / "status" / "clusters.json").read_text())
    assert (record["job"], record["exit_code"]) == ("detect_clusters.py", 3)
    assert "admits one Spark process at a time" in record["error"]
    assert record["summary"]["run_date"] == "2026-01-01" and record["summary"]["tables"] == []
    assert record["summary"]["clusters"] > 0 and record["summary"]["status_counts"]["ok"] > 0
    assert (tmp_path / "out" / "clusters" / "run_date=2026-01-01").is_dir()
    assert (tmp_path / "out" / "cluster_summary" / "run_date=2026-01-01").is_dir()


def test_installed_spark_settings_find_the_metastore_from_any_directory() -> None:
    """``make venv`` gives the venv's Spark the project's settings with work/ absolute: an analyst's
    ``spark-sql`` opened outside the checkout reads the same metastore instead of creating an empty one."""
    import pyspark

    installed = (Path(pyspark.__file__).parent / "conf" / "spark-defaults.conf").read_text().splitlines()
    ours = (REPO / "spark-defaults.conf").read_text().splitlines()
    assert len(installed) == len(ours)
    changed = {a.split()[0]: a.split(None, 1)[1] for a, b in zip(installed, ours, strict=True) if a != b}
    work = REPO / "work"
    assert changed == {
        "spark.sql.warehouse.dir": f"{work}/warehouse",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={work}/metastore_db;create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={work}",
    }
