"""A generated credit-card-fraud dataset with the shape of the public one.

Columns ``Time`` (seconds over two days, ordered), ``V1``..``V28`` (PCA-like components with
decreasing variance), ``Amount`` (log-normal) and ``Class`` (1 = fraud, about 0.3 %). Frauds sit
apart on a handful of components, with enough overlap that no model is perfect. Deterministic for
a seed, so examples, tests and benchmarks see the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
TARGET = "Class"


def fraud_transactions(rows: int = 50_000, seed: int = 7, positive_rate: float = 0.003) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    components = rng.standard_normal((rows, 28)) * np.linspace(2.0, 0.3, 28)
    time = np.sort(rng.uniform(0.0, 172_800.0, rows))
    amount = np.round(rng.lognormal(mean=3.0, sigma=1.4, size=rows), 2)
    label = np.zeros(rows, dtype=np.int64)
    frauds = rng.choice(rows, size=max(1, round(rows * positive_rate)), replace=False)
    label[frauds] = 1
    shift = np.zeros(28)
    shift[[9, 11, 13, 16]] = [-3.0, -3.5, -4.0, -3.0]  # as V10, V12, V14, V17 in the real data
    shift[[2, 3, 10]] = [-2.0, 2.5, 2.0]
    components[frauds] += shift * rng.uniform(0.2, 1.3, size=(len(frauds), 1))
    amount[frauds] = np.round(rng.lognormal(mean=4.0, sigma=1.8, size=len(frauds)), 2)
    frame = pd.DataFrame(np.column_stack([time, components, amount]), columns=FEATURES)
    frame[TARGET] = label
    return frame
