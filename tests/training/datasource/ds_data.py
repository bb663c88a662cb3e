"""Small datasets for the datasource tests, written to real files in each format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def mixed(rows: int = 240, seed: int = 3) -> pd.DataFrame:
    """Numeric (with gaps), binary, categorical and text attributes, and a binary target."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.lognormal(3.0, 1.0, rows), 2)
    amount[::17] = np.nan
    return pd.DataFrame(
        {
            "id": [f"tx{i:05d}" for i in range(rows)],
            "amount": amount,
            "count": rng.integers(0, 50, rows),
            "online": rng.choice(["yes", "no"], rows),
            "merchant": rng.choice(["grocer", "fuel", "travel", "cafe"], rows),
            "note": [
                f"customer {i} paid for {rng.choice(['milk', 'fuel', 'a trip'])} at noon" for i in range(rows)
            ],
            "fraud": (rng.random(rows) < 0.1).astype(int),
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    """The frame as CSV, JSON Lines, JSON array or Parquet, by the path's extension."""
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        records = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict(orient="records")
        ]
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(suffix)
    return path
