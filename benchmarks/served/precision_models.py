"""The models of the precision benchmark (issue 11): a fraud-like logistic regression and a
HistGradientBoosting classifier, the latter exported twice -- as now (double trees over the
core's float64 matrix) and as before (float32 trees, ``--hgb-float32``) -- into one repository.

    python benchmarks/served/precision_models.py /tmp/onyx-precision [--rows 20000]
    python benchmarks/served/hotpath.py /tmp/onyx-precision --requests 20000 --datatype FP64
"""

from __future__ import annotations

import argparse
import warnings

from onyxserve.training.export import convert
from onyxserve.training.export.writer import export_model
from onyxserve.training.synthetic import FEATURES, TARGET, fraud_transactions
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository")
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    frame = fraud_transactions(args.rows, seed=7)
    X, y = frame[FEATURES], frame[TARGET]
    warnings.simplefilter("ignore")
    models = {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "hgb64": make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=100, random_state=0)),
    }
    for name, pipeline in models.items():
        pipeline.fit(X, y)
        export_model(pipeline, name=name, repository=args.repository, sample=X.iloc[:500], register=False)
    # the float32 graph HistGradientBoosting had before: same pipeline, trees left as skl2onnx writes them
    dtype, convert.input_dtype = convert.input_dtype, lambda estimator: "float32"
    try:
        # (a smaller sample: on 500 rows the parity gate finds a value on a threshold and refuses it)
        export_model(models["hgb64"], name="hgb32", repository=args.repository, sample=X.iloc[:100], register=False)
    finally:
        convert.input_dtype = dtype


if __name__ == "__main__":
    main()
