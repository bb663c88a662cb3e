"""The linear (SGD) trainer with class_weight="balanced" on the synthetic fraud data, per alpha:
the old fit (sample weights multiplied into each SGD step) beside the current one (rows drawn in
proportion to their weight), and the exact optimum of the same objective (lbfgs).

    python benchmarks/training/linear_class_weights.py [--rows 30000] [--seeds 0 1 2]

Prints, per learning rate / penalty / alpha: evaluation AUC, the share of evaluation rows called
fraud at 0.5, and the weighted training objective reached (L2 only) against the optimum; medians
over the seeds (the split and the SGD order change with the seed).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.fit.params import build_estimator, validate_params
from onyxserve.training.fit.train import prepare, train_prepared
from onyxserve.training.synthetic import fraud_transactions
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

ALPHAS = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0)
SETTINGS = ({"learning_rate": "optimal"}, {"learning_rate": "constant"}, {"penalty": "l1"})
RECIPE = {"version": 1, "defaults": {"NUMERIC": [{"step": "normalize", "method": "standard"}]}}


def old_fit(prepared, params: dict, seed: int):
    """The trainer before the fix: one partial_fit per pass with the sample weights."""
    full = validate_params("linear", "binary", params)
    est = build_estimator("linear", "binary", full, seed)
    X, y = prepared.Xt_train, prepared.y_train
    w = compute_sample_weight("balanced", y)
    rng = np.random.default_rng(seed)
    for _ in range(full["max_passes"]):
        order = rng.permutation(len(y)) if full["shuffle"] else slice(None)
        est.partial_fit(X[order], y[order], sample_weight=w[order], classes=np.unique(y))
    return est


def objective(prepared, est, alpha: float) -> float:
    X, y = prepared.Xt_train, prepared.y_train
    w = compute_sample_weight("balanced", y)
    coef = est.coef_.ravel()
    z = X @ coef + est.intercept_[0]
    return float((w * np.logaddexp(0, -np.where(y == 1, 1, -1) * z)).mean() + 0.5 * alpha * coef @ coef)


def scores(prepared, est) -> tuple[float, float]:
    p = est.predict_proba(prepared.Xt_eval)[:, 1]
    return roc_auc_score(prepared.y_eval, p), float((p > 0.5).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        path = Path(tmp) / "fraud.csv"
        fraud_transactions(rows=args.rows).to_csv(path, index=False)
        ds = create_datasource(path, target="Class", name="fraud")
        prepared = {seed: prepare(ds, recipe=RECIPE, seed=seed) for seed in args.seeds}
        p0 = prepared[args.seeds[0]]
        print(f"rows={args.rows} train positives={int(p0.y_train.sum())}/{len(p0.y_train)} seeds={args.seeds}")
        print("| setting | alpha | AUC old | AUC new | fraud@0.5 old | fraud@0.5 new | fraud@0.5 exact |"
              " objective old | objective new | optimum |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for setting in SETTINGS:
            for alpha in ALPHAS:
                rows = []
                for seed, prep in prepared.items():
                    params = {**setting, "alpha": alpha}
                    old = old_fit(prep, params, seed)
                    new = train_prepared(prep, "linear", params, seed=seed, class_weight="balanced",
                                         progress=False).pipeline[-1]
                    row = [*scores(prep, old), *scores(prep, new)]
                    if "penalty" not in setting:
                        n = len(prep.y_train)
                        exact = LogisticRegression(C=1 / (alpha * n), max_iter=5000, tol=1e-10)
                        exact.fit(prep.Xt_train, prep.y_train, sample_weight=compute_sample_weight("balanced", prep.y_train))
                        row += [scores(prep, exact)[1], objective(prep, old, alpha), objective(prep, new, alpha),
                                objective(prep, exact, alpha)]
                    rows.append(row)
                m = np.median(np.array(rows), axis=0)
                name = ", ".join(f"{k}={v}" for k, v in setting.items())
                auc_old, fraud_old, auc_new, fraud_new = m[:4]
                cells = [f"{auc_old:.3f}", f"{auc_new:.3f}", f"{fraud_old:.1%}", f"{fraud_new:.1%}"]
                if len(m) > 4:  # L2: the exact optimum's fraud share and the three objectives
                    cells += [f"{m[4]:.1%}", f"{m[5]:.3f}", f"{m[6]:.3f}", f"{m[7]:.3f}"]
                else:
                    cells += ["-"] * 4
                print(f"| {name} | {alpha:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
