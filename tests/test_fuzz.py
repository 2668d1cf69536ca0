"""A short atheris run of the decoder (about 45 s; SILSE_FUZZ_SECONDS changes it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_decoder_survives_fuzzing(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "data" / "hostile", corpus)
    seconds = int(os.environ.get("SILSE_FUZZ_SECONDS", "45"))
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz" / "fuzz_decode.py"), str(corpus),
         f"-max_total_time={seconds}", "-rss_limit_mb=2048", "-timeout=30", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=seconds + 120, check=False,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, f"fuzzer found a failure:\n{tail}"
    assert "Done" in proc.stderr and not list(tmp_path.glob("crash-*")), tail
