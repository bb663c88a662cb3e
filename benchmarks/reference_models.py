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
from onyxserve.training.synthetic import FEATURES, TARGET, fraud_transactions
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

POSITIVE_RATE = 0.003


def make_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[rows, 30]`` float64 and labels, from the project's fraud-like generator."""
    frame = fraud_transactions(rows=rows, seed=seed, positive_rate=POSITIVE_RATE)
    return frame[FEATURES].to_numpy(), frame[TARGET].to_numpy()


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
