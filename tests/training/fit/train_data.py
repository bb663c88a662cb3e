"""Datasources for the recipe/train/tune tests: fraud (binary, numeric) and a small mixed table
(numeric with gaps, binary, categorical with a rare value and gaps, text) with a binary, a
multiclass and a regression target, each written to CSV and profiled by create_datasource."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.synthetic import fraud_transactions
from threadpoolctl import threadpool_limits

TARGETS = {"binary": "fraud", "multiclass": "segment", "regression": "spend"}


def mixed_table(rows: int = 400, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.0, 1.0, rows), 2)
    amount[rng.random(rows) < 3 / rows] *= 40  # a few outliers for clipping
    merchant = rng.choice(["grocer", "fuel", "travel", "cafe"], rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    merchant[rng.random(rows) < 0.05] = None
    merchant[7], merchant[11] = "yacht", "zeppelin"  # rare: folded into __rare__
    online = rng.choice(["yes", "no"], rows)
    count = rng.integers(0, 50, rows).astype(float)
    amount_gaps = amount.copy()
    amount_gaps[::23] = np.nan
    signal = (
        np.log(amount)
        + (online == "yes") * 0.8
        + pd.Series(merchant).map({"travel": 1.0, "cafe": -0.5}).fillna(0).to_numpy()
    )
    signal = signal + rng.normal(0, 0.3, rows)
    words = np.array(["milk", "fuel", "trip", "coffee", "bread", "ticket"])
    return pd.DataFrame(
        {
            "id": [f"r{i:04d}" for i in range(rows)],
            "amount": amount_gaps,
            "count": count,
            "online": online,
            "merchant": merchant,
            "note": [f"Paid for {' '.join(rng.choice(words, 3))}, thanks! #{i}" for i in range(rows)],
            "fraud": (signal > np.quantile(signal, 0.7)).astype(int),
            "segment": np.array(["low", "mid", "high"])[
                np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))
            ],
            "spend": np.round(20 * signal + count, 3),
        }
    )


def mixed_datasource(folder: Path, task: str):
    path = folder / "mixed.csv"
    if not path.exists():
        mixed_table().to_csv(path, index=False)
    others = [t for k, t in TARGETS.items() if k != task]
    return create_datasource(path, target=TARGETS[task], row_id="id", exclude=others, name=f"mixed-{task}")


def fraud_datasource(folder: Path, rows: int = 3000):
    path = folder / "fraud.csv"
    fraud_transactions(rows=rows).to_csv(path, index=False)
    return create_datasource(path, target="Class", name="fraud")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train-data")


@pytest.fixture(scope="module")
def fraud_ds(data_dir):
    return fraud_datasource(data_dir)


@pytest.fixture(scope="module")
def mixed_ds(data_dir):
    return {task: mixed_datasource(data_dir, task) for task in TARGETS}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """OpenMP kernels (HistGradientBoosting) spin badly on a busy 2-core machine; one thread is
    faster and keeps the timings of the budget tests meaningful."""
    with threadpool_limits(1):
        yield
