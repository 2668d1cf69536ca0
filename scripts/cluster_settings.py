"""The cluster job's settings side by side on labelled codes: the demo and the evaluation suites.

    make cluster-settings      # after `make run`, `make eval` and (optionally) `make eval-photos`

For every setting (radius, prefix length, radius links) it runs the real cluster
job (:func:`silse_spark.clusters.run_cluster_job`, one local Spark session, no
metastore) on:

* the demo's hashes (``work/output/hashes``), scored with
  :mod:`silse_spark.demo_score` against ``work/demo/truth.csv``: campaigns kept
  whole, share of each campaign in its largest cluster, owners, bystanders;
* each evaluation suite's hashes of one model (``WORK/silse/hashes-MODEL`` as
  ``make eval`` leaves them), scored as the evaluation's "cluster job" row:
  pairwise precision, recall and F1 of the clusters against the sources, on
  sources, distractors and seed-family copies.

Writes a Markdown table and the same numbers as JSON, with the command line.
Inputs that are missing are named with the make target that builds them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from silse_spark.clusters import DEFAULT_PREFIX_LENGTH, DEFAULT_RADIUS, DEFAULT_RADIUS_LINKS, ClusterJobConfig
from silse_spark.evaluation.metrics import pairwise_scores, scored_items
from silse_spark.evaluation.silse import labels_from_clusters
from silse_spark.variations import SEED_FAMILIES

RUN_DATE = "2026-01-01"
DEFAULT_SETTINGS = ["1:10:all", "1:10:densest", "2:10:all", "2:10:densest", "1:0:densest", "1:11:densest",
                    "2:0:densest", "0:10:all", "0:0:all"]


@dataclass(frozen=True)
class Setting:
    radius: int
    prefix_length: int
    radius_links: str

    @classmethod
    def parse(cls, text: str) -> Setting:
        """``R:K:LINKS``, e.g. ``1:10:densest``.

        >>> Setting.parse("2:10:all")
        Setting(radius=2, prefix_length=10, radius_links='all')
        """
        try:
            radius, prefix, links = text.split(":")
            return cls(int(radius), int(prefix), links)
        except ValueError:
            raise SystemExit(f"setting {text!r} is not R:K:LINKS (e.g. 1:10:densest)") from None

    @property
    def label(self) -> str:
        default = (self.radius, self.prefix_length, self.radius_links) == (
            DEFAULT_RADIUS, DEFAULT_PREFIX_LENGTH, DEFAULT_RADIUS_LINKS
        )
        return f"R {self.radius}, K {self.prefix_length or 'off'}, {self.radius_links}" + (" (default)" if default else "")


TRIAGE_SETTINGS = (Setting(1, 10, "all"), Setting(1, 0, "densest"))
"""Settings whose clusters are also broken down by the summary's triage columns."""


def run_job(spark, hashes: Path, setting: Setting, scratch: Path) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """The job's clusters (``account_id``, ``cluster_id``) and cluster_summary for one setting."""
    from silse_spark.clusters import run_cluster_job

    out = scratch / f"r{setting.radius}-k{setting.prefix_length}-{setting.radius_links}-{abs(hash(str(hashes)))}"
    config = ClusterJobConfig(str(hashes), str(out), run_date=RUN_DATE, radius=setting.radius,
                              prefix_length=setting.prefix_length, radius_links=setting.radius_links, database=None)
    run_cluster_job(spark, config)
    clusters = Path(config.clusters_path)
    if not clusters.exists():
        return pd.DataFrame({"account_id": [], "cluster_id": []}), pd.DataFrame(
            {"cluster_id": [], "representative_share": [], "spread": []}
        )
    return (
        pd.read_parquet(clusters, columns=["account_id", "cluster_id"]),
        pd.read_parquet(config.summary_path, columns=["cluster_id", "representative_share", "spread"]),
    )


SPREAD_BINS = [(0, 1), (2, 3), (4, 5), (6, 48)]
SHARE_BINS = [(0.0, 0.4), (0.4, 0.6), (0.6, 1.0)]


def triage_rows(clusters: pd.DataFrame, summary: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, object]:
    """Clusters by ``spread`` and ``representative_share``: how many, and the share that are pure
    (at least 90% of their accounts from one source)."""
    source = dict(zip(manifest["item_id"], manifest["source_id"], strict=True))
    joined = clusters.assign(source=clusters["account_id"].map(source))
    purity = joined.groupby("cluster_id")["source"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    table = summary.set_index("cluster_id").join(purity.rename("purity"))
    table["pure"] = table["purity"] >= 0.9
    def cell(part: pd.DataFrame) -> dict[str, object]:
        return {"clusters": len(part), "pure": round(float(part["pure"].mean()), 3) if len(part) else None}

    out: dict[str, object] = {}
    for lo, hi in SPREAD_BINS:
        out[f"spread {lo}-{hi}"] = cell(table[(table["spread"] >= lo) & (table["spread"] <= hi)])
    share = table["representative_share"]
    for low, high in SHARE_BINS:
        out[f"share {low:.1f}-{high:.1f}"] = cell(table[(share >= low) & ((share < high) | (high == 1.0))])
    return out


def demo_row(clusters: pd.DataFrame, truth: pd.DataFrame) -> dict[str, object]:
    from silse_spark.demo_score import score

    s = score(truth, clusters)
    return {
        "campaigns_whole": s.campaigns_whole, "campaigns": len(s.campaigns),
        "share_in_largest": round(float(np.mean([c["share_in_largest"] for c in s.campaigns.values()])), 3),
        "spam_clustered": s.campaign_accounts_clustered, "spam": s.campaign_accounts,
        "owners": s.owners_clustered_with_their_campaign, "owners_total": s.owners,
        "bystanders": s.bystanders_clustered, "bystanders_total": s.bystanders, "mixed": s.mixed_clusters,
    }


def suite_row(clusters: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, object]:
    in_set = scored_items(manifest, SEED_FAMILIES)
    labels = np.array(labels_from_clusters(manifest["item_id"].tolist(), clusters), dtype=object)
    s = pairwise_scores(manifest["source_id"].to_numpy()[in_set], list(labels[in_set]))
    return {"precision": round(s.precision, 3), "recall": round(s.recall, 3), "f1": round(s.f1, 3)}


def render(result: dict[str, object]) -> str:
    lines = [
        "# Cluster job settings side by side",
        "",
        f"Made by `{result['command']}` on {result['date']} ({result['seconds']:.0f} s), model `{result['model']}`.",
        "Every number comes from the cluster job itself (one local Spark session per run of this script).",
        "",
    ]
    demo = result["demo"]
    if isinstance(demo, dict):
        lines += [
            f"## Demo (`{result['demo_hashes']}`, scored against `truth.csv`)",
            "",
            "| setting | campaigns whole | mean share in largest | spam clustered | owners | bystanders | mixed |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, r in demo.items():
            lines.append(
                f"| {label} | {r['campaigns_whole']} / {r['campaigns']} | {r['share_in_largest']:.2f} | "
                f"{r['spam_clustered']} / {r['spam']} | {r['owners']} / {r['owners_total']} | "
                f"{r['bystanders']} / {r['bystanders_total']} | {r['mixed']} |"
            )
        lines.append("")
    suites = result["suites"]
    assert isinstance(suites, dict)
    if suites:
        names = list(suites)
        lines += [
            "## Evaluation suites (pairwise precision / recall / F1 on sources, distractors and seed-family copies)",
            "",
            "| setting | " + " | ".join(f"`{n}` P / R / F1" for n in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for label in next(iter(suites.values())):
            cells = [
                f"{suites[n][label]['precision']:.3f} / {suites[n][label]['recall']:.3f} / **{suites[n][label]['f1']:.3f}**"
                for n in names
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    triage = result.get("triage") or {}
    assert isinstance(triage, dict)
    for name, by_setting in triage.items():
        for label, bins in by_setting.items():
            if not bins:
                continue
            lines += [
                f"## Triage columns on `{name}`, {label}",
                "",
                "Clusters grouped by `spread` and by `representative_share` (cluster_summary); *pure*: at least",
                "90% of a cluster's accounts come from one source image.",
                "",
                "| clusters with | clusters | share pure |",
                "|---|---|---|",
            ]
            for key, cell in bins.items():
                pure = "-" if cell["pure"] is None else f"{cell['pure']:.2f}"
                lines.append(f"| {key} | {cell['clusters']} | {pure} |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-hashes", type=Path, default=Path("work/output/hashes"))
    parser.add_argument("--truth", type=Path, default=Path("work/demo/truth.csv"))
    parser.add_argument("--suites", type=Path, nargs="*", default=[Path("work/eval"), Path("work/eval-photos")],
                        help="evaluation work folders (make eval: work/eval; make eval-photos: work/eval-photos)")
    parser.add_argument("--model", default=None, help="model version whose suite hashes are used (default: the default)")
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="R:K:LINKS, e.g. 1:10:densest")
    parser.add_argument("--output", type=Path, default=None, help="folder for cluster_settings.md and .json")
    args = parser.parse_args(argv)

    from silse_spark.model import default_model_version

    model = args.model or default_model_version()
    settings = [Setting.parse(s) for s in args.settings]
    suites = {}
    for work in args.suites:
        hashes, manifest = work / "silse" / f"hashes-{model}", work / "suite" / "manifest.csv"
        if not (hashes.is_dir() and manifest.is_file()):
            print(f"skipping {work}: no {hashes} or {manifest}; run make eval (work/eval) or make eval-photos "
                  f"(work/eval-photos) with model {model} first", file=sys.stderr)
            continue
        suites[str(work)] = (hashes, pd.read_csv(manifest))
    demo = args.demo_hashes.is_dir() and args.truth.is_file()
    if not demo:
        print(f"skipping the demo: no {args.demo_hashes} or {args.truth}; run make run first", file=sys.stderr)
    if not demo and not suites:
        print("nothing to score: run make run and make eval first", file=sys.stderr)
        return 2

    from pyspark.sql import SparkSession

    started = time.monotonic()
    spark = SparkSession.builder.appName("silse-cluster-settings").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    result: dict[str, object] = {
        "command": "spark-submit scripts/cluster_settings.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": model,
        "demo_hashes": str(args.demo_hashes), "demo": None, "suites": {n: {} for n in suites},
        "triage": {n: {} for n in suites},
    }
    truth = pd.read_csv(args.truth, dtype=str) if demo else None
    try:
        with tempfile.TemporaryDirectory(prefix="silse-settings-") as scratch:
            if demo:
                result["demo"] = {}
                for setting in settings:
                    clusters, _ = run_job(spark, args.demo_hashes, setting, Path(scratch))
                    result["demo"][setting.label] = demo_row(clusters, truth)  # type: ignore[index]
                    print("demo", setting.label, result["demo"][setting.label], flush=True)  # type: ignore[index]
            for name, (hashes, manifest) in suites.items():
                for setting in settings:
                    clusters, summary = run_job(spark, hashes, setting, Path(scratch))
                    row = suite_row(clusters, manifest)
                    result["suites"][name][setting.label] = row  # type: ignore[index]
                    if setting in TRIAGE_SETTINGS:
                        result["triage"][name][setting.label] = triage_rows(clusters, summary, manifest)  # type: ignore[index]
                    print(name, setting.label, row, flush=True)
    finally:
        spark.stop()
    result["seconds"] = round(time.monotonic() - started, 1)
    text = render(result)
    print(text)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "cluster_settings.md").write_text(text + "\n")
        (args.output / "cluster_settings.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
