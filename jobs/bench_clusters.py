"""make bench-clusters: run jobs/detect_clusters.py on millions of synthetic codes with planted campaigns.

Usage::

    python jobs/bench_clusters.py --work work/bench_clusters [--output DIR] [--accounts 10000000] [--campaigns 2000]
        [--radius 2] [--prefix-length 8] [--driver-memory 8g] [--shuffle-partitions 64]

Writes a hashes table (the shape jobs/hash_all.py writes) of uniformly random
background codes plus planted campaigns of 5..40 accounts, one quarter of each
kind: ``exact`` (all the same code), ``prefix`` (same first K hex characters,
random rest), ``radius1`` (the original plus copies 1 bit away) and
``radius2`` (the original plus copies exactly 2 bits away). Then runs the job
with ``spark-submit`` on ``local[2]`` with an event log, and reports wall
time, shuffle bytes written/read (from the event log), recall of planted
campaigns (all accounts of the campaign in one cluster), clusters mixing a
campaign with other accounts, and clusters of background accounts only.
Results: OUTPUT/bench_clusters.json (default WORK/) and stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from silse_spark.clusters import DEFAULT_RADIUS_LINKS, RADIUS_LINKS

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-01-01"
KINDS = ("exact", "prefix", "radius1", "radius2")
log = logging.getLogger("silse.bench_clusters")


def hex_codes(codes: np.ndarray) -> np.ndarray:
    """Vectorised twin_value formatting: 12 lowercase hex characters per code."""
    shifts = np.arange(44, -1, -4, dtype=np.int64)
    digits = (codes[:, None] >> shifts) & 0xF
    table = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    return table[digits].astype(np.uint8).view("S12").ravel().astype(str)


def plant(rng: np.random.Generator, campaigns: int, prefix_length: int) -> pd.DataFrame:
    """Planted campaigns: columns campaign, kind, twin_bits."""
    rows = []
    for c in range(campaigns):
        kind = KINDS[c % len(KINDS)]
        size = int(rng.integers(5, 41))
        base = int(rng.integers(0, 1 << 48))
        if kind == "exact":
            codes = [base] * size
        elif kind == "prefix":
            keep = 4 * prefix_length
            high = base >> (48 - keep) << (48 - keep)
            codes = [high | int(x) for x in rng.integers(0, 1 << (48 - keep), size)]
        else:
            flips = 1 if kind == "radius1" else 2
            codes = [base]
            for _ in range(size - 1):
                code = base
                for p in rng.choice(48, flips, replace=False):
                    code ^= 1 << int(p)
                codes.append(code)
        rows += [(f"camp{c:05d}", kind, code) for code in codes]
    return pd.DataFrame(rows, columns=["campaign", "kind", "twin_bits"])


def write_hashes(directory: Path, accounts: int, campaigns: int, prefix_length: int, seed: int) -> pd.DataFrame:
    """Write the synthetic hashes table; return the planted accounts (account_id, campaign, kind)."""
    rng = np.random.default_rng(seed)
    planted = plant(rng, campaigns, prefix_length)
    planted["account_id"] = [f"spam_{c}_{i:03d}" for i, c in zip(planted.groupby("campaign").cumcount(), planted.campaign)]
    background = accounts - len(planted)
    codes = np.concatenate([rng.integers(0, 1 << 48, background, dtype=np.int64), planted.twin_bits.to_numpy(np.int64)])
    ids = np.concatenate([np.char.add("bg_", np.arange(background).astype(str)), planted.account_id.to_numpy(str)])
    bad = 1000
    part = directory / f"run_date={RUN_DATE}"
    part.mkdir(parents=True, exist_ok=True)
    chunk = 2_000_000
    for n, start in enumerate(range(0, len(codes), chunk)):
        c = codes[start:start + chunk]
        table = pa.table({
            "account_id": ids[start:start + chunk],
            "path": pa.nulls(len(c), pa.string()),
            "content_sha256": pa.nulls(len(c), pa.string()),
            "width": pa.array(np.full(len(c), 96, np.int32)),
            "height": pa.array(np.full(len(c), 96, np.int32)),
            "twin_value": hex_codes(c),
            "twin_bits": c,
            "status": pa.array(["ok"] * len(c)),
            "error": pa.nulls(len(c), pa.string()),
            "model_version": pa.array(["bench"] * len(c)),
            "hashed_at": pa.array(np.full(len(c), np.datetime64("2026-01-01T00:00:00", "us"))),
        })
        pq.write_table(table, part / f"part-{n:05d}.parquet")
    errors = pa.table({
        "account_id": [f"broken_{i}" for i in range(bad)], "path": pa.nulls(bad, pa.string()),
        "content_sha256": pa.nulls(bad, pa.string()), "width": pa.nulls(bad, pa.int32()),
        "height": pa.nulls(bad, pa.int32()), "twin_value": pa.nulls(bad, pa.string()),
        "twin_bits": pa.nulls(bad, pa.int64()), "status": ["decode_error"] * bad, "error": ["synthetic"] * bad,
        "model_version": ["bench"] * bad, "hashed_at": pa.nulls(bad, pa.timestamp("us")),
    })
    pq.write_table(errors, part / "part-errors.parquet")
    return planted[["account_id", "campaign", "kind"]]


def shuffle_bytes(event_dir: Path) -> dict[str, object]:
    """Shuffle bytes written and read, summed over the tasks in the Spark event log, and the slowest stages."""
    written = read = 0
    stages = []
    for log_file in (p for p in event_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        with open(log_file, encoding="utf-8") as f:
            for line in f:
                if '"SparkListenerTaskEnd"' in line:
                    metrics = json.loads(line).get("Task Metrics") or {}
                    written += metrics.get("Shuffle Write Metrics", {}).get("Shuffle Bytes Written", 0)
                    r = metrics.get("Shuffle Read Metrics", {})
                    read += r.get("Remote Bytes Read", 0) + r.get("Local Bytes Read", 0)
                elif '"SparkListenerStageCompleted"' in line:
                    info = json.loads(line)["Stage Info"]
                    acc = {a["Name"]: a.get("Value") for a in info.get("Accumulables", [])}
                    stages.append({
                        "stage": info["Stage ID"], "tasks": info["Number of Tasks"],
                        "seconds": round((info.get("Completion Time", 0) - info.get("Submission Time", 0)) / 1000, 1),
                        "shuffle_write": acc.get("internal.metrics.shuffle.write.bytesWritten", 0),
                        "spill": acc.get("internal.metrics.diskBytesSpilled", 0),
                    })
    slowest = sorted(stages, key=lambda s: -float(s["seconds"]))[:6]
    return {"shuffle_bytes_written": written, "shuffle_bytes_read": read, "slowest_stages": slowest}


def score(clusters: pd.DataFrame, planted: pd.DataFrame) -> dict[str, object]:
    """Recall per kind and false merges, from the job's clusters and the planted truth."""
    merged = clusters.merge(planted, on="account_id", how="left")
    per_campaign = planted.merge(clusters[["account_id", "cluster_id"]], on="account_id", how="left")
    recovered = per_campaign.groupby("campaign").agg(
        kind=("kind", "first"), clusters=("cluster_id", "nunique"), missing=("cluster_id", lambda s: s.isna().sum())
    )
    recovered["ok"] = (recovered.clusters == 1) & (recovered.missing == 0)
    by_cluster = merged.groupby("cluster_id").agg(
        campaigns=("campaign", "nunique"), background=("campaign", lambda s: s.isna().sum()), size=("account_id", "size")
    )
    return {
        "planted_campaigns": int(len(recovered)),
        "recall": float(recovered.ok.mean()),
        "recall_by_kind": {k: float(g.ok.mean()) for k, g in recovered.groupby("kind")},
        "clusters": int(len(by_cluster)),
        "clusters_mixing_campaigns": int((by_cluster.campaigns > 1).sum()),
        "campaign_clusters_with_background": int(((by_cluster.campaigns >= 1) & (by_cluster.background > 0)).sum()),
        "background_only_clusters": int((by_cluster.campaigns == 0).sum()),
        "background_accounts_in_clusters": int(by_cluster.background.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="bench_clusters.py", description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="work/bench_clusters", help="scratch directory (recreated)")
    parser.add_argument("--output", default=None, help="directory for bench_clusters.json (default: --work)")
    parser.add_argument("--accounts", type=int, default=10_000_000)
    parser.add_argument("--campaigns", type=int, default=2000)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--prefix-length", type=int, default=8)
    parser.add_argument("--radius-links", choices=RADIUS_LINKS, default=DEFAULT_RADIUS_LINKS)
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--shuffle-partitions", type=int, default=64)
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    events = work / "events"
    events.mkdir(parents=True)
    started = time.monotonic()
    planted = write_hashes(work / "hashes", args.accounts, args.campaigns, args.prefix_length, args.seed)
    log.info("wrote %d synthetic accounts (%d planted) in %.0f s", args.accounts, len(planted), time.monotonic() - started)

    python = sys.executable
    env = {**os.environ, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python}
    command = [
        str(Path(python).parent / "spark-submit"), "--master", "local[2]", "--driver-memory", args.driver_memory,
        "--conf", f"spark.sql.shuffle.partitions={args.shuffle_partitions}",
        "--conf", "spark.eventLog.enabled=true", "--conf", "spark.eventLog.compress=false",
        "--conf", f"spark.eventLog.dir={events.resolve().as_uri()}",
        "--conf", "spark.ui.showConsoleProgress=false",
        "--conf", f"spark.local.dir={(work / 'tmp').resolve()}",
        str(REPO / "jobs" / "detect_clusters.py"), "--hashes", str(work / "hashes"), "--output", str(work / "output"),
        "--radius", str(args.radius), "--prefix-length", str(args.prefix_length), "--no-register",
        "--radius-links", args.radius_links,
    ]
    log.info("running %s", " ".join(command))
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        print(done.stderr[-5000:], file=sys.stderr)
        return done.returncode
    print(done.stdout)
    clusters = pd.read_parquet(work / "output" / "clusters", columns=["cluster_id", "account_id"])
    result = {
        "accounts": args.accounts, "radius": args.radius, "prefix_length": args.prefix_length,
        "radius_links": args.radius_links,
        "cores": 2, "driver_memory": args.driver_memory, "shuffle_partitions": args.shuffle_partitions,
        "wall_seconds": round(wall, 1), **shuffle_bytes(events), **score(clusters, planted),
        "job_report": done.stdout,
    }
    output = Path(args.output) if args.output else work
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench_clusters.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "job_report"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
