"""A value a model cannot read names the file, the column, the 1-based data row and the value:
CSV (any block, any partition), Parquet of the wrong type, JSON Lines, a missing column; in
batch prediction (one process and Dask) and evaluation, through the API and the real CLI.

Rows count data rows from 1, the header line not counted, as a datasource's violations do.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onyxserve.training.batch.predict import BatchError, batch_predict, batch_predict_dask
from onyxserve.training.evaluation.metrics import EvaluationError, evaluate_version

from tests.model_factory import fraud_frame, price_frame
from tests.training.cli_run import assert_one_line_refusal, onyxserve


@pytest.fixture
def price(tmp_path):
    """300 rows of the price model's columns plus its target, 'area' as text to spoil."""
    X, y = price_frame(300, seed=4)
    X["price"] = y
    return X.astype({"area": object})


def test_csv_bad_number_names_file_column_row_value(model_repo, price, tmp_path):
    root, _ = model_repo
    price.loc[41, "area"] = "12,5mm"  # the 42nd data row (line 43 of the file)
    path = tmp_path / "price.csv"
    price.to_csv(path, index=False)
    with pytest.raises(BatchError) as info:
        batch_predict(root / "price" / "1", path, tmp_path / "o.parquet", progress=False)
    err = info.value
    assert (err.where, err.row, err.column, err.value) == (str(path), 42, "area", "12,5mm")
    assert str(err) == f"{path}, row 42, column 'area': '12,5mm' is not a number"
    assert not list(tmp_path.glob("*o.parquet*"))
    with pytest.raises(EvaluationError, match=r"row 42, column 'area': '12,5mm' is not a number"):
        evaluate_version(root / "price" / "1", path, "price", save=False, importance_rows=0)


def test_csv_bad_value_in_a_later_block_and_the_earliest_of_two(model_repo, tmp_path):
    root, _ = model_repo
    X, _ = fraud_frame(20_000, seed=3)
    X = X.astype({"V3": object, "V7": object})
    X.loc[15_000, "V7"] = "n/a?"  # same row as the next: the left column is named
    X.loc[15_000, "V3"] = "1.2.3"
    X.loc[17_000, "V3"] = "later"
    path = tmp_path / "fraud.csv"
    X.to_csv(path, index=False)
    for chunk_rows in (100, 65_536):  # blocks of ~64 KiB: the bad row is many blocks in
        with pytest.raises(BatchError) as info:
            batch_predict(root / "fraud" / "1", path, tmp_path / "o.csv", chunk_rows=chunk_rows, progress=False)
        assert (info.value.row, info.value.column, info.value.value) == (15_001, "V3", "1.2.3")


def test_csv_whitespace_around_a_number_is_a_number_not_an_error(model_repo, price, tmp_path):
    root, _ = model_repo
    price.loc[3, "area"] = "  55.5 "
    price.loc[4, "area"] = "55 5"
    price.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(BatchError, match=r"row 5, column 'area': '55 5' is not a number"):
        batch_predict(root / "price" / "1", tmp_path / "p.csv", tmp_path / "o.csv", progress=False)


def test_csv_malformed_row_and_bad_utf8_and_missing_value(model_repo, price, tmp_path):
    root, _ = model_repo
    vdir = root / "price" / "1"
    path = tmp_path / "p.csv"
    price.to_csv(path, index=False)
    lines = path.read_bytes().split(b"\n")
    lines[10] = lines[10] + b",extra"  # data row 10
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(BatchError, match=r"p.csv, row 10: expected 5 fields, found 6"):
        batch_predict(vdir, path, tmp_path / "o.csv", progress=False)
    price.loc[7, "city"] = "lima"
    price.to_csv(path, index=False)
    raw = path.read_bytes().replace(b"lima", b"l\xffma", 1)
    first = next(i for i, v in enumerate(price["city"]) if v == "lima")
    path.write_bytes(raw)
    with pytest.raises(BatchError, match=rf"row {first + 1}, column 'city': b'l\\xffma' is not UTF-8 text"):
        batch_predict(vdir, path, tmp_path / "o.csv", progress=False)
    # a value the model refuses (unknown category) names the row, 1-based, too
    price.loc[99, "city"] = "atlantis"
    price.to_csv(path, index=False)
    with pytest.raises(BatchError) as info:
        batch_predict(vdir, path, tmp_path / "o.csv", progress=False)
    assert (info.value.row, info.value.column, info.value.value) == (100, "city", "atlantis")
    assert "unknown category 'atlantis'" in str(info.value)


def test_parquet_of_the_wrong_type(model_repo, price, tmp_path):
    root, _ = model_repo
    vdir = root / "price" / "1"
    good = price.astype({"area": float})
    text = good.astype({"area": str})  # numbers stored as text are read as numbers...
    text.to_parquet(tmp_path / "text.parquet")
    batch_predict(vdir, tmp_path / "text.parquet", tmp_path / "o.parquet", progress=False)
    text.loc[250, "area"] = "12,5mm"  # ... and the one that is not is named
    text.to_parquet(tmp_path / "bad.parquet", row_group_size=100)
    with pytest.raises(BatchError) as info:
        batch_predict(vdir, tmp_path / "bad.parquet", tmp_path / "o.parquet", chunk_rows=64, progress=False)
    assert (info.value.row, info.value.column, info.value.value) == (251, "area", "12,5mm")
    assert str(tmp_path / "bad.parquet") in str(info.value)
    fraud, _ = fraud_frame(50)
    table = pa.Table.from_pandas(fraud, preserve_index=False)
    stamps = pa.array(pd.date_range("2024-01-01", periods=50, freq="h"))
    table = table.set_column(table.schema.get_field_index("V4"), "V4", stamps)
    pq.write_table(table, tmp_path / "stamps.parquet")
    with pytest.raises(BatchError, match=r"stamps.parquet, column 'V4': the column holds timestamp"):
        batch_predict(root / "fraud" / "1", tmp_path / "stamps.parquet", tmp_path / "o.parquet", progress=False)


def test_json_lines_bad_value(model_repo, price, tmp_path):
    root, _ = model_repo
    price.loc[5, "area"] = "12,5mm"
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in price.to_dict(orient="records")))
    with pytest.raises(BatchError) as info:
        batch_predict(root / "price" / "1", path, tmp_path / "o.csv", chunk_rows=4, progress=False)
    assert (info.value.where, info.value.row, info.value.column) == (str(path), 6, "area")
    assert "'12,5mm' is not a number" in str(info.value)


def test_missing_column_lists_the_available_ones(model_repo, price, tmp_path):
    root, _ = model_repo
    price.drop(columns=["rooms"]).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(BatchError) as info:
        batch_predict(root / "price" / "1", tmp_path / "p.csv", tmp_path / "o.csv", progress=False)
    assert info.value.column == "rooms"
    assert "missing column(s) 'rooms'; the columns are: 'area', 'age', 'city', 'price'" in str(info.value)


def test_dask_names_the_row_in_a_later_partition(model_repo, tmp_path):
    root, _ = model_repo
    X, _ = fraud_frame(3000, seed=8)
    X = X.astype({"V9": object})
    X.loc[2500, "V9"] = "oops"
    X.to_csv(tmp_path / "f.csv", index=False)
    good = X.copy()
    good["V9"] = X["V9"].where(X["V9"] != "oops", "1.0").astype(float).astype(str)
    good.loc[1200, "V9"] = "x9"
    good.to_parquet(tmp_path / "f.parquet", row_group_size=500)
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        for name, row, value in (("f.csv", 2501, "oops"), ("f.parquet", 1201, "x9")):
            with pytest.raises(BatchError) as info:
                batch_predict_dask(
                    root / "fraud" / "1",
                    tmp_path / name,
                    tmp_path / "parts.parquet",
                    scheduler=client,
                    partition_bytes=60_000,
                    chunk_rows=300,
                    progress=False,
                )
            err = info.value
            assert (err.where, err.row, err.column, err.value) == (str(tmp_path / name), row, "V9", value)
            assert not (tmp_path / "parts.parquet").exists()


def test_cli_batch_predict_and_evaluate_refuse_in_one_line(model_repo, price, tmp_path):
    root, _ = model_repo
    vdir = root / "price" / "1"
    price.loc[41, "area"] = "12,5mm"
    csv = tmp_path / "price.csv"
    price.to_csv(csv, index=False)
    parts = (str(csv), "column 'area'", "row 42", "'12,5mm'")
    assert_one_line_refusal(onyxserve("batch-predict", vdir, csv, "--out", tmp_path / "o.csv", "--no-progress"), *parts)
    assert_one_line_refusal(
        onyxserve("batch-predict", vdir, csv, "--out", tmp_path / "o.csv", "--no-progress", "--dask"), *parts
    )
    assert_one_line_refusal(onyxserve("evaluate", vdir, csv, "--target", "price", "--no-save"), *parts)
    parquet = tmp_path / "price.parquet"
    price.astype({"area": str}).to_parquet(parquet)
    assert_one_line_refusal(
        onyxserve("batch-predict", vdir, parquet, "--out", tmp_path / "o.csv", "--no-progress"),
        str(parquet), "column 'area'", "row 42", "'12,5mm'",
    )
    jsonl = tmp_path / "price.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in price.to_dict(orient="records")))
    assert_one_line_refusal(
        onyxserve("evaluate", vdir, jsonl, "--target", "price", "--no-save"),
        str(jsonl), "column 'area'", "row 42", "'12,5mm'",
    )
    assert_one_line_refusal(
        onyxserve("evaluate", vdir, csv, "--target", "cost", "--no-save"),
        str(csv), "missing column(s) 'cost'", "the columns are: 'area', 'rooms'",
    )
    price.loc[41, "area"] = 50.0
    price.loc[7, "price"] = np.nan
    price.to_csv(csv, index=False)
    assert_one_line_refusal(
        onyxserve("evaluate", vdir, csv, "--target", "price", "--no-save"),
        str(csv), "row 8", "column 'price'", "the target value is missing",
    )


def test_a_datasource_violation_read_as_missing_is_named_as_what_the_file_holds(model_repo, tmp_path):
    from onyxserve.training.datasource.record import create_datasource

    root, _ = model_repo
    X, _ = fraud_frame(400, seed=2)
    X = X.astype({"V5": object})
    X.loc[41, "V5"] = "12,5mm"  # inferred NUMERIC all the same: a violation, read back as NaN
    X.to_csv(tmp_path / "f.csv", index=False)
    with pytest.warns(UserWarning):
        ds = create_datasource(tmp_path / "f.csv")
    ds.save(tmp_path / "f.datasource.json")
    with pytest.raises(BatchError) as info:  # the fraud model has no imputer
        batch_predict(root / "fraud" / "1", tmp_path / "f.datasource.json", tmp_path / "o.csv", progress=False)
    assert (info.value.row, info.value.column) == (42, "V5")
    assert "not a finite number: '12,5mm' (a schema violation, read as missing)" in str(info.value)


def test_cli_refuses_unreadable_inputs_in_one_line_on_both_paths(model_repo, tmp_path):
    # each is refused before a Dask cluster starts
    root, _ = model_repo
    vdir = root / "price" / "1"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"ar\xe9a,rooms,age,city\n1,2,3,lima\n")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 and then nothing a Parquet reader wants")
    record = tmp_path / "x.datasource.json"
    record.write_text("{}")
    cases = [
        (latin, "the header line is not UTF-8 text: b'ar\\xe9a,rooms"),
        (corrupt, "not a readable Parquet file"),
        (record, "not a datasource record"),
    ]
    for path, message in cases:
        for dask in ((), ("--dask",)):
            done = onyxserve("batch-predict", vdir, path, "--out", tmp_path / "o.csv", "--no-progress", *dask)
            assert_one_line_refusal(done, path.name, message)
    assert_one_line_refusal(onyxserve("evaluate", vdir, latin, "--target", "price", "--no-save"), "latin.csv", "UTF-8")
