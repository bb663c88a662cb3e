"""Fitted pipelines with quantile bins and a cartesian, and rows that probe their edges."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from onyxserve.training.recipe.steps import CartesianJoiner, FrequentOneHotEncoder, OutlierClipper
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

MERCHANTS = ["cafe", "fuel", "travel", "grocer"]
CHANNELS = ["web", "shop", "phone", "a|b"]  # a value holding the separator


def frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.round(rng.normal(40, 12, rows))
    age[::17] = np.nan
    merchant = rng.choice(MERCHANTS, rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    merchant[rng.random(rows) < 0.05] = None
    merchant[3] = "yacht"  # rare: the __rare__ bucket of its own encoder and of the cross
    return pd.DataFrame(
        {
            "age": age,
            "merchant": merchant,
            "income": np.round(rng.lognormal(3, 1, rows), 2),
            "channel": rng.choice(CHANNELS, rows, p=[0.5, 0.3, 0.15, 0.05]).astype(object),
        }
    )


def target(df: pd.DataFrame) -> np.ndarray:
    signal = (df["age"].fillna(40) > 45).to_numpy() ^ (df["channel"] == "web").to_numpy()
    return (signal | (df["merchant"] == "travel").to_numpy()).astype(int)


def binned_crossed() -> Pipeline:
    """age: impute, clip, 6 quantile bins; income: standard; merchant: one-hot; merchant x
    channel: cartesian (channel is used by the cross only)."""
    pre = ColumnTransformer(
        [
            (
                "age",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("clip", OutlierClipper("quantile", 0.05, 0.95)),
                        ("bin", KBinsDiscretizer(n_bins=6, encode="onehot-dense", strategy="quantile")),
                    ]
                ),
                ["age"],
            ),
            ("income", StandardScaler(), ["income"]),
            (
                "merchant",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("onehot", FrequentOneHotEncoder(min_count=5)),
                    ]
                ),
                ["merchant"],
            ),
            (
                "cross",
                Pipeline([("join", CartesianJoiner()), ("onehot", FrequentOneHotEncoder(min_count=10))]),
                ["merchant", "channel"],
            ),
        ],
        sparse_threshold=0.0,
    )
    df = frame()
    return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(df, target(df))


def binned_numeric() -> Pipeline:
    """All-numeric (served from one [N, F] FP32 matrix): age binned without an imputer (NaN is
    rejected), income binned with many repeated values (bins removed at fit)."""
    df = frame()[["age", "income"]].copy()
    df["age"] = df["age"].fillna(40.0)
    df.loc[df.index[:250], "income"] = 10.0  # repeated quantiles: KBinsDiscretizer drops bins
    pre = ColumnTransformer(
        [
            ("bins", KBinsDiscretizer(n_bins=8, encode="onehot-dense", strategy="quantile"), ["age", "income"]),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(df, target(frame()))


def edge_rows(pipeline: Pipeline, base: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``base`` whose ``age`` sits exactly on, just below and just above every fitted
    edge (in float32 too), far outside the clip bounds and missing; with unknown and missing
    cross parts."""
    kb = _kbins(pipeline, "age")
    edges = np.asarray(kb.bin_edges_[0], dtype=np.float64)
    ages = np.concatenate(
        [edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), edges.astype(np.float32), [-1e6, 1e6]]
    )
    rows = base.iloc[np.arange(len(ages)) % len(base)].reset_index(drop=True).copy()
    rows["age"] = ages
    if "merchant" in rows:
        extra = base.iloc[:6].reset_index(drop=True).copy()
        extra["age"] = np.nan  # imputed, then binned
        extra["merchant"] = ["never-seen", None, "cafe", "yacht", "a", "cafe"]
        extra["channel"] = ["web", "web", None, "shop", "b|web", "unknown"]
        rows = pd.concat([rows, extra], ignore_index=True)
    return rows


def _kbins(pipeline: Pipeline, column: str) -> KBinsDiscretizer:
    pre = pipeline.named_steps["pre"]
    for name, trans, cols in pre.transformers_:
        if column in list(cols):
            return trans.named_steps["bin"] if isinstance(trans, Pipeline) else trans
    raise KeyError(column)
