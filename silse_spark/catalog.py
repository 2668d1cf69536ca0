"""Register silse's Parquet outputs as tables in the session's metastore.

With ``spark.sql.catalogImplementation=hive`` (set in ``spark-defaults.conf``)
the metastore is an embedded Derby database, so after a job has run an analyst
can query the tables from ``.venv/bin/spark-sql``::

    .venv/bin/spark-sql -e "SELECT * FROM silse.cluster_summary ORDER BY size DESC LIMIT 10"

Tables are *external*: they point at the job's output directories, so
dropping a table never deletes data, and re-registering (every run) picks up
schema changes and new ``run_date`` partitions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def qualified_location(spark: SparkSession, path: str) -> str:
    """The absolute, scheme-qualified form of ``path`` (relative paths resolve against the working directory).

    >>> # qualified_location(spark, "work/output/clusters") -> 'file:/work/main/work/output/clusters'
    """
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return str(hpath.getFileSystem(conf).makeQualified(hpath).toString())


class MetastoreError(RuntimeError):
    """The metastore could not be reached or written: the tables were not (all) registered."""


DERBY_BUSY = (
    "the embedded Derby metastore ({url}) admits one Spark process at a time and is probably open in "
    "another one (a spark-sql, pyspark or notebook session started from the same directory): close it and "
    "rerun the job (a rerun replaces its run_date, nothing is duplicated), or point Spark at a shared Hive "
    "metastore (docs/deploy.md)"
)


def register_tables(spark: SparkSession, database: str, tables: Mapping[str, str]) -> list[str]:
    """Create or replace external Parquet tables ``database.name`` for each ``name: location``.

    See :func:`_register`; a failure of the metastore itself becomes :class:`MetastoreError`,
    whose message says what to do (the Parquet outputs are not touched).
    """
    for name in (database, *tables):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a plain SQL name; use lowercase letters, digits and _")
    try:
        return _register(spark, database, tables)
    except ValueError:
        raise
    except Exception as exc:  # py4j / AnalysisException from the Hive client: reported, not a stack trace
        url = spark.sparkContext.getConf().get("spark.hadoop.javax.jdo.option.ConnectionURL", "")
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        hint = DERBY_BUSY.format(url=url) if "derby" in url.lower() else "check the metastore settings"
        raise MetastoreError(f"registering {', '.join(tables)} in database {database} failed ({first}); {hint}") from exc


def _register(spark: SparkSession, database: str, tables: Mapping[str, str]) -> list[str]:
    """Create or replace external Parquet tables ``database.name`` for each ``name: location``.

    Each table is dropped (metadata only) and recreated so its schema follows
    the files, then its ``run_date`` partitions are recovered from the
    directory. A location without data yet is skipped with a warning.

    Returns
    -------
    list of str
        The qualified names registered.

    Raises
    ------
    ValueError
        If a database or table name is not a plain lowercase SQL name, or a
        location contains a quote.

    Examples
    --------
    >>> # register_tables(spark, "silse", {"clusters": "work/output/clusters"})
    >>> # spark.sql("SELECT count(*) FROM silse.clusters")
    """
    if not spark.catalog.databaseExists(database):  # IF NOT EXISTS alone makes Hive log an ERROR
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    registered = []
    for name, path in tables.items():
        location = qualified_location(spark, path)
        if "'" in location or "\\" in location:
            raise ValueError(f"table location {location!r} contains a quote or backslash; move the output elsewhere")
        if not _has_data(spark, path):
            log.warning("not registering %s.%s: %s has no data yet", database, name, location)
            continue
        qualified = f"{database}.{name}"
        spark.sql(f"DROP TABLE IF EXISTS {qualified}")
        # mergeSchema: partitions written before a column was added (e.g. file_size) keep it visible as null.
        spark.sql(f"CREATE TABLE {qualified} USING parquet OPTIONS ('mergeSchema' 'true') LOCATION '{location}'")
        if "run_date" in spark.table(qualified).columns:
            spark.sql(f"ALTER TABLE {qualified} RECOVER PARTITIONS")
        spark.catalog.refreshTable(qualified)
        log.info("registered %s at %s", qualified, location)
        registered.append(qualified)
    return registered


def _has_data(spark: SparkSession, path: str) -> bool:
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(conf)
    return bool(fs.exists(hpath)) and len(fs.listStatus(hpath)) > 0
