"""A loopback Spark standalone cluster (one Master, N Workers) for multi-process tests.

Each process is started with ``spark-class`` from the installed PySpark and has
its own work directory, as on a real cluster; everything binds to 127.0.0.1.

    with StandaloneCluster(workers=2, base=Path("/tmp/c")) as cluster:
        subprocess.run([spark_submit, "--master", cluster.url, ...])
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess  # nosec B404  # starts Spark's own launcher with fixed arguments
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandaloneCluster:
    """Start a Master and ``workers`` Workers on loopback; stop them on exit."""

    def __init__(self, base: Path, workers: int = 2, cores: int = 1, memory: str = "2g") -> None:
        self.base = base
        self.spark_class = str(Path(sys.executable).parent / "spark-class")
        self.port, self.ui_port = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.processes: list[subprocess.Popen[bytes]] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log_file = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        import pyspark

        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
               "SPARK_HOME": os.environ.get("SPARK_HOME", os.path.dirname(pyspark.__file__))}
        proc = subprocess.Popen(  # nosec B603  # Spark's launcher, fixed arguments, no shell
            [self.spark_class, *args], stdout=log_file, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        self.processes.append(proc)
        return proc

    def alive_workers(self) -> int:
        try:
            url = f"http://127.0.0.1:{self.ui_port}/json/"  # fixed scheme and host: the loopback master UI
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310  # nosec B310
                return int(json.load(resp).get("aliveworkers", 0))
        except OSError:
            return 0

    def start(self, timeout: float = 120.0) -> StandaloneCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.ui_port)])
        for i in range(self.workers):
            work = self.base / f"worker{i}"
            work.mkdir(exist_ok=True)
            self._start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                                       "--cores", str(self.cores), "--memory", self.memory,
                                       "--work-dir", str(work), "--webui-port", str(free_port())])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_workers() == self.workers:
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"standalone cluster did not start {self.workers} workers in {timeout} s; see {self.base}/*.log")

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and everything it started (its executors), as a machine loss would."""
        proc = self.processes[1 + index]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)
        self.processes.clear()

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
