"""Shared fixtures: one local[2] SparkSession for the whole test run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_AVATARS = REPO.parent / "shared" / "data" / "demo_avatars"
TEST_DATA = Path(__file__).resolve().parent / "data"
HOSTILE = TEST_DATA / "hostile"

HOSTILE_STATUS = {
    # valid, if unusual: each must get a code
    "rgb.png": "ok", "alpha.png": "ok", "grey.png": "ok", "grey_alpha.png": "ok", "grey16.png": "ok",
    "palette_transparent.gif": "ok", "exif_rotated.jpg": "ok", "upright.jpg": "ok", "cmyk.jpg": "ok",
    "animated.gif": "ok", "animated_webp.webp": "ok", "one_pixel.png": "ok", "wide.png": "ok",
    "rgb_as_jpg_name.jpg": "ok", "progressive.jpg": "ok",
    # broken or hostile: each must get its own status and an error
    "empty.png": "empty", "truncated.png": "decode_error", "truncated_jpeg.jpg": "decode_error",
    "text_named.jpg": "decode_error", "html_named.png": "decode_error", "svg_image.png": "decode_error",
    "bomb.png": "too_large", "huge_header.jpg": "too_large", "text_bomb.png": "decode_error",
    "tiff_image.tif": "unsupported_format", "multipage.tif": "unsupported_format",
    "bmp_image.bmp": "unsupported_format", "scan_bomb.jpg": "too_large",
    "fill_bomb.jpg": "too_large", "strip.png": "too_large",
}
"""Expected status of every file in tests/data/hostile (scripts/make_test_images.py)."""

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHORT_JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""Java options for the short-lived JVMs the tests start (``spark-submit``, ``spark-sql``) through
``SPARK_SUBMIT_OPTS``, and for the standalone test's daemons and executors: compiling with C1 only and a
serial collector, a ``spark-submit`` of the hash job over one file took 19.6 s of CPU against 36-37 s, and
20.5 s of wall against 25-26 s (``/usr/bin/time .venv/bin/spark-submit --driver-java-options "OPTS"
jobs/hash_all.py --avatars DIR ...``, 2026-12-03); pytest as ``make test`` runs it, 737 -> 586 s. The tests check
behaviour, which a JIT tier does not change; the session's own JVM (below) runs for minutes of jobs and keeps
the default."""
_SUBMIT_OPTS_SET_BY_TESTS = "SPARK_SUBMIT_OPTS" not in os.environ
os.environ.setdefault("SPARK_SUBMIT_OPTS", SHORT_JVM_OPTS)
os.environ.setdefault("SPARK_DAEMON_JAVA_OPTS", SHORT_JVM_OPTS)  # a standalone cluster's Master and Workers


@pytest.fixture(scope="session")
def standin_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in models directory, visible to the driver and to Spark's Python workers."""
    from silse_spark.model import MODELS_DIR_ENV

    directory = make_standin_models(tmp_path_factory.mktemp("models"))
    os.environ[MODELS_DIR_ENV] = str(directory)
    return directory


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory, standin_models: Path) -> Iterator[object]:
    """Session-wide local[2] Spark; its Python workers hash with the stand-in model."""
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("warehouse")
    short_jvm = os.environ.pop("SPARK_SUBMIT_OPTS") if _SUBMIT_OPTS_SET_BY_TESTS else None
    session = (
        SparkSession.builder.master("local[2]")
        .appName("silse-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.driver.memory", "2g")
        # One read and one inference task per core: the tests' inputs are a few files, and each of the jobs'
        # default 4 x cores tasks costs a Python worker round trip (12 files: 6.0-6.6 s a run against 3.2-3.5 s).
        # The default is held by test_local_files_are_examined_and_read_by_many_tasks and the spark-submit tests.
        .config("spark.silse.readPartitions", "2")
        .config("spark.silse.inferencePartitions", "2")
        .getOrCreate()
    )
    if short_jvm is not None:
        os.environ["SPARK_SUBMIT_OPTS"] = short_jvm
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_avatar_paths() -> list[Path]:
    paths = sorted(DEMO_AVATARS.rglob("*.png"))
    if not paths:
        pytest.fail(f"demo avatars not found under {DEMO_AVATARS}; the repo expects ../shared beside it")
    return paths


STANDIN_VERSION = "standin-v1"


def make_standin_models(directory: Path) -> Path:
    """A models directory with randomly initialised (seeded) weights of the ``v1`` architecture.

    Used where a test is about plumbing, not about what the codes mean. ``v1`` rather than the design's
    ``seed`` architecture: 0.16 against 3.11 GFLOP per image, and the plumbing tests hash hundreds of
    images (``pytest -n 2 --dist loadfile --durations=60 tests``: 649 -> 549 s on 2 cores, 2026-12-03; the
    worker-kill test 106 -> 74 s).
    """
    import json

    import keras

    from silse_spark.model import build_model, file_sha256

    directory.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(7)
    model = build_model("v1")
    weights = directory / f"{STANDIN_VERSION}.weights.h5"
    model.save_weights(str(weights))
    registry = {
        "default": STANDIN_VERSION,
        "models": {
            STANDIN_VERSION: {
                "architecture": "v1",
                "weights": weights.name,
                "sha256": file_sha256(weights),
                "description": "random stand-in for plumbing tests",
            }
        },
    }
    (directory / "registry.json").write_text(json.dumps(registry, indent=2))
    return directory


def make_staging(table: Path, name: str, hours_ago: float = 0.0) -> Path:
    """A ``.spark-staging-*`` folder as a run killed while writing ``table`` leaves it (one task's committed
    Parquet file under ``_temporary/0``), last touched ``hours_ago`` hours ago."""
    import time

    tasks = table / name / "_temporary" / "0"
    (tasks / "task_0" / "run_date=2026-01-01").mkdir(parents=True)
    (tasks / "task_0" / "run_date=2026-01-01" / "part-00000.parquet").write_bytes(b"PAR1" + bytes(1000))
    when = time.time() - hours_ago * 3600
    for folder in (tasks, table / name / "_temporary", table / name):
        os.utime(folder, (when, when))
    return table / name


@contextmanager
def spark_conf(spark: object, key: str, value: str | None) -> Iterator[None]:
    """``key`` set to ``value`` (``None``: unset, the job's default) for the block, then as it was."""
    conf = spark.conf  # type: ignore[attr-defined]
    previous = conf.get(key, None)
    if value is None:
        conf.unset(key)
    else:
        conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            conf.unset(key)
        else:
            conf.set(key, previous)
