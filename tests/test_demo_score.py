"""The demo check that ends `make run`: planted campaigns and honest accounts against truth.csv."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from silse_spark.demo import DemoConfig, build_demo
from silse_spark.demo_score import main, read_clusters, render, score


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory, demo_avatar_paths: list[Path]) -> pd.DataFrame:
    sources = tmp_path_factory.mktemp("src")
    for p in demo_avatar_paths[:6]:
        shutil.copy(p, sources / p.name)
    out = tmp_path_factory.mktemp("demo")
    build_demo(sources, out, DemoConfig(campaigns=2, min_accounts=5, max_accounts=8))
    return pd.read_csv(out / "truth.csv", dtype=str)


def test_perfect_clusters_score_every_campaign_whole(truth: pd.DataFrame) -> None:
    spam = truth[truth.campaign.notna()]
    clusters = spam.assign(cluster_id="k_" + spam.campaign)[["account_id", "cluster_id"]]
    s = score(truth, clusters)
    assert s.campaigns_whole == 2 and s.mixed_clusters == 0
    assert s.campaign_accounts_clustered == s.campaign_accounts == len(spam)
    assert (s.owners, s.owners_clustered_with_their_campaign) == (2, 0)  # owners left out of the clusters
    assert s.bystanders == 4 and s.bystanders_clustered == 0
    assert "campaigns entirely in one cluster: 2 of 2" in render(s)


def test_false_links_split_campaigns_and_mixing_are_counted(truth: pd.DataFrame) -> None:
    spam = truth[truth.campaign.notna()].reset_index(drop=True)
    honest = truth[truth.campaign.isna() & truth.source.notna()]
    owners = honest[honest.source.isin(set(spam.source))]
    bystander = honest[~honest.source.isin(set(spam.source))].account_id.iloc[0]
    first = spam[spam.campaign == "c00"].account_id.tolist()
    second = spam[spam.campaign == "c01"].account_id.tolist()
    rows = [(a, "one") for a in first[:-1]] + [(first[-1], "mixed")] + [(a, "mixed") for a in second]
    rows += [(bystander, "one"), (owners.account_id.iloc[0], "one" if owners.source.iloc[0] == spam.source[0]
                                   else "mixed")]
    s = score(truth, pd.DataFrame(rows, columns=["account_id", "cluster_id"]))
    assert s.campaigns["c00"]["clusters"] == 2 and not s.campaigns["c00"]["whole"]
    assert s.campaigns["c01"]["whole"] and s.mixed_clusters == 1
    assert s.bystanders_clustered == 1 and s.bystander_accounts == [bystander]
    assert s.owners_clustered_with_their_campaign == 1


def test_missing_partition_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="run_date=2026-01-01"):
        read_clusters(tmp_path, "2026-01-01")
    (tmp_path / "truth.csv").write_text("account_id,source,campaign,family\n")
    assert main(["--truth", str(tmp_path / "truth.csv"), "--clusters", str(tmp_path), "--run-date", "2026-01-01"]) == 2
    assert "detect_clusters.py" in capsys.readouterr().err
