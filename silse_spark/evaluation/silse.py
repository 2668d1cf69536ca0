"""silse codes for a suite, from the production job (``jobs/hash_all.py`` under Spark).

:func:`hash_with_job` writes the suite as a job manifest (``account_id`` =
``item_id``), runs ``spark-submit jobs/hash_all.py`` once for one model
version, and reads the Parquet it writes. So the evaluation scores exactly
what production computes: Spark's file reading, the decoder, the batching
UDF and the registered weights.

:func:`hash_in_process` computes the same codes without Spark (decoder and
:class:`silse_spark.model.TwinHasher` directly). It is for development and
tests only; the report says which path produced the codes.

Example
-------
>>> job_command(Path("/repo"), Path("m.csv"), Path("out"), "silse-seed-r1")[1:3]
['jobs/hash_all.py', '--manifest']
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess  # nosec B404
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from silse_spark.codes import CODE_BITS

log = logging.getLogger(__name__)

RUN_DATE = "2026-01-01"
"""Partition the evaluation's job output is written under (any fixed date)."""

REPO_ROOT = Path(__file__).resolve().parents[2]


class HashJobError(RuntimeError):
    """``jobs/hash_all.py`` failed or wrote output the evaluation cannot use."""


@dataclass(frozen=True)
class SilseRun:
    """Codes of one model version on a suite and how they were obtained."""

    version: str
    codes: list[int | None]
    method: str
    seconds: float
    status_counts: dict[str, int]
    output: Path | None = None
    """The hash job's Parquet output (``None`` for in-process codes)."""


def spark_submit_path() -> Path:
    """The ``spark-submit`` of the running virtual environment.

    Examples
    --------
    >>> spark_submit_path().name
    'spark-submit'
    """
    return Path(sys.prefix) / "bin" / "spark-submit"


def _spark_env() -> dict[str, str]:
    env = dict(os.environ)
    python = str(Path(sys.prefix) / "bin" / "python")
    env.setdefault("PYSPARK_PYTHON", python)
    env.setdefault("PYSPARK_DRIVER_PYTHON", python)
    return env


def _run_logged(command: list[str], repo: Path, log_file: Path, timeout_s: int, what: str) -> float:
    """Run a spark-submit command with its output in ``log_file``; seconds taken, or HashJobError."""
    log.info("running %s (log: %s)", " ".join(command), log_file)
    start = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as fh:
        try:
            done = subprocess.run(command, cwd=repo, env=_spark_env(), stdout=fh,  # nosec B603
                                  stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HashJobError(f"{what} ran over {timeout_s} s; see {log_file}") from exc
    if done.returncode != 0:
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise HashJobError(f"{what} exited with {done.returncode}; log {log_file} ends:\n{tail}")
    return time.perf_counter() - start


def job_command(repo: Path, manifest: Path, output: Path, version: str) -> list[str]:
    """The argument list that hashes a manifest with one model version."""
    return [
        str(spark_submit_path()), "jobs/hash_all.py",
        "--manifest", str(manifest), "--output", str(output),
        "--run-date", RUN_DATE, "--model", version,
    ]


def _codes_from_output(frame: pd.DataFrame, item_ids: list[str], version: str) -> tuple[list[int | None], dict[str, int]]:
    required = {"account_id", "twin_bits", "status", "model_version"}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise HashJobError(f"hash job output lacks columns {missing}; it has {list(frame.columns)}")
    frame = frame[frame["model_version"] == version]
    counts = {str(k): int(v) for k, v in frame["status"].value_counts().items()}
    ok = frame[frame["status"] == "ok"].drop_duplicates("account_id").set_index("account_id")["twin_bits"]
    absent = [i for i in item_ids if i not in set(frame["account_id"])]
    if absent:
        raise HashJobError(f"hash job output has no row for {len(absent)} suite items, e.g. {absent[:5]}")
    codes: list[int | None] = []
    for item in item_ids:
        value = ok.get(item)
        codes.append(None if value is None or pd.isna(value) else int(value))
    bad = [c for c in codes if c is not None and not 0 <= c < (1 << CODE_BITS)]
    if bad:
        raise HashJobError(f"hash job wrote twin_bits outside [0, 2**{CODE_BITS}): {bad[:5]}")
    return codes, counts


def hash_with_job(
    items: pd.DataFrame, version: str, work: Path, repo: Path = REPO_ROOT, timeout_s: int = 3600
) -> SilseRun:
    """Hash the suite's files with ``jobs/hash_all.py`` and one model version.

    Parameters
    ----------
    items
        Columns ``item_id`` and ``path`` (absolute).
    version
        A registered model version.
    work
        Folder for the job manifest, its output and its log.
    repo
        Repository root the job runs from (whose ``spark-defaults.conf`` ``make venv`` installed).

    Raises
    ------
    HashJobError
        If the job is missing, fails, times out, or its output lacks suite items.
    """
    script = repo / "jobs" / "hash_all.py"
    if not script.is_file():
        raise HashJobError(f"{script} does not exist: the evaluation needs the production hash job")
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / f"job-manifest-{version}.csv"
    output = work / f"hashes-{version}"
    log_file = work / f"hash_all-{version}.log"
    items[["item_id", "path"]].rename(columns={"item_id": "account_id"}).to_csv(manifest, index=False)
    if output.exists():
        shutil.rmtree(output)  # no stale partition from an earlier suite can leak in
    command = job_command(repo, manifest, output, version)
    seconds = _run_logged(command, repo, log_file, timeout_s, f"hash job for {version}")
    frame = pd.read_parquet(output, columns=["account_id", "twin_bits", "status", "model_version"])
    codes, counts = _codes_from_output(frame, items["item_id"].tolist(), version)
    log.info("hash job for %s: %.0f s, statuses %s", version, seconds, counts)
    return SilseRun(version, codes, "jobs/hash_all.py via spark-submit", seconds, counts, output)


def hash_in_process(items: pd.DataFrame, version: str) -> SilseRun:
    """The same codes without Spark: decoder and model in this process (development only)."""
    import numpy as np

    from silse_spark.codes import twin_values_from_outputs
    from silse_spark.decode import STATUS_OK, decode_file
    from silse_spark.model import TwinHasher, get_model_spec

    start = time.perf_counter()
    framing = get_model_spec(version).framing
    decoded = [decode_file(p, framing=framing) for p in items["path"]]
    ok = [i for i, d in enumerate(decoded) if d.status == STATUS_OK]
    codes: list[int | None] = [None] * len(decoded)
    if ok:
        pixels = np.stack([decoded[i].pixels for i in ok])  # type: ignore[misc]
        _, packed = twin_values_from_outputs(TwinHasher(version).outputs(pixels))
        for i, value in zip(ok, packed):
            codes[i] = int(value)
    counts = pd.Series([d.status for d in decoded]).value_counts().to_dict() if decoded else {}
    return SilseRun(version, codes, "in-process decoder + TwinHasher (development stand-in, not Spark)",
                    time.perf_counter() - start, {str(k): int(v) for k, v in counts.items()})


def cluster_command(hashes: Path, output: Path) -> list[str]:
    """The argument list that clusters the evaluation's hash job output with the job's defaults."""
    return [str(spark_submit_path()), "jobs/detect_clusters.py", "--hashes", str(hashes), "--output", str(output),
            "--run-date", RUN_DATE, "--no-register"]


def labels_from_clusters(item_ids: list[str], clusters: pd.DataFrame) -> list[object]:
    """One label per item: its ``cluster_id``, or a label of its own when it is in no cluster.

    Examples
    --------
    >>> clusters = pd.DataFrame({"account_id": ["a", "c"], "cluster_id": ["2026-01-01_86df", "2026-01-01_86df"]})
    >>> labels_from_clusters(["a", "b", "c"], clusters)
    ['2026-01-01_86df', 'alone:b', '2026-01-01_86df']
    """
    by_account = dict(zip(clusters["account_id"], clusters["cluster_id"], strict=True))
    return [by_account.get(item, f"alone:{item}") for item in item_ids]


def cluster_job_groups(
    items: pd.DataFrame, run: SilseRun, work: Path | None = None, repo: Path = REPO_ROOT, timeout_s: int = 1800
) -> list[object] | None:
    """Run ``jobs/detect_clusters.py`` (default settings) on the run's hash output; one label per item.

    Items without a cluster get a label of their own. Returns ``None`` when
    the codes did not come from the hash job (in-process development runs),
    since the cluster job reads the hash job's Parquet.

    Examples
    --------
    >>> cluster_job_groups(pd.DataFrame({"item_id": []}), SilseRun("v", [], "", 0.0, {})) is None
    True
    """
    if run.output is None:
        return None
    work = Path(work or run.output.parent).resolve()
    output = work / f"clusters-{run.version}"
    if output.exists():
        shutil.rmtree(output)
    _run_logged(cluster_command(run.output, output), repo, work / f"detect_clusters-{run.version}.log",
                timeout_s, f"cluster job for {run.version}")
    clusters = pd.read_parquet(output / "clusters", columns=["account_id", "cluster_id"])
    return labels_from_clusters(items["item_id"].tolist(), clusters)
