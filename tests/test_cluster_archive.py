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


def _campaign_images(directory: Path, demo_avatar_paths: list[Path]) -> None:
    """20 honest avatars plus two campaigns of 6 exact re-uploads, so that clusters exist."""
    directory.mkdir()
    for p in demo_avatar_paths[:20]:
        (directory / p.name).write_bytes(p.read_bytes())
    for campaign, p in enumerate(demo_avatar_paths[20:22]):
        for copy in range(6):
            (directory / f"spam{campaign}_{copy}{p.suffix}").write_bytes(p.read_bytes())


def _memberships(path: Path) -> list[tuple[str, ...]]:
    clusters = pd.read_parquet(path)
    return sorted(tuple(sorted(group["account_id"])) for _, group in clusters.groupby("cluster_id"))


def test_jobs_on_a_standalone_cluster_use_the_archive(
    tmp_path: Path, demo_avatar_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers pass their environment to executors: no test stand-in models, the archive's own weights.
    monkeypatch.delenv("SILSE_MODELS_DIR", raising=False)
    images = tmp_path / "images"
    _campaign_images(images, demo_avatar_paths)
    local = submit("local[2]", REPO / "jobs" / "hash_all.py", "--avatars", str(images), "--output",
                   str(tmp_path / "local"), "--run-date", "2026-04-01", archive=False)
    assert local.returncode == 0, local.stderr[-3000:]
    local_clusters = submit("local[2]", REPO / "jobs" / "detect_clusters.py", "--hashes", str(tmp_path / "local"),
                            "--output", str(tmp_path / "local_clusters"), "--no-register", archive=False)
    assert local_clusters.returncode == 0, local_clusters.stderr[-3000:]
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
        clusters = submit(cluster.url, REPO / "jobs" / "detect_clusters.py", "--hashes", str(tmp_path / "cluster_out"),
                          "--output", str(tmp_path / "cluster_clusters"), "--no-register")
        assert clusters.returncode == 0, clusters.stderr[-3000:]
    cols = ["account_id", "content_sha256", "twin_value", "status"]
    a = pd.read_parquet(tmp_path / "local")[cols].sort_values("account_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "cluster_out")[cols].sort_values("account_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    planted = _memberships(tmp_path / "local_clusters" / "clusters")
    for campaign in (0, 1):  # identical re-uploads get one code, so each campaign is inside one cluster
        accounts = {f"spam{campaign}_{i}" for i in range(6)}
        assert any(accounts <= set(members) for members in planted), (campaign, planted)
    assert _memberships(tmp_path / "cluster_clusters" / "clusters") == planted
