"""``onyxserve evaluate``: score labelled data through the served path and report the metrics.

    onyxserve evaluate VERSION_DIR DATA --target Class [--report eval.html]
        [--threshold 0.5 | --threshold-for "precision>=0.9"] [--no-save] [--json]

DATA is a CSV or Parquet file, or a datasource record (``*.datasource.json``). The metrics and
the chosen threshold are saved as ``VERSION_DIR/evaluation.json`` (and recorded in the
repository's registry when the version is registered there) unless ``--no-save``.
Exit codes (``onyxserve.cli.run``): 0 done, 1 the data or model was refused (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onyxserve.cli._options import add_chunk_rows, add_command, add_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        "evaluate a model version on labelled data (metrics vs baseline, HTML report)",
        "Score DATA through the compiled core + ONNX Runtime (as the server does), compare every"
        " metric with the Amazon ML baseline, save the metrics next to the manifest.",
    )
    p.add_argument("version_dir", type=Path, help="the model version folder (REPOSITORY/NAME/VERSION)")
    p.add_argument("data", help="CSV or Parquet file, or a datasource record (.datasource.json)")
    p.add_argument("--target", required=True, help="the column holding the true label or value")
    p.add_argument("--report", type=Path, help="write a self-contained HTML report here")
    p.add_argument("--threshold", type=float, default=0.5, help="binary: score threshold")
    p.add_argument(
        "--threshold-for",
        dest="threshold_target",
        help="binary: pick the threshold meeting a target, e.g. 'precision>=0.9', 'fpr<=0.01', 'recall>=0.8'",
    )
    add_chunk_rows(p)
    p.add_argument(
        "--importance-rows", type=int, default=5000, help="rows sampled for permutation importance"
    )
    p.add_argument("--no-save", action="store_true", help="do not write evaluation.json / the registry")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onyxserve.training.evaluation.metrics import evaluate_version

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
