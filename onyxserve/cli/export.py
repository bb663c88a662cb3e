"""``onyxserve export``: a fitted pipeline saved with joblib -> a servable model version.

    onyxserve export PIPELINE.joblib --name NAME --repository DIR --sample DATA.csv
                     [--version V] [--target COLUMN] [--json]

Unpickling happens here, on the training side; the server only ever reads ONNX and JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a fitted scikit-learn pipeline (.joblib) as an ONNX model version",
        description="Fold the pipeline's preprocessing into a manifest, convert the estimator with skl2onnx,"
        " check served scores against the pipeline on the sample rows, and write the version atomically.",
    )
    p.add_argument("pipeline", type=Path, help="fitted estimator or Pipeline saved with joblib.dump")
    p.add_argument("--name", required=True, help="model name (the folder in the repository)")
    p.add_argument("--repository", required=True, type=Path, help="model repository folder")
    p.add_argument("--sample", required=True, type=Path, help="CSV of raw feature rows (header = feature names)")
    p.add_argument("--version", help="version number to write (default: the next free one)")
    p.add_argument("--target", help="a column of the sample to ignore (the label), if present")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import joblib
    import pandas as pd

    from onyxserve.training.export.writer import ExportError, export_model

    try:
        estimator = joblib.load(args.pipeline)
    except Exception as exc:  # pickles fail in many ways
        print(f"export: cannot load {args.pipeline}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        sample = pd.read_csv(args.sample)
    except Exception as exc:
        print(f"export: cannot read {args.sample}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.target and args.target in sample.columns:
        sample = sample.drop(columns=[args.target])
    try:
        result = export_model(
            estimator,
            name=args.name,
            repository=args.repository,
            sample=sample,
            version=args.version,
            lineage={"source": {"pipeline_file": str(args.pipeline), "sample_file": str(args.sample)}},
        )
    except ExportError as exc:
        print(f"export refused: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        out = {
            "name": result.manifest.name,
            "version": result.version,
            "path": str(result.path),
            "task": result.manifest.task,
            "features": list(result.manifest.feature_names),
            "parity": result.parity.to_dict(),
            "warnings": list(result.warnings),
        }
        print(json.dumps(out, indent=2))
    else:
        p = result.parity
        print(
            f"exported {result.manifest.name} version {result.version} ({result.manifest.task},"
            f" {len(result.manifest.features)} features) to {result.path}\n"
            f"parity: {p.rows} rows, max error {p.max_error:.3g} ({p.tolerance})"
        )
    return 0
