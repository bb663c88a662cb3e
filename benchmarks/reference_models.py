"""Fit the two reference pipelines of the served benchmarks on fraud-like data.

The data has the shape of the public credit-card fraud set: 30 numeric features (``Time``,
``V1``..``V28``, ``Amount``) and about 0.3 % positives. It is synthetic and deterministic
(``--seed``), so every run and every server sees the same rows.

Writes into ``--out`` (not committed):

- ``fraud_lr.joblib``  StandardScaler + LogisticRegression
- ``fraud_rf.joblib``  StandardScaler + RandomForestClassifier(n_estimators=100, max_depth=10)
- ``fraud.csv``        all rows, features + ``Class``
- ``sample.csv``       ``--sample-rows`` rows, features only (export parity sample, load-test rows)
- ``versions.json``    python / numpy / scikit-learn / joblib versions the pickles were made with;
                       ``served/setup_mlserver.sh`` pins MLServer's virtualenv to them

The pipelines are fitted on plain arrays (no ``feature_names_in_``) unless ``--feature-names``:
MLServer hands the model a bare ndarray, and a pipeline fitted on a DataFrame would warn on every
request there. The column order is the CSV header's.

Usage: ``python benchmarks/reference_models.py --out /tmp/onyx-ref [--rows 50000] [--seed 7]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["Time", *[f"V{i}" for i in range(1, 29)], "Amount"]
POSITIVE_RATE = 0.003


def make_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[rows, 30]`` float64 and labels; positives differ on a few V columns and Amount."""
    rng = np.random.default_rng(seed)
    # PCA-like components: variance decreasing with the component index
    stds = np.linspace(2.0, 0.3, 28)
    v = rng.standard_normal((rows, 28)) * stds
    t = np.sort(rng.uniform(0.0, 172_800.0, rows))  # two days of seconds, ordered like the original
    amount = np.round(rng.lognormal(mean=3.0, sigma=1.4, size=rows), 2)
    y = np.zeros(rows, dtype=np.int64)
    n_pos = max(1, round(rows * POSITIVE_RATE))
    pos = rng.choice(rows, size=n_pos, replace=False)
    y[pos] = 1
    # Frauds sit apart on a handful of components (as V10, V12, V14, V17 do in the real data),
    # with enough spread that neither model is perfect.
    shift = np.zeros(28)
    shift[[9, 11, 13, 16]] = [-3.0, -3.5, -4.0, -3.0]
    shift[[2, 3, 10]] = [-2.0, 2.5, 2.0]
    v[pos] += shift * rng.uniform(0.2, 1.3, size=(n_pos, 1))
    amount[pos] = np.round(rng.lognormal(mean=4.0, sigma=1.8, size=n_pos), 2)
    x = np.column_stack([t, v, amount])
    return x, y


def fit_pipelines(x, y: np.ndarray, seed: int) -> dict[str, Pipeline]:
    lr = Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
    rf = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("clf", RandomForestClassifier(n_estimators=100, max_depth=10, random_state=seed, n_jobs=2)),
        ]
    )
    out = {}
    for name, pipe in (("fraud_lr", lr), ("fraud_rf", rf)):
        start = time.perf_counter()
        pipe.fit(x, y)
        if name == "fraud_rf":
            pipe.named_steps["clf"].set_params(n_jobs=None)  # serving scores one row at a time
        print(f"fitted {name} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        out[name] = pipe
    return out


def write_csv(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> None:
    header = ",".join(FEATURES + (["Class"] if y is not None else []))
    data = x if y is None else np.column_stack([x, y])
    fmt = ["%.6f"] * len(FEATURES) + (["%d"] if y is not None else [])
    np.savetxt(path, data, delimiter=",", header=header, comments="", fmt=fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory (created)")
    parser.add_argument("--rows", type=int, default=50_000, help="rows of data (default 50000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--sample-rows", type=int, default=1000, help="rows in sample.csv (default 1000)")
    parser.add_argument(
        "--feature-names",
        action="store_true",
        help="fit on a DataFrame so the pipelines carry feature_names_in_",
    )
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    x, y = make_data(args.rows, args.seed)
    # a sample round-tripped through the CSV's 6 decimals, so the exported and served rows agree
    write_csv(args.out / "fraud.csv", x, y)
    x = np.loadtxt(args.out / "fraud.csv", delimiter=",", skiprows=1)[:, : len(FEATURES)]
    fit_x = x
    if args.feature_names:
        import pandas as pd

        fit_x = pd.DataFrame(x, columns=FEATURES)
    pipelines = fit_pipelines(fit_x, y, args.seed)
    for name, pipe in pipelines.items():
        joblib.dump(pipe, args.out / f"{name}.joblib")
    rng = np.random.default_rng(args.seed + 1)
    idx = np.sort(rng.choice(len(x), size=min(args.sample_rows, len(x)), replace=False))
    write_csv(args.out / "sample.csv", x[idx])
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "rows": args.rows,
        "seed": args.seed,
        "positives": int(y.sum()),
    }
    (args.out / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    print(json.dumps(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
