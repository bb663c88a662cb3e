"""Quantile bins and cartesians exported to the compiled core: manifest contents, parity with
the scikit-learn pipeline on edge rows, refusals that name the step or attribute, and the recipe
route (train_model + export_trained)."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.core.scorer import load_version
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import ExportError, export_model
from onyxserve.training.fit.train import export_trained, train_model
from onyxserve.training.recipe.steps import CartesianJoiner
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

from tests.training import bins_crosses_models as models


@pytest.fixture(scope="module")
def crossed():
    return models.binned_crossed()


def served(version_dir, rows):
    scorer = load_version(version_dir, intra_op_threads=1)
    return scorer.score([row_block(scorer.manifest, rows)])


def test_manifest_holds_bins_crosses_and_input_only_parent(tmp_path, crossed):
    result = export_model(crossed, name="bc", repository=tmp_path, sample=models.frame(200, seed=1))
    m = result.manifest
    assert m.feature_names == ("age", "merchant", "income", "channel")  # client order: the sample's
    age, merchant, income, channel = m.features
    kb = models._kbins(crossed, "age")
    clip = crossed.named_steps["pre"].named_transformers_["age"].named_steps["clip"]
    assert age.numeric.bins == tuple(kb.bin_edges_[0][1:-1]) and age.width == kb.n_bins_[0]
    assert (age.numeric.clip_low, age.numeric.clip_high) == (clip.kw_args["a_min"][0], clip.kw_args["a_max"][0])
    assert age.numeric.impute is not None and not age.numeric.allow_nan
    assert income.numeric.bins is None and merchant.categorical.encoding == "onehot"
    assert channel.type == "categorical" and channel.categorical.encoding == "none" and channel.width == 0
    (cross,) = m.crosses
    encoder = crossed.named_steps["pre"].named_transformers_["cross"].named_steps["onehot"]
    assert cross.name == "merchant_x_channel" and cross.inputs == ("merchant", "channel")
    assert cross.categorical.categories == tuple(encoder.categories_[0]) and cross.categorical.unknown == "ignore"
    assert "cafe|a|b" in cross.categorical.categories  # the separator inside a value, as training joined it
    assert m.model.input_width == age.width + income.width + merchant.width + cross.width
    assert result.parity.rows == 200 and result.parity.max_error < 1e-5
    assert set(m.baseline["features"]) == {"age", "merchant", "income", "channel"}
    # the input-only parent has no category table; its baseline holds the sample's own values
    channel_base = m.baseline["features"]["channel"]
    assert channel_base["counts"] and channel_base["unknown_rate"] == 0.0


def test_served_scores_equal_the_pipeline_on_edge_rows(tmp_path, crossed):
    result = export_model(crossed, name="bc", repository=tmp_path, sample=models.frame(200, seed=1))
    rows = models.edge_rows(crossed, models.frame(50, seed=2))
    got = served(result.path, rows)
    np.testing.assert_allclose(got["probabilities"], crossed.predict_proba(rows), rtol=0, atol=1e-5)
    # the edge rows really do cross the bins and hit known, rare and unknown cross keys
    kb = models._kbins(crossed, "age")
    assert len(np.unique(kb.transform(rows[["age"]].fillna(40.0)).argmax(axis=1))) == kb.n_bins_[0]
    enc = crossed.named_steps["pre"].named_transformers_["cross"]
    hits = enc.transform(rows[["merchant", "channel"]]).sum(axis=1)
    assert hits.min() == 0 and hits.max() == 1


def test_all_numeric_binned_model_keeps_the_matrix_form(tmp_path):
    pipeline = models.binned_numeric()
    sample = models.frame(200, seed=3)[["age", "income"]].fillna({"age": 41.0})
    result = export_model(pipeline, name="bn", repository=tmp_path, sample=sample)
    m = result.manifest
    assert m.all_numeric and [f.numeric.allow_nan for f in m.features] == [False, False]
    income_bins = pipeline.named_steps["pre"].named_transformers_["bins"].n_bins_[1]
    assert income_bins < 8 and m.features[1].width == income_bins  # bins removed at fit
    block = row_block(m, sample)
    assert block.matrix is not None  # form A
    scorer = load_version(result.path, intra_op_threads=1)
    np.testing.assert_allclose(scorer.score([block])["probabilities"], pipeline.predict_proba(sample), atol=1e-5)


def _cross_pipeline(encoder, columns=("merchant", "channel"), extra=()) -> Pipeline:
    pre = ColumnTransformer([("cross", Pipeline([("join", CartesianJoiner()), *extra, ("onehot", encoder)]), list(columns))])
    df = models.frame()
    return Pipeline([("pre", pre), ("model", LogisticRegression())]).fit(df, models.target(df))


def test_refusals_name_the_step_or_attribute(tmp_path):
    df = models.frame(100)
    flagged = df.assign(flag=(df["age"] > 40).astype(float))
    pre = ColumnTransformer([("cross", Pipeline([("join", CartesianJoiner()), ("onehot", OneHotEncoder(
        handle_unknown="ignore"))]), ["merchant", "flag"])])
    binary_parent = Pipeline([("pre", pre), ("model", LogisticRegression())]).fit(flagged, models.target(df))
    with pytest.raises(ExportError, match="cartesian 'merchant_x_flag': attribute 'flag' is sent as a number"):
        export_model(binary_parent, name="x", repository=tmp_path, sample=flagged)
    strict = _cross_pipeline(OneHotEncoder(handle_unknown="error"))
    with pytest.raises(ExportError, match="cartesian 'merchant_x_channel' onehot with unknown 'error'"):
        export_model(strict, name="x", repository=tmp_path, sample=df)
    ordinal_bins = ColumnTransformer([("b", KBinsDiscretizer(n_bins=4, encode="ordinal"), ["income"])])
    model = Pipeline([("pre", ordinal_bins), ("m", LogisticRegression())]).fit(df, models.target(df))
    with pytest.raises(ExportError, match=r"'pre__b' \(KBinsDiscretizer\) is not supported: encode='ordinal'"):
        export_model(model, name="x", repository=tmp_path, sample=df)
    scaled_bins = ColumnTransformer([("b", Pipeline([("bin", KBinsDiscretizer(n_bins=4, encode="onehot-dense")),
                                                     ("s", StandardScaler())]), ["income"])])
    model = Pipeline([("pre", scaled_bins), ("m", LogisticRegression())]).fit(df, models.target(df))
    with pytest.raises(ExportError, match="transforms the one-hot bin columns of feature 'income'"):
        export_model(model, name="x", repository=tmp_path, sample=df)
    assert not (tmp_path / "x").exists()


# ---- the recipe route --------------------------------------------------------------------

RECIPE = {
    "features": {
        "age": ["impute", {"step": "clip", "low": 0.02, "high": 0.98}, {"step": "quantile_bin", "bins": 5}],
        "income": [{"step": "impute"}, {"step": "quantile_bin", "bins": 4}],
        "channel": "drop",  # used by the cartesian only: still a client input
    },
    "cartesian": [{"columns": ["merchant", "channel"], "min_count": 8}],
}


@pytest.fixture(scope="module")
def recipe_ds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bins-recipe")
    df = models.frame(500, seed=4)
    df["id"] = [f"r{i}" for i in range(len(df))]
    df["label"] = np.where(models.target(df) == 1, "yes", "no")
    df.to_csv(folder / "bc.csv", index=False)
    return create_datasource(folder / "bc.csv", target="label", row_id="id", name="bc")


def test_recipe_with_quantile_bin_and_cartesian_exports_and_serves(tmp_path, recipe_ds):
    assert recipe_ds.schema.attributes["channel"].value == "CATEGORICAL"
    result = train_model(recipe_ds, algorithm="linear", recipe=RECIPE)
    exported = export_trained(result, name="bc", repository=tmp_path)
    m = exported.manifest
    assert {f.name: f.width > 0 for f in m.features} == {"age": True, "income": True, "merchant": True, "channel": False}
    assert [f.numeric.bins is not None for f in m.features if f.numeric] == [True, True]
    assert [x.inputs for x in m.crosses] == [("merchant", "channel")]
    rows = result.prepared.X_eval.copy().reset_index(drop=True)
    rows.loc[0, "merchant"], rows.loc[1, "channel"], rows.loc[2, "age"] = "never-seen", None, np.nan
    rows.loc[3, "age"] = 1e6
    got = served(exported.path, rows)
    np.testing.assert_allclose(got["probabilities"], result.pipeline.predict_proba(rows), rtol=0, atol=1e-5)


def test_recipe_cartesian_with_a_binary_attribute_is_refused(tmp_path, recipe_ds, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bins-binary")
    df = models.frame(300, seed=5)
    df["online"] = np.where(df["channel"] == "web", "yes", "no")
    df["label"] = models.target(df)
    df.to_csv(folder / "b.csv", index=False)
    ds = create_datasource(folder / "b.csv", target="label", name="b")
    recipe = {"cartesian": [{"columns": ["merchant", "online"]}]}
    result = train_model(ds, algorithm="linear", recipe=recipe)
    with pytest.raises(ExportError, match="cartesian 'merchant_x_online' cannot be served: attribute 'online' is BINARY"):
        export_trained(result, name="b", repository=tmp_path)
    assert not (tmp_path / "b").exists()
