"""A small real model for the drift tests, and rows drawn like its training sample (or shifted)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CITIES = ["paris", "oslo", "lima", "quito"]
UNSEEN = ["tokyo", "rome"]


def shop_frame(n: int, seed: int, shift_a: float = 0.0, unseen_share: float = 0.0) -> pd.DataFrame:
    """a ~ N(0, 1) (+ shift_a), b ~ lognormal, c ~ U(0, 10) with 5% missing, city of CITIES
    (a share of them replaced by never-seen cities)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "a": rng.normal(size=n) + shift_a,
        "b": rng.lognormal(1.0, 0.5, n),
        "c": rng.uniform(0, 10, n),
        "city": rng.choice(CITIES, n, p=[0.4, 0.3, 0.2, 0.1]),
    })
    frame.loc[rng.uniform(size=n) < 0.05, "c"] = np.nan
    if unseen_share:
        swap = rng.uniform(size=n) < unseen_share
        frame.loc[swap, "city"] = rng.choice(UNSEEN, int(swap.sum()))
    return frame


def shop_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    X = shop_frame(3000, seed=0)
    logit = 1.5 * X["a"] - 0.3 * X["b"] + 0.1 * X["c"].fillna(5) + (X["city"] == "oslo") * 0.8
    y = (np.random.default_rng(1).uniform(size=len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["a", "b", "c"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
    ])
    return Pipeline([("pre", pre), ("lr", LogisticRegression(max_iter=500))]).fit(X, y), X


def build_shop_repository(root: Path, names: list[str], config: dict | None = None,
                          baseline_rows: int = 0, baseline_data: pd.DataFrame | None = None) -> None:
    """Export the same fitted pipeline under each of ``names`` (baseline: 2000 sample rows, or
    ``baseline_rows`` rows of training data drawn like the training frame, or ``baseline_data``)."""
    from onyxserve.training.export.writer import export_model

    estimator, X = shop_pipeline()
    data = shop_frame(baseline_rows, seed=99) if baseline_rows else baseline_data
    for name in names:
        export_model(estimator, name=name, repository=root, sample=X.iloc[:2000], register=False,
                     baseline_data=data)
        if config:
            (root / name / "config.json").write_text(json.dumps(config), encoding="utf-8")


def http_json(url: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rest_inputs(frame: pd.DataFrame) -> list[dict]:
    """One V2 REST input per column: FP64 numbers (no NaN: JSON has none), BYTES strings."""
    inputs = []
    for column in frame.columns:
        values = frame[column].tolist()
        datatype = "FP64" if pd.api.types.is_numeric_dtype(frame[column]) else "BYTES"
        inputs.append({"name": column, "datatype": datatype, "shape": [len(values)], "data": values})
    return inputs


def expected_numeric(x: np.ndarray, edges: np.ndarray) -> list[int]:
    """below, numpy.histogram's bins, above, NaN: the sketch's slots, computed independently."""
    finite = x[~np.isnan(x)]
    inner = np.histogram(finite, edges)[0]
    return [int((finite < edges[0]).sum()), *inner.tolist(), int((finite > edges[-1]).sum()), int(np.isnan(x).sum())]


def reference_psi(live: list[int], baseline: list[int]) -> float:
    """PSI with 0.5 added to every bin of both distributions (the server's stated smoothing)."""
    p = (np.array(live, dtype=float) + 0.5) / (sum(live) + 0.5 * len(live))
    q = (np.array(baseline, dtype=float) + 0.5) / (sum(baseline) + 0.5 * len(baseline))
    return float(((p - q) * np.log(p / q)).sum())
