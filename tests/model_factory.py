"""Small real scikit-learn models for the tests, exported through the real export path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

FRAUD_FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
CITIES = ["paris", "oslo", "lima", "quito"]


def fraud_frame(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Credit-card-like: Time, V1..V28, Amount; ~2% positives so a small fit sees some."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 30))
    X[:, 0] = rng.uniform(0, 172_800, n)
    X[:, 29] = rng.lognormal(3, 1.2, n)
    logit = -4.5 + 1.8 * X[:, 4] - 1.4 * X[:, 14] + 0.01 * (X[:, 29] - 20)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(X, columns=FRAUD_FEATURES), y


def fraud_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    X, y = fraud_frame()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y), X


def iris_like() -> tuple[RandomForestClassifier, pd.DataFrame]:
    rng = np.random.default_rng(1)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    labels = np.array(["setosa", "versicolor", "virginica"])
    idx = rng.integers(0, 3, 300)
    X = pd.DataFrame(centers[idx] + rng.normal(scale=0.3, size=(300, 4)),
                     columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    return RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X, labels[idx]), X


def price_frame(n: int = 400, seed: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "area": rng.uniform(20, 200, n),
        "rooms": rng.integers(1, 6, n).astype(float),
        "age": rng.uniform(0, 80, n),
        "city": rng.choice(CITIES, n),
    })
    X.loc[rng.uniform(size=n) < 0.05, "age"] = np.nan
    y = 3 * X["area"] + 10 * X["rooms"] - 0.5 * X["age"].fillna(40) + X["city"].map(
        {"paris": 100, "oslo": 80, "lima": 20, "quito": 10}) + rng.normal(scale=5, size=n)
    return X, y.to_numpy()


def price_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    X, y = price_frame()
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["area", "rooms", "age"]),
        ("cat", OneHotEncoder(handle_unknown="error"), ["city"]),
    ])
    return Pipeline([("pre", pre), ("ridge", Ridge(alpha=1.0))]).fit(X, y), X


def build_repository(root: Path) -> dict[str, tuple[object, pd.DataFrame]]:
    """Export the three test models into ``root``; returns name -> (fitted estimator, sample)."""
    from onyxserve.training.export.writer import export_model

    models = {"fraud": fraud_pipeline(), "iris": iris_like(), "price": price_pipeline()}
    for name, (estimator, X) in models.items():
        export_model(estimator, name=name, repository=root, sample=X.iloc[:200])
    return models
