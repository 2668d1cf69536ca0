"""The ``silse`` command line: hash, compare, match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from silse_spark import cli
from silse_spark.codes import int_from_twin_value, twin_value_from_int
from silse_spark.model import default_model_version

IMAGES = Path(__file__).resolve().parent / "data" / "hostile"


def test_hash_prints_codes_and_flags_bad_files(standin_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["hash", str(IMAGES / "rgb.png"), str(IMAGES / "rgb_as_jpg_name.jpg"), str(IMAGES / "empty.png")])
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rc == 1  # one file could not be hashed
    assert lines[0][1] == lines[1][1] and len(lines[0][1]) == 12  # same pixels, same code
    assert lines[2][1] == "-" and lines[2][2].startswith("empty")


def test_hash_walks_directories_in_order_and_in_bounded_batches(
    standin_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["rgb.png", "grey.png", "upright.jpg", "empty.png", "alpha.png"]
    (tmp_path / "b" / "inner").mkdir(parents=True)
    for i, name in enumerate(names):
        shutil.copy(IMAGES / name, tmp_path / ("b/inner" if i % 2 else "b") / f"{i}_{name}")
    single = tmp_path / "a.png"
    shutil.copy(IMAGES / "wide.png", single)
    rc = cli.main(["hash", str(single), str(tmp_path / "b")])
    lines = [line.split("	") for line in capsys.readouterr().out.splitlines()]
    assert rc == 1  # the empty file
    expected = [str(single), *(str(tmp_path / "b" / f"{i}_{n}") for i, n in enumerate(names) if not i % 2),
                *(str(tmp_path / "b" / "inner" / f"{i}_{n}") for i, n in enumerate(names) if i % 2)]
    assert [line[0] for line in lines] == expected  # a folder's files before its subfolders', each sorted
    # Three at a time gives what one batch gives: the model's batch does not change a code.
    paths = [line[0] for line in lines]
    assert list(cli.iter_hash_files(paths, batch=3)) == cli.hash_files(paths)
    assert [(p, c or "-", s) for p, c, s in cli.hash_files(paths)] == [tuple(line) for line in lines]


def test_compare_reports_distance_and_verdict(standin_models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", str(IMAGES / "rgb.png"), str(IMAGES / "rgb.png")]) == 0
    out = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert out["distance"] == "0" and out["verdict"].startswith("same image")


def test_match_finds_accounts_within_radius(standin_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [(_, code, _)] = cli.hash_files([str(IMAGES / "rgb.png")])
    assert code is not None
    base = int_from_twin_value(code)
    values = {"same": base, "one": base ^ 1, "two": base ^ 0b11000, "three": base ^ 0b111, "bad": None,
              "older_model": base}
    part = tmp_path / "hashes" / "run_date=2026-01-01"
    part.mkdir(parents=True)
    default = default_model_version()
    pd.DataFrame(
        {
            "account_id": list(values),
            "twin_value": [None if v is None else twin_value_from_int(v) for v in values.values()],
            "twin_bits": pd.array(list(values.values()), dtype="Int64"),
            "status": ["ok", "ok", "ok", "ok", "decode_error", "ok"],
            # The same code from another model version means nothing: it is left out, and said so.
            "model_version": [default] * 5 + ["silse-old"],
        }
    ).to_parquet(part / "part-0.parquet")
    # An earlier night lists the accounts again (and one more): only the latest night is searched by default.
    earlier = tmp_path / "hashes" / "run_date=2025-12-31"
    earlier.mkdir()
    pd.concat([pd.read_parquet(part / "part-0.parquet"),
               pd.DataFrame({"account_id": ["gone"], "twin_value": [code], "twin_bits": pd.array([base], dtype="Int64"),
                             "status": ["ok"], "model_version": [default]})]).to_parquet(earlier / "part-0.parquet")
    assert cli.main(["match", str(IMAGES / "rgb.png"), "--hashes", str(tmp_path / "hashes")]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "1 rows hashed by other model versions were not compared (silse-old: 1)" in captured.err
    assert "3 accounts within distance 2 on 2026-01-01" in lines[0]
    assert [line.split("\t") for line in lines[1:]] == [
        ["same", code, "0", "2026-01-01"], ["one", twin_value_from_int(base ^ 1), "1", "2026-01-01"],
        ["two", twin_value_from_int(base ^ 0b11000), "2", "2026-01-01"]
    ]
    assert cli.main(["match", str(IMAGES / "rgb.png"), "--hashes", str(tmp_path / "hashes"),
                     "--run-date", "2025-12-31"]) == 0
    assert "4 accounts within distance 2 on 2025-12-31" in capsys.readouterr().out
    assert cli.main(["match", str(IMAGES / "rgb.png"), "--hashes", str(tmp_path / "hashes"),
                     "--run-date", "2026-02-01"]) == 2
    assert "has no run_date=2026-02-01; it has 2 nights, 2025-12-31 to 2026-01-01" in capsys.readouterr().err


def test_clear_errors(standin_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", str(tmp_path / "missing.png"), str(IMAGES / "rgb.png")]) == 1
    assert "cannot hash" in capsys.readouterr().err
    assert cli.main(["match", str(IMAGES / "rgb.png"), "--hashes", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    shutil.copy(IMAGES / "rgb.png", tmp_path / "x.png")
    assert cli.main(["--model", "nope", "hash", str(tmp_path / "x.png")]) == 2
    assert "unknown model version" in capsys.readouterr().err


def test_models_lists_every_registered_version_and_marks_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from silse_spark.model import MODELS_DIR_ENV, PACKAGED_MODELS_DIR

    monkeypatch.setenv(MODELS_DIR_ENV, str(PACKAGED_MODELS_DIR))
    registry = json.loads((PACKAGED_MODELS_DIR / "registry.json").read_text())
    assert cli.main(["models"]) == 0
    header, *rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert header == ["version", "default", "architecture", "framing", "views", "weights"]
    assert sorted(row[0] for row in rows) == sorted(registry["models"])
    assert [row[0] for row in rows if row[1] == "yes"] == [registry["default"]]
    for version, _, architecture, framing, views, weights in rows:
        entry = registry["models"][version]
        assert (architecture, framing, weights) == (entry["architecture"], entry.get("framing", "none"), entry["weights"])
        assert views.split("+") == entry.get("views", ["identity"])


def test_models_verify_flags_every_version_whose_weights_changed(
    standin_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from silse_spark.model import MODELS_DIR_ENV

    models = tmp_path / "models"
    shutil.copytree(standin_models, models)
    registry = json.loads((models / "registry.json").read_text())
    [(name, entry)] = registry["models"].items()
    registry["models"]["same-weights-framed"] = {**entry, "framing": "moments"}  # two versions, one file
    (models / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setenv(MODELS_DIR_ENV, str(models))
    assert cli.main(["models", "--verify"]) == 0
    assert [line.split("\t")[-1] for line in capsys.readouterr().out.splitlines()[1:]] == ["ok", "ok"]

    weights = models / entry["weights"]
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit of the file changed
    assert cli.main(["models", "--verify"]) == 1
    verdicts = [line.split("\t")[-1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert len(verdicts) == 2 and all(v.startswith("FAILED") and entry["sha256"] in v for v in verdicts)
