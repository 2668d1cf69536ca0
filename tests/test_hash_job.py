"""The hash job end to end on Spark, with the stand-in model (plumbing, not code quality)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_staging, spark_conf
from PIL import Image

from silse_spark.codes import TWIN_VALUE_PATTERN, twin_values_from_outputs
from silse_spark.config import ConfigError, HashJobConfig
from silse_spark.decode import decode_avatar
from silse_spark.hash_job import run_hash_job
from silse_spark.model import UnknownModelError, cached_hasher
from silse_spark.sources import MAX_LENGTH_CONF
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
    df = spark.read.option("mergeSchema", "true").parquet(str(output)).where(f"run_date = '{run_date}'")
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
    assert summary.files_read == 12  # each file opened once, though two branches of the plan use its bytes
    # The codes are the model's own: the same as decoding and inferring each file directly.
    for _, row in ok.iterrows():
        pixels = decode_avatar(Path(row.path.removeprefix("file:")).read_bytes()).pixels
        assert row.twin_value == twin_values_from_outputs(cached_hasher().outputs(pixels[None]))[0][0]

    # Same date again: the partition is replaced, not appended to.
    run_hash_job(spark, config)
    again = read_partition(spark, out, "2026-01-01")
    cols = ["account_id", "path", "content_sha256", "twin_value", "twin_bits", "status", "error"]
    pd.testing.assert_frame_equal(rows[cols], again[cols])
    # Another date adds a partition and leaves the first alone.
    run_hash_job(spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-02"))
    assert spark.read.parquet(str(out)).groupBy("run_date").count().count() == 2
    assert len(read_partition(spark, out, "2026-01-01")) == 12
    # A folder beside the partitions (a cluster job once pointed here) does not fail the run after its work.
    (out / "clusters").mkdir()
    pd.DataFrame({"cluster_id": ["c"]}).to_parquet(out / "clusters" / "part-0.parquet")
    summary = run_hash_job(spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-03",
                                                previous=str(out)))
    assert summary.rows == 12 and summary.reused == 10


def test_previous_run_codes_are_reused_also_from_an_output_without_file_metadata(spark, avatar_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out, old = tmp_path / "hashes", tmp_path / "old"
    run_hash_job(spark, HashJobConfig("avatars", str(avatar_dir), str(out), run_date="2026-01-01"))
    # An output written before the job recorded file metadata: codes are reused by content hash.
    spark.read.parquet(str(out)).drop("file_size", "file_modified").write.partitionBy("run_date").parquet(str(old))
    summary = run_hash_job(
        spark, HashJobConfig("avatars", str(avatar_dir), str(old), run_date="2026-01-02", previous=str(old))
    )
    assert summary.reused == 10 and summary.inferred == 2  # only the two bad files are decoded again
    first = read_partition(spark, out, "2026-01-01")
    second = read_partition(spark, old, "2026-01-02")
    assert first.twin_value.tolist() == second.twin_value.tolist()
    ok = second.status == "ok"
    assert (first.hashed_at[ok] == second.hashed_at[ok]).all()
    assert second.file_size.notna().all() and second.file_modified.notna().all()
    # The registered table shows the new columns, null for the partition written before them.
    from silse_spark.catalog import register_tables

    register_tables(spark, "evolved", {"hashes": str(old)})
    counts = spark.sql("SELECT run_date, count(file_size) AS n FROM evolved.hashes GROUP BY run_date").collect()
    assert {str(r["run_date"]): r["n"] for r in counts} == {"2026-01-01": 0, "2026-01-02": 12}


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

    # Next night, incremental: a deleted file is reported, a replaced one (named by a file:// URI) is read.
    (images / "a.png").unlink()
    _copy_with_time(demo_avatar_paths[5], images / "a_copy.png", 1_900_000_000)
    summary = run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "manifest.csv"), str(tmp_path / "o"),
                                                run_date="2026-01-02", previous=str(tmp_path / "o")))
    night = read_partition(spark, tmp_path / "o", "2026-01-02").set_index("account_id")
    assert night.status.to_dict() == {"u1": "read_error", "u2": "ok", "u3": "ok", "u4": "read_error",
                                      "u5": "read_error"}
    assert "could not be read" in night.error.loc["u1"]
    assert night.hashed_at.loc["u3"] == rows.hashed_at.loc["u3"]  # unchanged: carried over
    assert night.content_sha256.loc["u2"] != rows.content_sha256.loc["u2"]
    assert night.path.loc["u2"] == f"file://{images / 'a_copy.png'}"
    assert summary.reused == 1 and summary.inferred == 1


def test_avatar_table_input(spark, demo_avatar_paths: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    table = pd.DataFrame(
        {
            "account_id": ["t1", "t2", "t3", "t4"],
            "content": [demo_avatar_paths[2].read_bytes(), b"", None, b"\x89PNG" + bytes(100_000)],
        }
    )
    assert len(table.content[0]) < 65_536
    table.to_parquet(tmp_path / "avatars.parquet")
    limit = spark.conf.get(MAX_LENGTH_CONF)
    spark.conf.set(MAX_LENGTH_CONF, "65536")  # the file limit applies to a table's blobs too
    try:
        run_hash_job(spark, HashJobConfig("avatar_table", str(tmp_path / "avatars.parquet"), str(tmp_path / "o"),
                                          run_date="2026-01-01"))
    finally:
        spark.conf.set(MAX_LENGTH_CONF, limit)
    rows = read_partition(spark, tmp_path / "o", "2026-01-01").set_index("account_id")
    assert rows.status.to_dict() == {"t1": "ok", "t2": "empty", "t3": "read_error", "t4": "read_error"}
    assert rows.error.loc["t4"] == f"content is 100004 bytes, larger than {MAX_LENGTH_CONF} (65536 bytes): not read"
    assert rows.content_sha256.loc["t4"] is None
    assert rows.path.isna().all()


def test_integer_account_ids_are_read_as_text(spark, demo_avatar_paths: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    """Upload databases keep account ids as integers: a Parquet manifest or avatar table of them is accepted."""
    pd.DataFrame({"account_id": pd.array([7, 123456789012, None], dtype="Int64"),
                  "path": [str(p) for p in demo_avatar_paths[:3]]}).to_parquet(tmp_path / "m.parquet")
    pd.DataFrame({"account_id": pd.array([8, 9], dtype="int32"),
                  "content": [p.read_bytes() for p in demo_avatar_paths[:2]]}).to_parquet(tmp_path / "t.parquet")
    run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.parquet"), str(tmp_path / "o"),
                                      run_date="2026-01-01"))
    run_hash_job(spark, HashJobConfig("avatar_table", str(tmp_path / "t.parquet"), str(tmp_path / "o"),
                                      run_date="2026-01-02"))
    manifest = read_partition(spark, tmp_path / "o", "2026-01-01")
    assert manifest.account_id.tolist()[:2] == ["123456789012", "7"] and manifest.account_id.isna().iloc[2]
    assert manifest.status.tolist() == ["ok", "ok", "no_account_id"]
    table = read_partition(spark, tmp_path / "o", "2026-01-02")
    assert table.account_id.tolist() == ["8", "9"] and (table.status == "ok").all()
    assert table.twin_value.tolist() == manifest.twin_value.tolist()[:2][::-1]


def test_keep_days_deletes_old_nights_after_the_night_is_written(
    spark, demo_avatar_paths: list[Path], tmp_path: Path  # noqa: ANN001
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for path in demo_avatar_paths[:2]:
        shutil.copy(path, root)
    out = tmp_path / "o"
    run_hash_job(spark, HashJobConfig("avatars", str(root), str(out), run_date="2025-12-01"))
    for name in ("run_date=2025-12-17", "run_date=2025-12-18", "run_date=2026-02-01", "notes"):
        shutil.copytree(out / "run_date=2025-12-01", out / name)
    killed, live = make_staging(out, ".spark-staging-killed", hours_ago=30), make_staging(out, ".spark-staging-live")
    summary = run_hash_job(spark, HashJobConfig("avatars", str(root), str(out), run_date="2026-01-01", keep_days=14,
                                                previous=str(out)))
    assert summary.pruned == ["2025-12-01", "2025-12-17"]  # more than 14 days before 2026-01-01
    assert "nights deleted  2 (2025-12-01 to 2025-12-17, --keep-days)" in summary.table()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith((".", "_"))) == [
        "notes", "run_date=2025-12-18", "run_date=2026-01-01", "run_date=2026-02-01"]
    assert summary.reused == 2  # the previous night (2025-12-18) was read before anything was deleted
    # A killed run's staging folder (untouched for 30 h) is deleted; a live write's (just touched) is not.
    assert [Path(p).name for p, _ in summary.staging] == [killed.name] and not killed.exists() and live.exists()
    assert "stale staging   1 (0.0 MB) deleted" in summary.table()
    with pytest.raises(ConfigError, match="--keep-days -3 is not a number of days >= 1"):
        HashJobConfig("avatars", str(root), str(out), keep_days=-3)


def test_nights_are_written_sorted_by_code_with_a_bloom_filter_on_accounts(spark, tmp_path: Path) -> None:  # noqa: ANN001
    """A lookup of one code (or prefix) reads one row group per file, not the night: every file sorted by
    the key, also when run_date is a column read back (the writer's own sort by run_date undid the order)."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from silse_spark.sources import write_night

    rows = spark.range(0, 600, numPartitions=3).select(
        F.concat(F.lit("acct_"), F.col("id").cast("string")).alias("account_id"),
        (F.abs(F.xxhash64("id")) % (1 << 48)).alias("twin_bits"), F.lit("2026-01-01").alias("run_date"))
    write_night(rows, str(tmp_path / "lit"), sort_by="twin_bits")
    write_night(spark.read.parquet(str(tmp_path / "lit")).repartition(2), str(tmp_path / "col"), sort_by="twin_bits")
    for table in ("lit", "col"):
        files = sorted((tmp_path / table / "run_date=2026-01-01").glob("*.parquet"))
        assert len(files) >= 2
        for file in files:
            bits = pq.read_table(file).column("twin_bits").to_pylist()
            assert bits == sorted(bits), (table, file.name)
            meta = pq.ParquetFile(file).metadata.row_group(0)
            account = [meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == "account_id"]
            assert account[0].bloom_filter_offset is not None and account[0].bloom_filter_length < 4096
    assert spark.read.parquet(str(tmp_path / "col")).where("account_id = 'acct_7'").count() == 1


def test_bad_configuration_fails_before_work(spark, tmp_path: Path) -> None:  # noqa: ANN001
    pd.DataFrame({"user": ["x"], "file": ["y"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ConfigError, match="no column 'account_id'"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o")))
    # Spreadsheets export with ';' in some locales; a header in capitals: the message says which.
    (tmp_path / "semi.csv").write_text("account_id;path\nx;y\n")
    with pytest.raises(ConfigError, match="the header looks separated by ';': write the manifest with commas"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "semi.csv"), str(tmp_path / "o")))
    (tmp_path / "caps.csv").write_text("ACCOUNT_ID,PATH\nx,y\n")
    with pytest.raises(ConfigError, match="column names are case-sensitive: rename 'ACCOUNT_ID' to 'account_id'"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "caps.csv"), str(tmp_path / "o")))
    with pytest.raises(ConfigError, match="does not exist"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path / "nope"), str(tmp_path / "o")))
    pd.DataFrame({"account_id": [1.5], "path": ["y"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(ConfigError, match=r"'account_id' is double, expected string or long or integer or short or "
                                          r"byte; write the column as .* \(for example with CAST\(account_id AS string\)\)"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.parquet"), str(tmp_path / "o")))
    with pytest.raises(UnknownModelError, match="unknown model version"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path), str(tmp_path / "o"), model_version="v999"))
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        HashJobConfig("avatars", "x", "o", run_date="2026-13-01")
    assert not (tmp_path / "o").exists()
    (tmp_path / "o.parquet").write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match="o.parquet' is a file, not a directory"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path), str(tmp_path / "o.parquet")))
    with pytest.raises(ConfigError, match="cannot open 's3a://bucket/avatars': .*S3AFileSystem not found; .*hadoop-aws"):
        run_hash_job(spark, HashJobConfig("avatars", "s3a://bucket/avatars", str(tmp_path / "o")))
    with pytest.raises(ConfigError, match="is a file; pass the directory that holds the avatar images"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path / "o.parquet"), str(tmp_path / "o")))
    (tmp_path / "empty" / "sub").mkdir(parents=True)  # as an unmounted share looks
    with pytest.raises(ConfigError, match="holds no files .* check that it is mounted"):
        run_hash_job(spark, HashJobConfig("avatars", str(tmp_path / "empty"), str(tmp_path / "o")))
    # --previous must be the hash job's output, not (say) the cluster job's.
    not_hashes = tmp_path / "clusters" / "run_date=2025-12-31"
    not_hashes.mkdir(parents=True)
    pd.DataFrame({"cluster_id": ["c"], "account_id": ["a"]}).to_parquet(not_hashes / "part.parquet")
    with pytest.raises(ConfigError, match="--previous .* is not the output of jobs/hash_all.py: it has no column "
                                          "model_version, content_sha256"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o"),
                                          run_date="2026-01-01", previous=str(tmp_path / "clusters")))
    assert not (tmp_path / "o").exists()
    pd.DataFrame({"account_id": pd.Series([], dtype=str), "path": pd.Series([], dtype=str)}).to_csv(
        tmp_path / "none.csv", index=False)
    with pytest.raises(ConfigError, match="none.csv' has no rows"):
        run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "none.csv"), str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.fixture(params=["python", "spark"])
def local_reader(spark, request: pytest.FixtureRequest) -> Iterator[str]:  # noqa: ANN001
    """Run a test with local files read by the Python workers (default) and by Spark's binaryFile scan."""
    from silse_spark.sources import LOCAL_READER_CONF

    spark.conf.set(LOCAL_READER_CONF, request.param)
    yield request.param
    spark.conf.unset(LOCAL_READER_CONF)


def test_unreadable_entries_and_odd_names_keep_their_rows(
    spark, demo_avatar_paths: list[Path], tmp_path: Path, local_reader: str  # noqa: ANN001
) -> None:
    from silse_spark.sources import NOT_UTF8_NAME

    root = tmp_path / "in"
    root.mkdir()
    odd = ("sp ace%20", "ünï", "q#?", "line\nbreak", 'quo"te,comma', "back\\slash", "tab\there")
    for stem in odd:
        shutil.copy(demo_avatar_paths[3], root / f"{stem}.png")
    # A name that is not UTF-8 (Latin-1 bytes, as an old FTP upload may leave): Hadoop's listing skips it.
    shutil.copy(demo_avatar_paths[3], os.path.join(os.fsencode(root), b"caf\xe9.png"))
    (root / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "zero.png").write_bytes(b"")
    (tmp_path / "shard").mkdir()  # a folder linked into the tree is followed; a link back up does not loop
    shutil.copy(demo_avatar_paths[3], tmp_path / "shard" / "in_linked_folder.png")
    (root / "shard").symlink_to(tmp_path / "shard")
    (tmp_path / "shard" / "back_up").symlink_to(root)
    run_hash_job(spark, HashJobConfig("avatars", str(root), str(tmp_path / "o"), run_date="2026-01-01"))
    rows = read_partition(spark, tmp_path / "o", "2026-01-01").set_index("account_id")
    not_utf8 = "ok" if local_reader == "python" else "read_error"
    assert rows.status.to_dict() == {
        "dangling": "read_error", "zero": "empty", "caf\\xe9": not_utf8, "in_linked_folder": "ok",
        **{stem: "ok" for stem in odd}
    }
    assert rows.loc["in_linked_folder", "path"] == str(root / "shard" / "in_linked_folder.png")
    assert rows.loc["ünï", "path"] == str(root / "ünï.png")
    assert rows.loc["line\nbreak", "path"] == str(root / "line\nbreak.png")
    assert rows.loc["caf\\xe9", "path"] == str(root) + "/caf\\xe9.png"
    assert rows.loc[list(odd), "twin_value"].nunique() == 1
    if local_reader == "spark":
        assert rows.loc["caf\\xe9", "error"] == NOT_UTF8_NAME
    else:
        assert rows.loc["caf\\xe9", "twin_value"] == rows.loc["ünï", "twin_value"]


def test_manifest_rows_without_path_or_account_keep_their_rows(
    spark, demo_avatar_paths: list[Path], tmp_path: Path, local_reader: str  # noqa: ANN001
) -> None:
    from silse_spark.hashing import NO_ACCOUNT_ERROR
    from silse_spark.sources import NO_PATH

    odd = tmp_path / 'a "quoted", two-line\nname.png'
    shutil.copy(demo_avatar_paths[4], odd)
    shutil.copy(demo_avatar_paths[5], tmp_path / "plain.png")
    # As Python's csv module, pandas and spreadsheets write it: the odd path quoted, its quotes doubled.
    pd.DataFrame({"account_id": ["odd", "no_path", None, " ", "plain"],
                  "path": [str(odd), None, str(tmp_path / "plain.png"), str(odd), str(tmp_path / "plain.png")]},
                 ).to_csv(tmp_path / "m.csv", index=False)
    run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o"), run_date="2026-01-01"))
    rows = read_partition(spark, tmp_path / "o", "2026-01-01")
    assert len(rows) == 5
    by_id = rows[rows.account_id.notna()].set_index("account_id")
    assert by_id.status.to_dict() == {"odd": "ok", "no_path": "read_error", " ": "no_account_id", "plain": "ok"}
    assert by_id.loc["odd", "path"] == str(odd)
    if local_reader == "python":
        assert by_id.loc["no_path", "error"] == NO_PATH
    nameless = rows[rows.account_id.isna()].iloc[0]
    assert (nameless.status, nameless.error, nameless.twin_value) == ("no_account_id", NO_ACCOUNT_ERROR, None)
    assert by_id.loc[" ", "error"] == NO_ACCOUNT_ERROR and by_id.loc[" ", "content_sha256"] is None

    # Next night, incremental: the rows without an account name files hashed last night; still no code for them.
    run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o"), run_date="2026-01-02",
                                      previous=str(tmp_path / "o")))
    night = read_partition(spark, tmp_path / "o", "2026-01-02")
    assert sorted(night.status) == sorted(rows.status)
    assert set(night[night.account_id.isna() | (night.account_id == " ")].status) == {"no_account_id"}


def test_file_named_by_many_accounts_is_read_once_and_every_account_gets_its_code(
    spark, demo_avatar_paths: list[Path], tmp_path: Path, local_reader: str  # noqa: ANN001
) -> None:
    """A default avatar most accounts point at: its bytes travel once, yet every account row gets the code."""
    default, own = tmp_path / "default.png", tmp_path / "own.png"
    shutil.copy(demo_avatar_paths[6], default)
    shutil.copy(demo_avatar_paths[7], own)
    # The first row naming the default has no account (it is not read for it), a missing file is named twice.
    ids = [None, *[f"u{i}" for i in range(40)]]
    paths = [default if i % 4 else own for i in range(41)]
    paths[10] = paths[20] = tmp_path / "gone.png"
    pd.DataFrame({"account_id": ids, "path": [str(p) for p in paths]}).to_csv(tmp_path / "m.csv", index=False)
    from silse_spark.sources import READ_PARTITIONS_CONF

    with spark_conf(spark, READ_PARTITIONS_CONF, "1"):  # one task, so "once per task" is once
        summary = run_hash_job(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o"),
                                                    run_date="2026-01-01"))
    if local_reader == "python":
        assert summary.files_read == 3  # 41 rows, 3 files
    else:  # binaryFile scans each file once; its bytes ride on one row, the first with an account
        from silse_spark.sources import read_manifest

        carried = read_manifest(spark, str(tmp_path / "m.csv")).where("content IS NOT NULL").toPandas()
        assert sorted(carried.path) == sorted([str(default), str(own)])
        assert carried.account_id.notna().all()
    rows = read_partition(spark, tmp_path / "o", "2026-01-01")
    assert len(rows) == 41 and summary.inferred == 2
    named = rows[rows.account_id.notna()].set_index("account_id")
    expected = {str(default): "ok", str(own): "ok", str(tmp_path / "gone.png"): "read_error"}
    assert named.status.to_dict() == {f"u{i}": expected[str(paths[i + 1])] for i in range(40)}
    for path, codes in named[named.status == "ok"].groupby("path").twin_value:
        pixels = decode_avatar(Path(path).read_bytes()).pixels
        assert set(codes) == {twin_values_from_outputs(cached_hasher().outputs(pixels[None]))[0][0]}
    assert named[named.status == "read_error"].error.str.startswith("file could not be read").all()
    assert rows[rows.account_id.isna()].status.tolist() == ["no_account_id"]


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


def _copy_with_time(src: Path, dst: Path, mtime: float) -> None:
    shutil.copy(src, dst)
    os.utime(dst, (mtime, mtime))


def test_incremental_run_reads_only_new_and_changed_files(spark, demo_avatar_paths: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    root, out = tmp_path / "in", tmp_path / "hashes"
    root.mkdir()
    for i in range(6):
        _copy_with_time(demo_avatar_paths[i], root / f"u{i}.png", 1_700_000_000 + i)
    (root / "bad.png").write_bytes(b"not an image")
    run_hash_job(spark, HashJobConfig("avatars", str(root), str(out), run_date="2026-01-01"))
    first = read_partition(spark, out, "2026-01-01").set_index("account_id")
    assert first.file_size.loc["u0"] == demo_avatar_paths[0].stat().st_size
    assert first.file_modified.loc["u0"] == pd.Timestamp(1_700_000_000, unit="s")

    # u1: other bytes of the same size with the old time put back: the quick check cannot see it, so its old
    # code stands (proof the file was not read); --reread-all sees it. u2: touched, same bytes: read again,
    # code reused by content. u3: replaced by another image. u4: deleted. new: a new account.
    original_u1 = (root / "u1.png").read_bytes()
    (root / "u1.png").write_bytes(bytes(b ^ 0xFF for b in original_u1))
    os.utime(root / "u1.png", (1_700_000_001, 1_700_000_001))
    os.utime(root / "u2.png", (1_800_000_000, 1_800_000_000))
    _copy_with_time(demo_avatar_paths[10], root / "u3.png", 1_800_000_000)
    (root / "u4.png").unlink()
    shutil.copy(demo_avatar_paths[11], root / "new.png")

    summary = run_hash_job(spark, HashJobConfig("avatars", str(root), str(out), run_date="2026-01-02",
                                                previous=str(out)))
    second = read_partition(spark, out, "2026-01-02").set_index("account_id")
    assert sorted(second.index) == ["bad", "new", "u0", "u1", "u2", "u3", "u5"]
    assert second.status.to_dict() == {"bad": "decode_error", **{k: "ok" for k in ("new", "u0", "u1", "u2",
                                                                                     "u3", "u5")}}
    for same in ("u0", "u1", "u2", "u5"):  # code and hashed_at taken over (u2 by content, the rest by metadata)
        assert second.loc[same, ["content_sha256", "twin_value", "hashed_at"]].tolist() == \
            first.loc[same, ["content_sha256", "twin_value", "hashed_at"]].tolist()
    assert second.file_modified.loc["u2"] == pd.Timestamp(1_800_000_000, unit="s")
    assert second.content_sha256.loc["u3"] != first.content_sha256.loc["u3"]
    assert second.hashed_at.loc["u3"] > first.hashed_at.loc["u3"]
    assert summary.reused == 4 and summary.inferred == 3  # u3, new and bad were decoded
    assert summary.files_read == 4  # u2 (touched), u3, new and bad; the rest passed the quick check unread

    # A full rerun of the same date agrees on every row except u1, whose bytes changed behind the quick check.
    run_hash_job(spark, HashJobConfig("avatars", str(root), str(out), run_date="2026-01-02", previous=str(out),
                                      reuse_unchanged_files=False))
    full = read_partition(spark, out, "2026-01-02").set_index("account_id")
    cols = ["path", "content_sha256", "twin_value", "status", "file_size", "file_modified"]
    pd.testing.assert_frame_equal(full.drop(index="u1")[cols], second.drop(index="u1")[cols])
    assert full.content_sha256.loc["u1"] != second.content_sha256.loc["u1"]


def test_local_reader_gives_each_unreadable_file_a_status(tmp_path: Path) -> None:
    from silse_spark.sources import _read_local_file

    (tmp_path / "ok.png").write_bytes(b"12345")
    (tmp_path / "empty.png").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block: must be refused, not read
    assert _read_local_file(str(tmp_path / "ok.png"), 10) == (b"12345", None, None)
    assert _read_local_file(str(tmp_path / "ok.png"), 4)[1:] == (
        "read_error", "file could not be read: larger than spark.sql.sources.binaryFile.maxLength (4 bytes)")
    assert _read_local_file(str(tmp_path / "empty.png"), 10) == (None, "empty", "file is empty (0 bytes)")
    assert _read_local_file(str(tmp_path / "pipe.png"), 10)[2] == "file could not be read: not a regular file"
    assert _read_local_file(str(tmp_path), 10)[2] == "file could not be read: not a regular file"
    assert _read_local_file(str(tmp_path / "no.png"), 10)[2] == "file could not be read: No such file or directory"


def test_local_reader_hands_over_large_batches_in_bounded_pieces(tmp_path: Path) -> None:
    from silse_spark.sources import TaskReader, _read_batch

    for name, size in (("a", 600), ("b", 300), ("c", 500), ("d", 10)):
        (tmp_path / f"{name}.png").write_bytes(bytes([len(name)]) * size)
    batch = pd.DataFrame({"account_id": list("abcdx"), "path": list("abcdx"),
                          "_key": [f"file:{tmp_path / n}.png" for n in "abcdx"],
                          "file_size": [600, 300, 500, 10, None],
                          "file_modified": pd.to_datetime([0, 1, 2, 3, None], unit="s"),
                          "_no_account": [False] * 5},
                         index=[10, 11, 12, 13, 14])
    pieces = list(_read_batch(batch, TaskReader(max_length=1000), chunk_bytes=800))
    assert [list(p.account_id) for p in pieces] == [["a", "b"], ["c", "d", "x"]]
    whole = pd.concat(pieces, ignore_index=True)
    assert whole.content.map(lambda c: len(c or b"")).tolist() == [600, 300, 500, 10, 0]
    assert whole.read_status.tolist() == [None, None, None, None, "read_error"]
    assert whole.file_size.tolist()[:4] == [600, 300, 500, 10] and pd.isna(whole.file_size.iloc[4])
    assert whole.file_modified.iloc[2] == pd.Timestamp(2, unit="s")


def test_local_reader_reads_a_file_named_by_many_rows_once(tmp_path: Path) -> None:
    """A default avatar named by many accounts: its bytes travel once, every row gets its digest and status."""
    import hashlib

    from silse_spark.sources import TaskReader, _read_batch

    (tmp_path / "default.png").write_bytes(b"default" * 100)
    (tmp_path / "own.png").write_bytes(b"own" * 100)
    keys = ["default", "own", "default", "missing", "default", "missing", "default"]
    batch = pd.DataFrame({"account_id": [f"u{i}" for i in range(7)], "path": keys,
                          "_key": [f"file:{tmp_path / k}.png" for k in keys],
                          "file_size": [1] * 7, "file_modified": pd.to_datetime([0] * 7, unit="s"),
                          "_no_account": [True, False, False, False, False, False, False]})
    reader = TaskReader(max_length=10_000)
    # Two Arrow batches of one task share the reader: "default" is read by u2 (u0 has no account, so it is
    # not read for u0), then only named again.
    rows = pd.concat([*_read_batch(batch.iloc[:4], reader), *_read_batch(batch.iloc[4:], reader)],
                     ignore_index=True)
    assert reader.opened == 3  # default, own, missing
    digest = hashlib.sha256(b"default" * 100).hexdigest()
    assert rows.content.map(lambda c: c is not None).tolist() == [False, True, True, False, False, False, False]
    assert rows.content_sha256.tolist() == [None, hashlib.sha256(b"own" * 100).hexdigest(), digest, None,
                                            digest, None, digest]
    assert rows.read_status.tolist() == [None, None, None, "read_error", None, "read_error", None]
    assert rows.read_error[3] == rows.read_error[5] == "file could not be read: No such file or directory"
    # The cache is bounded: with room for one file, alternating names are read every time.
    small = TaskReader(max_length=10_000, max_files=1)
    for key in keys[1:5]:
        small.read(f"file:{tmp_path / key}.png")
    assert small.opened == 4


def test_local_files_are_examined_and_read_by_many_tasks(
    spark, demo_avatar_paths: list[Path], tmp_path: Path  # noqa: ANN001
) -> None:
    """A manifest under Spark's split size is one partition: read as it came, every stat and open of the
    night ran in one task on one core. Rows are dealt over spark.silse.readPartitions tasks (default 4 x cores)."""
    from silse_spark.sources import READ_PARTITIONS_CONF, read_listing, read_local_contents

    pd.DataFrame({"account_id": [f"u{i}" for i in range(40)],
                  "path": [str(demo_avatar_paths[i % 4]) for i in range(40)]}).to_csv(tmp_path / "m.csv", index=False)
    config = HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o"))
    with spark_conf(spark, READ_PARTITIONS_CONF, None):  # the job's default
        listed = read_listing(spark, config)
        assert listed is not None and listed[1]
        assert listed[0].rdd.getNumPartitions() == 4 * spark.sparkContext.defaultParallelism
    with spark_conf(spark, READ_PARTITIONS_CONF, "3"):
        one_task = listed[0].coalesce(1)  # as the incremental run's rows to read can come out of a join
        read = read_local_contents(spark, one_task)
        assert read.rdd.getNumPartitions() == 3
        rows = read.toPandas()
    assert sorted(rows.account_id) == sorted(f"u{i}" for i in range(40)) and rows.read_status.isna().all()
    assert rows.content_sha256.nunique() == 4


def test_no_task_runs_two_python_udfs_back_to_back(spark, demo_avatar_paths: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    """Each Python UDF in a task holds a Python worker: a stat and a read in one task started 4 workers on
    2 cores, and the inference stage then loaded the model in all 4. A shuffle separates them."""
    from silse_spark.sources import read_accounts

    pd.DataFrame({"account_id": ["a", "b"], "path": [str(p) for p in demo_avatar_paths[:2]]}).to_csv(
        tmp_path / "m.csv", index=False)
    accounts = read_accounts(spark, HashJobConfig("manifest", str(tmp_path / "m.csv"), str(tmp_path / "o")))
    plan = accounts._jdf.queryExecution().executedPlan().toString()  # type: ignore[operator]
    nodes = [n for line in plan.splitlines() for n in ("MapInPandas", "ArrowEvalPython", "Exchange") if n in line]
    python = [i for i, n in enumerate(nodes) if n != "Exchange"]
    assert len(python) == 2, plan  # the stat, then the read
    assert all(b - a > 1 for a, b in zip(python, python[1:])), plan


def test_inference_keeps_its_partitions_however_the_rows_came(spark) -> None:  # noqa: ANN001
    """Asked for as many partitions as spark.sql.shuffle.partitions (8 = 4 x 2 cores, the defaults), a
    repartition after the de-duplication was folded into the aggregation's shuffle, which adaptive execution
    coalesces by bytes: the distinct images of 2,000 small files ran as 3 tasks on 2 cores, here as 1."""
    from pyspark.sql import functions as F

    from silse_spark.hashing import contents_to_infer

    partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    rows = (spark.range(0, 400, numPartitions=8)
            .select((F.col("id") % 100).cast("string").alias("content_sha256"),
                    F.concat(F.lit("x" * 100), F.col("id").cast("string")).cast("binary").alias("content")))

    def tasks(frame):  # type: ignore[no-untyped-def]  # the partitions that run, after adaptive execution
        return frame.select(F.spark_partition_id().alias("p")).distinct().count()

    assert partitions >= 2 and tasks(rows.dropDuplicates(["content_sha256"]).repartition(partitions, "content_sha256")) == 1
    contents = contents_to_infer(rows, None, partitions)
    assert tasks(contents) == partitions and contents.count() == 100
    known = spark.createDataFrame([(str(i),) for i in range(50)], "content_sha256 string")
    rest = contents_to_infer(rows, known, partitions)
    assert tasks(rest) == partitions and sorted(int(r.content_sha256) for r in rest.collect()) == list(range(50, 100))


def test_local_manifest_is_examined_by_the_executors_not_by_listing_folders(
    spark, demo_avatar_paths: list[Path], tmp_path: Path  # noqa: ANN001
) -> None:
    """Sizes and times of a local manifest's files come from a stat per row: no folder is listed."""
    from silse_spark.sources import read_listing

    rows = []
    for i in range(30):  # one folder per account, as sharded stores keep avatars
        folder = tmp_path / f"shard{i % 3}" / f"account{i}"
        folder.mkdir(parents=True)
        shutil.copy(demo_avatar_paths[i % 5], folder / "avatar.png")
        os.utime(folder / "avatar.png", ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_123_456_789 + i * 10**9))
        rows.append((f"a{i}", str(folder / "avatar.png")))
    rows += [("gone", str(tmp_path / "missing.png")), ("folder", str(tmp_path / "shard0"))]
    pd.DataFrame(rows, columns=["account_id", "path"]).to_csv(tmp_path / "manifest.csv", index=False)
    listing, local = read_listing(spark, HashJobConfig("manifest", str(tmp_path / "manifest.csv"), str(tmp_path / "o")))
    assert local
    assert "binaryFile" not in listing._jdf.queryExecution().executedPlan().toString()
    got = listing.toPandas().set_index("account_id")
    for account, path in rows[:30]:
        st = os.stat(path)
        assert got.file_size.loc[account] == st.st_size
        assert got.file_modified.loc[account] == pd.Timestamp(st.st_mtime_ns // 1_000_000, unit="ms")
    assert pd.isna(got.file_size.loc["gone"]) and pd.isna(got.file_modified.loc["gone"])
    assert got.path.loc["a0"] == rows[0][1] and got._key.loc["a0"] == "file:" + rows[0][1]
