"""``make profile``: where the hash job's Python workers spend their time, measured with py-spy.

Spark normally forks its Python workers from a daemon, which py-spy cannot
follow in time; for profiling the job runs with ``spark.python.use.daemon=false``
so that each worker is its own ``python -m pyspark.worker`` process. A
watcher starts ``py-spy record --format raw`` on every worker as it appears
(and on the driver's Python), and the samples are grouped into stages by the
functions on their stacks: imports at worker start, model loading, decoding,
inference, twin-value conversion, Arrow (de)serialisation, and the rest.

    python -m silse_spark.profile_job --images DIR [--model VERSION] [--output docs]

Writes ``docs/profile.md`` and ``docs/profile.json``. py-spy samples the wall
time of every thread (``--idle``); shares, not absolute seconds, are the result.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess  # nosec B404  # runs spark-submit and py-spy with fixed argument lists
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 50

STAGES: list[tuple[str, tuple[str, ...]]] = [
    # First match wins, so the specific stages come before "imports" (an import inside
    # predict is still inference).
    ("inference (model forward pass)", ("predict_on_batch", "polymorphic_function")),
    ("twin value conversion", ("twin_values_from_outputs",)),
    # Inside decode_avatar: finding the frame (silse_spark.framing) and the colour steps after the resize; the
    # resize itself (framing.frame's Image.resize) stays with decoding.
    ("content framing (find the frame, white balance)",
     ("_content_frame (", "white_balance (", "levels (", "orient (", "principal_axis (")),
    ("decode + resize (Pillow)", ("decode_avatar",)),
    # _worker_hasher imports TensorFlow (configure_threads) before the model is built and loaded.
    ("TensorFlow import + model build + weights load",
     ("_worker_hasher", "load_model", "cached_hasher", "verify_weights")),
    ("result DataFrame", ("hash_contents",)),
    ("reading avatar files (Python reader)", ("_read_local_file",)),
    ("imports at worker start", ("_find_and_load",)),
    ("Arrow (de)serialisation", ("serializers.py", "pyarrow", "arrow")),
    ("reading from the JVM (waiting)", ("read_int", "readinto", "read_command")),
]
"""Stage name -> substrings of a stack (``function (file:line)`` frames joined by ``;``)."""


def stage_of(stack: str) -> str:
    """The stage a sampled stack belongs to.

    >>> stage_of("main (worker.py:1);__call__ (tensorflow/python/eager/polymorphic_function/x.py:2)")
    'inference (model forward pass)'
    >>> stage_of("main (worker.py:1);decode_avatar (decode.py:9);frame (framing.py:2);resize (PIL/Image.py:7)")
    'decode + resize (Pillow)'
    >>> stage_of("decode_avatar (decode.py:9);frame (framing.py:2);_content_frame (framing.py:5);label (scipy.py:1)")
    'content framing (find the frame, white balance)'
    >>> stage_of("main (worker.py:1);_find_and_load (<frozen>:1)")
    'imports at worker start'
    >>> stage_of("main (worker.py:1)")
    'other'
    """
    for name, needles in STAGES:
        if any(needle in stack for needle in needles):
            return name
    return "other"


IMPORTING = "_find_and_load"
"""A stack frame of Python's import machinery: a sample with it on the stack is a one-time cost (a module loaded on
first use, e.g. numba and the framing's compiled kernels at the first framed image), whatever stage it falls in."""


def parse_raw(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Samples per stage from one py-spy ``--format raw`` file (``stack count`` lines), and of them per stage those
    taken while a module was being imported (:data:`IMPORTING` on the stack).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     raw = Path(tmp) / "worker.txt"
    ...     _ = raw.write_text("decode_avatar (d.py:1);_content_frame (f.py:2) 7\\n"
    ...                        "decode_avatar (d.py:1);_content_frame (f.py:2);_find_and_load (<frozen>:3) 2\\n")
    ...     counts, importing = parse_raw(raw)
    >>> list(counts.values()), list(importing.values())
    ([9], [2])
    """
    counts: Counter[str] = Counter()
    importing: Counter[str] = Counter()
    if not path.is_file():
        return counts, importing
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stage = stage_of(stack)
            counts[stage] += int(n)
            if IMPORTING in stack:
                importing[stage] += int(n)
    return counts, importing


def _py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: `.venv/bin/pip install py-spy` (it is in the [bench] extra)")
    return found


def profile(images: Path, work: Path, model: str | None) -> dict[str, Any]:
    import psutil

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    argv = [str(Path(sys.executable).parent / "spark-submit"), "--conf", "spark.ui.showConsoleProgress=false",
            "--conf", "spark.python.use.daemon=false", str(REPO / "jobs" / "hash_all.py"),
            "--avatars", str(images), "--output", str(work / "hashes"), "--run-date", "2026-01-01"]
    if model:
        argv += ["--model", model]
    start = time.perf_counter()
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,  # nosec B603
                           env=env, cwd=REPO)
    jvm = psutil.Process(job.pid)
    spies: dict[int, subprocess.Popen[bytes]] = {}
    roles: dict[int, str] = {}
    spy = _py_spy()
    while job.poll() is None:
        try:
            children = jvm.children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            if child.pid in spies:
                continue
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            role = "worker" if "pyspark.worker" in cmd else "driver" if "hash_all.py" in cmd else None
            if role is None:
                continue
            roles[child.pid] = role
            spies[child.pid] = subprocess.Popen(  # nosec B603
                [spy, "record", "--pid", str(child.pid), "--rate", str(RATE_HZ), "--format", "raw",
                 "--nonblocking", "--idle", "-o", str(work / f"{role}-{child.pid}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.05)
    output, _ = job.communicate()
    wall = time.perf_counter() - start
    for p in spies.values():
        p.wait(timeout=60)
    if job.returncode != 0:
        raise RuntimeError(f"hash_all.py failed (exit {job.returncode}):\n{output[-3000:]}")
    by_role: dict[str, Counter[str]] = {"worker": Counter(), "driver": Counter()}
    imports: dict[str, Counter[str]] = {"worker": Counter(), "driver": Counter()}
    for pid, role in roles.items():
        counts, importing = parse_raw(work / f"{role}-{pid}.txt")
        by_role[role].update(counts)
        imports[role].update(importing)
    job_line = next((line for line in output.splitlines() if line.startswith("wall time")), "")
    from silse_spark.model import default_model_version  # the version the job ran, named in the report

    return {
        "images": sum(1 for p in images.rglob("*") if p.is_file()),
        "model": model or default_model_version(),
        "wall_s": round(wall, 1),
        "job_summary_line": job_line.strip(),
        "workers_profiled": sum(1 for r in roles.values() if r == "worker"),
        "rate_hz": RATE_HZ,
        "samples": {role: dict(c.most_common()) for role, c in by_role.items()},
        "import_samples": {role: dict(c.most_common()) for role, c in imports.items()},
    }


def render(r: dict[str, Any]) -> str:
    worker = r["samples"]["worker"]
    total = sum(worker.values()) or 1
    importing = r.get("import_samples", {}).get("worker", {})
    rows = "\n".join(f"| {stage} | {n} | {n / total:.2f} | {n / r['rate_hz']:.1f} | {importing.get(stage, 0)} |"
                     for stage, n in worker.items())
    return f"""# Profile of the hash job's Python workers (py-spy)

Command: `{r['command']}` (`make profile`). Machine: {r['machine']['cpu_count']} cores,
{r['machine']['platform']}, 1-minute load average {r['machine']['load_average_1min'][0]} at the start and
{r['machine']['load_average_1min'][1]} at the end (other work on the machine slows every stage alike).
{r['images']:,} images, model {r['model']}, `local[2]`, Python workers
without the fork daemon (`spark.python.use.daemon=false`) so that py-spy can attach to each of the
{r['workers_profiled']} workers. Job: `{r['job_summary_line']}`; wall {r['wall_s']} s including Spark start-up.

Samples of the workers' threads at {r['rate_hz']} Hz, idle ones included (`--idle`: a Python thread
blocked in TensorFlow's native code while its thread pool computes is "idle" to py-spy), grouped by the
first matching function on the stack (`silse_spark.profile_job.STAGES`):

| stage | samples | share | worker-seconds | of the samples, importing a module |
|---|---:|---:|---:|---:|
{rows}

"worker-seconds" adds the workers' time (two run side by side on `local[2]`). The last column counts the
samples taken while Python's import machinery was on the stack: one-time costs of a worker (a module loaded at
its first use), which do not grow with the number of images.
"""


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of avatars to hash")
    parser.add_argument("--model", default=None, help="model version (default: the registry default)")
    parser.add_argument("--output", type=Path, default=Path("docs"))
    parser.add_argument("--work", type=Path, default=Path("work/profile"))
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder of images")
    load_start = os.getloadavg()[0]
    result = profile(args.images, args.work, args.model)
    result["command"] = "python -m silse_spark.profile_job --images " + str(args.images) + (
        f" --model {args.model}" if args.model else "")
    result["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                         "load_average_1min": [round(load_start, 1), round(os.getloadavg()[0], 1)]}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "profile.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.output / "profile.md").write_text(render(result), encoding="utf-8")
    print((args.output / "profile.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
