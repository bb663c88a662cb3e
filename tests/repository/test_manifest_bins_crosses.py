"""The manifest's bins and crosses: JSON round trip, and validation errors that name the field."""

from __future__ import annotations

import copy
import json

import pytest
from onyxserve.repository.manifest import (
    CategoricalSpec,
    CrossSpec,
    FeatureSpec,
    Manifest,
    ManifestError,
    ModelSpec,
    NumericSpec,
    parse_manifest,
)

FEATURES = (
    FeatureSpec("age", "numeric", 0, numeric=NumericSpec(impute=30.0, clip_low=18.0, bins=(25.0, 40.0, 60.0))),
    FeatureSpec("merchant", "categorical", 4, categorical=CategoricalSpec(("cafe", "fuel"), unknown="ignore")),
    FeatureSpec("channel", "categorical", 0, categorical=CategoricalSpec((), encoding="none", unknown="ignore")),
)
CROSS = CrossSpec("merchant_x_channel", ("merchant", "channel"), 6,
                  CategoricalSpec(("cafe|web", "fuel|shop"), unknown="ignore"))
MANIFEST = Manifest("m", "1", "regression", FEATURES, ModelSpec("model.onnx", "0" * 64, "input", 8, {"value": "v"}),
                    crosses=(CROSS,))


def data() -> dict:
    return json.loads(MANIFEST.to_json())


def test_round_trip_and_widths():
    back = Manifest.from_json(MANIFEST.to_json())
    assert back.to_json() == MANIFEST.to_json()  # (== would trip on unknown_value NaN)
    assert back.features[0].numeric.bins == (25.0, 40.0, 60.0) and back.crosses[0].inputs == ("merchant", "channel")
    assert [f.width for f in back.features] == [4, 2, 0]
    assert back.crosses[0].width == 2 and back.feature_names == ("age", "merchant", "channel")
    plain = data()
    del plain["crosses"]  # older manifests have no crosses
    plain["model"]["input_width"] = 6
    assert parse_manifest(plain).crosses == ()


def edit(path: str, value) -> dict:
    d = copy.deepcopy(data())
    *keys, last = path.split(".")
    node = d
    for k in keys:
        node = node[int(k)] if k.isdigit() else node[k]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return d


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("features.0.numeric.bins", [40.0, 25.0, 60.0], "features[0] ('age').numeric.bins: bin edges must be finite"),
        ("features.0.numeric.bins", [25.0, "inf", 60.0], "('age').numeric.bins: bin edges must be finite"),
        ("features.0.numeric.bins", "25", "('age').numeric.bins: expected a list"),
        ("features.0.numeric.bins", [25.0, True, 60.0], "('age').numeric.bins[1]: expected a number"),
        ("features.0.numeric.allow_nan", True, "('age').numeric.bins: a binned feature has no bin for NaN"),
        ("features.0.numeric.bins", [25.0, 40.0], "written by no feature"),
        ("features.2.categorical.unknown", "error", "('channel'): encoding 'none' writes no column"),
        ("crosses.0.inputs", ["merchant"], "crosses[0] ('merchant_x_channel').inputs: must name two different"),
        ("crosses.0.inputs", ["merchant", "age"], "inputs: 'age' is numeric; a cross reads categorical"),
        ("crosses.0.inputs", ["merchant", "zz"], "inputs: 'zz' is not a feature"),
        ("crosses.0.name", "age", "crosses[0] ('age'): name is already used"),
        ("crosses.0.column", 5, "features 'merchant' and 'merchant_x_channel' both write column 5"),
        ("crosses.0.column", KeyError, "crosses[0] ('merchant_x_channel'): missing field 'column'"),
        ("crosses.0.categorical", KeyError, "missing field 'categorical'"),
        ("crosses.0.categorical.unknown", "error", "crosses[0] ('merchant_x_channel').categorical: a cross is one-hot"),
        ("crosses.0.categorical.categories", ["a", "a"], "crosses[0] ('merchant_x_channel'): duplicate categories"),
        ("crosses.0.separator", 1, "('merchant_x_channel').separator: must be a string"),
        ("crosses", {"x": 1}, "'crosses' must be a list"),
    ],
)
def test_invalid_manifests_name_the_field(path, value, message):
    with pytest.raises(ManifestError) as info:
        parse_manifest(edit(path, value), "m.json")
    assert message in str(info.value)
    assert str(info.value).startswith("m.json: ")
