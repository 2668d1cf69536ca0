"""The notebooks execute top to bottom (nbclient) on small real inputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from silse_spark.codes import int_from_twin_value

REPO = Path(__file__).resolve().parents[1]


def execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(str(REPO / "notebooks" / name), as_version=4)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_explore_clusters_notebook(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    codes = ["aaaaaaaaaaaa", "aaaaaaaaaaab", "aaaaaaaaaaaa", "bbbbbbbbbbbb", "bbbbbbbbbbbb", "bbbbbbbbbbbb", "123456789abc"]
    accounts = [f"acct{i}" for i in range(len(codes))]
    hashes = pd.DataFrame({
        "account_id": accounts, "path": [str(p) for p in demo_avatar_paths[: len(codes)]], "twin_value": codes,
        "twin_bits": [int_from_twin_value(c) for c in codes], "status": ["ok"] * len(codes),
    })
    clusters = pd.DataFrame({"cluster_id": ["c0"] * 3 + ["c1"] * 3, "account_id": accounts[:6],
                             "twin_value": codes[:6], "method": ["exact", "radius", "exact"] + ["exact"] * 3,
                             "cluster_size": [3] * 6})
    for name, frame in (("hashes", hashes), ("clusters", clusters)):
        (tmp_path / name / "run_date=2026-01-01").mkdir(parents=True)
        frame.to_parquet(tmp_path / name / "run_date=2026-01-01" / "part-0.parquet")
    nb = execute("explore_clusters.ipynb", {"SILSE_HASHES": str(tmp_path / "hashes"),
                                            "SILSE_CLUSTERS": str(tmp_path / "clusters")})
    text = outputs_text(nb)
    assert "2 clusters, 6 accounts in clusters" in text
    assert "inside clusters: median 0" in text


def test_evaluate_model_notebook() -> None:
    evaluation = REPO / "docs" / "evaluation.json"
    if not evaluation.exists():
        pytest.fail("docs/evaluation.json is missing: run `make eval`")
    nb = execute("evaluate_model.ipynb", {"SILSE_EVALUATION": str(evaluation)})
    html = "".join(str(o.get("data", {}).get("text/html", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "md5" in html and "rotation" in html
