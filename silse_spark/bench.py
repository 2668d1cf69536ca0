"""``make bench``: hashing cost against the machine's limit, measured side by side.

Measures, in one run: the fp32 matrix-multiply rate and the model's FLOPs per
image (the ceiling in images per second); the raw Keras model at several batch
sizes in float32 and bfloat16 (and how many codes bfloat16 changes);
``jobs/hash_all.py`` end to end on a few thousand distinct images with Spark
start-up shown apart; pHash and PDQ on the same images; and a second run with
``--previous`` (incremental), also over ten times the files, and with
``--reread-all``. Writes ``docs/benchmarks.md`` and ``.json``.

The job is also run on a quarter of the images first: the two job times give
the job's fixed cost (Python workers importing TensorFlow and loading the
model, JVM warm-up, planning) apart from its cost per image,
``(N - N/4) / (t_N - t_N/4)``, the rate that matters at billions of images.

    python -m silse_spark.bench --output docs [--images 4000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess  # nosec B404  # runs spark-submit with a fixed argument list
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from silse_spark.codes import twin_values_from_outputs
from silse_spark.decode import decode_avatar
from silse_spark.model import INPUT_SIZE, build_model, default_model_version, get_model_spec, verify_weights

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def model_flops(model: Any) -> int:
    """Multiply-adds x 2 of one forward pass (convolutions and dense layers)."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Dense"):
            out = layer.output.shape
            spatial = int(np.prod(out[1:-1])) if len(out) > 2 else 1
            cin = int(layer.input.shape[-1])
            cout = int(out[-1])
            if kind == "Dense":
                total += 2 * cin * cout
            elif kind == "Conv2D":
                k = int(np.prod(layer.kernel_size))
                total += 2 * spatial * k * cin * cout
            elif kind == "DepthwiseConv2D":
                total += 2 * spatial * int(np.prod(layer.kernel_size)) * cin
            else:
                total += 2 * spatial * (int(np.prod(layer.kernel_size)) * cin + cin * cout)
    return total


def matmul_gflops(sizes: tuple[int, ...] = (2048, 4096), seconds: float = 3.0) -> float:
    """Sustained fp32 GEMM rate of this machine through TensorFlow (oneDNN): the best of a few seconds
    of repeated multiplies at each size, so that one slow repeat on a shared machine does not lower it."""
    import tensorflow as tf

    best = 0.0
    for n in sizes:
        a = tf.random.normal((n, n))
        b = tf.random.normal((n, n))
        tf.linalg.matmul(a, b).numpy()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            tf.linalg.matmul(a, b).numpy()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


RAW_PATHS = ("float32", "bfloat16", "keras_predict")
"""How :func:`raw_throughput` runs the model: the job's inference path (batch norms folded,
one compiled call) in float32 and in bfloat16, and plain ``predict_on_batch`` (float32, before)."""


def raw_throughput(version: str, batch_sizes: list[int], seconds: float = 8.0,
                   paths: tuple[str, ...] = RAW_PATHS, images: np.ndarray | None = None) -> dict[str, Any]:
    """Images/s of the bare model per batch size for each of ``paths``, and bfloat16's code agreement.

    Speed is timed on random pixels; code agreement is measured on ``images`` (decoded
    avatars, uint8) where given, since random noise is not what the model sees.
    """
    from silse_spark.model import fold_batch_norms, inference_function, predict_views

    spec = get_model_spec(version)
    path = verify_weights(spec)
    model = build_model(spec.architecture)
    model.load_weights(str(path))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (max(batch_sizes), INPUT_SIZE, INPUT_SIZE, 3)).astype(np.uint8)
    forwards = {
        "float32": lambda: inference_function(fold_batch_norms(model), spec.views),
        "bfloat16": lambda: inference_function(fold_batch_norms(model, dtype="bfloat16"), spec.views),
        "keras_predict": lambda: lambda x: predict_views(model, x, spec.views),
    }
    results: dict[str, Any] = {"version": version}
    outputs = {}
    for name in paths:
        forward = forwards[name]()
        rates = {}
        for bs in batch_sizes:
            batch = pixels[:bs]
            forward(batch)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                forward(batch)
                n += bs
            rates[bs] = n / (time.perf_counter() - start)
        results[name] = rates
        sample = pixels if images is None else images
        outputs[name] = np.concatenate([np.asarray(forward(sample[i : i + max(batch_sizes)]), dtype=np.float32)
                                        for i in range(0, len(sample), max(batch_sizes))])
    if "float32" in outputs and "bfloat16" in outputs:
        a = twin_values_from_outputs(outputs["float32"])[0]
        b = twin_values_from_outputs(outputs["bfloat16"])[0]
        results["bf16_identical_codes"] = float(np.mean([x == y for x, y in zip(a, b)]))
        results["agreement_images"] = len(a)
        results["bf16_bits_flipped"] = float(np.mean((outputs["float32"] > 0.5) != (outputs["bfloat16"] > 0.5)))
        results["bf16_max_output_change"] = float(np.abs(outputs["float32"] - outputs["bfloat16"]).max())
        results["bf16_cascade"] = bf16_cascade(outputs["float32"], outputs["bfloat16"])
    return results


CASCADE_MARGINS = (0.01, 0.03, 0.05)


def bf16_cascade(fp32: np.ndarray, bf16: np.ndarray, margins: tuple[float, ...] = CASCADE_MARGINS) -> dict[str, Any]:
    """bfloat16 first, float32 again for each image with an output within ``margin`` of 0.5: per margin, the
    share of images run twice (``recheck``) and of codes then identical to float32's (``identical``).

    >>> fp32 = np.array([[0.9, 0.52], [0.9, 0.1]]); bf16 = np.array([[0.9, 0.49], [0.88, 0.1]])
    >>> bf16_cascade(fp32, bf16, (0.05,))
    {'0.05': {'recheck': 0.5, 'identical': 1.0}}
    """
    margin = np.abs(bf16 - 0.5).min(axis=1)
    out = {}
    for m in margins:
        recheck = margin < m
        final = np.where(recheck[:, None], fp32, bf16)
        out[str(m)] = {"recheck": float(recheck.mean()),
                       "identical": float(np.mean(((final > 0.5) == (fp32 > 0.5)).all(axis=1)))}
    return out


def _one_core_rate(version: str, batch_size: int, seconds: float) -> None:
    """Child of :func:`per_core_throughput`: print this process's images/s with one TensorFlow thread."""
    from silse_spark.model import TwinHasher, configure_threads

    configure_threads(1)
    hasher = TwinHasher(version, batch_size)
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.uint8)
    hasher.outputs(pixels)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        hasher.outputs(pixels)
        n += batch_size
    print(json.dumps({"images_per_s": n / (time.perf_counter() - start)}))


def per_core_throughput(version: str, batch_size: int = 64, seconds: float = 8.0) -> dict[str, Any]:
    """The model as Spark's Python workers run it: one process per core, one TensorFlow thread each,
    all at once (``spark.task.cpus=1``); their images/s added up."""
    cores = os.cpu_count() or 1
    code = ("import sys; from silse_spark.bench import _one_core_rate; "
            "_one_core_rate(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, version, str(batch_size), str(seconds)],  # nosec B603
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
             for _ in range(cores)]
    rates = [json.loads(proc.communicate()[0].strip().splitlines()[-1])["images_per_s"] for proc in procs]
    return {"processes": cores, "batch_size": batch_size, "per_process": rates, "images_per_s": sum(rates)}


def make_images(folder: Path, count: int, sources: Path, *, seed: int = 1, prefix: str = "img",
                seen: set[bytes] | None = None) -> list[Path]:
    """``count`` distinct files: variations of the demo avatars (seeded), no two with the same bytes.

    The hash job decodes each distinct content once, so a repeated file would be counted as an image
    without costing one: some families give the same picture every time (``hflip`` and ``greyscale`` of
    one source), and drawn at random they repeated 1,044 of 8,000 files. A variation whose file was
    already made is drawn again. Files are named ``{prefix}{i:06d}.png`` / ``.jpg``; pass the same
    ``seen`` (SHA-256 digests) to a later call for files distinct from the earlier call's too.
    """
    import hashlib

    from PIL import Image

    from silse_spark.demo import list_images
    from silse_spark.variations import FAMILIES, encode, vary

    folder.mkdir(parents=True, exist_ok=True)
    srcs = [Image.open(p).convert("RGB") for p in list_images(sources)]
    rng = np.random.default_rng(seed)
    families = sorted(FAMILIES)
    paths: list[Path] = []
    seen = set() if seen is None else seen
    for i in range(count):
        fmt, suffix = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
        for _ in range(100):
            data = encode(vary(srcs[i % len(srcs)], families[int(rng.integers(len(families)))], rng), fmt, 90)
            digest = hashlib.sha256(data).digest()
            if digest not in seen:
                break
        else:
            raise RuntimeError(f"no new variation of {sources} for image {i} in 100 draws; ask for fewer images")
        seen.add(digest)
        path = folder / f"{prefix}{i:06d}.{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def classical_rates(paths: list[Path]) -> dict[str, float]:
    """Images/s of pHash and PDQ (file read + decode + hash), one process."""
    import imagehash
    import pdqhash
    from PIL import Image

    rates = {}
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            imagehash.phash(img)
    rates["phash"] = len(paths) / (time.perf_counter() - start)
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            pdqhash.compute(np.asarray(img.convert("RGB")))
    rates["pdq"] = len(paths) / (time.perf_counter() - start)
    # The default model's preprocessing (its framing) is part of its decoding; the same decoding without
    # framing is timed beside it, each the best of 3 interleaved passes, to show what framing costs.
    framing = get_model_spec().framing
    best = {framing: 0.0, "none": 0.0}
    for _ in range(3):
        for kind in best:
            start = time.perf_counter()
            for p in paths:
                decode_avatar(p.read_bytes(), framing=kind)
            best[kind] = max(best[kind], len(paths) / (time.perf_counter() - start))
    rates["silse_decode_only"] = best[framing]
    rates["silse_decode_no_framing"] = best["none"]
    return rates


WORKER_MARKERS = ("pyspark.daemon", "pyspark.worker")
SAMPLE_S = 0.5


def cmdline(proc: Any) -> str:
    """A process's command line as one string ('' once it has exited or is not readable)."""
    try:
        return " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - exited or not ours  # nosec B110
        return ""


def spark_env() -> dict[str, str]:
    """This environment with the driver and the workers on this interpreter."""
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def submit_sampled(argv: list[str], samplers: dict[str, Callable[[Any], int]], what: str,
                   every_s: float = SAMPLE_S, env: dict[str, str] | None = None) -> tuple[float, str, dict[str, int]]:
    """Run a ``spark-submit`` command line while sampling its processes.

    Each sampler gets the ``psutil.Process`` of ``spark-submit`` (which execs
    the driver JVM, same pid) every ``every_s`` seconds and returns a number of
    bytes; the peak of each is returned with the wall seconds and stdout.
    Output goes to temporary files, so a chatty job cannot fill a pipe and block.
    """
    import tempfile

    import psutil

    peaks = dict.fromkeys(samplers, 0)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True,
                                env=env or spark_env(), cwd=REPO)  # nosec B603
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            for name, sample in samplers.items():
                peaks[name] = max(peaks[name], sample(root))
            time.sleep(every_s)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return wall, stdout, peaks


def children(root: Any) -> list[Any]:
    """All descendants of ``root`` ([] once it has exited)."""
    import psutil

    try:
        return list(root.children(recursive=True))
    except psutil.Error:
        return []


def _worker_pss(jvm: Any) -> int:
    """Summed proportional set size (shared pages split between sharers) of the JVM's Python workers."""
    import psutil

    total = 0
    for child in children(jvm):
        if any(m in cmdline(child) for m in WORKER_MARKERS):
            try:
                total += int(child.memory_full_info().pss)
            except psutil.Error:
                continue  # exited between listing and reading
    return total


def spark_run(args: list[str], conf: tuple[str, ...] = ()) -> tuple[float, str, float]:
    """Run ``jobs/hash_all.py``; wall seconds, its stdout and the Python workers' peak summed PSS in MiB."""
    argv = [str(Path(sys.executable).parent / "spark-submit"), "--conf", "spark.ui.showConsoleProgress=false",
            *(x for c in conf for x in ("--conf", c)), str(REPO / "jobs" / "hash_all.py"), *args]
    wall, stdout, peaks = submit_sampled(argv, {"workers": _worker_pss}, "hash_all.py")
    return wall, stdout, peaks["workers"] / 2**20


STAGE_GROUPS = (("inference", "ArrowEvalPython"), ("join + write", "WriteFiles"))
"""Stages of the hash job grouped by the operators in them (the RDD scopes Spark's event log names): the pandas
UDF that decodes and runs the model, the stage that joins codes back to accounts and writes; every other stage
(listing, reading and hashing the files, the shuffles, the summary) is ``read + shuffles + summary``."""
OTHER_STAGES = "read + shuffles + summary"


def event_log_conf(directory: Path) -> tuple[str, ...]:
    """``--conf`` values that make ``spark-submit`` write an uncompressed event log into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return ("spark.eventLog.enabled=true", "spark.eventLog.compress=false", f"spark.eventLog.dir={directory}")


def stage_task_seconds(directory: Path) -> dict[str, float]:
    """Task-seconds (executor run time summed over tasks) of each stage group in the event log(s) under ``directory``.

    On ``local[2]`` two task slots give two task-seconds a second, so this counts core time that tasks held,
    Python workers' time included (a task waits for its worker).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); log = d / "eventlog_v2_x" / "events_1_x"; log.parent.mkdir()
    >>> scope = lambda name: json.dumps({"id": "1", "name": name})
    >>> events = [{"Event": "SparkListenerTaskEnd", "Stage ID": s, "Task Metrics": {"Executor Run Time": ms}}
    ...           for s, ms in ((1, 1500), (1, 500), (2, 250))]
    >>> events += [{"Event": "SparkListenerStageCompleted", "Stage Info": {"Stage ID": s, "RDD Info": [
    ...            {"Scope": scope(name)}]}} for s, name in ((1, "ArrowEvalPython"), (2, "Exchange"))]
    >>> _ = log.write_text("\\n".join(json.dumps(e) for e in events))
    >>> stage_task_seconds(d)
    {'inference': 2.0, 'join + write': 0.0, 'read + shuffles + summary': 0.25}
    """
    run_ms: dict[int, int] = {}
    group_of: dict[int, str] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))):
        for line in path.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event["Event"] == "SparkListenerTaskEnd" and event.get("Task Metrics"):
                stage = event["Stage ID"]
                run_ms[stage] = run_ms.get(stage, 0) + int(event["Task Metrics"]["Executor Run Time"])
            elif event["Event"] == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                scopes = {json.loads(r["Scope"])["name"] for r in info.get("RDD Info", []) if r.get("Scope")}
                group_of[info["Stage ID"]] = next((g for g, op in STAGE_GROUPS if op in scopes), OTHER_STAGES)
    totals = {group: 0.0 for group, _ in STAGE_GROUPS} | {OTHER_STAGES: 0.0}
    for stage, ms in run_ms.items():
        totals[group_of.get(stage, OTHER_STAGES)] += ms / 1000
    return totals


def _job_seconds(stdout: str) -> float:
    for line in stdout.splitlines():
        if line.startswith("wall time"):
            return float(line.split()[2])
    return float("nan")


def run(output: Path, count: int, work: Path, sources: Path) -> dict[str, Any]:
    version = default_model_version()
    spec = get_model_spec(version)
    flops = model_flops(build_model(spec.architecture)) * len(spec.views)  # one forward pass per view
    gflops = matmul_gflops()
    if work.exists():
        shutil.rmtree(work)
    paths = make_images(work / "images", count, sources)
    decoded = [decode_avatar(p.read_bytes()).pixels for p in paths[:1024]]
    sample = np.stack([d for d in decoded if d is not None])
    raw = raw_throughput(version, [16, 64, 256], images=sample)
    per_core = per_core_throughput(version)
    best_one_process = max(raw["float32"].values())
    best_raw = max(best_one_process, per_core["images_per_s"])
    # The design's dense architecture for comparison: how close a FLOP-heavy model comes to the ceiling.
    seed_version = "silse-seed-r1"
    seed_flops = model_flops(build_model(get_model_spec(seed_version).architecture))
    seed_rate = max(*raw_throughput(seed_version, [64], paths=("float32",))["float32"].values(),
                    per_core_throughput(seed_version)["images_per_s"])
    classical = classical_rates(paths)
    quarter = work / "images-quarter"
    quarter.mkdir()
    for path in paths[: count // 4]:
        os.link(path, quarter / path.name)
    quarter_args = ["--avatars", str(quarter), "--output", str(work / "hashes-quarter"), "--run-date", "2026-01-01"]
    wall0, stdout0, _ = spark_run(quarter_args, conf=event_log_conf(work / "events-quarter"))
    out = work / "hashes"
    wall1, stdout1, pss1 = spark_run(["--avatars", str(work / "images"), "--output", str(out),
                                      "--run-date", "2026-01-01"], conf=event_log_conf(work / "events-first"))
    # The same first run with the files read by Spark's binaryFile scan (the job before the Python reader).
    wall1s, stdout1s, _ = spark_run(["--avatars", str(work / "images"), "--output", str(work / "hashes-scan"),
                                     "--run-date", "2026-01-01"], conf=("spark.silse.localReader=spark",))
    incremental = ["--run-date", "2026-01-02", "--previous"]
    wall2, stdout2, _ = spark_run(["--avatars", str(work / "images"), "--output", str(out), *incremental, str(out)])
    # The same rerun reading and hashing every file again (the job before the quick check by path, size, time).
    wall3, stdout3, _ = spark_run(["--avatars", str(work / "images"), "--output", str(out), *incremental, str(out),
                                   "--reread-all"])
    job0, job1, job2 = _job_seconds(stdout0), _job_seconds(stdout1), _job_seconds(stdout2)
    # Incremental cost per file apart from its fixed cost: the same rerun over 10 x N files (hard links
    # under other paths), after a run that took their codes from the first run by content hash.
    linked = work / "images-x10"
    for k in range(10):
        (linked / f"d{k}").mkdir(parents=True)
        for path in paths:
            os.link(path, linked / f"d{k}" / f"{k}_{path.name}")
    out10 = work / "hashes-x10"
    spark_run(["--avatars", str(linked), "--output", str(out10), "--run-date", "2026-01-03", "--previous", str(out)])
    wall4, stdout4, _ = spark_run(["--avatars", str(linked), "--output", str(out10), "--run-date", "2026-01-04",
                                   "--previous", str(out10)])
    job3, job1s, job4 = _job_seconds(stdout3), _job_seconds(stdout1s), _job_seconds(stdout4)
    # The same per-image measurement with the design's 20x heavier model, where inference dominates
    # decoding: how much of the raw model rate the job itself keeps (N/16 and N/4 images).
    # The N/4 set is the quarter folder above; the N/16 set links its first files.
    sixteenth = work / "images-sixteenth"
    sixteenth.mkdir()
    for path in paths[: count // 16]:
        os.link(path, sixteenth / path.name)
    seed_sets = []
    for k, (n, folder) in enumerate(((count // 16, sixteenth), (count // 4, quarter))):
        _, seed_out, _ = spark_run(["--avatars", str(folder), "--output", str(work / f"hashes-seed-{k}"),
                                    "--run-date", "2026-01-01", "--model", seed_version])
        seed_sets.append((n, _job_seconds(seed_out)))
    seed_per_image = (seed_sets[1][0] - seed_sets[0][0]) / (seed_sets[1][1] - seed_sets[0][1])
    # The same matrix multiply again at the end: on a shared (virtual) machine the speed can drift during
    # the run, and the ratios below compare sections measured minutes apart.
    gflops_end = matmul_gflops()
    per_image = (count - count // 4) / (job1 - job0)
    # Seconds per image that scale with the input, first run vs incremental, from the N/4 and N runs of each.
    marginal_first = (job1 - job0) / (count - count // 4)
    marginal_incremental = (job4 - job2) / (9 * count)
    ceiling = gflops * 1e9 / flops
    cores = os.cpu_count() or 1
    bound = 1.0 / (1.0 / (cores * classical["silse_decode_only"]) + 1.0 / best_raw)
    stages_quarter, stages_first = stage_task_seconds(work / "events-quarter"), stage_task_seconds(work / "events-first")
    per_image_core_ms = {g: (stages_first[g] - stages_quarter[g]) / (count - count // 4) * 1e3 for g in stages_first}
    # One core's decode + model per image: what the inference stage must at least spend.
    decode_model_core_ms = 1e3 / classical["silse_decode_only"] + 1e3 * cores / best_raw
    from silse_spark.training.train import fast_bfloat16

    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "native_bfloat16": fast_bfloat16()},
        "model_version": version,
        "architecture": spec.architecture,
        "framing": spec.framing,
        "model_gflop_per_image": flops / 1e9,
        "matmul_fp32_gflops": gflops,
        "matmul_fp32_gflops_end": gflops_end,
        "ceiling_images_per_s": ceiling,
        "raw_model": raw,
        "raw_model_per_core": per_core,
        "raw_fp32_best_images_per_s": best_raw,
        "raw_fp32_fraction_of_ceiling": best_raw / ceiling,
        "raw_fp32_one_process_fraction_of_ceiling": best_one_process / ceiling,
        "seed_architecture": {"model_version": seed_version, "gflop_per_image": seed_flops / 1e9,
                              "float32_images_per_s": seed_rate,
                              "fraction_of_ceiling": seed_rate * seed_flops / (gflops * 1e9),
                              "spark_runs": [{"images": n, "job_s": t} for n, t in seed_sets],
                              "spark_per_image_images_per_s": seed_per_image,
                              "spark_fraction_of_raw": seed_per_image / seed_rate},
        "bf16_speedup": max(raw["bfloat16"].values()) / best_one_process,
        "folded_speedup_over_keras_predict": best_one_process / max(raw["keras_predict"].values()),
        "images": count,
        "spark_first_run": {"worker_pss_peak_mib": pss1, "wall_s": wall1, "job_s": job1, "startup_s": wall1 - job1,
                            "images_per_s_job": count / job1, "fraction_of_raw": count / job1 / best_raw},
        "spark_first_run_binaryfile_reader": {"wall_s": wall1s, "job_s": job1s, "images_per_s_job": count / job1s},
        "spark_quarter_run": {"images": count // 4, "wall_s": wall0, "job_s": job0,
                              "images_per_s_job": (count // 4) / job0},
        "spark_per_image": {"images_per_s": per_image, "fraction_of_raw": per_image / best_raw,
                            "fixed_job_s": job1 - count / per_image,
                            # All the job must do per image on 2 cores: decode on each core (measured in one
                            # process) plus the model on both (raw rate); the best the job could reach.
                            "decode_plus_model_bound": bound,
                            "fraction_of_bound": per_image / bound},
        "spark_stages": {"quarter_task_s": stages_quarter, "first_task_s": stages_first,
                         "per_image_core_ms": per_image_core_ms, "decode_plus_model_core_ms": decode_model_core_ms,
                         "inference_fraction_of_bound": decode_model_core_ms / per_image_core_ms["inference"]},
        "spark_incremental_run": {"wall_s": wall2, "job_s": job2, "fraction_of_first_job": job2 / job1,
                                  "x10_files": 10 * count, "x10_job_s": job4,
                                  "marginal_ms_per_image": marginal_incremental * 1e3,
                                  "marginal_fraction_of_first": marginal_incremental / marginal_first},
        "spark_incremental_reread_all": {"wall_s": wall3, "job_s": job3, "fraction_of_first_job": job3 / job1},
        "classical_images_per_s": classical,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "benchmarks.json").write_text(json.dumps(result, indent=2))
    (output / "benchmarks.md").write_text(render(result, count))
    return result


def incremental_projection(r: dict[str, Any]) -> dict[str, Any]:
    """Files per run (rounded up to 10,000) from which the incremental job takes at most 10% of the first run's job time.

    Both jobs are modelled as fixed + per-file cost, from the measured runs:

    >>> p = incremental_projection({"images": 1000, "spark_per_image": {"images_per_s": 1000.0, "fixed_job_s": 10.0},
    ...     "spark_incremental_run": {"job_s": 11.0, "marginal_ms_per_image": 0.05}})
    >>> p["fixed_s"], p["files_for_10_percent"]
    (10.95, 200000)
    """
    first_fixed = r["spark_per_image"]["fixed_job_s"]
    first_per_file = 1.0 / r["spark_per_image"]["images_per_s"]
    inc = r["spark_incremental_run"]
    per_file = inc["marginal_ms_per_image"] / 1e3
    fixed = inc["job_s"] - r["images"] * per_file
    slack = 0.1 * first_per_file - per_file
    needed = (fixed - 0.1 * first_fixed) / slack if slack > 0 else float("inf")
    million = 1_000_000
    return {"fixed_s": round(fixed, 3),
            "files_for_10_percent": int(-(-needed // 10_000) * 10_000) if slack > 0 else None,
            "fraction_at_1m": (fixed + million * per_file) / (first_fixed + million * first_per_file)}


def stages_text(r: dict[str, Any]) -> str:
    """Where the job's time per image goes, from Spark's event log of the two first runs (Markdown)."""
    st = r["spark_stages"]
    rows = "\n".join(f"| {group} | {st['quarter_task_s'][group]:.1f} | {st['first_task_s'][group]:.1f} | "
                     f"{st['per_image_core_ms'][group]:.3f} |" for group in st["per_image_core_ms"])
    total = sum(st["per_image_core_ms"].values())
    infer = st["per_image_core_ms"]["inference"]
    near_bound = st["inference_fraction_of_bound"] >= 0.9 and total - infer <= 0.2 * total
    verdict = " The gap to the raw model is decoding, not Spark." if near_bound else ""
    return f"""Where that cost goes, stage by stage (Spark's event log of the same two runs; task-seconds summed over
tasks, so `local[2]` gives two a second; per image = the difference over the {r['images'] - r['spark_quarter_run']['images']} extra images):

| stages | task-seconds, {r['spark_quarter_run']['images']} images | task-seconds, {r['images']} images | core-ms per image |
|---|---:|---:|---:|
{rows}

Of {total:.2f} core-ms per image, the inference stage (the pandas UDF: decode, framing, model, codes) takes
{infer:.2f}, against {st['decode_plus_model_core_ms']:.2f} ms for decode + model on one core
(decoding and the model measured apart, above and below), so that stage runs at **{st['inference_fraction_of_bound']:.2f} of its
bound**; everything else that grows with the images (reading and hashing the files, the shuffles, joining codes
back and writing) adds {total - infer:.2f} ms.{verdict}"""


def render(r: dict[str, Any], count: int) -> str:
    raw = r["raw_model"]
    rows = "\n".join(
        f"| {bs} | {raw['float32'][bs]:.1f} | {raw['bfloat16'][bs]:.1f} | {raw['keras_predict'][bs]:.1f} |"
        for bs in raw["float32"]
    )
    s0, s1, s2 = r["spark_quarter_run"], r["spark_first_run"], r["spark_incremental_run"]
    s3, s1s = r["spark_incremental_reread_all"], r["spark_first_run_binaryfile_reader"]
    sa = r["seed_architecture"]
    marginal = r["spark_per_image"]
    inc = incremental_projection(r)
    native = "native" if r["machine"]["native_bfloat16"] else "emulated (no AVX512-BF16/AMX on this CPU)"
    c = r["classical_images_per_s"]
    return f"""# Benchmarks

Produced by `make bench` (`python -m silse_spark.bench --output docs --images {count}`) on
{r['machine']['cpu_count']} CPU cores ({r['machine']['platform']}, bfloat16 {native}), no GPU.
All numbers below come from that one run.

## Ceiling

| quantity | value |
|---|---|
| model | {r['model_version']} ({r['architecture']}) |
| FLOPs per image (2 x multiply-adds) | {r['model_gflop_per_image']:.2f} GFLOP |
| fp32 matrix multiply (TensorFlow/oneDNN, best of 2048² and 4096²) | {r['matmul_fp32_gflops']:.0f} GFLOP/s |
| ceiling | {r['ceiling_images_per_s']:.1f} images/s |

{drift_note(r)}

## Raw model (images/s)

| batch | float32 | bfloat16 | float32 `predict_on_batch` (before) |
|---|---|---|---|
{rows}

`float32` and `bfloat16` are the job's inference path (`TwinHasher`: batch norms folded into the
convolutions, `silse_spark.model.fold_batch_norms`, and one compiled `tf.function` call per batch);
`predict_on_batch` is plain Keras on the unfolded model, the job's path before
({r['folded_speedup_over_keras_predict']:.2f}x slower at its best batch size). Speed is timed on random pixels.

As Spark's Python workers run it (one process per core, one TensorFlow thread each, batch
{r['raw_model_per_core']['batch_size']}, all at once): {r['raw_model_per_core']['images_per_s']:.1f} images/s in float32 together
({', '.join(f"{x:.0f}" for x in r['raw_model_per_core']['per_process'])}), against {max(raw['float32'].values()):.1f} for one process
with {r['machine']['cpu_count']} threads ({r['raw_fp32_one_process_fraction_of_ceiling']:.2f} of the ceiling).

Best float32 ({r['raw_fp32_best_images_per_s']:.1f} images/s) = **{r['raw_fp32_fraction_of_ceiling']:.2f} of the ceiling**; bfloat16 speed-up {r['bf16_speedup']:.2f}x with
{raw['bf16_identical_codes']:.3f} of codes identical to float32 on {raw.get('agreement_images', 0)} decoded bench images,
({raw.get('bf16_bits_flipped', 0):.4f} of all bits flipped, sigmoid outputs moved by up to
{raw.get('bf16_max_output_change', 0):.2f}), far below the 99% needed, so float32 stays the default: bfloat16's 8-bit
mantissa in the convolutions moves outputs enough to flip the bits float32 puts near 0.5, and a code
must not depend on which CPU an executor has.{cascade_text(r)}

For comparison, the design's dense architecture ({sa['model_version']}, {sa['gflop_per_image']:.2f} GFLOP per image) runs
at {sa['float32_images_per_s']:.1f} images/s in float32 (batch 64, the better of one process and one per core),
{sa['fraction_of_ceiling']:.2f} of its own FLOP ceiling{above_one(sa['fraction_of_ceiling'], CEILING_CAVEAT)}.

## `jobs/hash_all.py` end to end ({count} distinct images, `local[2]`)

| run | wall (s) | Spark start-up + shutdown (s) | job (s) | images/s (job) | vs raw model |
|---|---|---|---|---|---|
| first, {s0['images']} of the images | {s0['wall_s']:.1f} | {s0['wall_s'] - s0['job_s']:.1f} | {s0['job_s']:.1f} | {s0['images_per_s_job']:.1f} | – |
| first | {s1['wall_s']:.1f} | {s1['startup_s']:.1f} | {s1['job_s']:.1f} | {s1['images_per_s_job']:.1f} | {s1['fraction_of_raw']:.2f} |
| first, files read by `binaryFile` (`spark.silse.localReader=spark`) | {s1s['wall_s']:.1f} | {s1s['wall_s'] - s1s['job_s']:.1f} | {s1s['job_s']:.1f} | {s1s['images_per_s_job']:.1f} | – |
| `--previous` (incremental) | {s2['wall_s']:.1f} | {s2['wall_s'] - s2['job_s']:.1f} | {s2['job_s']:.1f} | – | {s2['fraction_of_first_job']:.2f} of first job |
| `--previous` (incremental) over {s2['x10_files']} files (10 hard links per image) | – | – | {s2['x10_job_s']:.1f} | – | – |
| `--previous --reread-all` | {s3['wall_s']:.1f} | {s3['wall_s'] - s3['job_s']:.1f} | {s3['job_s']:.1f} | – | {s3['fraction_of_first_job']:.2f} of first job |

Cost per image from the two first runs, `(N - N/4) / (t_N - t_N/4)`: **{marginal['images_per_s']:.1f} images/s**,
{marginal['fraction_of_raw']:.2f} of the raw model's best float32 rate. The job must also decode every image, on
the same cores: with decoding at {c['silse_decode_only']:.0f} images/s per core (table below), decode + model on
{r['machine']['cpu_count']} cores can reach at most {marginal['decode_plus_model_bound']:.0f} images/s, so the job runs at
**{marginal['fraction_of_bound']:.2f} of that bound**{above_one(marginal['fraction_of_bound'], 'the bound comes from separate one-process timings')}. With the design's model ({sa['model_version']}, 20x the work per
image, so decoding is a small part of it) the same measurement over {sa['spark_runs'][0]['images']} and {sa['spark_runs'][1]['images']} images gives
{sa['spark_per_image_images_per_s']:.1f} images/s, **{sa['spark_fraction_of_raw']:.2f} of that model's raw rate**{above_one(sa['spark_fraction_of_raw'], 'the raw rate is a separate timing')} ({sa['float32_images_per_s']:.1f}, the
better of one process and one process per core, batch 64). The rest of the {count}-image job is a fixed
{marginal['fixed_job_s']:.1f} s (Python workers importing TensorFlow and loading the model, JVM warm-up, planning,
reading the listing), which does not grow with the number of images.

{stages_text(r)}

The incremental rerun finds every file unchanged by path, size and modification time, so it reads no
image bytes and runs no model. What it still costs per file, from its runs over N and 10 x N files,
`(t_10N - t_N) / 9N`: {s2['marginal_ms_per_image']:.2f} ms per file (listing, the join with the previous
partition, writing), **{s2['marginal_fraction_of_first']:.3f} of the first run's cost per image**. At this size its fixed part
dominates ({s2['fraction_of_first_job']:.2f} of the first job in total): starting a Python worker for the reader stage,
planning, and one-task stages on a cold JVM, none of which grows with the input. Modelling both jobs as
fixed + per-file cost with the numbers above (first: {marginal['fixed_job_s']:.1f} s + 1/{marginal['images_per_s']:.0f} s per image;
rerun: {inc['fixed_s']:.1f} s + {s2['marginal_ms_per_image']:.2f} ms per file), {
f"the rerun's job takes at most 10% of the first's from **{inc['files_for_10_percent']:,}** files per run"
if inc['files_for_10_percent'] else
"the rerun's job **never falls to 10%** of the first's (its cost per file is above a tenth of the first's per image)"
} on these 2 cores, and {inc['fraction_at_1m']:.3f} of it at 1 million files.
`--reread-all` (every file read and SHA-256'd again, codes reused by hash: the job before the quick
check) takes {s3['fraction_of_first_job']:.2f} of the first job.

The Python workers
(PySpark's daemon and the workers it forks) used at most {s1['worker_pss_peak_mib']:.0f} MiB together (proportional set size,
shared pages split between the processes sharing them; sampled every 0.5 s).

## Cheap alternatives on the same images (one process, read + decode + hash)

| method | images/s |
|---|---|
| pHash (imagehash) | {c['phash']:.0f} |
| PDQ (pdqhash) | {c['pdq']:.0f} |
| silse decode only (no model){f", framing `{r['framing']}`" if r.get('framing', 'none') != 'none' else ""} | {c['silse_decode_only']:.0f} |
| silse decode only (no model), no framing | {c['silse_decode_no_framing']:.0f} |
"""


CEILING_CAVEAT = ("the ceiling is a matrix multiply timed apart, and oneDNN runs this model's large convolutions"
                  " about as fast")


def cascade_text(r: dict[str, Any]) -> str:
    """The report's sentence on running bfloat16 first and float32 again where a bit is near 0.5."""
    cascade = r["raw_model"].get("bf16_cascade")
    if not cascade:
        return ""
    speedup = r["bf16_speedup"]
    parts = [f"within {m}: {c['recheck']:.2f} of images run again, {c['identical']:.3f} identical, at best "
             f"{1 / (1 / speedup + c['recheck']):.2f}x float32" for m, c in cascade.items()]
    return ("\n\nRunning bfloat16 first and float32 again for each image with an output near 0.5 does not rescue it: "
            + "; ".join(parts) + " (the rerun's cost counted at float32's rate, nothing for gathering the images). "
            "The codes' bits sit too close to 0.5 too often for a cheap first pass to settle most images.")


def above_one(fraction: float, why: str) -> str:
    """A caveat for a measured fraction above 1 (faster than the bound it is compared with): ``why``."""
    if fraction <= 1.0:
        return ""
    return f" (above 1: {why}, and timings vary by several percent from run to run; read it as at the bound)"


def drift_note(r: dict[str, Any]) -> str:
    """A sentence on how much the machine's matrix-multiply speed moved between the run's start and end."""
    start, end = r["matmul_fp32_gflops"], r.get("matmul_fp32_gflops_end", r["matmul_fp32_gflops"])
    change = end / start - 1.0
    text = (f"The same matrix multiply at the end of the run: {end:.0f} GFLOP/s ({change:+.0%}). ")
    if abs(change) > 0.10:
        return text + ("**The machine's speed drifted by more than 10% during this run** (a shared virtual "
                       "machine), so ratios between sections measured minutes apart (fractions of the ceiling "
                       "or of the raw rate) carry that much error; rates measured side by side in one section "
                       "(float32 against bfloat16, pHash against PDQ) do not.")
    return text + "The machine's speed held within 10% during the run."


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("docs"))
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--work", type=Path, default=Path("work/bench"))
    parser.add_argument("--sources", type=Path, default=REPO.parent / "shared" / "data" / "demo_avatars")
    args = parser.parse_args(argv)
    result = run(args.output, args.images, args.work, args.sources)
    print((args.output / "benchmarks.md").read_text())
    return 0 if result else 1


if __name__ == "__main__":
    sys.exit(main())
