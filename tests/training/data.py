"""Small synthetic training data for the export tests: numeric columns with gaps, a string column."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLORS = ["red", "green", "blue", "teal"]


def mixed_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "income": rng.lognormal(10, 0.5, n),
            "color": rng.choice(COLORS, n),
            "visits": rng.integers(0, 20, n).astype(float),
        }
    )
    frame.loc[rng.uniform(size=n) < 0.1, "age"] = np.nan
    return frame


def targets(frame: pd.DataFrame, task: str, seed: int = 1) -> np.ndarray:
    """A learnable target: binary 0/1, multiclass strings, or a real value."""
    rng = np.random.default_rng(seed)
    score = (
        (frame["age"].fillna(40) - 40) / 12
        + np.log(frame["income"]) - 10
        + frame["color"].map({"red": 1.0, "green": -0.5, "blue": 0.0, "teal": 0.3})
        + 0.05 * frame["visits"]
        + rng.normal(scale=0.3, size=len(frame))
    ).to_numpy()
    if task == "binary":
        return (score > np.median(score)).astype(int)
    if task == "multiclass":
        return np.array(["low", "mid", "high"])[np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))]
    return 50.0 * score + 200.0
