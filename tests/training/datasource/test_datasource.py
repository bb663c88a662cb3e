"""Datasources from real files: formats, statistics, checksums, chunking, records and read errors."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.datasource.profile import QUANTILES
from onyxserve.training.datasource.record import create_datasource, load_datasource, read_frames
from onyxserve.training.errors import DatasourceError

from onyxserve.cli import main
from tests.training.datasource.ds_data import mixed, write

FORMATS = [".csv", ".jsonl", ".json", ".parquet"]
EXPECTED_TYPES = {
    "id": "CATEGORICAL",
    "amount": "NUMERIC",
    "count": "NUMERIC",
    "online": "BINARY",
    "merchant": "CATEGORICAL",
    "note": "TEXT",
    "fraud": "BINARY",
}


def same_stats(a: dict, b: dict) -> None:
    """Equal, except that merged means/stds may differ in the last bits."""
    assert a.keys() == b.keys()
    for name, stats in a.items():
        for key, value in stats.items():
            other = b[name][key]
            if isinstance(value, float):
                assert math.isclose(value, other, rel_tol=1e-12, abs_tol=1e-15), (name, key)
            else:
                assert value == other, (name, key)


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_gives_types_counts_stats_and_checksum(tmp_path, suffix):
    frame = mixed()
    path = write(frame, tmp_path / f"tx{suffix}")
    ds = create_datasource(path, target="fraud")
    assert (
        ds.data_format == {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}[suffix]
    )
    assert ds.row_count == len(frame)
    assert {k: v.value for k, v in ds.schema.attributes.items()} == EXPECTED_TYPES
    assert ds.checksum == hashlib.sha256(path.read_bytes()).hexdigest() and ds.checksum_of == "bytes"
    assert ds.task == "binary" and ds.violations["count"] == 0

    amount = frame["amount"].dropna()
    stats = ds.statistics["amount"]
    assert stats["count"] == len(amount) and stats["missing"] == frame["amount"].isna().sum()
    assert stats["mean"] == pytest.approx(amount.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(amount.std(), rel=1e-12)
    assert (stats["min"], stats["max"]) == (amount.min(), amount.max())
    for q in QUANTILES:  # exact below the sample size, as pandas computes them
        assert stats["quantiles"][f"p{round(q * 100):02d}"] == pytest.approx(amount.quantile(q), rel=1e-12)
    merchant = ds.statistics["merchant"]
    assert merchant["distinct"] == 4 and merchant["distinctExact"]
    assert dict(merchant["top"]) == frame["merchant"].value_counts().to_dict()
    assert dict(ds.statistics["fraud"]["top"]) == {
        str(k): v for k, v in frame["fraud"].value_counts().items()
    }
    note = ds.statistics["note"]
    lengths = frame["note"].str.len()
    assert note["length"] == {
        "min": lengths.min(),
        "mean": pytest.approx(lengths.mean()),
        "max": lengths.max(),
    }
    assert ds.statistics["id"]["distinct"] == len(frame)


@pytest.mark.parametrize("suffix", FORMATS)
def test_small_chunks_give_the_same_record_as_one_read(tmp_path, suffix):
    frame = mixed(rows=300)
    frame.loc[[3, 250, 299], "count"] = [-1, 10**6, 7]
    path = write(frame, tmp_path / f"tx{suffix}")
    whole = create_datasource(
        path,
        target="fraud",
        chunk_rows=10_000,
        schema={"attributes": [{"attributeName": "online", "attributeType": "BINARY"}]},
    )
    for chunk_rows in (7, 64):
        chunked = create_datasource(
            path,
            target="fraud",
            chunk_rows=chunk_rows,
            schema={"attributes": [{"attributeName": "online", "attributeType": "BINARY"}]},
        )
        assert chunked.checksum == whole.checksum and chunked.row_count == whole.row_count
        assert chunked.schema == whole.schema and chunked.violations == whole.violations
        same_stats(chunked.statistics, whole.statistics)


def test_quantiles_past_the_sample_are_close_and_chunk_independent(tmp_path, monkeypatch):
    from onyxserve.training.datasource import profile

    monkeypatch.setattr(profile, "SAMPLE_SIZE", 500)
    values = np.random.default_rng(0).normal(size=5000)
    path = tmp_path / "big.csv"
    pd.DataFrame({"x": values, "y": np.arange(5000) % 2}).to_csv(path, index=False)
    a = create_datasource(path, chunk_rows=333).statistics["x"]
    b = create_datasource(path, chunk_rows=5000).statistics["x"]
    assert a["quantiles"] == b["quantiles"] and not a["quantilesExact"]
    assert a["quantiles"]["p50"] == pytest.approx(np.median(values), abs=0.15)


def test_distinct_values_past_the_cap_are_a_lower_bound(tmp_path, monkeypatch):
    from onyxserve.training.datasource import profile

    monkeypatch.setattr(profile, "DISTINCT_CAP", 50)
    path = tmp_path / "codes.csv"
    pd.DataFrame({"code": [f"c{i % 80}" for i in range(400)], "y": [0, 1] * 200}).to_csv(path, index=False)
    for chunk_rows in (400, 9):
        stats = create_datasource(path, chunk_rows=chunk_rows).statistics["code"]
        assert stats == {
            "type": "CATEGORICAL",
            "count": 400,
            "missing": 0,
            "distinct": 50,
            "distinctExact": False,
        }


def test_csv_without_header_is_detected_and_named(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("1.5,red,0\n2.5,blue,1\n3.5,red,0\n")
    ds = create_datasource(path)
    assert list(ds.schema.attributes) == ["Var1", "Var2", "Var3"] and ds.schema.contains_header is False
    assert ds.row_count == 3 and ds.statistics["Var1"]["mean"] == 2.5
    named = create_datasource(
        path,
        schema={
            "dataFileContainsHeader": False,
            "targetAttributeName": "label",
            "attributes": [
                {"attributeName": n, "attributeType": t}
                for n, t in [("x", "NUMERIC"), ("colour", "CATEGORICAL"), ("label", "BINARY")]
            ],
        },
    )
    assert list(named.schema.attributes) == ["x", "colour", "label"] and named.task == "binary"
    header = tmp_path / "header.csv"
    header.write_text("x,colour,label\n1.5,red,0\n2.5,blue,1\n")
    assert create_datasource(header).schema.contains_header is True
    # a header line of words over a column of words: the flag decides
    words = tmp_path / "words.csv"
    words.write_text("alpha,beta\ngamma,delta\n")
    assert create_datasource(words, header=False).row_count == 2
    assert create_datasource(words, header=True).row_count == 1


def test_missing_tokens_and_json_nulls_count_as_missing(tmp_path):
    csv = tmp_path / "gaps.csv"
    csv.write_text("a,b\n1,x\n,y\nNA,x\n?,\n5,null\n")
    ds = create_datasource(csv)
    assert ds.statistics["a"]["missing"] == 3 and ds.statistics["a"]["mean"] == 3.0
    assert ds.statistics["b"]["missing"] == 2
    jsonl = tmp_path / "gaps.jsonl"
    jsonl.write_text('{"a": 1, "b": true}\n{"a": null}\n\n{"a": 3, "b": false, "c": "late"}\n')
    ds = create_datasource(jsonl)
    assert ds.row_count == 3
    assert ds.statistics["b"]["missing"] == 1 and ds.schema.attributes["b"].value == "BINARY"
    assert ds.statistics["c"]["missing"] == 2  # a key first seen in row 3 was missing before


def test_record_round_trip_show_and_typed_reading(tmp_path, capsys):
    frame = mixed(rows=50)
    path = write(frame, tmp_path / "tx.csv")
    ds = create_datasource(path, target="fraud", row_id="id", exclude=["note"], name="tx")
    saved = ds.save(tmp_path / "tx.datasource.json")
    again = load_datasource(saved)
    assert again.to_dict() == ds.to_dict()
    assert again.features() == ["amount", "count", "online", "merchant"]
    chunks = list(read_frames(again, chunk_rows=16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2] and chunks[1].index[0] == 16
    rows = pd.concat(chunks)
    assert rows["online"].tolist() == (frame["online"] == "yes").astype(float).tolist()
    assert np.allclose(rows["amount"], frame["amount"], equal_nan=True)
    assert rows["merchant"].tolist() == frame["merchant"].tolist()

    assert main(["datasource", "show", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "datasource tx: 50 rows, 7 attributes" in out and "fraud (BINARY, task binary)" in out

    path.write_text(path.read_text().replace("grocer", "grocex"))
    with pytest.raises(DatasourceError, match="changed since datasource 'tx' was created"):
        next(read_frames(again))


def test_cli_create_writes_the_record(tmp_path, capsys):
    path = write(mixed(rows=30), tmp_path / "tx.parquet")
    out = tmp_path / "ds.json"
    assert (
        main(["datasource", "create", str(path), "--target", "fraud", "--out", str(out), "--chunk-rows", "8"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "30 rows" in printed and f"wrote {out}" in printed
    record = json.loads(out.read_text())
    assert record["rowCount"] == 30 and record["schema"]["targetAttributeName"] == "fraud"
    assert main(["datasource", "create", str(tmp_path / "nope.csv")]) == 1
    assert "nope.csv: no such file" in capsys.readouterr().err


# -- bad input: every error names where ------------------------------------------------------
@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", "", "empty.csv: the file is empty"),
        ("blank.csv", "\n\n", "blank.csv: the file has no rows"),
        ("header_only.csv", "a,b\n", "header_only.csv: the data has no rows"),
        # the data row (pandas said "line 3", counting the header)
        ("ragged.csv", "a,b\n1,2\n3,4,5\n", "ragged.csv, row 2: malformed CSV: expected 2 fields, found 3: '3,4,5'"),
        ("quote.csv", 'a,b\n1,"2\n3,4\n', "quote.csv: malformed CSV: EOF inside string"),
        ("dupe.csv", "a,a\n1,2\n", "dupe.csv, column 'a': the header names this column more than once"),
        ("bad.jsonl", '{"a": 1}\n{"a": 2,}\n', "bad.jsonl, row 2: malformed JSON on line 2"),
        ("list.jsonl", '{"a": 1}\n[1, 2]\n', "list.jsonl, row 2: expected a JSON object, found list"),
        ("nested.jsonl", '{"a": {"b": 1}}\n', "nested.jsonl, row 1, column 'a': nested JSON value"),
        (
            "bad.json",
            '[\n{"a": 1},\n{"a": 2\n',
            "bad.json, row 2: malformed JSON array on line 4: Expecting ',' delimiter",
        ),
        ("sep.json", '[{"a": 1} {"a": 2}]', "sep.json, row 1: malformed JSON array on line 1: expected ','"),
        (
            "open.json",
            '[{"a": 1},',
            "open.json, row 2: malformed JSON array on line 1: the array is not closed",
        ),
        ("empty.json", "[]", "empty.json: the data has no rows"),
        ("fake.parquet", "not parquet at all", "fake.parquet: not a readable Parquet file"),
        ("latin1.csv", b"a,b\n\xe9t\xe9,1\n", "latin1.csv, row 1, column 'a': not UTF-8 text: b'\\xe9t\\xe9'"),
    ],
)
def test_malformed_files_are_refused_naming_file_and_row(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasourceError) as err:
        create_datasource(path, chunk_rows=1)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_location_errors(tmp_path):
    with pytest.raises(DatasourceError, match="no such file"):
        create_datasource(tmp_path / "missing.csv")
    with pytest.raises(DatasourceError, match="not a regular file"):
        create_datasource(tmp_path)
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(DatasourceError, match="unknown format 'xml'"):
        create_datasource(tmp_path / "a.csv", data_format="xml")
    with pytest.raises(DatasourceError, match="a query only applies to a database URL"):
        create_datasource(tmp_path / "a.csv", query="select 1")
    with pytest.raises(DatasourceError, match="record"):
        (tmp_path / "r.json").write_text('{"kind": "other"}')
        load_datasource(tmp_path / "r.json")
