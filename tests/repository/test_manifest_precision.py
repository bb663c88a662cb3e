"""The manifest's precision fields: a numeric divisor/shift and the model's input dtype; written
as format /2 only when used, so older servers refuse what they would serve wrongly."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from onyxserve.repository.manifest import (
    FORMAT,
    FORMAT_V2,
    FeatureSpec,
    Manifest,
    ManifestError,
    ModelSpec,
    NumericSpec,
)

PLAIN = Manifest(
    "m", "1", "regression", (FeatureSpec("x", "numeric", 0, numeric=NumericSpec(offset=1.0, scale=0.5)),),
    ModelSpec("model.onnx", "0" * 64, "input", 1, {"value": "v"}),
)


def test_defaults_keep_format_1_and_old_manifests_read_as_float32():
    data = json.loads(PLAIN.to_json())
    assert data["format"] == FORMAT
    del data["model"]["input_dtype"], data["features"][0]["numeric"]["divisor"], data["features"][0]["numeric"]["shift"]
    old = Manifest.from_json(json.dumps(data))
    assert old.model.input_dtype == "float32"
    assert (old.features[0].numeric.divisor, old.features[0].numeric.shift) == (1.0, 0.0)


@pytest.mark.parametrize(
    "manifest",
    [
        replace(PLAIN, model=replace(PLAIN.model, input_dtype="float64")),
        replace(PLAIN, features=(replace(PLAIN.features[0], numeric=NumericSpec(offset=2.0, divisor=3.0)),)),
        replace(PLAIN, features=(replace(PLAIN.features[0], numeric=NumericSpec(scale=0.1, shift=-0.5)),)),
    ],
)
def test_precision_fields_round_trip_as_format_2(manifest):
    text = manifest.to_json()
    assert json.loads(text)["format"] == FORMAT_V2
    back = Manifest.from_json(text)
    assert back == manifest and back.to_json() == text


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("model", "input_dtype"), "float16", "model.input_dtype must be one of"),
        (("features", 0, "numeric", "divisor"), 0.0, "divisor must not be 0"),
        (("features", 0, "numeric", "shift"), "inf", "must be finite"),
    ],
)
def test_bad_precision_fields_are_named(path, value, message):
    data = json.loads(PLAIN.to_json())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(data))
