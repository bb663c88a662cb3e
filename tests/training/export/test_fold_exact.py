"""Single scalers fold with scikit-learn's own operations: the core's float64 matrix is the
pipeline's transform bit for bit (not an ulp off, as the folded reciprocal was), which is what
a value sitting on a tree's split threshold needs to go the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from onyxserve.core.normalizer import FeatureNormalizer
from onyxserve.training.export.parity import row_block
from onyxserve.training.export.writer import export_model
from onyxserve.training.recipe.steps import OutlierClipper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import KBinsDiscretizer, MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

PREPROCESSING = {
    "standard": lambda: [StandardScaler()],
    "robust": lambda: [RobustScaler()],
    "maxabs": lambda: [MaxAbsScaler()],
    "minmax": lambda: [MinMaxScaler()],
    "minmax-clip": lambda: [MinMaxScaler(clip=True)],
    "impute-clip-standard": lambda: [SimpleImputer(strategy="median"), OutlierClipper("quantile", 0.05, 0.9), StandardScaler()],
    "impute-clip-minmax": lambda: [SimpleImputer(strategy="mean"), OutlierClipper("iqr", k=0.5), MinMaxScaler()],
    "standard-minmax": lambda: [StandardScaler(), MinMaxScaler((-2, 3))],
    "standard-bins": lambda: [SimpleImputer(), StandardScaler(), KBinsDiscretizer(5, encode="onehot-dense", quantile_method="averaged_inverted_cdf")],
}


def grid_frame(n: int, seed: int, missing: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal([15, 120, 0.5], [2, 30, 0.3], (n, 3)), 1)  # measurements on a 0.1 grid
    if missing:
        x[rng.random(x.shape) < 0.1] = np.nan
    return pd.DataFrame(x, columns=["a", "b", "c"])


@pytest.mark.parametrize("name", PREPROCESSING)
def test_core_float64_equals_the_pipelines_transform(tmp_path, name):
    steps = PREPROCESSING[name]()
    missing = isinstance(steps[0], SimpleImputer)
    frame = grid_frame(400, 0, missing)
    y = np.nan_to_num(frame.to_numpy()).sum(axis=1)
    pipeline = make_pipeline(*steps, Ridge()).fit(frame, y)
    manifest = export_model(pipeline, name="m", repository=tmp_path, sample=frame.iloc[:50], register=False).manifest
    holdout = grid_frame(2000, 1, missing)
    core = FeatureNormalizer.from_manifest(manifest)
    ours = FeatureNormalizer(manifest.features, manifest.model.input_width, dtype="float64").gather([row_block(manifest, holdout)])
    theirs = np.asarray(pipeline[:-1].transform(holdout), dtype=np.float64)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(core.gather([row_block(manifest, holdout)]), theirs.astype(np.float32))


def test_column_transformer_weight_after_a_dividing_scaler_folds_exactly(tmp_path):
    """Weight ``w`` after StandardScaler is the multiply step: exact. After MinMaxScaler it is a
    second multiply, folded algebraically: within an ulp or two, not bit for bit."""
    frame = grid_frame(300, 2, False)
    pre = ColumnTransformer([("s", StandardScaler(), ["a", "b"]), ("m", MinMaxScaler(), ["c"])],
                            transformer_weights={"s": 0.3, "m": 2.0})
    pipeline = make_pipeline(pre, Ridge()).fit(frame, frame["a"])
    manifest = export_model(pipeline, name="m", repository=tmp_path, sample=frame, register=False).manifest
    ours = FeatureNormalizer(manifest.features, manifest.model.input_width, dtype="float64").gather([row_block(manifest, frame)])
    theirs = pipeline[:-1].transform(frame)
    np.testing.assert_array_equal(ours[:, :2], theirs[:, :2])
    np.testing.assert_allclose(ours[:, 2], theirs[:, 2], rtol=1e-15)
