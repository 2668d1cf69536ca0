"""What every ``spark-submit`` entry point in ``jobs/`` does around its job.

The session is created here, inside ``main`` of a job (never at import), and
stopped however the job ends; bad configuration found by the job becomes exit
code 2 with the message on stderr, and the job's summary table is printed (its ``exit_code``, where
it has one, is the process's: the cluster job returns 3 when its tables could not be registered).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, Protocol


class _Summary(Protocol):
    def table(self) -> str: ...


def use_this_python_for_workers(environ: MutableMapping[str, str] | None = None) -> bool:
    """Point Spark's Python workers at this interpreter when the job was started as a plain script.

    ``spark-submit`` from the virtual environment sets ``PYSPARK_PYTHON``; a job started with
    ``.venv/bin/python jobs/hash_all.py`` (an IDE, a debugger) did not, and its workers ran the
    system's ``python3``, without pandas or TensorFlow, failing every task. Only a driver that
    started its own JVM (no ``PYSPARK_GATEWAY_PORT``: not launched by ``spark-submit``) is
    changed, so a cluster's configured executor Python is never overridden. Returns whether it set it.

    >>> env = {}
    >>> use_this_python_for_workers(env), env["PYSPARK_PYTHON"] == sys.executable
    (True, True)
    >>> use_this_python_for_workers({"PYSPARK_GATEWAY_PORT": "4321"})
    False
    """
    environ = os.environ if environ is None else environ
    if "PYSPARK_PYTHON" in environ or "PYSPARK_GATEWAY_PORT" in environ:
        return False
    environ["PYSPARK_PYTHON"] = sys.executable
    return True


def add_summary_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary-json", default=None, metavar="FILE",
                        help="also write the run's outcome as JSON to FILE on the driver's machine (exit code, "
                        "error, and the summary's counts), for a scheduler or monitoring; written on failure too")


def write_summary_json(path: str | None, prog: str, exit_code: int, summary: Any = None,
                       error: str | None = None) -> None:
    """Write the run's outcome to ``path`` (nothing if ``None``): replaced whole, never left half-written.

    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> write_summary_json(out, "hash_all.py", 2, error="--run-date 'x' is not a date")
    >>> record = json.load(open(out))
    >>> record["exit_code"], record["error"], record["summary"]
    (2, "--run-date 'x' is not a date", None)
    """
    if path is None:
        return
    record = {
        "job": prog,
        "exit_code": exit_code,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "error": error,
        "summary": dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) and not isinstance(summary, type)
        else None,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(partial, path)


def configuration_error(prog: str, error: BaseException, summary_json: str | None = None) -> int:
    """Report bad configuration (stderr, and ``--summary-json``); return exit code 2."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    write_summary_json(summary_json, prog, 2, error=str(error))
    return 2


def run_spark_job(
    prog: str,
    app_name: str,
    job: Callable[[Any, Any], _Summary],
    config: Any,
    errors: tuple[type[BaseException], ...] = (ValueError,),
    summary_json: str | None = None,
) -> int:
    """Run ``job(spark, config)`` in a new SparkSession; return the process exit code.

    With ``summary_json``, the outcome is also written there as JSON: the summary on success, the
    error on bad configuration (exit 2) or an unexpected failure (exit 1, the exception re-raised).
    """
    from pyspark.sql import SparkSession

    use_this_python_for_workers()
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    try:
        summary = job(spark, config)
    except errors as exc:
        return configuration_error(prog, exc, summary_json)
    except BaseException as exc:
        from silse_spark.sources import unreadable_input_file

        damaged = unreadable_input_file(exc)
        if damaged is not None:  # one damaged input file: exit 2 with its path, not a stack trace
            return configuration_error(prog, damaged, summary_json)
        write_summary_json(summary_json, prog, 1, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        spark.stop()
    print(summary.table())
    # A summary may report partial success (the cluster job: output written, tables not registered).
    exit_code = int(getattr(summary, "exit_code", 0))
    write_summary_json(summary_json, prog, exit_code, summary, getattr(summary, "registration_error", None))
    return exit_code
