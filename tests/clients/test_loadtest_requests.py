"""Request building: the pre-serialized bytes decode back to the right tensors, and the rows
come from files, manifests and ModelMetadata as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onyxserve.clients.loadtest import workload as wl
from onyxserve.clients.loadtest.cli import parse_duration
from onyxserve.clients.loadtest.open_loop import schedule_gaps_ns
from onyxserve.clients.loadtest.requests import RequestForm, build_pool, decode_request
from onyxserve.protos import v2bytes


def _numeric(rows: int = 5, width: int = 3) -> wl.Workload:
    m = np.arange(rows * width, dtype=np.float64).reshape(rows, width) / 4.0
    return wl.Workload([wl.Feature(f"x{i}") for i in range(width)], [m[:, i] for i in range(width)])


def _mixed() -> wl.Workload:
    return wl.Workload(
        [wl.Feature("amount", "FP32"), wl.Feature("country", "BYTES"), wl.Feature("count", "INT64")],
        [np.array([1.5, 2.5, 3.5]), ["FR", "DE", "électronique"], np.array([1.0, 2.0, 3.0])],
    )


def test_tensor_form_one_row_per_request():
    work = _numeric()
    pool = build_pool(work, "m", "2", RequestForm(input_name="input-0", outputs=("predict", "predict_proba")))
    assert len(pool) == 5
    for i, data in enumerate(pool):
        req, tensors = decode_request(data)
        assert (req.model_name, req.model_version) == ("m", "2")
        assert [o.name for o in req.outputs] == ["predict", "predict_proba"]
        assert req.inputs[0].name == "input-0" and req.inputs[0].datatype == "FP32"
        assert list(req.inputs[0].shape) == [1, 3]
        assert not req.inputs[0].HasField("contents")  # raw contents only
        np.testing.assert_array_equal(tensors["input-0"], work.matrix()[i : i + 1].astype(np.float32))


def test_tensor_form_several_rows_wraps_around_and_fp64():
    work = _numeric(rows=5)
    pool = build_pool(work, "m", "", RequestForm(rows_per_request=3, datatype="FP64"))
    assert len(pool) == 2  # ceil(5 / 3)
    _, second = decode_request(pool[1])
    expected = work.matrix()[[3, 4, 0]]
    assert second["input"].dtype == np.float64 and second["input"].shape == (3, 3)
    np.testing.assert_array_equal(second["input"], expected)


def test_pool_is_capped():
    pool = build_pool(_numeric(rows=50), "m", "", RequestForm(), max_requests=7)
    assert len(pool) == 7


def test_per_feature_form_with_bytes():
    work = _mixed()
    pool = build_pool(work, "fraud", "", RequestForm(per_feature=True, rows_per_request=2))
    req, tensors = decode_request(pool[0])
    assert [(t.name, t.datatype, list(t.shape)) for t in req.inputs] == [
        ("amount", "FP32", [2, 1]),
        ("country", "BYTES", [2, 1]),
        ("count", "INT64", [2, 1]),
    ]
    np.testing.assert_array_equal(tensors["amount"].ravel(), np.float32([1.5, 2.5]))
    assert tensors["country"] == [b"FR", b"DE"]
    assert tensors["count"].dtype == np.int64 and tensors["count"].ravel().tolist() == [1, 2]
    # the raw BYTES buffer is exactly the V2 layout
    assert req.raw_input_contents[1] == v2bytes.encode(["FR", "DE"])
    _, wrapped = decode_request(pool[1])
    assert wrapped["country"] == ["électronique".encode(), b"FR"]


def test_per_feature_rank_one():
    pool = build_pool(_mixed(), "m", "", RequestForm(per_feature=True, feature_rank=1))
    req, _ = decode_request(pool[0])
    assert all(list(t.shape) == [1] for t in req.inputs)


def test_tensor_form_refuses_bytes_features():
    with pytest.raises(ValueError, match="country"):
        build_pool(_mixed(), "m", "", RequestForm())


def test_rows_from_csv_drop_the_label(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("Time,V1,Amount,Class\n0,1.5,10,0\n1,-2,,1\n")
    work = wl.from_file(path)
    assert [f.name for f in work.features] == ["Time", "V1", "Amount"]
    assert work.all_numeric and work.n_rows == 2
    np.testing.assert_array_equal(work.matrix()[0], [0, 1.5, 10])
    assert np.isnan(work.matrix()[1, 2])  # an empty cell is a missing value
    picked = wl.from_file(path, columns=["Amount", "Time"])
    assert [f.name for f in picked.features] == ["Amount", "Time"]
    with pytest.raises(ValueError, match="nope"):
        wl.from_file(path, columns=["nope"])


def test_rows_from_jsonl_with_a_categorical(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"amount": 3.0, "country": "FR"}\n{"amount": 4.0, "country": "DE"}\n')
    work = wl.from_file(path)
    assert [(f.name, f.datatype) for f in work.features] == [("amount", "FP64"), ("country", "BYTES")]
    pool = build_pool(work, "m", "", RequestForm(per_feature=True))
    assert decode_request(pool[1])[1]["country"] == [b"DE"]


def test_rows_from_model_metadata():
    tensor = wl.ModelInterface([("input-0", "FP32", [-1, 30])], [])
    assert tensor.is_tensor and tensor.width == 30
    work = wl.from_interface(tensor, rows=64, seed=1)
    assert len(work.features) == 30 and work.n_rows == 64 and work.all_numeric
    per_feature = wl.ModelInterface(
        [("amount", "FP64", [-1, 1]), ("country", "BYTES", [-1, 1])], ["label", "probabilities"]
    )
    assert not per_feature.is_tensor
    work = wl.from_interface(per_feature, rows=50, seed=2, categories={"country": ["FR", "DE"]})
    assert work.features[0].datatype == "FP64"
    assert set(work.columns[1]) == {"FR", "DE"}


def test_rows_from_a_manifest(tmp_path):
    manifest = {
        "format": "onyxserve.manifest/1",
        "name": "fraud",
        "version": "1",
        "task": "binary",
        "labels": [0, 1],
        "features": [
            {"name": "amount", "type": "numeric", "column": 0, "numeric": {"offset": 100.0, "scale": 0.1}},
            {
                "name": "country",
                "type": "categorical",
                "column": 1,
                "categorical": {"categories": ["FR", "DE"], "encoding": "ordinal"},
            },
            {"name": "memo", "type": "text", "column": 0, "text": {"input_name": "text__memo", "lowercase": True}},
        ],
        "model": {
            "file": "model.onnx",
            "sha256": "0" * 64,
            "input_name": "x",
            "input_width": 2,
            "outputs": {"label": "label", "probabilities": "probabilities"},
        },
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    work = wl.from_manifest(path, rows=4000, seed=0)
    assert [(f.name, f.datatype) for f in work.features] == [
        ("amount", "FP64"),
        ("country", "BYTES"),
        ("memo", "BYTES"),  # text: sentences, since the manifest holds no vocabulary
    ]
    assert all(isinstance(v, str) for v in work.columns[2]) and len(set(work.columns[2])) > 1
    amounts = np.asarray(work.columns[0])
    # raw units: x = offset + z / scale  ->  mean 100, std 10
    assert abs(amounts.mean() - 100.0) < 1.0 and abs(amounts.std() - 10.0) < 1.0
    assert set(work.columns[1]) == {"FR", "DE"}


def test_arrival_schedules():
    constant = schedule_gaps_ns(1000.0, "constant", 10, 0)
    assert np.all(constant == 1e6)
    poisson = schedule_gaps_ns(1000.0, "poisson", 50_000, 0)
    assert poisson.mean() == pytest.approx(1e6, rel=0.02)
    assert poisson.std() == pytest.approx(1e6, rel=0.03)  # exponential: std == mean
    with pytest.raises(ValueError):
        schedule_gaps_ns(10.0, "bursty", 1, 0)


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1.5m", 90.0), ("3", 3.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
