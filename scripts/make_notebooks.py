"""Write (and with --execute, run and save with outputs) the notebooks in notebooks/.

    python scripts/make_notebooks.py --execute   # after `make run` and `make eval`

The notebooks read their inputs from environment variables (defaults: the
`make run` outputs), so tests can point them at small fixtures.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]

EXPLORE = [
    new_markdown_cell(
        "# Explore silse clusters\n\nOpens the nightly tables with Spark, lists the largest clusters, compares "
        "Hamming distances inside clusters with distances between unrelated accounts, and shows the avatars of "
        "the largest cluster. Inputs: `SILSE_HASHES`, `SILSE_CLUSTERS` (default: the `make run` outputs)."
    ),
    new_code_cell(
        "import os\n"
        "import matplotlib.pyplot as plt\n"
        "from pyspark.sql import SparkSession, functions as F\n"
        "HASHES = os.environ.get('SILSE_HASHES', '../work/output/hashes')\n"
        "CLUSTERS = os.environ.get('SILSE_CLUSTERS', '../work/output/clusters')\n"
        "spark = (SparkSession.builder.master('local[2]').appName('explore-clusters')\n"
        "         .config('spark.sql.catalogImplementation', 'in-memory').config('spark.ui.enabled', 'false')\n"
        "         .getOrCreate())\n"
        "hashes = spark.read.parquet(HASHES)\n"
        "run_date = hashes.agg(F.max('run_date')).first()[0]\n"
        "hashes = hashes.where(F.col('run_date') == run_date)\n"
        "clusters = spark.read.parquet(CLUSTERS).where(F.col('run_date') == run_date)\n"
        "print('run_date', run_date)\n"
        "hashes.groupBy('status').count().orderBy('status').show()"
    ),
    new_markdown_cell("## Largest clusters"),
    new_code_cell(
        "sizes = (clusters.groupBy('cluster_id')\n"
        "         .agg(F.count('*').alias('accounts'), F.countDistinct('twin_value').alias('codes'),\n"
        "              F.array_sort(F.collect_set('method')).alias('methods'))\n"
        "         .orderBy(F.desc('accounts'), 'cluster_id'))\n"
        "sizes.show(10, truncate=False)\n"
        "print(clusters.select('cluster_id').distinct().count(), 'clusters,', clusters.count(), 'accounts in clusters')"
    ),
    new_markdown_cell(
        "## Distances inside clusters vs between unrelated accounts\n\n"
        "Inside a cluster, each account's distance to the cluster's most common code; between accounts, "
        "a sample of random pairs (`bit_count(a ^ b)`)."
    ),
    new_code_cell(
        "members = (clusters.select('cluster_id', 'account_id', 'twin_value', 'method')\n"
        "           .join(hashes.select('account_id', 'twin_bits', 'path'), 'account_id'))\n"
        "mode = (members.groupBy('cluster_id', 'twin_bits').count()\n"
        "        .withColumn('r', F.row_number().over(__import__('pyspark.sql.window', fromlist=['Window'])\n"
        "                    .Window.partitionBy('cluster_id').orderBy(F.desc('count'), 'twin_bits')))\n"
        "        .where('r = 1').select('cluster_id', F.col('twin_bits').alias('mode_bits')))\n"
        "inside = (members.join(mode, 'cluster_id')\n"
        "          .select(F.bit_count(F.col('twin_bits').bitwiseXOR(F.col('mode_bits'))).alias('d'))\n"
        "          .toPandas()['d'])\n"
        "ok = hashes.where(\"status = 'ok'\").select('twin_bits')\n"
        "a = ok.sample(fraction=1.0, seed=1).limit(2000).withColumn('i', F.monotonically_increasing_id())\n"
        "b = ok.sample(fraction=1.0, seed=2).limit(2000).withColumn('i', F.monotonically_increasing_id())\n"
        "between = (a.alias('a').join(b.alias('b'), 'i')\n"
        "           .select(F.bit_count(F.col('a.twin_bits').bitwiseXOR(F.col('b.twin_bits'))).alias('d'))\n"
        "           .toPandas()['d'])\n"
        "fig, ax = plt.subplots(figsize=(7, 3))\n"
        "ax.hist(between, bins=range(0, 49), alpha=0.6, label='random pairs', density=True)\n"
        "ax.hist(inside, bins=range(0, 49), alpha=0.6, label='inside clusters', density=True)\n"
        "ax.set_xlabel('Hamming distance (bits)'); ax.legend(); plt.show()\n"
        "print('inside clusters: median', inside.median(), '| random pairs: median', between.median())"
    ),
    new_markdown_cell("## The avatars of the largest cluster"),
    new_code_cell(
        "from PIL import Image\n"
        "top = sizes.first()['cluster_id']\n"
        "rows = members.where(F.col('cluster_id') == top).orderBy('account_id').limit(24).toPandas()\n"
        "cols = 8\n"
        "fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, figsize=(12, 1.8 * ((len(rows) + cols - 1) // cols)),\n"
        "                         squeeze=False)\n"
        "for ax in axes.flat:\n"
        "    ax.axis('off')\n"
        "for ax, row in zip(axes.flat, rows.itertuples()):\n"
        "    try:\n"
        "        ax.imshow(Image.open(str(row.path).removeprefix('file:')).convert('RGB'))\n"
        "    except OSError:\n"
        "        ax.text(0.5, 0.5, 'unreadable', ha='center')\n"
        "    ax.set_title(f'{row.account_id}\\n{row.twin_value}', fontsize=7)\n"
        "plt.suptitle(f'cluster {top}'); plt.show()\n"
        "spark.stop()"
    ),
]

EVALUATE = [
    new_markdown_cell(
        "# Evaluate the silse models\n\nReads the numbers `make eval` wrote (`SILSE_EVALUATION`, default "
        "`../docs/evaluation.json`) and compares every hasher per variation family."
    ),
    new_code_cell(
        "import json, os\n"
        "import pandas as pd\n"
        "import matplotlib.pyplot as plt\n"
        "PATH = os.environ.get('SILSE_EVALUATION', '../docs/evaluation.json')\n"
        "report = json.load(open(PATH))\n"
        "print('hashers:', ', '.join(report['results']))"
    ),
    new_code_cell(
        "def per_family(report, metric):\n"
        "    # evaluation.json: results[hasher][family][metric]\n"
        "    return pd.DataFrame({h: {f: m.get(metric) for f, m in fams.items()}\n"
        "                         for h, fams in report['results'].items()}).T\n"
        "exact = per_family(report, 'recall_r0')\n"
        "print('exact-code recall by hasher and family')\n"
        "exact.round(3)"
    ),
    new_code_cell(
        "ax = exact.drop(columns=['seed', 'extra', 'all'], errors='ignore').T.plot.bar(figsize=(11, 3.5), width=0.85)\n"
        "ax.set_ylabel('exact-code recall'); ax.legend(fontsize=7, ncol=4); plt.tight_layout(); plt.show()"
    ),
]


def write(path: Path, cells: list, execute: bool, env: dict[str, str] | None = None) -> None:
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    if execute:
        from nbclient import NotebookClient

        old = dict(os.environ)
        os.environ.update(env or {})
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(old)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execute", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO / "notebooks")
    args = parser.parse_args()
    write(args.output / "explore_clusters.ipynb", EXPLORE, args.execute)
    write(args.output / "evaluate_model.ipynb", EVALUATE, args.execute)


if __name__ == "__main__":
    main()
