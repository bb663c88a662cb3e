"""Schemas: inference rules, schema files (Amazon ML format), violations, and target refusals."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from onyxserve.training.datasource.profile import VIOLATION_LIMIT
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.datasource.schema import AttributeType, infer_type, load_schema, parse_schema
from onyxserve.training.errors import DatasourceError, DatasourceWarning

T = AttributeType


def csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "values, expected",
    [
        (["0", "1", "1"], T.BINARY),
        (["0.0", "1.0"], T.BINARY),
        (["Yes", "no", "yes"], T.BINARY),
        (["true", "false"], T.BINARY),
        (["y", "n"], T.BINARY),
        (["T", "F"], T.BINARY),
        (["0", "2"], T.NUMERIC),  # two values, but not a binary pair
        (["yes", "maybe"], T.CATEGORICAL),
        (["1.5", "-2", "3e4", "7"], T.NUMERIC),
        (["red", "green", "red", "blue"], T.CATEGORICAL),
        (["1", "2", "x"], T.CATEGORICAL),  # one value is not a number
        ([f"id{i}" for i in range(40)], T.CATEGORICAL),  # many distinct but short: an identifier
        ([f"the quick brown fox {i}" for i in range(40)], T.TEXT),
        ([f"fox jumps {i} now" for i in range(40)], T.TEXT),  # 4 words
        (["a b c d"] * 40, T.CATEGORICAL),  # long, but one value repeated
        (["", "", ""], T.CATEGORICAL),  # no values at all
    ],
)
def test_inference_rules(tmp_path, values, expected):
    path = tmp_path / "col.csv"
    pd.DataFrame({"col": values, "other": range(len(values))}).to_csv(path, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = create_datasource(path)
    assert ds.schema.attributes["col"] is expected
    assert ds.inferred["col"]  # the rule is recorded
    # numbers with a few other values warn (see test_inference_warnings.py); no other case does
    warned = [w for w in caught if issubclass(w.category, DatasourceWarning)]
    assert bool(warned) == (values == ["1", "2", "x"])


def test_infer_type_reports_the_rule():
    kind, rule = infer_type(count=10, numeric=10, distinct=10, values=None, mean_length=0, mean_words=0)
    assert kind is T.NUMERIC and rule == "every value is a number"


def test_schema_file_overrides_inference_and_sets_roles(tmp_path):
    path = csv(tmp_path, "id,zip,amount,label\n1,10115,3.5,a\n2,10117,4.5,b\n3,10115,,a\n")
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "label",
                "rowId": "id",
                "excludedAttributeNames": ["amount"],
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": "zip", "attributeType": "CATEGORICAL"},
                    {"attributeName": "label", "attributeType": "categorical"},
                ],
            }
        )
    )
    ds = create_datasource(path, schema=schema)
    assert ds.schema.attributes == {
        "id": T.NUMERIC,
        "zip": T.CATEGORICAL,
        "amount": T.NUMERIC,
        "label": T.CATEGORICAL,
    }
    assert set(ds.inferred) == {"id", "amount"}
    assert ds.statistics["zip"]["top"] == [["10115", 2], ["10117", 1]]
    assert ds.task == "binary" and ds.features() == ["zip"]
    record = ds.schema.to_dict()
    assert record["rowId"] == "id" and record["excludedAttributeNames"] == ["amount"]
    assert parse_schema(record) == ds.schema  # the record's schema is itself a valid schema file
    # command-line choices win over the file
    assert create_datasource(path, schema=schema, target="zip").schema.target == "zip"


@pytest.mark.parametrize(
    "schema, message",
    [
        (
            {"targetAttributeName": "nope"},
            "column 'nope': the schema names column 'nope' (targetAttributeName)",
        ),
        ({"rowId": "nope"}, "column 'nope': the schema names column 'nope' (rowId)"),
        (
            {"excludedAttributeNames": ["x", "nope"]},
            "(excludedAttributeNames) but the data has no such column",
        ),
        ({"attributes": [{"attributeName": "nope", "attributeType": "TEXT"}]}, "'nope' (attributes)"),
    ],
)
def test_unknown_columns_in_a_schema_are_refused(tmp_path, schema, message):
    path = csv(tmp_path, "x,y\n1,a\n2,b\n")
    with pytest.raises(DatasourceError) as err:
        create_datasource(path, schema=schema)
    assert message in str(err.value) and "its columns are: x, y" in str(err.value)
    assert str(path) in str(err.value) and err.value.column == "nope"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "schema.json: not valid JSON at line 1 column 2"),
        ("[]", "schema.json: a schema must be a JSON object"),
        ('{"target": "x"}', "schema.json, key 'target': unknown schema field"),
        ('{"attributes": {}}', "key 'attributes': must be a list"),
        (
            '{"attributes": [{"attributeType": "NUMERIC"}]}',
            "key 'attributes[0]': needs a string attributeName",
        ),
        (
            '{"attributes": [{"attributeName": "x", "attributeType": "FLOAT"}]}',
            "column 'x', key 'attributes[0]': attributeType 'FLOAT' is not one of",
        ),
        (
            (
                '{"attributes": [{"attributeName": "x", "attributeType": "TEXT"},'
                ' {"attributeName": "x", "attributeType": "TEXT"}]}'
            ),
            "column 'x', key 'attributes[1]': attribute listed twice",
        ),
        (
            '{"attributes": [{"attributeName": "x", "type": "TEXT"}]}',
            "key 'attributes[0]': unknown field 'type'",
        ),
        ('{"excludedAttributeNames": "x"}', "key 'excludedAttributeNames': must be a list"),
        ('{"dataFileContainsHeader": "yes"}', "key 'dataFileContainsHeader': must be true or false"),
        ('{"targetAttributeName": 3}', "key 'targetAttributeName': must be a string"),
        ('{"targetAttributeName": "x", "rowId": "x"}', "column 'x': the target cannot also be the row id"),
        ('{"targetAttributeName": "x", "excludedAttributeNames": ["x"]}', "the target cannot be excluded"),
        ('{"dataFormat": "JSON"}', "key 'dataFormat': only CSV"),
        ('{"rowWeight": "w"}', "key 'rowWeight': row weights are not supported"),
    ],
)
def test_bad_schema_files_name_the_key(tmp_path, content, message):
    path = tmp_path / "schema.json"
    path.write_text(content)
    with pytest.raises(DatasourceError) as err:
        load_schema(path)
    assert message in str(err.value)
    with pytest.raises(DatasourceError, match="cannot read schema file"):
        load_schema(tmp_path / "missing.json")


def test_rows_that_violate_the_schema_are_listed_with_row_column_and_reason(tmp_path):
    path = csv(tmp_path, "amount,flag,label\n1.5,yes,a\nabc,no,b\n2.5,maybe,\ninf,yes,a\n")
    schema = {
        "attributes": [
            {"attributeName": "amount", "attributeType": "NUMERIC"},
            {"attributeName": "flag", "attributeType": "BINARY"},
        ],
        "targetAttributeName": "label",
    }
    ds = create_datasource(path, schema=schema)
    assert ds.violations["rows"] == [
        {"row": 2, "column": "amount", "reason": "not a finite number: 'abc'"},
        {
            "row": 3,
            "column": "flag",
            "reason": "not a binary value (0/1, true/false, yes/no, y/n, t/f): 'maybe'",
        },
        {"row": 3, "column": "label", "reason": "missing target value"},
        {"row": 4, "column": "amount", "reason": "not a finite number: 'inf'"},
    ]
    assert ds.violations["count"] == 4 and not ds.violations["truncated"]
    assert ds.violations["byColumn"] == {"amount": 2, "flag": 1, "label": 1}
    amount = ds.statistics["amount"]
    assert (amount["count"], amount["invalid"], amount["mean"]) == (2, 2, 2.0)
    assert "row 2, column 'amount': not a finite number: 'abc'" in ds.summary()


def test_the_violation_list_is_bounded_and_the_count_exact(tmp_path):
    rows = 3 * VIOLATION_LIMIT
    frame = pd.DataFrame({"x": ["bad"] * rows, "y": ["oops"] * rows, "z": range(rows)})
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    schema = {
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": "NUMERIC"},
        ]
    }
    for chunk_rows in (rows, 7):
        v = create_datasource(path, schema=schema, chunk_rows=chunk_rows).violations
        assert v["count"] == 2 * rows and v["truncated"] and len(v["rows"]) == VIOLATION_LIMIT
        assert [(r["row"], r["column"]) for r in v["rows"][:3]] == [(1, "x"), (1, "y"), (2, "x")]
        assert v["rows"][-1]["row"] == VIOLATION_LIMIT // 2


@pytest.mark.parametrize(
    "text, target, message",
    [
        ("x,y\n1,a\n2,a\n3,a\n", "y", "column 'y': the target is constant (every row has 'a')"),
        ("x,y\n1,5\n2,5.0\n", "y", "column 'y': the target is constant"),
        ("x,y\n1,\n2,\n", "y", "column 'y': the target has no values in any row"),
        ("x,y\n1,a\n", "z", "column 'z': the schema names column 'z' (targetAttributeName)"),
    ],
)
def test_a_missing_or_constant_target_is_refused(tmp_path, text, target, message):
    path = csv(tmp_path, text)
    with pytest.raises(DatasourceError) as err:
        create_datasource(path, target=target)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_text_target_is_refused_and_regression_is_recognised(tmp_path):
    notes = "\n".join(f"{i},the customer said thing number {i}" for i in range(10))
    path = csv(tmp_path, "x,note\n" + notes + "\n")
    with pytest.raises(DatasourceError, match="column 'note': a TEXT attribute cannot be the target"):
        create_datasource(path, target="note")
    assert create_datasource(path, target="x").task == "regression"
    three = csv(tmp_path, "x,y\n1,a\n2,b\n3,c\n", "three.csv")
    assert create_datasource(three, target="y").task == "multiclass"
