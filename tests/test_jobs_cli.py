"""``spark-submit jobs/hash_all.py`` as users run it: exit codes, rows, reruns, task failures.

Uses the shipped default model (real weights), in separate Spark applications.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from silse_spark.codes import TWIN_VALUE_PATTERN
from silse_spark.hashing import FAIL_FIRST_ATTEMPT_ENV
from silse_spark.isolation import CRASH_MARKER_ENV
from silse_spark.model import MODELS_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
IMAGES = Path(__file__).resolve().parent / "data" / "hostile"
SPARK_SUBMIT = str(Path(sys.executable).parent / "spark-submit")


def submit(*args: str, extra_env: dict[str, str] | None = None, conf: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MODELS_DIR_ENV}  # the shipped model
    env.update({"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, **(extra_env or {})})
    confs = [x for c in ("spark.ui.enabled=false", "spark.ui.showConsoleProgress=false", *conf) for x in ("--conf", c)]
    return subprocess.run(
        [SPARK_SUBMIT, *confs, str(REPO / "jobs" / "hash_all.py"), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False,
    )


@pytest.fixture(scope="module")
def twelve_files(tmp_path_factory: pytest.TempPathFactory, demo_avatar_paths: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("twelve")
    for i, src in enumerate(demo_avatar_paths[::7][:10]):
        shutil.copy(src, root / f"user{i:02d}{src.suffix}")
    shutil.copy(IMAGES / "truncated.png", root / "user_truncated.png")
    shutil.copy(IMAGES / "text_named.jpg", root / "user_text.jpg")
    return root


def test_ten_good_two_bad_rerun_and_task_failures(twelve_files: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = submit("--avatars", str(twelve_files), "--output", str(out), "--run-date", "2026-02-01",
                   "--summary-json", str(tmp_path / "hash.json"))
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((tmp_path / "hash.json").read_text())
    assert (record["job"], record["exit_code"], record["error"]) == ("hash_all.py", 0, None)
    assert record["summary"]["status_counts"] == {"ok": 10, "decode_error": 2} and record["summary"]["rows"] == 12
    rows = pd.read_parquet(out).sort_values("account_id").reset_index(drop=True)
    assert len(rows) == 12
    ok = rows[rows.status == "ok"]
    assert len(ok) == 10 and all(TWIN_VALUE_PATTERN.match(v) for v in ok.twin_value)
    assert ok.twin_value.nunique() >= 8, "distinct demo avatars should mostly get distinct codes"
    bad = rows[rows.status != "ok"]
    assert sorted(bad.status) == ["decode_error", "decode_error"] and bad.error.notna().all()
    assert "accounts        12" in first.stdout

    # Rerun of the same date, with every inference task failing on its first attempt
    # (local[2,2] retries each task once): same rows, no duplicates.
    second = submit(
        "--avatars", str(twelve_files), "--output", str(out), "--run-date", "2026-02-01", "--keep-days", "30",
        conf=("spark.master=local[2,2]", f"spark.executorEnv.{FAIL_FIRST_ATTEMPT_ENV}=1"),
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "nights deleted  0\n" in second.stdout
    assert FAIL_FIRST_ATTEMPT_ENV in second.stderr, "the injected task failures did not happen"
    again = pd.read_parquet(out).sort_values("account_id").reset_index(drop=True)
    cols = ["account_id", "path", "content_sha256", "width", "height", "twin_value", "twin_bits", "status", "error"]
    pd.testing.assert_frame_equal(rows[cols], again[cols])


def test_a_decoder_crash_costs_one_row_not_the_job(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, src in enumerate(demo_avatar_paths[:3]):
        shutil.copy(src, folder / f"user{i}{src.suffix}")
    (folder / "user_crash.png").write_bytes(b"CRASH-ME" + (IMAGES / "rgb.png").read_bytes())
    out = tmp_path / "out"
    # Whatever decodes that file dies with SIGSEGV, as on a codec bug: the Python worker on the task's first
    # attempt (the task fails), then the helper process its retry decodes in (local[2,2]: one retry).
    proc = submit("--avatars", str(folder), "--output", str(out), "--run-date", "2026-02-01",
                  conf=("spark.master=local[2,2]", f"spark.executorEnv.{CRASH_MARKER_ENV}=CRASH-ME"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Python worker exited unexpectedly" in proc.stderr, "the first attempt did not crash its worker"
    assert "decoder crashed on 1 file(s), timed out on 0" in proc.stdout
    rows = pd.read_parquet(out).set_index("account_id")
    assert sorted(rows.status) == ["decode_error", "ok", "ok", "ok"]
    assert "the image decoder crashed on this file (signal SIGSEGV)" in rows.loc["user_crash", "error"]
    assert rows.loc["user_crash", "content_sha256"] and pd.isna(rows.loc["user_crash", "twin_value"])
    assert rows.drop(index="user_crash").twin_value.str.fullmatch("[0-9a-f]{12}").all()


def test_bad_configuration_exits_2_with_a_helpful_message(tmp_path: Path) -> None:
    # spark-submit merges the Python driver's stderr into its stdout, so look at both.
    proc = submit("--avatars", str(tmp_path), "--output", str(tmp_path / "o"), "--model", "no-such-model")
    assert proc.returncode == 2 and "unknown model version 'no-such-model'" in proc.stdout + proc.stderr
    proc = submit("--manifest", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "does not exist" in proc.stdout + proc.stderr
    proc = submit("--avatars", str(tmp_path), "--output", str(tmp_path / "o"), "--run-date", "yesterday")
    assert proc.returncode == 2 and "YYYY-MM-DD" in proc.stdout + proc.stderr
    proc = submit("--avatars", str(tmp_path), "--output", str(tmp_path / "o"), "--keep-days", "0")
    assert proc.returncode == 2 and "--keep-days 0 is not a number of days >= 1" in proc.stdout + proc.stderr
    proc = submit("--avatars", str(tmp_path), "--output", str(tmp_path / "o"), "--decode-timeout", "-1")
    assert proc.returncode == 2 and "--decode-timeout must be a number of seconds >= 0" in proc.stdout + proc.stderr
