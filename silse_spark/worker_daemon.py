"""A PySpark worker daemon that imports TensorFlow once per executor, before it forks the workers.

PySpark starts one daemon per executor and forks a Python worker from it for
each task slot. Every worker of the hashing UDF then imports TensorFlow and
Keras itself: about 5 s of CPU on an idle core (10 s under load) and 600 MiB
of private memory per worker, repeated for every slot of every executor.

This daemon imports them first, then runs PySpark's own daemon loop
(:func:`pyspark.daemon.manager`): forked workers inherit the imported modules,
start at once and share those pages copy-on-write. Enable it with::

    spark.python.daemon.module   silse_spark.worker_daemon

(set in ``spark-defaults.conf``). It must be importable by the executors'
Python, as it is when silse is installed there (``make package`` archives
it). ``SILSE_DAEMON_PRELOAD=0`` in the executors' environment turns the
pre-import off while keeping the module.

Fork safety: only imports happen before the fork, never a TensorFlow
operation, so no TensorFlow thread pool or eager context exists yet and each
worker sets its own thread count (:func:`silse_spark.model.configure_threads`).
The one thread alive at the fork is pyarrow's jemalloc background thread
(started by importing pyarrow, which PySpark's workers import anyway);
jemalloc restarts it in the child through its ``pthread_atfork`` handlers.
OpenBLAS is limited to one thread in the daemon (``OPENBLAS_NUM_THREADS``, if
unset), so it starts no thread pool to lose in the fork; the model does not
use numpy's BLAS. The daemon tells the JVM its port on standard output, so
anything an import prints there is sent to standard error instead. If the
pre-import fails, the daemon logs why and carries
on: the workers import what they need themselves and report any error in
their tasks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

PRELOAD_ENV = "SILSE_DAEMON_PRELOAD"
PRELOADED_MODULES = ("numpy", "pandas", "pyarrow", "tensorflow", "keras")
"""Imported by the daemon before forking, in this order."""


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send standard output (file descriptor 1 and ``sys.stdout``) to standard error for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def preload(modules: tuple[str, ...] = PRELOADED_MODULES) -> list[str]:
    """Import ``modules``; return those that failed (each with its reason on stderr)."""
    if os.environ.get(PRELOAD_ENV, "1") == "0":
        return []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import importlib

    failed = []
    started = time.monotonic()
    with _stdout_to_stderr():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - a failed pre-import must not stop the daemon
                failed.append(name)
                print(f"silse worker daemon: could not pre-import {name} ({type(exc).__name__}: {exc}); "
                      "workers will import it themselves", file=sys.stderr)
    print(f"silse worker daemon: pre-imported {len(modules) - len(failed)} of {len(modules)} modules in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return failed


def main() -> None:
    preload()
    from pyspark.daemon import manager

    manager()


if __name__ == "__main__":
    main()
