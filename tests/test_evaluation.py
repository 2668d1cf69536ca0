"""The evaluation harness: metrics on hand-made cases with known answers, suite, disjointness, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from silse_spark.evaluation.__main__ import EvalConfig, run_evaluation
from silse_spark.evaluation.disjoint import TrainingOverlapError, check_disjoint
from silse_spark.evaluation.hashers import HASHERS, hash_files_many, int_from_bool_bits
from silse_spark.evaluation.metrics import (
    HasherScores,
    daugman_dof,
    genuine_pairs,
    impostor_pairs,
    largest_safe_radius,
    mean_abs_bit_correlation,
    pack_codes,
    pair_distances,
    pairwise_scores,
    score_codes,
)
from silse_spark.evaluation.silse import (
    HashJobError,
    _codes_from_output,
    cluster_job_groups,
    hash_with_job,
    labels_from_clusters,
)
from silse_spark.evaluation.suite import SuiteConfig, build_suite, pixel_sha256
from silse_spark.variations import EXTRA_FAMILIES, FAMILIES, SEED_FAMILIES

ALL_SETS = {**{f: [f] for f in FAMILIES}, "seed": list(SEED_FAMILIES), "extra": list(EXTRA_FAMILIES)}


def toy_manifest(n_sources: int = 6, copies: int = 2, n_distractors: int = 4) -> pd.DataFrame:
    """A manifest without files: sources, copies in every family, distractors."""
    rows = []
    for s in range(n_sources):
        sid = f"s{s}"
        rows.append({"item_id": sid, "role": "source", "source_id": sid, "family": None})
        for family in FAMILIES:
            for k in range(copies):
                rows.append({"item_id": f"{sid}-{family}-{k}", "role": "copy", "source_id": sid, "family": family})
    for d in range(n_distractors):
        rows.append({"item_id": f"d{d}", "role": "distractor", "source_id": f"d{d}", "family": None})
    return pd.DataFrame(rows)


def score(manifest: pd.DataFrame, codes: list[int | None], nbits: int) -> HasherScores:
    packed, valid = pack_codes(codes, nbits)
    return score_codes(manifest, packed, valid, nbits, ALL_SETS, impostor_pairs(manifest))


def test_perfect_hasher_scores_one_everywhere() -> None:
    manifest = toy_manifest()
    # Each source's id spread over 48 bits: copies share it, distinct images differ by many bits.
    rng = np.random.default_rng(0)
    table = {g: int(rng.integers(0, 2**48)) for g in manifest["source_id"].unique()}
    s = score(manifest, [table[g] for g in manifest["source_id"]], 48)
    for name in ALL_SETS:
        fam = s.families[name]
        assert fam["recall_r0"] == 1.0 and fam["recall_r4"] == 1.0
        assert fam["fmr_r0"] == 0.0
        assert fam["exact_precision"] == 1.0 and fam["exact_recall"] == 1.0 and fam["exact_f1"] == 1.0
    assert s.code["fmr_r0"] == 0.0
    assert s.code["r_star"] is not None and s.code["r_star"] >= 4


def test_constant_hasher_has_false_match_rate_one() -> None:
    manifest = toy_manifest()
    s = score(manifest, [0] * len(manifest), 64)
    assert s.code["fmr_r0"] == 1.0
    assert s.code["r_star"] is None
    assert np.isnan(s.code["daugman_dof"])
    assert s.code["constant_bits"] == 64
    for name in ALL_SETS:
        fam = s.families[name]
        assert fam["fmr_r0"] == 1.0 and fam["recall_r0"] == 1.0
        # Everything is one group: every true pair is found, most predicted pairs are wrong.
        assert fam["exact_recall"] == 1.0 and fam["exact_precision"] < 0.2


def test_one_flipped_bit_misses_exact_but_hits_radius_one() -> None:
    manifest = toy_manifest()
    base = {g: (i + 1) << 20 for i, g in enumerate(manifest["source_id"].unique())}
    codes = [base[g] ^ (1 if fam == "blur" else 0) for g, fam in zip(manifest["source_id"], manifest["family"])]
    s = score(manifest, codes, 48)
    assert s.families["blur"]["recall_r0"] == 0.0 and s.families["blur"]["recall_r1"] == 1.0
    assert s.families["jpeg"]["recall_r0"] == 1.0
    assert s.families["extra"]["recall_r0"] == pytest.approx(7 / 8)
    assert s.families["blur"]["mean_genuine_distance"] == 1.0


def test_items_without_code_never_match() -> None:
    manifest = toy_manifest(n_sources=2, copies=1, n_distractors=1)
    codes: list[int | None] = [None] * len(manifest)
    s = score(manifest, codes, 48)
    assert s.families["seed"]["recall_r4"] == 0.0
    assert s.families["seed"]["n_copies_without_code"] == s.families["seed"]["n_copies"] == 10
    assert s.code["fmr_r0"] == 0.0
    assert s.families["seed"]["exact_predicted_pairs"] == 0


def test_pairwise_scores_on_known_groupings() -> None:
    # Truth {a,a,b,b}; prediction {1,1,1,2}: true pairs 2, predicted 3, correct 1.
    s = pairwise_scores(["a", "a", "b", "b"], [1, 1, 1, 2])
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (2, 3, 1)
    assert s.precision == pytest.approx(1 / 3) and s.recall == 0.5 and s.f1 == pytest.approx(0.4)
    # All singletons: nothing predicted, nothing found.
    s = pairwise_scores(["a", "a", "b"], [1, 2, 3])
    assert np.isnan(s.precision) and s.recall == 0.0 and s.f1 == 0.0
    with pytest.raises(ValueError, match="items"):
        pairwise_scores(["a"], [1, 2])


def test_largest_safe_radius_follows_the_false_match_rate() -> None:
    far = np.full(10_000, 20)
    assert largest_safe_radius(far, 48) == 19
    one_close = far.copy()
    one_close[0] = 2  # FMR(2) = 1e-4, still allowed
    assert largest_safe_radius(one_close, 48) == 19
    two_close = one_close.copy()
    two_close[1] = 2  # FMR(2) = 2e-4
    assert largest_safe_radius(two_close, 48) == 1
    assert largest_safe_radius(np.array([], dtype=int), 48) is None


def test_distances_work_for_any_code_length() -> None:
    a, b = (1 << 255) | 1, 0
    packed, valid = pack_codes([a, b, None], nbits=256)
    d = pair_distances(packed, valid, np.array([0, 0, 1]), np.array([1, 2, 1]), nbits=256)
    assert d.tolist() == [2, 257, 0]
    with pytest.raises(ValueError, match="does not fit"):
        pack_codes([1 << 64], nbits=64)


def test_daugman_dof_and_bit_correlation_on_random_and_redundant_bits() -> None:
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, size=(3000, 32))
    assert mean_abs_bit_correlation(bits) < 0.05
    assert mean_abs_bit_correlation(np.repeat(bits[:, :1], 4, axis=1)) == pytest.approx(1.0)
    assert daugman_dof(rng.binomial(32, 0.5, size=100_000), 32) == pytest.approx(32, rel=0.05)
    # Fully redundant bits: 32 bits that behave like 1 coin give 1 degree of freedom.
    assert daugman_dof(32 * rng.integers(0, 2, size=100_000), 32) == pytest.approx(1, rel=0.05)


def test_pair_construction_counts() -> None:
    manifest = toy_manifest(n_sources=3, copies=2, n_distractors=2)
    copies, sources = genuine_pairs(manifest, ["rotation"])
    assert len(copies) == 6
    assert (manifest["source_id"].to_numpy()[copies] == manifest["source_id"].to_numpy()[sources]).all()
    assert (manifest["role"].to_numpy()[sources] == "source").all()
    left, right = impostor_pairs(manifest)
    groups = manifest["source_id"].to_numpy()
    assert (groups[left] != groups[right]).all()
    refs = 3 + 2
    copies_total = 3 * len(FAMILIES) * 2
    # Each copy against the refs of other sources; each unordered pair of refs once.
    assert len(left) == copies_total * (refs - 1) + refs * (refs - 1) // 2
    left_s, _ = impostor_pairs(manifest, max_pairs=50, seed=3)
    assert len(left_s) == 50 and (left_s == impostor_pairs(manifest, max_pairs=50, seed=3)[0]).all()


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory: pytest.TempPathFactory, demo_avatar_paths: list[Path]) -> pd.DataFrame:
    src = tmp_path_factory.mktemp("sources")
    for p in demo_avatar_paths[:4]:
        shutil.copy(p, src / p.name)
    # A repeat of a source must be dropped, not counted as a distinct image.
    shutil.copy(demo_avatar_paths[0], src / "zz_repeat.png")
    # Any size and mode: a palette image with transparency.
    Image.new("P", (300, 200), 3).save(src / "palette.png", transparency=0)
    return build_suite(SuiteConfig([src], tmp_path_factory.mktemp("suite"), copies=1, synthetic=6))


def test_suite_has_every_family_distinct_sources_and_is_reproducible(
    small_suite: pd.DataFrame, tmp_path: Path
) -> None:
    roles = small_suite["role"].value_counts().to_dict()
    assert roles == {"source": 5, "copy": 5 * len(FAMILIES), "distractor": 6}
    assert set(small_suite.loc[small_suite.role == "copy", "family"]) == set(FAMILIES)
    assert not small_suite["origin"].str.endswith("zz_repeat.png").any()
    # Sources keep their original bytes.
    src = small_suite[small_suite.role == "source"].iloc[0]
    assert Path(src.path).read_bytes() == Path(src.origin).read_bytes()
    distinct = small_suite[small_suite.role != "copy"]
    fingerprints = [pixel_sha256(Path(p).read_bytes()) for p in distinct.path]
    assert None not in fingerprints and len(set(fingerprints)) == len(distinct)
    sources_dir = Path(small_suite[small_suite.role == "source"].iloc[0].origin).parent
    again = build_suite(SuiteConfig([sources_dir], tmp_path / "again", copies=1, synthetic=6))
    assert again["file_sha256"].tolist() == small_suite["file_sha256"].tolist()


def test_md5_recalls_nothing_of_the_altered_families(small_suite: pd.DataFrame) -> None:
    codes = hash_files_many([HASHERS["md5"], HASHERS["phash"]], small_suite["path"].tolist())
    s = score(small_suite, codes["md5"], 128)
    for family in FAMILIES:
        assert s.families[family]["recall_r0"] == 0.0
        assert s.families[family]["recall_r4"] == 0.0
    assert s.code["fmr_r0"] == 0.0
    # A perceptual hash on the same files does find copies: md5's zero is the method, not the suite.
    p = score(small_suite, codes["phash"], 64)
    assert p.families["extra"]["recall_r4"] > 0.0


def test_hashers_give_codes_of_their_length(small_suite: pd.DataFrame) -> None:
    paths = small_suite["path"].tolist()[:3]
    codes = hash_files_many(list(HASHERS.values()), paths)
    for name, hasher in HASHERS.items():
        assert all(c is not None and 0 <= c < (1 << hasher.nbits) for c in codes[name]), name
    assert int_from_bool_bits(np.array([[True, False], [False, True]])) == 0b1001


def test_disjointness_raises_on_overlap_and_says_when_unchecked(small_suite: pd.DataFrame, tmp_path: Path) -> None:
    items = small_suite.assign(pixel_sha256=[pixel_sha256(Path(p).read_bytes()) for p in small_suite.path])
    missing = check_disjoint(items, tmp_path / "absent.csv")
    assert not missing.checked and "disjointness not checked" in missing.message
    training = pd.DataFrame({
        "source_id": ["t0", "t1"], "origin": ["train/a.png", "train/b.png"],
        "file_sha256": ["0" * 64, "1" * 64],
        "pixel_sha256": [items.pixel_sha256.iloc[3], "2" * 64], "split": ["train", "val"],
    })
    training.to_csv(tmp_path / "sources.csv", index=False)
    with pytest.raises(TrainingOverlapError, match=items.item_id.iloc[3]):
        check_disjoint(items, tmp_path / "sources.csv")
    training.assign(pixel_sha256=["3" * 64, "2" * 64]).to_csv(tmp_path / "clean.csv", index=False)
    assert check_disjoint(items, tmp_path / "clean.csv").checked


def test_job_output_is_mapped_back_to_items() -> None:
    frame = pd.DataFrame({
        "account_id": ["b", "a", "c"], "twin_bits": [5, 7, None], "status": ["ok", "ok", "decode_error"],
        "model_version": ["v", "v", "v"],
    })
    codes, counts = _codes_from_output(frame, ["a", "b", "c"], "v")
    assert codes == [7, 5, None] and counts == {"ok": 2, "decode_error": 1}
    with pytest.raises(HashJobError, match="no row"):
        _codes_from_output(frame, ["a", "zz"], "v")


def test_cluster_job_groups_come_from_the_real_jobs(
    tmp_path: Path, demo_avatar_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from silse_spark.model import MODELS_DIR_ENV, default_model_version

    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)  # the shipped default model, not a random stand-in
    # Four re-uploads of one avatar (identical bytes, so identical codes) and three other avatars.
    rows = [(f"same{i}", demo_avatar_paths[0]) for i in range(4)]
    rows += [(f"other{i}", p) for i, p in enumerate(demo_avatar_paths[1:4])]
    items = pd.DataFrame({"item_id": [r[0] for r in rows], "path": [str(r[1]) for r in rows]})
    run = hash_with_job(items, default_model_version(), tmp_path / "work")
    assert run.output is not None and run.status_counts == {"ok": 7}
    labels = cluster_job_groups(items, run, tmp_path / "work")
    assert labels is not None and len(set(labels[:4])) == 1 and not str(labels[0]).startswith("alone:")
    assert labels[4:] == [f"alone:{item}" for item in items.item_id[4:]]  # distinct avatars stay apart
    assert labels_from_clusters(["x"], pd.DataFrame({"account_id": [], "cluster_id": []})) == ["alone:x"]


def test_run_writes_json_and_markdown_with_every_hasher_and_family(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in demo_avatar_paths[:3]:
        shutil.copy(p, src / p.name)
    config = EvalConfig(output=tmp_path / "docs", work=tmp_path / "work", sources=(src,), synthetic=5,
                        copies=1, models=(), training_manifest=tmp_path / "none.csv")
    run_evaluation(config)
    doc = json.loads((tmp_path / "docs" / "evaluation.json").read_text(), parse_constant=pytest.fail)
    assert list(doc["results"]) == list(HASHERS)
    for name in HASHERS:
        assert set(FAMILIES) | {"seed", "extra", "all"} == set(doc["results"][name])
        assert doc["code"][name]["nbits"] == HASHERS[name].nbits
    assert doc["results"]["md5"]["seed"]["recall_r0"] == 0.0
    assert doc["meta"]["disjointness"]["checked"] is False
    md = (tmp_path / "docs" / "evaluation.md").read_text()
    assert "| pdq | 256 |" in md and "disjointness not checked" in md
    assert "all, without synthetic distractors" in md and "load average" in md
    assert doc["code"]["md5"]["fmr_r0_without_synthetic"] == 0.0
    for plot in ("eval_distances.png", "eval_recall_by_family.png", "eval_recall_vs_radius.png"):
        assert (tmp_path / "docs" / "img" / plot).stat().st_size > 1000


def test_repeated_copies_are_made_once(tmp_path: Path, demo_avatar_paths: list[Path]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in demo_avatar_paths[:2]:
        shutil.copy(p, src / p.name)
    suite = build_suite(SuiteConfig([src], tmp_path / "suite", copies=3, synthetic=0))
    per_family = suite[suite.role == "copy"].groupby("family").size()
    # hflip and greyscale are deterministic: one copy per source; random families get all three.
    assert per_family["hflip"] == 2 and per_family["greyscale"] == 2
    assert per_family["rotation"] == 6 and per_family["jpeg"] == 6
    assert suite["file_sha256"].is_unique
