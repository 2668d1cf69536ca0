"""``make bench-incremental``: the nightly rerun measured at a size where its fixed cost stops dominating.

``make bench`` times the rerun with ``--previous`` over 8,000 images, where Spark's fixed cost (planning,
one-task stages, a Python worker's start) is most of it, and projects from its fixed and per-file costs the
number of files from which the rerun takes at most 10% of the first run. This measures that directly, over
``--images`` distinct files (default 200,000): the first run, a rerun with every file unchanged, and a rerun
after ``--new-fraction`` of new files were added (a night with new uploads). Writes ``incremental.md`` and
``.json`` into ``--output``; ``make bench``'s projection for the same size is shown beside it when
``benchmarks.json`` is there.

    python -m silse_spark.bench_incremental --output docs [--images 200000] [--new-fraction 0.01]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from silse_spark.bench import REPO, incremental_projection, make_images, spark_run
from silse_spark.model import default_model_version

log = logging.getLogger(__name__)

RUN_DATES = ("2026-01-01", "2026-01-02", "2026-01-03")


def _job(images: Path, out: Path, run_date: str, previous: Path | None, record: Path) -> dict[str, Any]:
    """One ``jobs/hash_all.py`` run; its wall seconds and the summary it wrote with ``--summary-json``."""
    args = ["--avatars", str(images), "--output", str(out), "--run-date", run_date, "--summary-json", str(record)]
    if previous is not None:
        args += ["--previous", str(previous)]
    wall, _, _ = spark_run(args)
    summary = json.loads(record.read_text())["summary"]
    return {"wall_s": wall, "job_s": summary["seconds"], "rows": summary["rows"], "inferred": summary["inferred"],
            "reused": summary["reused"], "files_read": summary["files_read"]}


def projected_fraction(bench: dict[str, Any], files: int) -> float:
    """``make bench``'s model of the rerun's job time over the first's at ``files`` files (both fixed + per file).

    >>> r = {"images": 1000, "spark_per_image": {"images_per_s": 1000.0, "fixed_job_s": 10.0},
    ...      "spark_incremental_run": {"job_s": 11.0, "marginal_ms_per_image": 0.05}}
    >>> round(projected_fraction(r, 200_000), 4)  # (10.95 + 10) / (10 + 200)
    0.0998
    """
    fixed = incremental_projection(bench)["fixed_s"]
    per_file = bench["spark_incremental_run"]["marginal_ms_per_image"] / 1e3
    first = bench["spark_per_image"]
    return (fixed + files * per_file) / (first["fixed_job_s"] + files / first["images_per_s"])


def run(output: Path, count: int, new_fraction: float, work: Path, sources: Path) -> dict[str, Any]:
    if work.exists():
        shutil.rmtree(work)
    images, out = work / "images", work / "hashes"
    seen: set[bytes] = set()
    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    make_images(images / "old", count, sources, seen=seen)
    made_s = time.perf_counter() - started
    first = _job(images, out, RUN_DATES[0], None, work / "first.json")
    unchanged = _job(images, out, RUN_DATES[1], out, work / "unchanged.json")
    new = max(1, round(count * new_fraction))
    make_images(images / "new", new, sources, seed=2, prefix="new", seen=seen)
    with_new = _job(images, out, RUN_DATES[2], out, work / "with_new.json")
    result: dict[str, Any] = {
        "command": f"python -m silse_spark.bench_incremental --output {output} --images {count} "
                   f"--new-fraction {new_fraction}",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "model_version": default_model_version(),
        "images": count, "new_images": new, "images_made_s": made_s,
        "load_average_1m": [load_at_start, os.getloadavg()[0]],
        "first": first, "unchanged": unchanged, "with_new": with_new,
        "unchanged_fraction_of_first": unchanged["job_s"] / first["job_s"],
        "with_new_fraction_of_first": with_new["job_s"] / first["job_s"],
    }
    bench_json = output / "benchmarks.json"
    if bench_json.exists():
        bench = json.loads(bench_json.read_text())
        result["bench_projection"] = {"fraction": projected_fraction(bench, count),
                                      "files_for_10_percent": incremental_projection(bench)["files_for_10_percent"],
                                      "bench_images": bench["images"]}
    output.mkdir(parents=True, exist_ok=True)
    (output / "incremental.json").write_text(json.dumps(result, indent=2) + "\n")
    (output / "incremental.md").write_text(render(result))
    return result


def render(r: dict[str, Any]) -> str:
    """The Markdown report of :func:`run`'s result."""
    rows = [("first run (every file read, decoded and inferred)", r["first"], "1.00"),
            ("rerun, every file unchanged (`--previous`)", r["unchanged"], f"{r['unchanged_fraction_of_first']:.3f}"),
            (f"rerun after {r['new_images']:,} new files were added (`--previous`)", r["with_new"],
             f"{r['with_new_fraction_of_first']:.3f}")]
    table = "\n".join(
        f"| {name} | {run['rows']:,} | {run['files_read']:,} | {run['inferred']:,} | {run['reused']:,} | "
        f"{run['wall_s']:.1f} | {run['job_s']:.1f} | {fraction} |" for name, run, fraction in rows
    )
    load = ""
    if "load_average_1m" in r:
        load = ", 1-minute load average {:.1f} at the start and {:.1f} at the end".format(*r["load_average_1m"])
    projection = ""
    if "bench_projection" in r:
        p = r["bench_projection"]
        projection = (f"\n`make bench` ([benchmarks.md](benchmarks.md), {p['bench_images']:,} images) modelled both jobs as "
                      f"fixed + per-file cost and projected {p['fraction']:.3f} at {r['images']:,} files (at most 10% "
                      f"from {p['files_for_10_percent']:,} files); measured here: "
                      f"{r['unchanged_fraction_of_first']:.3f}.\n")
    return f"""# The incremental rerun at scale

Produced by `{r['command']}` ({r['date_utc']} UTC, model `{r['model_version']}`, `local[2]` on the machine
of [benchmarks.md](benchmarks.md){load}); do not edit by hand. {r['images']:,} distinct images
(variations of the demo avatars, made in {r['images_made_s']:.0f} s, half PNG and half JPEG), hashed by
`jobs/hash_all.py`, then hashed again the next night with `--previous` pointing at the first night: a file
whose path, size and modification time match an `ok` row there keeps its code unread. The third night adds
{r['new_images']:,} new distinct files (new uploads) beside the unchanged ones.

| run | accounts | files read | inferred | reused | wall (s) | job (s) | job vs first |
|---|---:|---:|---:|---:|---:|---:|---:|
{table}

Wall time includes Spark's start-up and shutdown; job time is the job's own (`wall time` in its summary).
The rerun's target in issue #8 is at most 0.10 of the first run's time.
{projection}"""


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("docs"))
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--new-fraction", type=float, default=0.01)
    parser.add_argument("--work", type=Path, default=Path("work/bench-incremental"))
    parser.add_argument("--sources", type=Path, default=REPO.parent / "shared" / "data" / "demo_avatars")
    args = parser.parse_args(argv)
    if args.images < 1 or not 0 < args.new_fraction <= 1:
        parser.error("--images must be at least 1 and --new-fraction in (0, 1]")
    run(args.output, args.images, args.new_fraction, args.work, args.sources)
    print((args.output / "incremental.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
