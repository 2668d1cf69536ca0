"""``python -m silse_spark.evaluation``: build the suite, hash it every way, score, report.

Example
-------
::

    .venv/bin/python -m silse_spark.evaluation --output docs
    .venv/bin/python -m silse_spark.evaluation --output /tmp/eval --no-demo --sources ~/avatars \\
        --work /tmp/eval-work --models silse-seed-r1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from silse_spark.evaluation.disjoint import DEFAULT_TRAINING_MANIFEST, check_disjoint
from silse_spark.evaluation.hashers import HASHERS, hash_files_many
from silse_spark.evaluation.metrics import (
    MAX_FMR,
    HasherScores,
    impostor_pairs,
    largest_safe_radius,
    pack_codes,
    score_codes,
)
from silse_spark.evaluation.report import (
    SUMMARY_HEADER,
    machine_description,
    summary_rows,
    text_table,
    write_report,
)
from silse_spark.evaluation.silse import (
    cluster_job_groups,
    hash_in_process,
    hash_with_job,
)
from silse_spark.evaluation.suite import SuiteConfig, build_suite, pixel_sha256
from silse_spark.variations import EXTRA_FAMILIES, SEED_FAMILIES

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_AVATARS = REPO_ROOT.parent / "shared" / "data" / "demo_avatars"
"""Default sources: the demo avatars, ``../shared/data/demo_avatars`` beside the repository."""


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run, validated once.

    Parameters
    ----------
    output
        Folder for ``evaluation.md``, ``evaluation.json`` and ``img/``.
    work
        Folder for the suite's files and the hash job's output.
    sources
        Folders of source images.
    distractors
        Folders of extra distinct images (no copies are made of them).
    synthetic
        Number of synthetic distractors; ``None`` fills the suite up to ``target_size``.
    copies
        Copies per source per family; ``None`` to aim at ``target_size`` items.
    models
        silse model versions; ``None`` for every registered one.
    classical
        Classical hashers to run (keys of :data:`HASHERS`).
    training_manifest
        Training data manifest for the disjointness check.
    in_process
        Hash with the model in this process instead of the Spark job (development only).
    """

    output: Path
    work: Path
    sources: tuple[Path, ...]
    distractors: tuple[Path, ...] = ()
    synthetic: int | None = None
    copies: int | None = None
    target_size: int = 5000
    models: tuple[str, ...] | None = None
    classical: tuple[str, ...] = tuple(HASHERS)
    training_manifest: Path = DEFAULT_TRAINING_MANIFEST
    in_process: bool = False
    max_impostor_pairs: int = 6_000_000
    seed: int = 20260101
    command: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.classical) - set(HASHERS))
        if unknown:
            raise ValueError(f"unknown hashers {unknown}; expected some of {list(HASHERS)}")
        if not self.sources:
            raise ValueError("no sources: keep the demo avatars or pass --sources DIR")


def resolve_models(requested: tuple[str, ...] | None) -> list[str]:
    """The silse model versions to evaluate: the requested ones, or every registered one.

    Examples
    --------
    >>> resolve_models(())
    []
    """
    if requested is not None:
        return list(requested)
    from silse_spark.model import UnknownModelError, available_model_versions

    try:
        return available_model_versions()
    except UnknownModelError:
        log.warning("no model registry (silse_spark/models/registry.json): silse is not evaluated")
        return []


def run_evaluation(config: EvalConfig) -> dict[str, HasherScores]:
    """Build the suite, check disjointness, hash with every method, score, write the report.

    Returns
    -------
    dict
        Hasher name -> its scores, silse versions first.

    Raises
    ------
    silse_spark.evaluation.disjoint.TrainingOverlapError
        If an evaluation image is in the training data.
    silse_spark.evaluation.silse.HashJobError
        If the production hash job fails.
    """
    start = time.perf_counter()
    load_start = _load()
    timings: dict[str, float] = {}
    models = resolve_models(config.models)

    suite_config = SuiteConfig(
        sources=config.sources, output=config.work / "suite", copies=config.copies,
        synthetic=config.synthetic, distractors=config.distractors, target_size=config.target_size,
        seed=config.seed,
    )
    manifest = build_suite(suite_config)
    manifest["pixel_sha256"] = [pixel_sha256(Path(p).read_bytes()) for p in manifest["path"]]
    disjointness = check_disjoint(manifest, config.training_manifest)
    timings["suite"] = time.perf_counter() - start

    t = time.perf_counter()
    paths = manifest["path"].tolist()
    hashers = [HASHERS[name] for name in config.classical]
    classical_codes = hash_files_many(hashers, paths)
    timings["classical"] = time.perf_counter() - t

    t = time.perf_counter()
    runs = []
    for version in models:
        run = hash_in_process(manifest, version) if config.in_process else \
            hash_with_job(manifest, version, config.work / "silse", repo=REPO_ROOT)
        runs.append(run)
    timings["silse"] = time.perf_counter() - t

    t = time.perf_counter()
    family_sets: dict[str, list[str]] = {f: [f] for f in [*SEED_FAMILIES, *EXTRA_FAMILIES]}
    family_sets.update({"seed": list(SEED_FAMILIES), "extra": list(EXTRA_FAMILIES),
                        "all": [*SEED_FAMILIES, *EXTRA_FAMILIES]})
    impostors = impostor_pairs(manifest, config.max_impostor_pairs, config.seed)
    scores: dict[str, HasherScores] = {}
    descriptions: dict[str, str] = {}
    for run in runs:
        packed, valid = pack_codes(run.codes, 48)
        clusters = cluster_job_groups(manifest, run, config.work / "silse")
        groupings = {"cluster": clusters} if clusters is not None else None
        scores[run.version] = score_codes(manifest, packed, valid, 48, family_sets, impostors, groupings)
        descriptions[run.version] = f"silse model {run.version}, 48-bit twin value ({run.method})"
    for hasher in hashers:
        packed, valid = pack_codes(classical_codes[hasher.name], hasher.nbits)
        scores[hasher.name] = score_codes(manifest, packed, valid, hasher.nbits, family_sets, impostors)
        descriptions[hasher.name] = hasher.description
    real = ~manifest["origin"].str.startswith("synthetic:").to_numpy()
    real_pairs = real[impostors[0]] & real[impostors[1]]
    for s in scores.values():
        # How much of the false-match rate the synthetic distractors carry.
        s.code["n_impostor_pairs_without_synthetic"] = int(real_pairs.sum())
        s.code["fmr_r0_without_synthetic"] = float((s.impostor[real_pairs] == 0).mean()) if real_pairs.any() else float("nan")
        s.code["r_star_without_synthetic"] = largest_safe_radius(s.impostor[real_pairs], s.nbits, MAX_FMR)
    timings["metrics"] = time.perf_counter() - t

    roles = manifest["role"].value_counts()
    meta: dict[str, object] = {
        "command": config.command,
        "machine": {**machine_description(), "load_average_1min_start": load_start,
                    "load_average_1min_end": _load()},
        "finished_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "runtime_s": time.perf_counter() - start,
        "timings_s": timings,
        "models": models,
        "silse_method": runs[0].method if runs else "no silse model registered",
        "silse_runs": [{"version": r.version, "seconds": r.seconds, "status_counts": r.status_counts}
                       for r in runs],
        "disjointness": {"checked": disjointness.checked, "message": disjointness.message,
                         "training_manifest": disjointness.training_manifest},
        "max_fmr": MAX_FMR,
        "families": {"seed": list(SEED_FAMILIES), "extra": list(EXTRA_FAMILIES)},
        "suite": {
            "n_items": len(manifest),
            "n_sources": int(roles.get("source", 0)),
            "n_copies": int(roles.get("copy", 0)),
            "n_distractors": int(roles.get("distractor", 0)),
            "copies_per_family": int(manifest["copy_index"].max()) + 1 if roles.get("copy", 0) else 0,
            "source_folders": [_display(p) for p in config.sources],
            "distractor_description": (
                f"{int(manifest['origin'].str.startswith('synthetic:').sum())} synthetic avatar-like images"
                + (f" and images from {', '.join(_display(p) for p in config.distractors)}"
                   if config.distractors else "")
                + ", plus each source for the others"
            ),
            "seed": config.seed,
            "work": _display(config.work),
        },
    }
    write_report(config.output, scores, meta, descriptions, [*SEED_FAMILIES, *EXTRA_FAMILIES])
    return scores


def _load() -> float | None:
    """One-minute load average: the machine is shared, so the report says how busy it was."""
    try:
        return round(os.getloadavg()[0], 1)
    except (OSError, AttributeError):
        return None


def _display(path: Path) -> str:
    """A path relative to the repository when it is inside or beside it, for the report."""
    path = Path(path).resolve()
    for base, prefix in ((REPO_ROOT, ""), (REPO_ROOT.parent, "../")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def parse_args(argv: list[str] | None = None) -> EvalConfig:
    """Command-line arguments -> :class:`EvalConfig` (fails fast on bad values)."""
    parser = argparse.ArgumentParser(
        prog="python -m silse_spark.evaluation",
        description="Score silse against md5, aHash, pHash, dHash, wHash and PDQ on one variant suite.",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for evaluation.md/.json and img/")
    parser.add_argument("--work", type=Path, default=Path("work/eval"), help="folder for the suite and job output")
    parser.add_argument("--sources", type=Path, nargs="+", default=[],
                        help="folders of source images, added to the demo avatars")
    parser.add_argument("--no-demo", action="store_true", help="do not include the demo avatars")
    parser.add_argument("--distractors", type=Path, nargs="+", default=[],
                        help="folders of distinct images used as distractors")
    parser.add_argument("--synthetic", type=int, default=None,
                        help="number of synthetic distractors (default: fill the suite up to --target-size)")
    parser.add_argument("--copies", type=int, default=None,
                        help="copies per source per family (default: aim at --target-size images)")
    parser.add_argument("--target-size", type=int, default=5000, help="approximate suite size")
    parser.add_argument("--models", nargs="+", default=None, help="silse model versions (default: all registered)")
    parser.add_argument("--hashers", nargs="+", default=list(HASHERS), help="classical hashers to run")
    parser.add_argument("--training-manifest", type=Path, default=DEFAULT_TRAINING_MANIFEST,
                        help="training sources CSV for the disjointness check")
    parser.add_argument("--in-process", action="store_true",
                        help="development only: run the model in this process instead of jobs/hash_all.py")
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    sources = ([] if args.no_demo else [DEMO_AVATARS]) + list(args.sources)
    shown = "python -m silse_spark.evaluation " + shlex.join(argv if argv is not None else sys.argv[1:])
    return EvalConfig(
        output=args.output, work=args.work, sources=tuple(sources), distractors=tuple(args.distractors),
        synthetic=args.synthetic, copies=args.copies, target_size=args.target_size,
        models=tuple(args.models) if args.models is not None else None, classical=tuple(args.hashers),
        training_manifest=args.training_manifest, in_process=args.in_process, seed=args.seed,
        command=shown,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and print the headline table; exit status 0 on success."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    scores = run_evaluation(config)
    print()
    print(text_table(SUMMARY_HEADER, summary_rows(scores)))
    print(f"\nwrote {config.output / 'evaluation.md'} and {config.output / 'evaluation.json'}")
    meta = json.loads((config.output / "evaluation.json").read_text(encoding="utf-8"))["meta"]
    if not meta["disjointness"]["checked"]:
        print(f"WARNING: {meta['disjointness']['message']}")
    if not meta["models"]:
        print("WARNING: no silse model is registered, so silse was not evaluated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
