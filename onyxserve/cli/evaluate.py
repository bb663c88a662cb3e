"""``onyxserve evaluate``: score labelled data through the served path and report the metrics.

    onyxserve evaluate VERSION_DIR DATA --target Class [--report eval.html]
        [--threshold 0.5 | --threshold-for "precision>=0.9"] [--no-save] [--json]

DATA is a CSV or Parquet file, or a datasource record (``*.datasource.json``). The metrics and
the chosen threshold are saved as ``VERSION_DIR/evaluation.json`` (and recorded in the
repository's registry when the version is registered there) unless ``--no-save``.
Exit codes: 0 done, 1 the data or model was refused (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model version on labelled data (metrics vs baseline, HTML report)",
        description="Score DATA through the compiled core + ONNX Runtime (as the server does), compare"
        " every metric with the Amazon ML baseline, save the metrics next to the manifest.",
    )
    p.add_argument("version_dir", type=Path, help="the model version folder (REPOSITORY/NAME/VERSION)")
    p.add_argument("data", help="CSV or Parquet file, or a datasource record (.datasource.json)")
    p.add_argument("--target", required=True, help="the column holding the true label or value")
    p.add_argument("--report", type=Path, help="write a self-contained HTML report here")
    p.add_argument("--threshold", type=float, default=0.5, help="binary: score threshold (default 0.5)")
    p.add_argument(
        "--threshold-for",
        dest="threshold_target",
        help="binary: pick the threshold meeting a target, e.g. 'precision>=0.9', 'fpr<=0.01', 'recall>=0.8'",
    )
    p.add_argument("--chunk-rows", type=int, default=65_536, help="rows scored at a time (bounds memory)")
    p.add_argument(
        "--importance-rows", type=int, default=5000, help="rows sampled for permutation importance"
    )
    p.add_argument("--no-save", action="store_true", help="do not write evaluation.json / the registry")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onyxserve.training.evaluation.metrics import EvaluationError, evaluate_version

    try:
        outcome = evaluate_version(
            args.version_dir,
            args.data,
            args.target,
            threshold=args.threshold,
            threshold_target=args.threshold_target,
            chunk_rows=args.chunk_rows,
            importance_rows=args.importance_rows if args.report else 0,
            save=not args.no_save,
        )
    except EvaluationError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    if args.report:
        from onyxserve.training.evaluation.report import write_report

        write_report(outcome, args.report)
    if args.json:
        print(json.dumps(outcome.result.to_dict(), indent=2))
    else:
        print(outcome.result.summary())
        if outcome.saved_to:
            print(f"saved: {outcome.saved_to}")
        if args.report:
            print(f"report: {args.report}")
    return 0
