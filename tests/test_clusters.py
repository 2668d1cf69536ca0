"""Clustering: pure helpers, the radius join against brute force, components, planted clusters, stable ids."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_staging
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from silse_spark.clusters import (
    ClusterJobConfig,
    connected_components,
    densest_neighbour_edges,
    is_low_information,
    method_label,
    prefix_bits,
    radius_pairs,
    read_allowlist,
    run_cluster_job,
)
from silse_spark.codes import int_from_twin_value, twin_value_from_int
from silse_spark.config import ConfigError

HASH_SCHEMA = pa.schema([
    ("account_id", pa.string()), ("path", pa.string()), ("content_sha256", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("twin_value", pa.string()), ("twin_bits", pa.int64()),
    ("status", pa.string()), ("error", pa.string()), ("model_version", pa.string()), ("hashed_at", pa.timestamp("us")),
])


def write_hashes(directory: Path, run_date: str, rows: list[tuple[str, str | None]]) -> str:
    """A hashes table as jobs/hash_all.py writes it; a ``None`` code is a decode_error row."""
    part = directory / f"run_date={run_date}"
    part.mkdir(parents=True, exist_ok=True)
    for old in part.glob("*.parquet"):
        old.unlink()
    ok = [code is not None for _, code in rows]
    table = pa.table({
        "account_id": [a for a, _ in rows],
        "path": [f"/avatars/{a}.png" for a, _ in rows],
        "content_sha256": [None] * len(rows),
        "width": [96 if k else None for k in ok],
        "height": [96 if k else None for k in ok],
        "twin_value": [c for _, c in rows],
        "twin_bits": [int_from_twin_value(c) if c else None for _, c in rows],
        "status": ["ok" if k else "decode_error" for k in ok],
        "error": [None if k else "truncated" for k in ok],
        "model_version": ["test"] * len(rows),
        "hashed_at": [dt.datetime(2026, 1, 1)] * len(rows),
    }, schema=HASH_SCHEMA)
    pq.write_table(table, part / "part-0.parquet")
    return str(directory)


def flip(code: str, *positions: int) -> str:
    value = int_from_twin_value(code)
    for p in positions:
        value ^= 1 << p
    return twin_value_from_int(value)


# ---------------------------------------------------------------------------
# Pure helpers and configuration


def test_allowlist_file_comments_and_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "allow.txt"
    good.write_text("# defaults\n0123456789ab\n\nffffffffffff  # white\n")
    assert read_allowlist(good) == {"0123456789ab", "ffffffffffff"}
    windows = tmp_path / "notepad.txt"  # byte-order mark and CRLF line ends, as Windows editors save
    windows.write_bytes(b"\xef\xbb\xbf0123456789ab\r\n# white\r\nffffffffffff\r\n")
    assert read_allowlist(windows) == {"0123456789ab", "ffffffffffff"}
    bad = tmp_path / "bad.txt"
    bad.write_text("0123456789ab\n0123456789AB\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_allowlist(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_allowlist(tmp_path / "missing.txt")


def test_low_information_prefix_and_method_label() -> None:
    assert is_low_information(0) and is_low_information((1 << 48) - 1)
    assert is_low_information(0b1111, 4) and not is_low_information(0b11111, 4)
    assert not is_low_information(0, -1)
    assert prefix_bits(0xABCDEF012345, 8) == 0xABCDEF01
    assert method_label(["radius", "prefix", "exact"]) == "exact+prefix+radius"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radius": 3}, "--radius 3 is out of range"),
        ({"prefix_length": 12}, "--prefix-length 12 is out of range"),
        ({"min_accounts": 1}, "--min-accounts 1"),
        ({"run_date": "2026-13-01"}, "not a valid calendar date"),
        ({"allowlist": frozenset({"XYZ"})}, "allowlist"),
        ({"database": "silse; drop"}, "plain SQL name"),
        ({"hashes": ""}, "--hashes"),
        ({"radius_links": "nearest"}, "--radius-links 'nearest' is not known"),
    ],
)
def test_bad_configuration_says_what_to_fix(kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"hashes": "h", "output": "o", **kwargs}
    with pytest.raises(ConfigError, match=message):
        ClusterJobConfig(**settings)  # type: ignore[arg-type]


def test_job_exits_2_on_bad_configuration_before_spark(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("detect_clusters", Path(__file__).parents[1] / "jobs" / "detect_clusters.py")
    assert spec and spec.loader
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main(["--hashes", "h", "--output", "o", "--radius", "5"]) == 2
    assert "--radius 5 is out of range" in capsys.readouterr().err
    status = tmp_path / "clusters.json"
    assert job.main(["--hashes", "h", "--output", "o", "--keep-days", "0", "--summary-json", str(status)]) == 2
    record = json.loads(status.read_text())
    assert (record["exit_code"], record["summary"]) == (2, None) and "--keep-days 0" in record["error"]


# ---------------------------------------------------------------------------
# Radius join and connected components against brute force


def test_radius_join_equals_brute_force(spark) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    base = rng.integers(0, 1 << 48, 1500, dtype=np.int64)
    # Near copies so that distances 0, 1, 2 and 3 all occur many times.
    near = base[rng.integers(0, len(base), 1500)].copy()
    for i in range(len(near)):
        for p in rng.choice(48, int(rng.integers(0, 4)), replace=False):
            near[i] ^= np.int64(1) << np.int64(p)
    codes = np.concatenate([base, near])
    distinct = np.unique(codes)
    distance = np.bitwise_count(np.bitwise_xor.outer(distinct, distinct))
    frame = spark.createDataFrame([(int(c),) for c in codes], "bits long")
    for radius in (1, 2):
        i, j = np.nonzero(np.triu((distance >= 1) & (distance <= radius)))
        expected = {(int(distinct[a]), int(distinct[b]), int(distance[a, b])) for a, b in zip(i, j)}
        got = {(r.a, r.b, r.distance) for r in radius_pairs(frame, radius).collect()}
        assert got == expected
        assert len(expected) > 300  # many true pairs, not a vacuous match


def densest_reference(
    codes: dict[int, int], pairs: set[tuple[int, int, int]], mode_pairs: set[tuple[int, int, int]] = frozenset()
) -> set[tuple[int, int, int]]:
    """Each code's edge to its highest-ranked neighbour above it; rank = (accounts, accounts nearby, -code).
    Then each root with 2+ accounts: its edge to the highest-ranked code above it in ``mode_pairs``."""

    def adjacency(links: set[tuple[int, int, int]]) -> dict[int, list[tuple[int, int]]]:
        out: dict[int, list[tuple[int, int]]] = {c: [] for c in codes}
        for a, b, d in links:
            out[a].append((b, d))
            out[b].append((a, d))
        return out

    neighbours, wider = adjacency(pairs), adjacency(set(mode_pairs))
    rank = {c: (n, n + sum(codes[o] for o, _ in neighbours[c]), -c) for c, n in codes.items()}

    def best_above(code: int, near: list[tuple[int, int]]) -> tuple[int, int, int] | None:
        above = [(rank[o], o, d) for o, d in near if rank[o] > rank[code]]
        if not above:
            return None
        _, best, d = max(above)
        return (min(code, best), max(code, best), d)

    edges = {e for c in codes if (e := best_above(c, neighbours[c]))}
    roots = [c for c in codes if codes[c] >= 2 and best_above(c, neighbours[c]) is None]
    return edges | {e for c in roots if (e := best_above(c, wider[c]))}


def test_densest_neighbour_edges_equal_reference(spark) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(23)
    centres = rng.integers(0, 1 << 48, 300, dtype=np.int64)
    codes: dict[int, int] = {}
    for centre in centres:  # a centre with 1..6 accounts and 0..8 variants 1 or 2 bits away, 1..3 accounts each
        codes[int(centre)] = int(rng.integers(1, 7))
        for _ in range(int(rng.integers(0, 9))):
            variant = int(centre)
            for p in rng.choice(48, int(rng.integers(1, 3)), replace=False):
                variant ^= 1 << int(p)
            codes[variant] = int(rng.integers(1, 4))
    frame = spark.createDataFrame(list(codes.items()), "bits long, accounts long")
    strong = frame.where("accounts >= 2")
    mode_frame = radius_pairs(strong, 2)
    mode_pairs = {(r.a, r.b, r.distance) for r in mode_frame.collect()}
    for radius, modes in ((1, None), (2, None), (1, mode_frame)):
        pairs_frame = radius_pairs(frame, radius)
        pairs = {(r.a, r.b, r.distance) for r in pairs_frame.collect()}
        got = {(r.a, r.b, r.distance) for r in densest_neighbour_edges(pairs_frame, frame, modes).collect()}
        expected = densest_reference(codes, pairs, mode_pairs if modes is not None else frozenset())
        assert got == expected
        forest = densest_reference(codes, pairs)
        assert len(pairs) > len(forest) > 200  # a real choice was made, many times
        if modes is not None:  # the modes' climb added edges beyond radius 1
            assert len(expected - forest) > 10


def union_find(edges: list[tuple[int, int]]) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in list(parent)}


def test_connected_components_equal_union_find(spark) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    chain = [(i, i + 1) for i in range(100, 164)]  # a long path needs several rounds
    reversed_chain = [(i + 1, i) for i in range(300, 340)][::-1]
    random_edges = [(int(a), int(b)) for a, b in rng.integers(1000, 1400, (300, 2))]  # includes self loops
    edges = chain + reversed_chain + random_edges
    linked = {n for a, b in edges if a != b for n in (a, b)}  # a node seen only in a self loop has no row
    expected = {n: c for n, c in union_find(edges).items() if n in linked}
    got = connected_components(spark.createDataFrame(edges, "hi long, lo long"))
    assert {r.node: r.component for r in got.collect()} == expected


# ---------------------------------------------------------------------------
# Planted clusters, one per method, on the real job

EXACT = "5a5a5a5a5a5a"
PREFIX = ["abcdef010000", "abcdef01ffff", "abcdef010f0f"]  # same 8 hex, pairwise 8..16 bits apart
RADIUS_BASE = "3c3c3c3c3c3c"
RADIUS = [RADIUS_BASE, flip(RADIUS_BASE, 47), flip(RADIUS_BASE, 46, 45)]  # distances 1, 2, 3: linked via the base
HONEST = ["0f1e2d3c4b5a", "96a5b4c3d2e1", "c3d2e1f00f1e", "0f1e2d3c4b5a"]  # one code twice: size 2 < 3
LOW_INFO = ["000000000000", "000000000001", "000000000003"]  # would be radius-linked if not flagged
ALLOWED = "1234567890ab"


def planted_rows() -> list[tuple[str, str | None]]:
    rows: list[tuple[str, str | None]] = [(f"exact_{i}", EXACT) for i in range(3)]
    rows += [(f"prefix_{i}", c) for i, c in enumerate(PREFIX)]
    rows += [(f"radius_{i}", c) for i, c in enumerate(RADIUS)]
    rows += [(f"honest_{i}", c) for i, c in enumerate(HONEST)]
    rows += [(f"lowinfo_{i}", c) for i, c in enumerate(LOW_INFO)]
    rows += [(f"white_{i}", "ffffffffffff") for i in range(3)]  # low-information but identical: exact still links
    rows += [(f"default_{i}", ALLOWED) for i in range(5)]
    rows += [("broken_0", None)]
    return rows


def expected_clusters(spark, run_date: str, radius: int, prefix_length: int):  # type: ignore[no-untyped-def]
    def cluster(accounts: list[str], codes: list[str], methods: list[str]) -> list[tuple]:
        cid = f"{run_date}_{min(codes)}"
        return [(cid, a, c, int(c, 16), m, len(accounts), run_date) for a, c, m in zip(accounts, codes, methods)]

    rows = cluster([f"exact_{i}" for i in range(3)], [EXACT] * 3, ["exact"] * 3)
    rows += cluster([f"white_{i}" for i in range(3)], ["ffffffffffff"] * 3, ["exact"] * 3)
    if prefix_length:
        rows += cluster([f"prefix_{i}" for i in range(3)], PREFIX, ["prefix"] * 3)
    if radius == 2:
        rows += cluster([f"radius_{i}" for i in range(3)], RADIUS, ["radius"] * 3)
    schema = "cluster_id string, account_id string, twin_value string, twin_bits long, method string, " \
        "cluster_size long, run_date string"
    return spark.createDataFrame(rows, schema)


@pytest.mark.parametrize(("radius", "prefix_length"), [(2, 8), (0, 0), (1, 0), (0, 8)])
def test_planted_clusters_exact_membership(spark, tmp_path: Path, radius: int, prefix_length: int) -> None:  # type: ignore[no-untyped-def]
    hashes = write_hashes(tmp_path / "hashes", "2026-01-01", planted_rows())
    # One allowlisted code among 20,000 that match no account (a large allowlist is joined, not inlined).
    planted = {code for _, code in planted_rows()}
    unrelated = {twin_value_from_int(random.Random(7).getrandbits(48) ^ i) for i in range(20_000)} - planted
    config = ClusterJobConfig(hashes, str(tmp_path / "out"), radius=radius, prefix_length=prefix_length,
                              allowlist=frozenset({ALLOWED, *unrelated}), database=None)
    summary = run_cluster_job(spark, config)
    got = spark.read.parquet(config.clusters_path).withColumn("run_date", F.col("run_date").cast("string"))
    assertDataFrameEqual(got.select(*expected_clusters(spark, "2026-01-01", radius, prefix_length).columns),
                         expected_clusters(spark, "2026-01-01", radius, prefix_length))
    assert summary.status_counts == {"ok": 24, "decode_error": 1}
    assert summary.allowlisted_accounts == 5
    assert summary.low_info_codes == 4  # three near-zero codes and all-ones
    if radius == 2 and prefix_length == 8:
        rows = {r.cluster_id: r for r in spark.read.parquet(config.summary_path).collect()}
        radius_cluster = rows[f"2026-01-01_{RADIUS_BASE}"]
        assert (radius_cluster.size, radius_cluster.distinct_codes, radius_cluster.methods) == (3, 3, ["radius"])
        assert radius_cluster.representative_twin_value == RADIUS_BASE  # one account each: the smallest code
        assert radius_cluster.representative_path == "/avatars/radius_0.png"
        assert radius_cluster.first_seen == dt.date(2026, 1, 1)
        assert (radius_cluster.representative_share, radius_cluster.spread) == (0.333, 2)  # 1 of 3; 2 bits
        exact_cluster = rows[f"2026-01-01_{EXACT}"]
        assert (exact_cluster.representative_share, exact_cluster.spread) == (1.0, 0)
        assert summary.clusters == 4 and summary.clustered_accounts == 12


def test_mixed_methods_in_one_cluster(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = "77aa55cc3311"
    rows = [("m_0", base), ("m_1", base), ("m_2", flip(base, 0)), ("m_3", flip(base, 40, 41, 42))]
    hashes = write_hashes(tmp_path / "hashes", "2026-01-01", rows)
    config = ClusterJobConfig(hashes, str(tmp_path / "out"), prefix_length=10, database=None)  # prefix links on
    run_cluster_job(spark, config)
    got = {r.account_id: (r.method, r.cluster_size) for r in spark.read.parquet(config.clusters_path).collect()}
    # m_2 is 1 bit from the base and shares its first 8 hex; m_3 differs in the second hex character and is
    # 3 bits from the base, so it is not linked.
    assert got == {"m_0": ("exact+prefix+radius", 3), "m_1": ("exact+prefix+radius", 3), "m_2": ("prefix+radius", 3)}


DENSE = "6b6b6b6b6b60"
STAR = "c5c5c5c5c5c5"
MODE = "2d2d2d2d2d2d"


@pytest.mark.parametrize("radius_links", ["all", "densest"])
def test_densest_links_stop_chains_keep_stars_and_merge_modes(spark, tmp_path: Path, radius_links: str) -> None:  # type: ignore[no-untyped-def]
    # A chain: two 4-account codes 3 bits apart joined by two one-account codes, each 1 bit from the next.
    # Single linkage chains all four; densest links each middle code to its own end only.
    # A star: a one-account centre and four one-account copies 1 bit away, two of them below the
    # centre's code; every copy's densest neighbour is the centre (5 accounts within 1 bit).
    # Two modes 2 bits apart (3 and 2 accounts): beyond radius 1, so single linkage leaves them apart
    # (the 2-account code alone is too small to be a cluster); densest lets the smaller mode climb to the larger.
    other, m1, m2 = flip(DENSE, 0, 1, 2), flip(DENSE, 0), flip(DENSE, 0, 1)
    rows = [(f"a{i}", DENSE) for i in range(4)] + [(f"b{i}", other) for i in range(4)] + [("m1", m1), ("m2", m2)]
    star = [flip(STAR, 47), flip(STAR, 46), flip(STAR, 1), flip(STAR, 3)]
    rows += [("s_centre", STAR)] + [(f"s{i}", c) for i, c in enumerate(star)]
    rows += [(f"c{i}", MODE) for i in range(3)] + [(f"d{i}", flip(MODE, 5, 6)) for i in range(2)]
    assert sum(int(c, 16) < int(STAR, 16) for c in star) == 2
    hashes = write_hashes(tmp_path / "hashes", "2026-01-01", rows)
    config = ClusterJobConfig(hashes, str(tmp_path / "out"), radius=1, prefix_length=0, radius_links=radius_links,
                              database=None)
    summary = run_cluster_job(spark, config)
    got: dict[str, set[str]] = {}
    for r in spark.read.parquet(config.clusters_path).collect():
        got.setdefault(r.cluster_id, set()).add(r.account_id)
    star_accounts = {"s_centre", "s0", "s1", "s2", "s3"}
    a_side, b_side = {f"a{i}" for i in range(4)}, {f"b{i}" for i in range(4)}
    modes = {"c0", "c1", "c2", "d0", "d1"}
    triage = {r.representative_twin_value: (r.size, r.representative_share, r.spread)
              for r in spark.read.parquet(config.summary_path).collect()}
    # The star's representative: its smallest code (one account each), 2 bits from the copies across.
    assert triage[min(star + [STAR])] == (5, 0.2, 2)
    assert summary.radius_pairs == 7
    if radius_links == "all":
        assert set(map(frozenset, got.values())) == {
            frozenset(star_accounts), frozenset(a_side | b_side | {"m1", "m2"}), frozenset({"c0", "c1", "c2"})
        }
        assert summary.radius_links == {1: 7}
        assert triage[DENSE] == (10, 0.4, 3)  # 4 of 10 accounts on the representative, the other end 3 bits away
    else:
        assert set(map(frozenset, got.values())) == {
            frozenset(a_side | {"m1"}), frozenset(b_side | {"m2"}), frozenset(star_accounts), frozenset(modes)
        }
        assert summary.radius_links == {1: 6, 2: 1}  # m1, m2 and the four copies; the mode merge
        assert triage[DENSE] == (5, 0.8, 1) and triage[other] == (5, 0.8, 1) and triage[MODE] == (5, 0.6, 2)


# ---------------------------------------------------------------------------
# Stable ids and reruns


def test_ids_survive_nights_and_rerun_replaces(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hashes, out = tmp_path / "hashes", tmp_path / "out"
    a, b, c, d = "111111111100", "222222222200", "333333333300", "444444444400"
    night1 = [(f"x{i}", a) for i in range(6)] + [(f"y{i}", b) for i in range(3)] + [(f"z{i}", c) for i in range(4)]
    # Night 2: x splits into x0..x3 (keeps the id: more shared accounts) and x4,x5,n0 (new id);
    # y and z merge (via a shared code) and keep z's id (4 shared accounts against 3); w is new.
    night2 = [(f"x{i}", flip(a, 3)) for i in range(4)] + [("x4", d), ("x5", d), ("n0", d)]
    night2 += [(f"y{i}", c) for i in range(3)] + [(f"z{i}", c) for i in range(4)]
    night2 += [(f"w{i}", "555555555500") for i in range(3)]
    write_hashes(hashes, "2026-01-01", night1)
    write_hashes(hashes, "2026-01-02", night2)
    config1 = ClusterJobConfig(str(hashes), str(out), run_date="2026-01-01", database=None)
    config2 = ClusterJobConfig(str(hashes), str(out), database=None)  # the latest date
    run_cluster_job(spark, config1)
    summary2 = run_cluster_job(spark, config2)
    assert summary2.run_date == "2026-01-02" and summary2.previous_run_date == "2026-01-01"
    assert summary2.inherited_ids == 2

    def ids(run_date: str) -> dict[str, str]:
        frame = spark.read.parquet(str(out / "clusters")).where(f"run_date = '{run_date}'")
        return {r.account_id: r.cluster_id for r in frame.collect()}

    first, second = ids("2026-01-01"), ids("2026-01-02")
    assert {second[f"x{i}"] for i in range(4)} == {first["x0"]} == {f"2026-01-01_{a}"}
    assert {second["x4"], second["x5"], second["n0"]} == {f"2026-01-02_{d}"}
    assert {second[k] for k in ["y0", "y1", "y2", "z0", "z1", "z2", "z3"]} == {first["z0"]}
    assert second["w0"] == "2026-01-02_555555555500"
    seen = {r.cluster_id: r.first_seen for r in spark.read.parquet(str(out / "cluster_summary"))
            .where("run_date = '2026-01-02'").collect()}
    assert seen[first["x0"]] == dt.date(2026, 1, 1) and seen[second["w0"]] == dt.date(2026, 1, 2)
    # What changed since night 1: x keeps 4 of its 6 accounts, z gains y's 3, the other two are new.
    changes = {r.cluster_id: (r.previous_size, r.new_accounts) for r in spark.read.parquet(str(out / "cluster_summary"))
               .where("run_date = '2026-01-02'").collect()}
    assert changes == {first["x0"]: (6, 0), first["z0"]: (4, 3), second["x4"]: (None, 3), second["w0"]: (None, 3)}
    assert (summary2.new_accounts, summary2.changed_clusters) == (9, 3)
    assert "new in their cluster 9 accounts, in 3 clusters new or joined since 2026-01-01" in summary2.table()
    night1 = spark.read.parquet(str(out / "cluster_summary")).where("run_date = '2026-01-01'").collect()
    assert {(r.previous_size, r.new_accounts) for r in night1} == {(None, 6), (None, 3), (None, 4)}

    # Rerunning night 2: the same rows, no duplicates.
    before = spark.read.parquet(str(out / "clusters")).collect()
    before_summary = spark.read.parquet(str(out / "cluster_summary")).collect()
    assert len(before) == 30 and len(before_summary) == 7
    run_cluster_job(spark, config2)
    assertDataFrameEqual(spark.read.parquet(str(out / "clusters")), before)
    assertDataFrameEqual(spark.read.parquet(str(out / "cluster_summary")), before_summary)

    # Rerunning night 1 on hashes that now have no cluster replaces it with nothing.
    write_hashes(hashes, "2026-01-01", [("solo", a)])
    run_cluster_job(spark, config1)
    dates = {r.run_date for r in spark.read.parquet(str(out / "clusters")).select("run_date").distinct().collect()}
    assert dates == {dt.date(2026, 1, 2)}  # Spark infers the partition value as a date


def test_keep_days_deletes_only_nights_older_than_the_window(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hashes, out = tmp_path / "hashes", tmp_path / "out"
    rows = [(f"x{i}", "111111111100") for i in range(3)]
    for night in ("2025-12-01", "2026-01-01"):
        write_hashes(hashes, night, rows)
    # Runs killed while writing left staging folders (25 h ago); a live write's was touched an hour ago.
    killed = [make_staging(out / table, ".spark-staging-k", hours_ago=25) for table in ("clusters", "cluster_summary")]
    live = make_staging(out / "clusters", ".spark-staging-live", hours_ago=1)
    first = run_cluster_job(spark, ClusterJobConfig(str(hashes), str(out), run_date="2025-12-01", database=None))
    assert sorted(s for s, _ in first.staging) == sorted(k.as_uri().replace("file:///", "file:/") for k in killed)
    assert "stale staging        2 (0.0 MB, untouched for 24+ h;" in first.table() and all(k.exists() for k in killed)
    for table in ("clusters", "cluster_summary"):  # a night inside the window, a newer one, a stray folder
        for name in ("run_date=2025-12-20", "run_date=2026-01-05", "run_date=old-copy"):
            shutil.copytree(out / table / "run_date=2025-12-01", out / table / name)
    summary = run_cluster_job(spark, ClusterJobConfig(str(hashes), str(out), run_date="2026-01-01", database=None,
                                                      keep_days=14))
    assert len(summary.staging) == 2 and not any(k.exists() for k in killed) and live.exists()
    assert "stale staging        2 (0.0 MB) deleted" in summary.table()
    assert summary.pruned == ["2025-12-01"]
    assert "nights deleted       1 (2025-12-01, --keep-days)" in summary.table()
    for table in ("clusters", "cluster_summary"):
        assert sorted(p.name for p in (out / table).iterdir() if p.name.startswith("run_date=")) == [
            "run_date=2025-12-20", "run_date=2026-01-01", "run_date=2026-01-05", "run_date=old-copy"]
    with pytest.raises(ConfigError, match="--keep-days 0 is not a number of days >= 1"):
        ClusterJobConfig(str(hashes), str(out), keep_days=0)


def test_missing_hashes_or_date_is_a_configuration_error(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="run jobs/hash_all.py first"):
        run_cluster_job(spark, ClusterJobConfig(str(tmp_path / "nothing"), str(tmp_path / "out"), database=None))
    hashes = write_hashes(tmp_path / "hashes", "2026-01-01", [("a", EXACT)])
    with pytest.raises(ConfigError, match="2026-01-01"):
        run_cluster_job(spark, ClusterJobConfig(hashes, str(tmp_path / "out"), run_date="2026-02-01", database=None))
    # A table of clusters (here a stand-in with the cluster job's columns) is not a hashes table.
    clusters = tmp_path / "clusters" / "run_date=2026-01-01"
    clusters.mkdir(parents=True)
    pq.write_table(pa.table({"cluster_id": ["c"], "account_id": ["a"], "twin_value": [EXACT], "twin_bits": [1],
                             "method": ["exact"]}), clusters / "part.parquet")
    with pytest.raises(ConfigError, match="is not the output of jobs/hash_all.py: it has no column path, status"):
        run_cluster_job(spark, ClusterJobConfig(str(tmp_path / "clusters"), str(tmp_path / "o2"), database=None))
    # Codes of two models in one partition (written by something other than hash_all.py) are not comparable.
    mixed = write_hashes(tmp_path / "mixed", "2026-01-01", [("a", EXACT), ("b", EXACT), ("c", None)])
    part = tmp_path / "mixed" / "run_date=2026-01-01"
    first = pq.read_table(part / "part-0.parquet")
    other = first.set_column(first.schema.get_field_index("model_version"), "model_version",
                             pa.array(["silse-next"] * first.num_rows))
    pq.write_table(other.slice(0, 1), part / "part-1.parquet")
    with pytest.raises(ConfigError, match=r"holds codes of 2 model versions: silse-next \(1 rows\), test \(2 rows\)"):
        run_cluster_job(spark, ClusterJobConfig(mixed, str(tmp_path / "o3"), database=None))
    # Output tables inside the hashes directory would make it unreadable: refused before any work.
    with pytest.raises(ConfigError, match="inside --hashes .*keep them apart"):
        run_cluster_job(spark, ClusterJobConfig(hashes, hashes, database=None))
    with pytest.raises(ConfigError, match="inside --hashes"):
        run_cluster_job(spark, ClusterJobConfig(hashes, f"file://{hashes}/nested", database=None))
    assert sorted(p.name for p in Path(hashes).iterdir()) == ["run_date=2026-01-01"]
    # An output that is (or lies under) a file fails before any work, naming the file.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "cluster_summary").write_text("not a folder")
    with pytest.raises(ConfigError, match="cluster_summary' is a file, not a directory"):
        run_cluster_job(spark, ClusterJobConfig(hashes, str(tmp_path / "taken"), database=None))
    with pytest.raises(ConfigError, match="is under .*cluster_summary, which is a file"):
        run_cluster_job(spark, ClusterJobConfig(hashes, str(tmp_path / "taken" / "cluster_summary" / "x"),
                                                database=None))
    # A night rewritten by pandas (nanosecond timestamps, which Spark does not read): the folder and the fix.
    part = Path(write_hashes(tmp_path / "rewritten", "2026-01-01", [("a", EXACT)])) / "run_date=2026-01-01"
    frame = pq.read_table(part / "part-0.parquet").to_pandas()
    frame.astype({"hashed_at": "datetime64[ns]"}).to_parquet(part / "part-0.parquet")
    with pytest.raises(ConfigError, match=r"--hashes .*run_date=2026-01-01 cannot be read as a table written by "
                                          r"this project's jobs: .*PARQUET_TYPE_ILLEGAL.*coerce_timestamps='us'"):
        run_cluster_job(spark, ClusterJobConfig(str(tmp_path / "rewritten"), str(tmp_path / "o4"), database=None))
    (part / "part-0.parquet").write_text("account_id,twin_value\na,0123456789ab\n")  # a CSV with a Parquet name
    with pytest.raises(ConfigError, match=r"the input file .*run_date=2026-01-01/part-0.parquet cannot be read "
                                          r"\(RuntimeException: .*is not a Parquet file"):
        run_cluster_job(spark, ClusterJobConfig(str(tmp_path / "rewritten"), str(tmp_path / "o4"), database=None))
