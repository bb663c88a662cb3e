"""Inference of a column that is mostly numbers: NUMERIC (or BINARY) with the other values as
violations at 95% and above, CATEGORICAL with a warning below; the warning names the column,
the count, the first values with their rows and the schema entry that overrides it."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.datasource.record import create_datasource, load_datasource, read_frames
from onyxserve.training.datasource.schema import AttributeType as T
from onyxserve.training.errors import DatasourceWarning


def grid_lengths(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A measurement on a 0.1 grid (67 distinct values, as in issue 11) and a 0/1 label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "length": np.round(rng.uniform(12.0, 18.6, n), 1).astype(str),
            "label": rng.integers(0, 2, n).astype(str),
        }
    )


def snippet(note: str) -> dict:
    """The schema JSON a warning ends with."""
    return json.loads(note[note.index('{"attributes"') :])


def test_one_bad_value_keeps_a_numeric_column_numeric_and_says_where(tmp_path):
    frame = grid_lengths()
    frame.loc[41, "length"] = "12,5mm"
    path = tmp_path / "lengths.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(DatasourceWarning) as caught:
        ds = create_datasource(path, target="label")
    assert ds.schema.attributes["length"] is T.NUMERIC  # was CATEGORICAL with 67 categories
    assert "399 of 400 values (99.8%) are numbers" in ds.inferred["length"]
    (note,) = ds.warnings
    assert [str(w.message) for w in caught] == [note]
    assert note.startswith("column 'length': inferred NUMERIC, but 1 of its 400 values is not a number")
    assert "row 42 '12,5mm'" in note
    assert snippet(note) == {"attributes": [{"attributeName": "length", "attributeType": "CATEGORICAL"}]}
    # the value is a violation, like a declared NUMERIC's, and read back as missing
    assert ds.violations["rows"] == [{"row": 42, "column": "length", "reason": "not a finite number: '12,5mm'"}]
    stats = ds.statistics["length"]
    assert (stats["count"], stats["invalid"]) == (399, 1)
    assert stats["mean"] == pytest.approx(pd.to_numeric(frame["length"], errors="coerce").mean())
    back = pd.concat(list(read_frames(ds)))
    assert np.isnan(back["length"].iloc[41]) and back["length"].notna().sum() == 399
    summary = ds.summary()
    assert "1 warning:" in summary and "row 42 '12,5mm'" in summary
    # the record keeps the warning; a record written before warnings existed loads with none
    again = load_datasource(ds.save(tmp_path / "l.datasource.json"))
    assert again.warnings == ds.warnings
    record = json.loads((tmp_path / "l.datasource.json").read_text())
    del record["warnings"]
    (tmp_path / "old.datasource.json").write_text(json.dumps(record))
    assert load_datasource(tmp_path / "old.datasource.json").warnings == ()


def test_the_schema_entry_the_warning_shows_overrides_it(tmp_path):
    frame = grid_lengths()
    frame.loc[[3, 50, 51, 52, 53, 54, 60], "length"] = ["n.a.", "x1", "x2", "x3", "x4", "x5", "x6"]
    path = tmp_path / "lengths.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(DatasourceWarning, match="7 of its 400 values are not numbers"):
        ds = create_datasource(path)
    (note,) = ds.warnings
    # at most five values, with their 1-based data rows (the header not counted)
    assert re.findall(r"row (\d+) '([^']*)'", note) == [
        ("4", "n.a."), ("51", "x1"), ("52", "x2"), ("53", "x3"), ("54", "x4")
    ]
    assert "(the first 5)" in note and ds.violations["count"] == 7
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(snippet(note)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared: no guessing, no warning
        declared = create_datasource(path, schema=schema)
    assert declared.schema.attributes["length"] is T.CATEGORICAL and declared.warnings == ()


def test_below_95_percent_stays_categorical_with_a_warning_suggesting_numeric(tmp_path):
    sizes = pd.DataFrame({"size": [str(i % 40) for i in range(100)], "n": range(100)})
    sizes.loc[::5, "size"] = "XL"  # 20% not numbers: a code, not a measurement
    path = tmp_path / "sizes.csv"
    sizes.to_csv(path, index=False)
    with pytest.warns(DatasourceWarning, match=r"inferred CATEGORICAL, though 80 of its 100 values \(80.0%\)"):
        ds = create_datasource(path)
    assert ds.schema.attributes["size"] is T.CATEGORICAL and ds.violations["count"] == 0
    (note,) = ds.warnings
    assert "20 are not: row 1 'XL', row 6 'XL'" in note
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(snippet(note)))
    numeric = create_datasource(path, schema=schema)
    assert numeric.schema.attributes["size"] is T.NUMERIC and numeric.violations["count"] == 20


@pytest.mark.parametrize("bad, expected", [(1, T.NUMERIC), (2, T.CATEGORICAL)])
def test_the_threshold_is_95_percent(tmp_path, bad, expected):
    values = [str(i) for i in range(20)]
    values[:bad] = ["?x"] * bad  # 19 of 20 numbers is 95%; 18 of 20 is not
    path = tmp_path / "t.csv"
    pd.DataFrame({"v": values, "w": range(20)}).to_csv(path, index=False)
    with pytest.warns(DatasourceWarning):
        assert create_datasource(path).schema.attributes["v"] is expected


def test_a_0_1_column_with_a_stray_value_is_binary(tmp_path):
    frame = grid_lengths()
    frame.loc[10, "label"] = "O"  # a letter O typed for a zero
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(DatasourceWarning, match="1 of its 400 values is not 0/1: row 11 'O'"):
        ds = create_datasource(path, target="label")
    assert ds.schema.attributes["label"] is T.BINARY and ds.task == "binary"  # not regression
    assert ds.violations["rows"][0]["reason"].startswith("not a binary value")
    assert np.isnan(pd.concat(list(read_frames(ds)))["label"].iloc[10])


def test_results_do_not_depend_on_the_chunk_size(tmp_path):
    frame = grid_lengths(1000)
    frame.loc[[5, 700, 999], "length"] = ["a", "b", "c"]
    path = tmp_path / "l.csv"
    frame.to_csv(path, index=False)
    with pytest.warns(DatasourceWarning):
        whole = create_datasource(path, chunk_rows=10_000)
    with pytest.warns(DatasourceWarning):
        small = create_datasource(path, chunk_rows=3)
    assert small.warnings == whole.warnings and small.violations == whole.violations


def test_a_headerless_file_gets_the_whole_attribute_list(tmp_path):
    frame = grid_lengths()
    frame.loc[41, "length"] = "12,5mm"
    path = tmp_path / "nohdr.csv"
    frame.to_csv(path, index=False, header=False)
    with pytest.warns(DatasourceWarning):
        ds = create_datasource(path)
    (note,) = ds.warnings
    # without a header the schema names the columns by position: every one, in file order
    entry = snippet(note)
    assert entry == {
        "attributes": [
            {"attributeName": "Var1", "attributeType": "CATEGORICAL"},
            {"attributeName": "Var2", "attributeType": "BINARY"},
        ]
    }
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(entry))
    assert create_datasource(path, schema=schema).schema.attributes["Var1"] is T.CATEGORICAL


def test_json_lines_and_parquet_columns_of_mixed_values(tmp_path):
    frame = grid_lengths(200)
    records = [{"length": float(v), "label": int(l)} for v, l in zip(frame["length"], frame["label"])]
    records[7]["length"] = "12,5mm"
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.warns(DatasourceWarning, match="row 8 '12,5mm'"):
        assert create_datasource(path).schema.attributes["length"] is T.NUMERIC
    pd.DataFrame(records).astype({"length": str}).to_parquet(tmp_path / "l.parquet")
    with pytest.warns(DatasourceWarning, match="row 8 '12,5mm'"):
        assert create_datasource(tmp_path / "l.parquet").schema.attributes["length"] is T.NUMERIC
