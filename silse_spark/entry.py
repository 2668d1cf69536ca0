"""What every ``spark-submit`` entry point in ``jobs/`` does around its job.

The session is created here, inside ``main`` of a job (never at import), and
stopped however the job ends; bad configuration found by the job becomes exit
code 2 with the message on stderr, and the job's summary table is printed (its ``exit_code``, where
it has one, is the process's: the cluster job returns 3 when its tables could not be registered).
"""

from __future__ import annotations

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


def run_spark_job(
    prog: str,
    app_name: str,
    job: Callable[[Any, Any], _Summary],
    config: Any,
    errors: tuple[type[BaseException], ...] = (ValueError,),
) -> int:
    """Run ``job(spark, config)`` in a new SparkSession; return the process exit code."""
    from pyspark.sql import SparkSession

    use_this_python_for_workers()
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    try:
        summary = job(spark, config)
    except errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()
    print(summary.table())
    # A summary may report partial success (the cluster job: output written, tables not registered).
    return int(getattr(summary, "exit_code", 0))
