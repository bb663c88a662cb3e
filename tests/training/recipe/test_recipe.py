"""Recipes: parsing errors that name the key, per-type defaults, the foldable steps, and export
parity through the served path (compiled core + ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.training.errors import TrainingError
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import ExportError
from onyxserve.training.fit.train import export_trained, train_model
from onyxserve.training.recipe.spec import compile_recipe, fit_recipe, load_recipe, parse_recipe
from onyxserve.training.recipe.steps import FrequentOneHotEncoder, OutlierClipper
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from tests.training.fit import train_data

# shared fixtures (module scoped): the mixed datasources, one OpenMP thread
data_dir, mixed_ds, one_thread = train_data.data_dir, train_data.mixed_ds, train_data.one_thread

SERVABLE = {
    "features": {
        "amount": [
            {"step": "impute", "strategy": "median"},
            {"step": "clip", "method": "iqr", "k": 1.5},
            {"step": "normalize", "method": "minmax"},
        ],
        "count": ["impute", {"step": "clip", "low": 0.05, "high": 0.95}, "normalize"],
        "merchant": [
            {"step": "impute", "strategy": "constant", "value": "none"},
            {"step": "onehot", "min_count": 5},
        ],
        "note": "drop",
    }
}


@pytest.mark.parametrize(
    ("recipe", "key"),
    [
        ({"steps": {}}, "steps"),
        ({"version": 2}, "version"),
        ({"features": {"amount": [{"step": "bogus"}]}}, "features.amount[0].step"),
        ({"features": {"amount": [{"step": "clip", "low": 0.9, "high": 0.1}]}}, "features.amount[0].low"),
        ({"features": {"amount": [{"step": "clip", "method": "tukey"}]}}, "features.amount[0].method"),
        ({"features": {"amount": [{"step": "normalize", "scale": 2}]}}, "features.amount[0].scale"),
        ({"features": {"amount": [{"step": "quantile_bin", "bins": 1}]}}, "features.amount[0].bins"),
        ({"features": {"note": [{"step": "text", "ngrams": [2, 1]}]}}, "features.note[0].ngrams"),
        ({"features": {"amount": "keep"}}, "features.amount"),
        ({"defaults": {"DATE": []}}, "defaults.DATE"),
        ({"defaults": {"NUMERIC": [{"step": "onehot"}]}}, "defaults.NUMERIC[0]"),
        ({"cartesian": [{"columns": ["merchant"]}]}, "cartesian[0].columns"),
        ({"exclude": "note"}, "exclude"),
    ],
)
def test_parse_errors_name_the_key(recipe, key):
    with pytest.raises(TrainingError) as info:
        parse_recipe(recipe)
    assert info.value.key == key, str(info.value)
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("recipe", "key"),
    [
        ({"features": {"nope": "drop"}}, "features.nope"),
        ({"features": {"fraud": "drop"}}, "features.fraud"),  # the target
        ({"exclude": ["missing"]}, "exclude.missing"),
        ({"features": {"merchant": [{"step": "normalize"}]}}, "features.merchant[0]"),  # wrong type
        ({"features": {"amount": [{"step": "onehot"}]}}, "features.amount[0]"),
        ({"features": {"merchant": [{"step": "impute"}]}}, "features.merchant"),  # no onehot
        (
            {"features": {"amount": [{"step": "normalize"}, {"step": "impute"}]}},
            "features.amount[1]",
        ),  # order
        ({"features": {"amount": ["impute", "normalize", "quantile_bin"]}}, "features.amount[2]"),
        (
            {"features": {"merchant": [{"step": "impute", "strategy": "mean"}, "onehot"]}},
            "features.merchant[0].strategy",
        ),
        ({"cartesian": [{"columns": ["merchant", "amount"]}]}, "cartesian[0].columns"),
        ({"exclude": ["amount", "count", "online", "merchant", "note"]}, "features"),
    ],
)
def test_plan_errors_name_the_column(mixed_ds, recipe, key):
    with pytest.raises(TrainingError) as info:
        parse_recipe(recipe).plan(mixed_ds["binary"])
    assert info.value.key == key, str(info.value)


def test_defaults_per_attribute_type(mixed_ds):
    plan = parse_recipe(None).plan(mixed_ds["binary"])
    kinds = {name: [s.kind for s in steps] for name, steps in plan.steps.items()}
    assert kinds == {
        "amount": ["impute", "normalize"],
        "count": ["impute", "normalize"],
        "online": ["impute"],
        "merchant": ["impute", "onehot"],
        "note": ["text"],
    }
    assert not [p for p in plan.serving_problems() if "'note'" in p]  # text is served (in the graph)
    override = parse_recipe({"defaults": {"NUMERIC": [{"step": "impute", "strategy": "mean"}]}}).plan(
        mixed_ds["binary"]
    )
    assert override.steps["amount"][0].options == {"strategy": "mean"}


def test_recipe_file_round_trip(tmp_path, mixed_ds):
    path = tmp_path / "recipe.json"
    path.write_text(__import__("json").dumps(SERVABLE))
    recipe = load_recipe(path)
    assert parse_recipe(recipe.to_dict()) == recipe
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(TrainingError, match="bad.json: not valid JSON"):
        load_recipe(tmp_path / "bad.json")


def test_clipper_is_the_function_transformer_export_folds():
    x = np.arange(101, dtype=float).reshape(-1, 1)
    q = OutlierClipper("quantile", 0.1, 0.9).fit(x)
    assert isinstance(q, FunctionTransformer) and q.func is np.clip
    assert q.kw_args["a_min"][0] == pytest.approx(10) and q.kw_args["a_max"][0] == pytest.approx(90)
    np.testing.assert_allclose(q.transform(np.array([[-5.0], [50.0], [500.0]])).ravel(), [10, 50, 90])
    iqr = OutlierClipper("iqr", k=1.0).fit(np.column_stack([x, 2 * x]))
    np.testing.assert_allclose(iqr.kw_args["a_min"], [25 - 50, 50 - 100])
    np.testing.assert_allclose(iqr.kw_args["a_max"], [75 + 50, 150 + 100])


def test_rare_and_unseen_categories_fold_into_one_bucket():
    train = pd.DataFrame({"m": ["a"] * 5 + ["b"] * 4 + ["c", np.nan]})
    enc = FrequentOneHotEncoder(min_count=4).fit(train)
    assert isinstance(enc, OneHotEncoder) and enc.handle_unknown == "ignore"
    assert list(enc.categories_[0]) == ["a", "b"] and enc.rare_categories_ == [["c"]]
    out = enc.transform(pd.DataFrame({"m": ["a", "b", "c", "never-seen", np.nan]}))
    np.testing.assert_array_equal(out, [[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]])
    top = FrequentOneHotEncoder(min_count=0.0, max_categories=1).fit(train)
    assert list(top.categories_[0]) == ["a"]


def test_compile_and_fit_give_a_column_transformer(mixed_ds):
    ds = mixed_ds["binary"]
    _, plan = compile_recipe(SERVABLE, ds)
    assert plan.inputs == ["amount", "count", "online", "merchant"]
    frame = pd.DataFrame(mixed_ds_frame(ds))
    fitted, _ = fit_recipe(SERVABLE, ds, frame)
    names = list(fitted.get_feature_names_out())
    assert "categorical_1__merchant_grocer" in names and not any("yacht" in n for n in names)
    assert fitted.transform(frame[plan.inputs]).shape[0] == len(frame)


def mixed_ds_frame(ds) -> pd.DataFrame:
    from onyxserve.training.datasource.record import read_frames

    frame = pd.concat(list(read_frames(ds)))
    return frame.astype({c: object for c in frame.columns if frame[c].dtype == object}).fillna(np.nan)


@pytest.mark.parametrize("algorithm", ["linear", "gradient_boosting"])
def test_servable_recipe_exports_with_parity(tmp_path, mixed_ds, algorithm):
    ds = mixed_ds["binary"]
    result = train_model(
        ds, algorithm=algorithm, recipe=SERVABLE, params={"max_iter": 20} if algorithm != "linear" else {}
    )
    exported = export_trained(result, name="mixed", repository=tmp_path)
    scorer = load_version(exported.path)
    features = {f.name: f for f in scorer.manifest.features}
    assert list(features) == ["amount", "count", "online", "merchant"]
    clipper = result.pipeline[0].named_transformers_["numeric_1"].named_steps["clip"]
    lo, hi = clipper.kw_args["a_min"][0], clipper.kw_args["a_max"][0]
    amount = features["amount"].numeric  # the fitted clip bounds, carried through min-max
    # (min-max kept as scikit-learn computes it, x * scale_ + min_: the bounds exactly so)
    assert amount.clip_low == (lo - amount.offset) / amount.divisor * amount.scale + amount.shift
    assert amount.clip_high == (hi - amount.offset) / amount.divisor * amount.scale + amount.shift
    assert np.isfinite(amount.clip_low) and np.isfinite(amount.clip_high)
    assert features["merchant"].categorical.categories == ("cafe", "fuel", "grocer", "none", "travel")
    rows = result.prepared.X_eval.copy()
    rows.iloc[0, rows.columns.get_loc("merchant")] = "yacht"  # rare -> the folded bucket
    rows.iloc[1, rows.columns.get_loc("merchant")] = "never-seen"
    rows.iloc[2, rows.columns.get_loc("amount")] = 1e6  # clipped
    served = scorer.score([row_block(scorer.manifest, rows)])
    np.testing.assert_allclose(served["probabilities"], result.pipeline.predict_proba(rows), atol=1e-5)


def test_default_text_recipe_exports_into_the_graph(tmp_path, mixed_ds):
    """The default recipe vectorizes the TEXT attribute (lowercase, no punctuation, 1-2 grams)."""
    result = train_model(mixed_ds["binary"], algorithm="linear")
    exported = export_trained(result, name="mixed", repository=tmp_path)
    note = next(f for f in exported.manifest.features if f.name == "note")
    assert note.type == "text" and note.text.lowercase
    scorer = load_version(exported.path)
    rows = result.prepared.X_eval.head(40).copy()
    rows.iloc[0, rows.columns.get_loc("note")] = "PAID — FOR the_gift, THANKS!!"
    rows.iloc[1, rows.columns.get_loc("note")] = None  # missing text is ""
    served = scorer.score([row_block(scorer.manifest, rows)])
    np.testing.assert_allclose(served["probabilities"], result.pipeline.predict_proba(rows), atol=1e-5)


@pytest.mark.parametrize(
    ("recipe", "step"),
    [
        (  # quantile_bin, text and a cartesian of CATEGORICAL attributes are served
            {"cartesian": [{"columns": ["merchant", "online"]}], "features": {"note": "drop"}},
            "cartesian 'merchant_x_online' cannot be served: attribute 'online' is BINARY",
        ),
    ],
)
def test_unservable_steps_train_but_export_refuses(tmp_path, mixed_ds, recipe, step):
    result = train_model(mixed_ds["binary"], algorithm="linear", recipe=recipe)
    assert 0.0 <= result.metrics["roc_auc"] <= 1.0
    with pytest.raises(ExportError, match=step):
        export_trained(result, name="mixed", repository=tmp_path)
    assert not (tmp_path / "mixed").exists()  # nothing written
