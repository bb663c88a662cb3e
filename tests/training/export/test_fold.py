"""Folding preprocessing into the manifest: exact equivalence with sklearn, and clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.core.reference import normalize_reference
from onyxserve.training.export.fold import Chain
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import ExportError, export_model
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

from tests.training.data import mixed_frame, targets

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning", "ignore:Found unknown categories:UserWarning"
)


def assert_folded_exactly(pipeline: Pipeline, sample: pd.DataFrame, manifest) -> None:
    """The manifest's normalization equals the pipeline's own transform on the sample."""
    ours = normalize_reference(manifest.features, manifest.model.input_width, [row_block(manifest, sample)])
    theirs = pipeline[:-1].transform(sample)
    theirs = theirs.toarray() if hasattr(theirs, "toarray") else np.asarray(theirs, dtype=np.float64)
    np.testing.assert_allclose(ours, theirs.astype(np.float32), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_chain_composition_matches_sequential_numpy(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(scale=5, size=200), [np.nan]])
    chain, y = Chain(), x.copy()
    ops = [("affine", rng.normal(), s) for s in (2.0, -0.5, 3.0)] + [("clip", -1.0, 1.5), ("clip", 0.2, 4.0)]
    for kind, a, b in [ops[i] for i in rng.permutation(len(ops))] + [("impute", 0.7, None)]:
        if kind == "affine":
            chain, y = chain.then_affine(a, b), (y - a) * b
        elif kind == "clip":
            chain, y = chain.then_clip(a, b), np.clip(y, a, b)
        elif chain.low <= a <= chain.high:
            chain, y = chain.then_impute(a, "'imp'"), np.where(np.isnan(y), a, y)
    raw = np.where(np.isnan(x), chain.impute if chain.impute is not None else np.nan, x)
    folded = np.clip((raw - chain.offset) * chain.scale, chain.low, chain.high)
    np.testing.assert_allclose(folded, y, rtol=1e-12, atol=1e-12)


def test_numeric_chain_of_every_supported_step(tmp_path):
    frame = mixed_frame()[["age", "income", "visits"]].assign(constant=1.0)
    y = targets(mixed_frame(), "regression")
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -1.5, "a_max": 1.5})),
            ("impute", SimpleImputer(strategy="constant", fill_value=0.5)),  # after scaling and clipping
            ("minmax", MinMaxScaler(feature_range=(-1, 2), clip=True)),
            ("robust", RobustScaler(quantile_range=(10, 90))),
            ("maxabs", MaxAbsScaler()),
            ("select", VarianceThreshold()),  # drops 'constant'
            ("ridge", Ridge()),
        ]
    ).fit(frame, y)
    sample = mixed_frame(n=80, seed=5)[["age", "income", "visits"]].assign(constant=1.0)
    sample.loc[0, "income"] = 1e9  # far outside the fit range: exercises both clips
    result = export_model(pipeline, name="chain", repository=tmp_path, sample=sample)
    assert result.manifest.feature_names == ("age", "income", "visits")  # 'constant' is not served
    assert result.manifest.features[0].numeric.impute is not None
    assert result.manifest.features[1].numeric.clip_high < np.inf
    assert_folded_exactly(pipeline, sample, result.manifest)


def test_categorical_encoders_imputers_and_column_selections(tmp_path):
    frame = mixed_frame()
    frame["plan"] = np.where(frame["visits"] > 9, "pro", "free")
    frame["zone"] = (frame["visits"] % 4).astype(int)  # integer categories
    frame.loc[::17, "color"] = np.nan
    pre = ColumnTransformer(
        [
            ("color", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)), ["color"]),
            ("plan", OneHotEncoder(drop="if_binary"), ["plan"]),
            ("zone", OneHotEncoder(drop="first", handle_unknown="ignore"), [5]),  # by index
            ("age", make_pipeline(SimpleImputer(), StandardScaler()), "age"[:3:1].split()),
            ("vis", "passthrough", ["visits"]),
        ],
        remainder="drop",  # income is not used
    )
    pipeline = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    pipeline.fit(frame, targets(mixed_frame(), "binary"))
    sample = frame.iloc[:60].copy()
    sample.loc[sample.index[1], "color"] = "mauve"  # unknown: ordinal -1
    sample.loc[sample.index[2], "zone"] = 9  # unknown: one-hot zeros
    sample = sample[["zone", "plan", "income", "color", "visits", "age"]]
    result = export_model(pipeline, name="cats", repository=tmp_path, sample=sample)
    m = result.manifest
    assert m.feature_names == ("zone", "plan", "color", "visits", "age")  # sample order; income dropped
    by_name = {f.name: f for f in m.features}
    assert by_name["color"].categorical.encoding == "ordinal"
    assert by_name["color"].categorical.impute in ("red", "green", "blue", "teal")
    assert by_name["color"].categorical.unknown_value == -1
    assert by_name["plan"].categorical.drop is not None and by_name["plan"].width == 1
    assert by_name["zone"].categorical.categories == ("0", "1", "2", "3") and by_name["zone"].width == 3
    assert_folded_exactly(pipeline, sample, m)


def test_nested_column_transformer_and_weights(tmp_path):
    frame = mixed_frame()
    inner = ColumnTransformer([("s", StandardScaler(), [0]), ("m", MinMaxScaler(), [1])])
    pre = ColumnTransformer(
        [("num", make_pipeline(SimpleImputer(), inner), ["age", "income"]), ("cat", OneHotEncoder(), ["color"])],
        remainder="passthrough",
        transformer_weights={"num": -2.0},  # a negative scale flips nothing it should not
    )
    pipeline = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(frame, targets(frame, "binary"))
    result = export_model(pipeline, name="nest", repository=tmp_path, sample=frame.iloc[:50])
    assert_folded_exactly(pipeline, frame.iloc[:50], result.manifest)


def refused(pipeline, frame, tmp_path, y=None):
    pipeline.fit(frame, targets(mixed_frame(), "binary") if y is None else y)  # frames here are its rows
    with pytest.raises(ExportError) as info:
        export_model(pipeline, name="bad", repository=tmp_path, sample=frame.iloc[:20])
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    return str(info.value)


NUMERIC = ["age", "income", "visits"]


def test_refuses_unsupported_step_by_name(tmp_path):
    frame = mixed_frame()[NUMERIC].fillna(0)
    pipe = Pipeline([("scale", StandardScaler()), ("poly", PolynomialFeatures(2)), ("clf", LogisticRegression(max_iter=1000))])
    assert "step 'poly' (PolynomialFeatures) is not supported" in refused(pipe, frame, tmp_path)


def test_text_vectorizer_inside_column_transformer_runs_in_the_graph(tmp_path):
    frame = mixed_frame().fillna(0)
    pre = ColumnTransformer([("txt", TfidfVectorizer(), "color"), ("num", StandardScaler(), NUMERIC)])
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))])
    pipe.fit(frame, targets(mixed_frame(), "binary"))
    result = export_model(pipe, name="txt", repository=tmp_path, sample=frame, register=False)
    assert [f.name for f in result.manifest.features if f.type == "text"] == ["color"]
    assert result.parity.max_error <= 1e-5


def test_refuses_custom_function(tmp_path):
    frame = mixed_frame()[NUMERIC].fillna(0)
    pipe = Pipeline([("log", FunctionTransformer(np.log1p)), ("clf", LogisticRegression(max_iter=1000))])
    assert "step 'log' (FunctionTransformer) is not supported" in refused(pipe, frame, tmp_path)


def test_refuses_feature_used_twice(tmp_path):
    frame = mixed_frame().fillna(0)
    pre = ColumnTransformer([("a", StandardScaler(), ["age", "income"]), ("b", MinMaxScaler(), ["age"])])
    msg = refused(Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))]), frame, tmp_path)
    assert "'age' is used by both transformers 'a' and 'b'" in msg


def test_refuses_scaling_one_hot_columns(tmp_path):
    frame = mixed_frame().fillna(0)
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["color"])], remainder="passthrough")
    pipe = Pipeline([("pre", pre), ("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
    msg = refused(pipe, frame, tmp_path)
    assert "step 'scale' (StandardScaler)" in msg and "'color'" in msg


def test_refuses_infrequent_categories_and_indicator(tmp_path):
    frame = mixed_frame()
    frame.loc[:3, "color"] = "rare"
    pre = ColumnTransformer([("cat", OneHotEncoder(min_frequency=10, handle_unknown="infrequent_if_exist"), ["color"])],
                            remainder=SimpleImputer())
    msg = refused(Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))]), frame, tmp_path)
    assert "step 'pre__cat' (OneHotEncoder)" in msg and "infrequent" in msg
    pipe = Pipeline([("imp", SimpleImputer(add_indicator=True)), ("clf", LogisticRegression(max_iter=1000))])
    assert "step 'imp' (SimpleImputer)" in refused(pipe, mixed_frame()[NUMERIC], tmp_path)


def test_refuses_classifier_without_probabilities(tmp_path):
    frame = mixed_frame()[NUMERIC].fillna(0)
    msg = refused(make_pipeline(StandardScaler(), SGDClassifier(loss="hinge")), frame, tmp_path)
    assert "SGDClassifier has no predict_proba" in msg


def test_refuses_native_categorical_strings(tmp_path):
    frame = mixed_frame()
    frame["color"] = frame["color"].astype("category")
    hgb = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    msg = refused(hgb, frame, tmp_path)
    assert "'color'" in msg


def test_ordinal_missing_and_unknown_as_nan_for_native_nan_trees(tmp_path):
    # the usual HistGradientBoosting recipe: missing and unknown categories both become NaN
    frame = mixed_frame()
    frame.loc[::13, "color"] = np.nan
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    pre = ColumnTransformer([("cat", enc, ["color"])], remainder="passthrough")
    pipeline = Pipeline([("pre", pre), ("hgb", HistGradientBoostingClassifier(max_iter=10, random_state=0))])
    pipeline.fit(frame, targets(mixed_frame(), "binary"))
    sample = frame.iloc[:60].copy()
    sample.loc[sample.index[1], "color"] = "mauve"
    result = export_model(pipeline, name="hgb", repository=tmp_path, sample=sample)
    color = result.manifest.features[2]
    assert color.categorical.categories == ("blue", "green", "red", "teal") and color.categorical.unknown == "ignore"
    assert_folded_exactly(pipeline, sample, result.manifest)
