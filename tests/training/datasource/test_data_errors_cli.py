"""What the data commands say about a bad data file, through the real CLI: one line on stderr
naming the file, the row and the column, a non-zero exit, no traceback; and what a mostly
numeric column with a few bad values does (a warning, not an error)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.errors import DatasourceError
from onyxserve.training.fit.train import TrainingWarning, train_model

from tests.training.cli_run import assert_one_line_refusal, onyxserve


def lengths(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    length = np.round(rng.uniform(12.0, 18.6, n), 1)
    return pd.DataFrame(
        {"length": length.astype(str), "width": np.round(rng.uniform(1, 3, n), 2), "label": (length > 15).astype(int)}
    )


def test_datasource_create_names_the_row_of_a_malformed_file(tmp_path):
    path = tmp_path / "ragged.csv"
    lengths().to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines.insert(5, "")  # a blank line: skipped, not counted as a row
    lines[200] += ",7"  # data row 199 (line 201, after the blank line)
    path.write_text("\n".join(lines) + "\n")
    line = assert_one_line_refusal(
        onyxserve("datasource", "create", path, "--out", tmp_path / "r.json"),
        str(path), "row 199", "expected 3 fields, found 4",
    )
    assert line.startswith("onyxserve datasource: ")
    latin = tmp_path / "latin.csv"
    frame = lengths()
    frame["city"] = "lima"
    frame.loc[120, "city"] = "bogotá"
    frame.to_csv(latin, index=False, encoding="latin-1")
    assert_one_line_refusal(
        onyxserve("datasource", "create", latin, "--out", tmp_path / "l.json"),
        str(latin), "row 121", "column 'city'", "not UTF-8 text: b'bogot\\xe1'",
    )
    jsonl = tmp_path / "nested.jsonl"
    jsonl.write_text('{"a": 1, "y": 0}\n{"a": 2, "y": 1}\n{"a": {"b": 3}, "y": 0}\n')
    assert_one_line_refusal(
        onyxserve("datasource", "create", jsonl, "--out", tmp_path / "n.json"),
        str(jsonl), "row 3", "column 'a'", "nested JSON value",
    )
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"attributes": [{"attributeName": "lenght", "attributeType": "NUMERIC"}]}))
    ok = tmp_path / "ok.csv"
    lengths().to_csv(ok, index=False)
    assert_one_line_refusal(
        onyxserve("datasource", "create", ok, "--schema", schema, "--out", tmp_path / "s.json"),
        str(ok), "column 'lenght'", "its columns are: label, length, width",
    )


def test_datasource_create_warns_about_a_mostly_numeric_column(tmp_path):
    frame = lengths()
    frame.loc[41, "length"] = "12,5mm"
    path = tmp_path / "lengths.csv"
    frame.to_csv(path, index=False)
    done = onyxserve("datasource", "create", path, "--target", "label", "--out", tmp_path / "l.json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "length  NUMERIC*" in done.stdout
    assert "1 warning:" in done.stdout and "column 'length': inferred NUMERIC" in done.stdout
    assert "row 42 '12,5mm'" in done.stdout
    assert "row 42, column 'length': not a finite number: '12,5mm'" in done.stdout  # a violation
    record = json.loads((tmp_path / "l.json").read_text())
    assert record["warnings"] and record["schema"]["attributes"][0]["attributeType"] == "NUMERIC"
    # train sees the value as missing, and says so (one warning line, exit 0)
    done = onyxserve("train", tmp_path / "l.json", "--algorithm", "linear", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"warning: {path}, column 'length': 1 value of datasource 'lengths' is a schema violation" in done.stderr
    assert "(first: row 42, not a finite number: '12,5mm'); trained on as missing" in done.stderr


def test_split_and_train_refuse_changed_or_missing_data_naming_the_file(tmp_path):
    path = tmp_path / "lengths.csv"
    lengths().to_csv(path, index=False)
    record = tmp_path / "l.json"
    assert onyxserve("datasource", "create", path, "--target", "label", "--out", record).returncode == 0
    split = '{"splitting": {"percentBegin": 0, "percentEnd": 50}}'
    frame = lengths()
    frame.loc[41, "length"] = "12,5mm"  # rows checked at creation: a later edit is a change
    frame.to_csv(path, index=False)
    for args in (("datasource", "split", record, "--rearrangement", split, "--out", tmp_path / "s.csv"),
                 ("train", record, "--algorithm", "linear", "--no-progress")):
        assert_one_line_refusal(onyxserve(*args), str(path), "the data changed since datasource 'lengths'")
    path.unlink()
    for args in (("datasource", "split", record, "--rearrangement", split, "--out", tmp_path / "s.csv"),
                 ("train", record, "--algorithm", "linear", "--no-progress")):
        assert_one_line_refusal(onyxserve(*args), str(path), "no such file")


def test_train_through_the_api_warns_with_the_row(tmp_path):
    frame = lengths()
    frame.loc[[41, 99], "length"] = ["12,5mm", "?mm"]
    path = tmp_path / "lengths.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(UserWarning):
        ds = create_datasource(path, target="label")
    with pytest.warns(TrainingWarning, match=r"column 'length': 2 values .* \(first: row 42, not a finite number: '12,5mm'\)"):
        result = train_model(ds, algorithm="linear", progress=False)
    assert any("trained on as missing" in w for w in result.warnings)


def test_s3_and_sql_name_the_uri(tmp_path):
    # no S3 server here (tests/training/datasource/test_s3_sql.py has one): SQL only
    import sqlite3

    db = tmp_path / "t.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (length REAL, label INTEGER)")
        rows = [(12.0 + i / 10, i % 2) for i in range(100)]
        rows[30] = ("12,5mm", 0)  # SQLite keeps text in a REAL column
        con.executemany("INSERT INTO t VALUES (?, ?)", rows)
    with pytest.warns(UserWarning, match=r"column 'length': inferred NUMERIC, but 1 of its 100 values is not a number: row 31 '12,5mm'"):
        ds = create_datasource(f"sqlite:///{db}", query="SELECT * FROM t", target="label")
    assert ds.violations["rows"] == [{"row": 31, "column": "length", "reason": "not a finite number: '12,5mm'"}]
    with pytest.raises(DatasourceError):
        create_datasource(f"sqlite:///{db}", query="SELECT nope FROM t")
