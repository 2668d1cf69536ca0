"""The HTML cluster gallery, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from silse_spark import cli
from silse_spark.gallery import GalleryError, write_gallery

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def outputs(tmp_path: Path, demo_avatar_paths: list[Path]) -> tuple[Path, Path]:
    """Two clusters (3 and 2 accounts) and their hashes, as the jobs write them."""
    accounts = [("a1", 0, "aaaaaaaaaaaa"), ("a2", 0, "aaaaaaaaaaab"), ("a3", 0, "aaaaaaaaaaaa"),
                ("b1", 1, "bbbbbbbbbbbb"), ("b2", 1, "bbbbbbbbbbbb")]
    clusters = pd.DataFrame({
        "cluster_id": [f"c{c}" for _, c, _ in accounts],
        "account_id": [a for a, _, _ in accounts],
        "twin_value": [v for _, _, v in accounts],
        "method": ["exact", "radius", "exact", "exact", "exact"],
        "cluster_size": [3, 3, 3, 2, 2],
    })
    hashes = pd.DataFrame({
        "account_id": [a for a, _, _ in accounts],
        "path": [str(demo_avatar_paths[i]) for i in range(4)] + [str(tmp_path / "gone.png")],
    })
    for name, frame in (("clusters", clusters), ("hashes", hashes)):
        part = tmp_path / name / "run_date=2026-01-01"
        part.mkdir(parents=True)
        frame.to_parquet(part / "part-0.parquet")
    return tmp_path / "clusters", tmp_path / "hashes"


def test_gallery_page_is_self_contained_and_loads_in_chromium(outputs: tuple[Path, Path], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert cli.main(["gallery", "--clusters", str(outputs[0]), "--hashes", str(outputs[1]),
                     "--output", str(page)]) == 0
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # usable offline
    assert text.count('<tr class="cluster"') == 2 and text.count("data:image/png;base64,") == 4
    assert "no image" in text  # the unreadable member is shown, not dropped
    assert "d=1" in text  # aaaaaaaaaaab is one bit from the cluster's common code
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert len(re.findall(r'<tr class="cluster"', dom)) == 2
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png', dom)) == 4
    shot = tmp_path / "gallery.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--screenshot={shot}", "--window-size=1200,800", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 5000


def test_gallery_errors_name_the_problem(tmp_path: Path, outputs: tuple[Path, Path]) -> None:
    with pytest.raises(GalleryError, match="not a directory"):
        write_gallery(tmp_path / "nope", outputs[1], tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="no run_date"):
        write_gallery(tmp_path / "empty", outputs[1], tmp_path / "r.html")


def test_gallery_reads_the_clusters_date_and_only_their_accounts(tmp_path: Path, outputs: tuple[Path, Path]) -> None:
    """Paths come from the hashes of the clusters' own date, one per account, even when a newer night exists."""
    clusters, hashes = outputs
    newer = hashes / "run_date=2026-01-02"
    newer.mkdir()
    pd.DataFrame({"account_id": ["a1", "b1"], "path": ["/moved/a1.png", "/moved/b1.png"]}).to_parquet(
        newer / "part-0.parquet")
    twice = pd.read_parquet(hashes / "run_date=2026-01-01")
    twice.iloc[:1].to_parquet(hashes / "run_date=2026-01-01" / "part-1.parquet")  # a1 listed twice
    page = tmp_path / "one.html"
    assert write_gallery(clusters, hashes, page, top=1) == 1
    text = page.read_text()
    assert text.count('<tr class="cluster"') == 1 and ">c0<" in text  # the largest cluster only
    assert text.count("<figure") == 3 and text.count("data:image/png;base64,") == 3  # a1 once, with its image
    (clusters / "run_date=2026-01-01" / "part-0.parquet").unlink()
    pd.DataFrame({"cluster_id": ["x"], "account_id": ["a1"]}).to_parquet(
        clusters / "run_date=2026-01-01" / "part-0.parquet")
    with pytest.raises(GalleryError, match=r"lacks columns \['twin_value'\]"):
        write_gallery(clusters, hashes, page)


def test_gallery_shows_a_bounded_sample_of_a_large_cluster(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    """A campaign of many accounts is one row with --members thumbnails, each of its codes shown first; the
    largest clusters come from cluster_summary when the cluster job wrote it, else from counting rows."""
    big = [(f"u{i:03d}", "cccccccccccc" if i % 10 else "cccccccccccd" if i % 20 else "ccccccccccc0") for i in range(200)]
    rows = big + [(f"s{i}", "dddddddddddd") for i in range(3)] + [(f"t{i}", "eeeeeeeeeeee") for i in range(3)]
    ids = ["big"] * 200 + ["s"] * 3 + ["t"] * 3
    part = "run_date=2026-01-01"
    for name, frame in (
        ("clusters", pd.DataFrame({"cluster_id": ids, "account_id": [a for a, _ in rows],
                                   "twin_value": [v for _, v in rows], "method": "exact"})),
        # every account on one of two files: a thumbnail is made once per file
        ("hashes", pd.DataFrame({"account_id": [a for a, _ in rows],
                                 "path": [str(demo_avatar_paths[i % 2]) for i in range(len(rows))]})),
    ):
        (tmp_path / name / part).mkdir(parents=True)
        frame.to_parquet(tmp_path / name / part / "part-0.parquet")
    page = tmp_path / "g.html"
    assert write_gallery(tmp_path / "clusters", tmp_path / "hashes", page, top=2, members=5) == 2
    text = page.read_text()
    assert text.count("<figure") == 8 and "showing 5 of 200 accounts" in text and "showing 3 of" not in text
    first_row = text.split('<tr class="cluster"')[1]
    assert ">big<" in first_row and ">t<" not in text  # ties of size 3: the smaller id
    # the common code, then the others by distance: c0 is 2 bits from cccccccccccc, cd 1 bit
    shown = re.findall(r"<figcaption>(\w+)<br><code>(\w+)</code> d=(\d)", first_row)
    assert shown == [("u001", "cccccccccccc", "0"), ("u010", "cccccccccccd", "1"), ("u000", "ccccccccccc0", "2"),
                     ("u002", "cccccccccccc", "0"), ("u003", "cccccccccccc", "0")]
    # cluster_summary beside clusters ranks the clusters (here it says t is larger than s)
    summary = tmp_path / "cluster_summary" / part
    summary.mkdir(parents=True)
    pd.DataFrame({"cluster_id": ["big", "s", "t"], "size": [200, 3, 4]}).to_parquet(summary / "part-0.parquet")
    assert write_gallery(tmp_path / "clusters", tmp_path / "hashes", page, top=2, members=5) == 2
    assert ">t<" in page.read_text() and ">s<" not in page.read_text()
    with pytest.raises(GalleryError, match="--top and --members must be at least 1"):
        write_gallery(tmp_path / "clusters", tmp_path / "hashes", page, members=0)


def test_changed_gallery_shows_new_and_joined_clusters_with_their_new_accounts_first(
    tmp_path: Path, demo_avatar_paths: list[Path]
) -> None:
    """--changed: only clusters new on the latest night or joined by accounts, most new accounts first, and in
    each the accounts it did not have the night before, marked and shown first."""
    nights = {
        "2026-01-01": [("c0", "a1", "aaaaaaaaaaaa"), ("c0", "a2", "aaaaaaaaaaaa"), ("c0", "a3", "aaaaaaaaaaab"),
                       ("c1", "b1", "bbbbbbbbbbbb"), ("c1", "b2", "bbbbbbbbbbbb"), ("c1", "b3", "bbbbbbbbbbbb")],
        # c0 is joined by z9 (shown first though its id sorts last), c1 is unchanged, c2 is new.
        "2026-01-02": [("c0", "a1", "aaaaaaaaaaaa"), ("c0", "a2", "aaaaaaaaaaaa"), ("c0", "a3", "aaaaaaaaaaab"),
                       ("c0", "z9", "aaaaaaaaaaaa"),
                       ("c1", "b1", "bbbbbbbbbbbb"), ("c1", "b2", "bbbbbbbbbbbb"), ("c1", "b3", "bbbbbbbbbbbb"),
                       ("c2", "d1", "dddddddddddd"), ("c2", "d2", "dddddddddddd"), ("c2", "d3", "dddddddddddd")],
    }
    summaries = {"2026-01-01": None, "2026-01-02": {"c0": (4, 1), "c1": (3, 0), "c2": (3, 3)}}
    for night, rows in nights.items():
        frames = {
            "clusters": pd.DataFrame({"cluster_id": [c for c, _, _ in rows], "account_id": [a for _, a, _ in rows],
                                      "twin_value": [v for _, _, v in rows], "method": "exact"}),
            "hashes": pd.DataFrame({"account_id": [a for _, a, _ in rows],
                                    "path": [str(demo_avatar_paths[i % 3]) for i in range(len(rows))]}),
        }
        if summaries[night]:
            frames["cluster_summary"] = pd.DataFrame({
                "cluster_id": list(summaries[night]), "size": [s for s, _ in summaries[night].values()],
                "new_accounts": [n for _, n in summaries[night].values()]})
        for name, frame in frames.items():
            (tmp_path / name / f"run_date={night}").mkdir(parents=True)
            frame.to_parquet(tmp_path / name / f"run_date={night}" / "part-0.parquet")
    page = tmp_path / "changed.html"
    assert cli.main(["gallery", "--clusters", str(tmp_path / "clusters"), "--hashes", str(tmp_path / "hashes"),
                     "--output", str(page), "--changed"]) == 0
    text = page.read_text()
    rows = text.split('<tr class="cluster"')[1:]
    assert [re.search(r"<td>(c\d)</td><td>(\d+)</td><td>(\d+)</td>", r).groups() for r in rows] == [
        ("c2", "3", "3"), ("c0", "4", "1")]  # c1 gained nobody: not shown
    assert "<th>new accounts</th>" in text
    shown_c0 = re.findall(r"<figcaption>(\w+)( <b class=\"new\">new</b>)?<br>", rows[1])
    assert shown_c0 == [("z9", ' <b class="new">new</b>'), ("a1", ""), ("a3", ""), ("a2", "")]
    assert text.count('<b class="new">') == 4  # z9 and the three accounts of the new cluster
    # Without --changed the page is as before: every cluster, no "new" column or mark.
    write_gallery(tmp_path / "clusters", tmp_path / "hashes", page)
    plain = page.read_text()
    assert plain.count('<tr class="cluster"') == 3 and '<b class="new">' not in plain and "new accounts" not in plain
    # A summary written before the columns existed: say so and how to fix it.
    (tmp_path / "cluster_summary" / "run_date=2026-01-02" / "part-0.parquet").unlink()
    pd.DataFrame({"cluster_id": ["c0"], "size": [4]}).to_parquet(
        tmp_path / "cluster_summary" / "run_date=2026-01-02" / "part-0.parquet")
    with pytest.raises(GalleryError, match="no new_accounts column.*rerun jobs/detect_clusters.py"):
        write_gallery(tmp_path / "clusters", tmp_path / "hashes", page, changed=True)
