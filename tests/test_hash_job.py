"""The hash job end to end on Spark, with the stand-in model (plumbing, not code quality)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from silse_spark.codes import TWIN_VALUE_PATTERN, twin_values_from_outputs
from silse_spark.config import ConfigError, HashJobConfig
from silse_spark.decode import decode_avatar
from silse_spark.hash_job import run_hash_job
from silse_spark.model import UnknownModelError, cached_hasher
from silse_spark.variations import encode

IMAGES = Path(__file__).resolve().parent / "data" / "hostile"


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory: pytest.TempPathFactory, demo_avatar_paths: list[Path]) -> Path:
    """10 valid avatars, one truncated PNG and one text file named .jpg, in nested folders."""
    root = tmp_path_factory.mktemp("avatars")
    (root / "sub").mkdir()
    for i, src in enumerate(demo_avatar_paths[:10]):
        shutil.copy(src, (root if i % 2 else root / "sub") / f"acct{i:02d}.png")
    shutil.copy(IMAGES / "truncated.png", root / "acct_truncated.png")
    shutil.copy(IMAGES / "text_named.jpg", root / "sub" / "acct_text.jpg")
    return root


def read_partition(spark, output: Path, run_date: str) -> pd.DataFrame:  # noqa: ANN001
    df = spark.read.parquet(str(output)).where(f"run_date = '{run_date}'")
    return df.toPandas().sort_values("account_id").reset_index(drop=True)


def test_folder_with_bad_files_gives_one_row_each_and_rerun_replaces(spark, avatar_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "hashes"
    config = HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-01")
    summary = run_hash_job(spark, config)
    rows = read_partition(spark, out, "2026-01-01")
    assert len(rows) == 12 and summary.rows == 12
    ok = rows[rows.status == "ok"]
    assert sorted(ok.account_id) == [f"acct{i:02d}" for i in range(10)]
    assert all(TWIN_VALUE_PATTERN.match(v) for v in ok.twin_value)
    assert [int(v, 16) for v in ok.twin_value] == ok.twin_bits.astype("int64").tolist()
    assert (ok.width == 128).all() and (ok.height == 128).all()
    bad = rows[rows.status != "ok"].set_index("account_id")
    assert bad.loc["acct_truncated", "status"] == "decode_error"
    assert bad.loc["acct_text", "status"] == "decode_error"
    assert bad.twin_value.isna().all() and bad.error.notna().all()
    assert summary.status_counts == {"ok": 10, "decode_error": 2}

    # Same date again: the partition is replaced, not appended to.
    run_hash_job(spark, config)
    again = read_partition(spark, out, "2026-01-01")
    cols = ["account_id", "path", "content_sha256", "twin_value", "twin_bits", "status", "error"]
    pd.testing.assert_frame_equal(rows[cols], again[cols])
    # Another date adds a partition and leaves the first alone.
    run_hash_job(spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-02"))
    assert spark.read.parquet(str(out)).groupBy("run_date").count().count() == 2
    assert len(read_partition(spark, out, "2026-01-01")) == 12


def test_spark_codes_equal_direct_inference(spark, avatar_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "hashes"
    run_hash_job(spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-01"))
    rows = read_partition(spark, out, "2026-01-01").query("status == 'ok'")
    for _, row in rows.iterrows():
        pixels = decode_avatar(Path(row.path.removeprefix("file:")).read_bytes()).pixels
        expected = twin_values_from_outputs(cached_hasher().outputs(pixels[None]))[0][0]
        assert row.twin_value == expected


def test_previous_run_codes_are_reused(spark, avatar_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "hashes"
    run_hash_job(spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-01"))
    summary = run_hash_job(
        spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-02", previous=str(out))
    )
    assert summary.reused == 10 and summary.inferred == 2  # only the two bad files are decoded again
    first = read_partition(spark, out, "2026-01-01")
    second = read_partition(spark, out, "2026-01-02")
    assert first.twin_value.tolist() == second.twin_value.tolist()
    ok = second.status == "ok"
    assert (first.hashed_at[ok] == second.hashed_at[ok]).all()


def test_manifest_dedups_content_and_reports_missing_files(
    spark, demo_avatar_paths: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    images = tmp_path / "img"
    images.mkdir()
    shutil.copy(demo_avatar_paths[0], images / "a.png")
    shutil.copy(demo_avatar_paths[0], images / "a_copy.png")  # same bytes, another account
    img = Image.open(demo_avatar_paths[1]).convert("RGB")
    (images / "b.jpg").write_bytes(encode(img, "JPEG", 85))
    monkeypatch.chdir(tmp_path)
    manifest = pd.DataFrame(
        {
            "account_id": ["u1", "u2", "u3", "u4", "u5"],
            "path": [str(images / "a.png"), f"file://{images / 'a_copy.png'}", "img/b.jpg",
                     str(images / "missing.png"), str(tmp_path / "nodir" / "x.png")],
        }
    )
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    summary = run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "manifest.csv"), str(tmp_path / "o"),
                                                 run_date="2026-01-01"))
    rows = read_partition(spark, tmp_path / "o", "2026-01-01").set_index("account_id")
    assert rows.loc["u1", "twin_value"] == rows.loc["u2", "twin_value"] is not None
    assert rows.loc["u3", "status"] == "ok"
    assert rows.loc["u3", "path"] == "img/b.jpg"  # the manifest's own spelling is kept
    for missing in ("u4", "u5"):
        assert rows.loc[missing, "status"] == "read_error"
        assert "could not be read" in rows.loc[missing, "error"]
    assert summary.distinct_contents == 2 and summary.inferred == 2


def test_avatar_table_input(spark, demo_avatar_paths: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    table = pd.DataFrame(
        {
            "account_id": ["t1", "t2", "t3"],
            "content": [demo_avatar_paths[2].read_bytes(), b"", None],
        }
    )
    table.to_parquet(tmp_path / "avatars.parquet")
    run_hash_job(spark, HashJobConfig("avatar_table", str(tmp_path / "avatars.parquet"), str(tmp_path / "o"),
                                      run_date="2026-01-01"))
    rows = read_partition(spark, tmp_path / "o", "2026-01-01").set_index("account_id")
    assert rows.status.to_dict() == {"t1": "ok", "t2": "empty", "t3": "read_error"}
    assert rows.path.isna().all()


def test_bad_configuration_fails_before_work(spark, tmp_path: Path) -> None:  # noqa: ANN001
    pd.DataFrame({"user": ["x"], "file": ["y"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ConfigError, match="no column 'account_id'"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o")))
    with pytest.raises(ConfigError, match="does not exist"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path / "nope"), str(tmp_path / "o")))
    with pytest.raises(UnknownModelError, match="unknown model version"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path), str(tmp_path / "o"), model_version="v999"))
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        HashJobConfig("avatars", "x", "o", run_date="2026-13-01")
    assert not (tmp_path / "o").exists()


def test_unreadable_entries_and_odd_names_keep_their_rows(spark, demo_avatar_paths: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    root = tmp_path / "in"
    root.mkdir()
    for name in ("sp ace%20.png", "ünï.png", "q#?.png"):
        shutil.copy(demo_avatar_paths[3], root / name)
    (root / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "zero.png").write_bytes(b"")
    run_hash_job(spark, HashJobConfig("avatars", str(root), str(tmp_path / "o"), run_date="2026-01-01"))
    rows = read_partition(spark, tmp_path / "o", "2026-01-01").set_index("account_id")
    assert rows.status.to_dict() == {
        "dangling": "read_error", "q#?": "ok", "sp ace%20": "ok", "ünï": "ok", "zero": "empty"
    }
    assert rows.loc["ünï", "path"] == str(root / "ünï.png")


def test_hostile_corpus_gives_one_row_per_file_with_its_status(spark, tmp_path: Path) -> None:  # noqa: ANN001
    from conftest import HOSTILE, HOSTILE_STATUS

    corpus = tmp_path / "hostile"
    shutil.copytree(HOSTILE, corpus)
    (corpus / "unreadable.png").symlink_to(tmp_path / "gone.png")
    expected = {Path(name).stem: status for name, status in HOSTILE_STATUS.items()} | {"unreadable": "read_error"}
    assert len(expected) == len(HOSTILE_STATUS) + 1, "fixture stems must be unique"
    summary = run_hash_job(spark, HashJobConfig("avatars", str(corpus), str(tmp_path / "o"), run_date="2026-01-01"))
    rows = read_partition(spark, tmp_path / "o", "2026-01-01").set_index("account_id")
    assert summary.rows == len(expected) == len(rows)
    assert rows.status.to_dict() == expected
    ok = rows[rows.status == "ok"]
    assert ok.twin_value.notna().all() and ok.error.isna().all()
    bad = rows[rows.status != "ok"]
    assert bad.twin_value.isna().all() and bad.error.str.len().gt(10).all()
