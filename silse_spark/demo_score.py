"""Score one night's clusters against the demo's ground truth (``truth.csv``).

``make run`` ends with this check, so a user sees at once whether the planted
campaigns came out as clusters and whether honest accounts were pulled in:

- per campaign: its accounts, how many are in clusters, the share in its
  largest cluster, and whether the whole campaign is one cluster;
- honest accounts in a cluster, split into the *owners* of a campaign's
  source avatar (the original the spammers copied: belonging to that cluster
  is expected) and *bystanders* (any other honest account: a false link);
- clusters that mix two campaigns.

    python -m silse_spark.demo_score --truth work/demo/truth.csv --clusters work/output/clusters \
        --run-date 2026-01-01 [--json FILE]

The cluster table is read with pyarrow (it is small for the demo); the
clustering itself is the Spark job's.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class DemoScore:
    """What the clusters got right and wrong on the demo."""

    campaigns: dict[str, dict[str, object]] = field(default_factory=dict)
    campaigns_whole: int = 0
    campaign_accounts: int = 0
    campaign_accounts_clustered: int = 0
    owners_clustered_with_their_campaign: int = 0
    owners: int = 0
    bystanders_clustered: int = 0
    bystanders: int = 0
    bystander_accounts: list[str] = field(default_factory=list)
    mixed_clusters: int = 0
    clusters: int = 0


def score(truth: pd.DataFrame, clusters: pd.DataFrame) -> DemoScore:
    """Compare ``clusters`` (``account_id, cluster_id``) with ``truth`` (``account_id, source, campaign``).

    Examples
    --------
    >>> truth = pd.DataFrame({"account_id": ["h_a", "h_b", "s1", "s2", "s3"],
    ...                       "source": ["a.png", "b.png", "a.png", "a.png", "a.png"],
    ...                       "campaign": ["", "", "c00", "c00", "c00"]})
    >>> clusters = pd.DataFrame({"account_id": ["h_a", "s1", "s2", "s3", "h_b"],
    ...                          "cluster_id": ["k", "k", "k", "k", "k"]})
    >>> s = score(truth, clusters)
    >>> s.campaigns_whole, s.owners_clustered_with_their_campaign, s.bystanders_clustered
    (1, 1, 1)
    """
    truth = truth.fillna("")
    cluster_of = dict(zip(clusters["account_id"], clusters["cluster_id"], strict=True))
    result = DemoScore(clusters=int(clusters["cluster_id"].nunique()) if len(clusters) else 0)
    spam = truth[truth["campaign"] != ""]
    campaign_clusters: dict[str, str | None] = {}
    for campaign, rows in spam.groupby("campaign"):
        ids = [cluster_of.get(a) for a in rows["account_id"]]
        clustered = [c for c in ids if c is not None]
        counts = pd.Series(clustered).value_counts() if clustered else pd.Series(dtype=int)
        largest = str(counts.index[0]) if len(counts) else None
        campaign_clusters[str(campaign)] = largest
        whole = len(counts) == 1 and len(clustered) == len(ids)
        result.campaigns[str(campaign)] = {
            "accounts": len(ids), "clustered": len(clustered), "clusters": len(counts),
            "share_in_largest": round(float(counts.iloc[0]) / len(ids), 3) if len(counts) else 0.0,
            "whole": whole, "source": str(rows["source"].iloc[0]),
        }
        result.campaigns_whole += int(whole)
        result.campaign_accounts += len(ids)
        result.campaign_accounts_clustered += len(clustered)
    sources = {v["source"]: k for k, v in result.campaigns.items()}
    honest = truth[(truth["campaign"] == "") & (truth["source"] != "")]
    for account, source in zip(honest["account_id"], honest["source"], strict=True):
        if source in sources:
            result.owners += 1
            target = campaign_clusters.get(sources[source])
            result.owners_clustered_with_their_campaign += int(target is not None and cluster_of.get(account) == target)
        else:
            result.bystanders += 1
            if account in cluster_of:
                result.bystanders_clustered += 1
                result.bystander_accounts.append(str(account))
    per_cluster = spam.assign(cluster=[cluster_of.get(a) for a in spam["account_id"]]).dropna(subset=["cluster"])
    result.mixed_clusters = int((per_cluster.groupby("cluster")["campaign"].nunique() > 1).sum())
    return result


def render(s: DemoScore) -> str:
    lines = ["demo check against truth.csv:",
             f"  {'campaign':<9} {'accounts':>8} {'clustered':>9} {'clusters':>8} {'in largest':>10}  whole"]
    for name, c in sorted(s.campaigns.items()):
        lines.append(f"  {name:<9} {c['accounts']:>8} {c['clustered']:>9} {c['clusters']:>8} "
                     f"{c['share_in_largest']:>10.2f}  {'yes' if c['whole'] else 'no'}")
    lines += [
        f"  campaigns entirely in one cluster: {s.campaigns_whole} of {len(s.campaigns)}; "
        f"spam accounts in a cluster: {s.campaign_accounts_clustered} of {s.campaign_accounts}",
        f"  owners of a copied avatar in their campaign's cluster (expected): "
        f"{s.owners_clustered_with_their_campaign} of {s.owners}",
        f"  other honest accounts in a cluster (false links): {s.bystanders_clustered} of {s.bystanders}"
        + (f" ({', '.join(s.bystander_accounts[:5])}{', ...' if len(s.bystander_accounts) > 5 else ''})"
           if s.bystander_accounts else ""),
        f"  clusters mixing two campaigns: {s.mixed_clusters}",
    ]
    return "\n".join(lines)


def read_clusters(path: Path, run_date: str) -> pd.DataFrame:
    """``account_id, cluster_id`` of one ``run_date`` partition of the clusters table."""
    partition = Path(path) / f"run_date={run_date}"
    if not partition.is_dir():
        raise FileNotFoundError(f"no clusters for run_date {run_date} under {path}: expected {partition}; "
                                "run jobs/detect_clusters.py for that date first")
    return pd.read_parquet(partition, columns=["account_id", "cluster_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truth", type=Path, required=True, help="truth.csv written by silse_spark.demo")
    parser.add_argument("--clusters", type=Path, required=True, help="clusters table written by detect_clusters.py")
    parser.add_argument("--run-date", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--json", type=Path, default=None, help="also write the score as JSON here")
    args = parser.parse_args(argv)
    try:
        truth = pd.read_csv(args.truth, dtype=str)
        clusters = read_clusters(args.clusters, args.run_date)
    except (FileNotFoundError, ValueError) as exc:
        print(f"demo_score: error: {exc}", file=sys.stderr)
        return 2
    result = score(truth, clusters)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
