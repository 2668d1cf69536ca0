"""The pre-importing worker daemon (silse_spark.worker_daemon) that spark-defaults.conf selects."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from silse_spark.worker_daemon import PRELOAD_ENV, preload


def test_preload_sends_import_output_to_stderr_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "silse_noisy_module.py").write_text("print('noise from an import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(PRELOAD_ENV, raising=False)
    failed = preload(("silse_noisy_module", "silse_no_such_module"))
    out, err = capfd.readouterr()
    assert failed == ["silse_no_such_module"]
    assert "silse_noisy_module" in sys.modules
    # The daemon's standard output carries its port to the JVM: nothing else may be written there.
    assert out == ""
    assert "noise from an import" in err
    assert "could not pre-import silse_no_such_module (ModuleNotFoundError" in err
    assert "pre-imported 1 of 2 modules" in err


def test_preload_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "silse_unwanted_module.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(PRELOAD_ENV, "0")
    assert preload(("silse_unwanted_module",)) == []
    assert "silse_unwanted_module" not in sys.modules


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_spark_workers_are_forked_from_the_daemon_with_tensorflow_loaded(spark) -> None:  # type: ignore[no-untyped-def]
    conf = spark.sparkContext.getConf().get("spark.python.daemon.module")
    assert conf == "silse_spark.worker_daemon", (
        "spark-defaults.conf is not in effect (spark.python.daemon.module unset); run `make venv`, which links "
        "it into the venv's Spark conf directory"
    )

    def parent_process(_: object) -> list[tuple[str, bool]]:  # runs in a worker (pickled by value)
        parent = os.getppid()
        cmdline = Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        return [(cmdline, "tensorflow" in Path(f"/proc/{parent}/maps").read_text())]

    parents = spark.sparkContext.parallelize(range(2), 2).mapPartitions(parent_process).collect()
    for cmdline, tensorflow_loaded in parents:
        assert "silse_spark.worker_daemon" in cmdline
        assert tensorflow_loaded, "the daemon had not loaded TensorFlow's libraries before forking the worker"
