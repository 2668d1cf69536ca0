"""Brute-force the cluster job's link rules on the demo's codes for several (radius, prefix) settings.

    python scripts/demo_link_table.py work/output/hashes   # after `make run`

For each setting: union-find over all pairs of ``ok`` codes (exact always; prefix
and radius only between codes that are not low-information, as the job does),
clusters of at least 3 accounts, scored with ``silse_spark.demo_score`` against
``work/demo/truth.csv``. Produces the table in docs/clusters.md. Small inputs only
(all pairs); the job itself never compares all pairs.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from silse_spark.clusters import DEFAULT_LOW_INFO_BITS, DEFAULT_MIN_ACCOUNTS
from silse_spark.demo_score import score

SETTINGS = [(0, 0), (1, 0), (1, 8), (1, 10), (1, 6), (2, 0), (2, 8), (2, 10)]


def clusters_for(accounts: pd.Series, codes: np.ndarray, radius: int, prefix: int) -> pd.DataFrame:
    n = len(codes)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ones = np.array([bin(int(c)).count("1") for c in codes])
    low = (ones <= DEFAULT_LOW_INFO_BITS) | (ones >= 48 - DEFAULT_LOW_INFO_BITS)
    for i in range(n):
        for j in range(i + 1, n):
            d = bin(int(codes[i]) ^ int(codes[j])).count("1")
            near = radius and d <= radius
            same_prefix = prefix and int(codes[i]) >> (48 - 4 * prefix) == int(codes[j]) >> (48 - 4 * prefix)
            if d == 0 or (not low[i] and not low[j] and (near or same_prefix)):
                parent[find(i)] = find(j)
    frame = pd.DataFrame({"account_id": accounts, "cluster_id": [str(find(i)) for i in range(n)]})
    sizes = frame["cluster_id"].value_counts()
    return frame[frame["cluster_id"].map(sizes) >= DEFAULT_MIN_ACCOUNTS]


def main(hashes: str, truth_csv: str = "work/demo/truth.csv") -> None:
    h = pd.read_parquet(hashes)
    h = h[h["status"] == "ok"].reset_index(drop=True)
    truth = pd.read_csv(truth_csv, dtype=str)
    codes = h["twin_bits"].astype("int64").to_numpy()
    print("| R | K | clusters | whole | mean share in largest | spam clustered | bystanders | mixed |")
    for radius, prefix in SETTINGS:
        s = score(truth, clusters_for(h["account_id"], codes, radius, prefix))
        share = np.mean([c["share_in_largest"] for c in s.campaigns.values()])
        print(f"| {radius} | {prefix or 'off'} | {s.clusters} | {s.campaigns_whole} / {len(s.campaigns)} | "
              f"{share:.2f} | {s.campaign_accounts_clustered} / {s.campaign_accounts} | "
              f"{s.bystanders_clustered} / {s.bystanders} | {s.mixed_clusters} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
