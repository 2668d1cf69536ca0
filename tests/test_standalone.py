"""Multi-process runs on a loopback standalone cluster (a Master and two Workers).

A worker killed in the middle of the hash job must not change the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHORT_JVM_OPTS

from silse_spark.config import HashJobConfig
from silse_spark.hash_job import run_hash_job
from silse_spark.model import MODELS_DIR_ENV
from silse_spark.standalone import StandaloneCluster

REPO = Path(__file__).resolve().parents[1]
COLS = ["account_id", "content_sha256", "twin_value", "twin_bits", "status", "error"]


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory, demo_avatar_paths: list[Path]) -> Path:
    """~200 distinct images, enough inference for a worker to die mid-job."""
    import numpy as np
    from PIL import Image

    from silse_spark.variations import SEED_FAMILIES, encode, vary

    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(5)
    families = sorted(SEED_FAMILIES)
    for i in range(200):
        img = Image.open(demo_avatar_paths[i % len(demo_avatar_paths)]).convert("RGB")
        (root / f"u{i:04d}.png").write_bytes(encode(vary(img, families[i % len(families)], rng)))
    return root


def frame(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)[COLS].sort_values("account_id").reset_index(drop=True)


def test_worker_killed_mid_job_gives_identical_output(
    spark, standin_models: Path, many_images: Path, tmp_path: Path  # noqa: ANN001
) -> None:
    run_hash_job(spark, HashJobConfig("avatars", str(many_images), str(tmp_path / "local"), run_date="2026-03-01"))
    expected = frame(tmp_path / "local")

    # Executors log "Running task" at INFO, so the test can see when worker 1 has work.
    log4j = tmp_path / "executor-log4j2.properties"
    log4j.write_text(
        "rootLogger.level = warn\nrootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\nappender.console.name = console\nappender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\nappender.console.layout.pattern = %m%n\n"
        "logger.executor.name = org.apache.spark.executor.Executor\nlogger.executor.level = info\n"
    )
    with StandaloneCluster(tmp_path / "cluster", workers=2) as cluster:
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "spark-submit"), "--master", cluster.url,
             "--conf", f"spark.executorEnv.{MODELS_DIR_ENV}={standin_models}",
             "--conf", "spark.ui.showConsoleProgress=false", "--conf", "spark.task.maxFailures=4",
             "--conf", "spark.silse.inferencePartitions=16",
             "--conf", f"spark.executor.extraJavaOptions=-Dlog4j.configurationFile=file:{log4j} {SHORT_JVM_OPTS}",
             str(REPO / "jobs" / "hash_all.py"), "--avatars", str(many_images),
             "--output", str(tmp_path / "cluster_out"), "--run-date", "2026-03-01"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )
        # Wait until worker 1's executor has started Python work, then take the machine away.
        deadline = time.monotonic() + 300
        killed = False
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list((tmp_path / "cluster" / "worker1").glob("app-*/*/stderr"))
            if any("Running task" in p.read_text(errors="replace") for p in logs):
                cluster.kill_worker(1)
                killed = True
                break
            time.sleep(0.5)
        out, err = proc.communicate(timeout=600)
        assert killed, f"worker 1 never ran a task; job output:\n{err[-2000:]}"
        assert proc.returncode == 0, err[-3000:]
        assert cluster.alive_workers() == 1
    pd.testing.assert_frame_equal(frame(tmp_path / "cluster_out"), expected)
