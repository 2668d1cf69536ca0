"""Executors on a standalone cluster run the packed environment, not the driver's venv.

Needs `make package` first (dist/silse-env.tar.gz); `make test-cluster` does both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from silse_spark.standalone import StandaloneCluster

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "dist" / "silse-env.tar.gz"
pytestmark = pytest.mark.skipif(not ARCHIVE.exists(), reason="run `make package` first (or `make test-cluster`)")


def submit(master: str, script: Path, *args: str, archive: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "SILSE_MODELS_DIR")}
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    conf = ["--conf", "spark.ui.showConsoleProgress=false"]
    if archive:
        # The driver keeps its own interpreter: the spark.pyspark.* confs win over PYSPARK_* variables.
        conf += ["--archives", f"{ARCHIVE}#environment", "--conf", "spark.pyspark.python=./environment/bin/python",
                 "--conf", f"spark.pyspark.driver.python={sys.executable}"]
    else:
        env["PYSPARK_PYTHON"] = sys.executable
    return subprocess.run([str(Path(sys.executable).parent / "spark-submit"), "--master", master, *conf,
                           str(script), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
                          check=False)


def test_jobs_on_a_standalone_cluster_use_the_archive(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for p in demo_avatar_paths[:30]:
        (images / p.name).write_bytes(p.read_bytes())
    local = submit("local[2]", REPO / "jobs" / "hash_all.py", "--avatars", str(images), "--output",
                   str(tmp_path / "local"), "--run-date", "2026-04-01", archive=False)
    assert local.returncode == 0, local.stderr[-3000:]
    with StandaloneCluster(tmp_path / "cluster", workers=2) as cluster:
        probe = submit(cluster.url, REPO / "tests" / "data" / "probes" / "executor_python.py")
        assert probe.returncode == 0, probe.stderr[-3000:]
        seen = json.loads(next(line for line in probe.stdout.splitlines() if line.startswith("PROBE "))[6:])
        assert seen, "no executor reported"
        for executable, package in seen:
            assert "/environment/bin/python" in executable, executable
            assert str(tmp_path / "cluster") in executable, "executor Python is not in a worker's work directory"
            assert not executable.startswith(sys.prefix) and not package.startswith(str(REPO))
        run = submit(cluster.url, REPO / "jobs" / "hash_all.py", "--avatars", str(images), "--output",
                     str(tmp_path / "cluster_out"), "--run-date", "2026-04-01")
        assert run.returncode == 0, run.stderr[-3000:]
    cols = ["account_id", "content_sha256", "twin_value", "status"]
    a = pd.read_parquet(tmp_path / "local")[cols].sort_values("account_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "cluster_out")[cols].sort_values("account_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
