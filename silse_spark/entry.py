"""What every ``spark-submit`` entry point in ``jobs/`` does around its job.

The session is created here, inside ``main`` of a job (never at import), and
stopped however the job ends; bad configuration found by the job becomes exit
code 2 with the message on stderr, and the job's summary table is printed (its ``exit_code``, where
it has one, is the process's: the cluster job returns 3 when its tables could not be registered).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol


class _Summary(Protocol):
    def table(self) -> str: ...


def run_spark_job(
    prog: str,
    app_name: str,
    job: Callable[[Any, Any], _Summary],
    config: Any,
    errors: tuple[type[BaseException], ...] = (ValueError,),
) -> int:
    """Run ``job(spark, config)`` in a new SparkSession; return the process exit code."""
    from pyspark.sql import SparkSession

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
