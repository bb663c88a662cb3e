"""``onyxserve export``: a fitted pipeline saved with joblib -> a servable model version.

    onyxserve export PIPELINE.joblib --name NAME --repository DIR --sample DATA.csv
                     [--version V] [--target COLUMN] [--json]

Unpickling happens here, on the training side; the server only ever reads ONNX and JSON.
Exit codes (``onyxserve.cli.run``): 0 done, 1 the export was refused (the message names the step,
feature or row), 2 usage (the pipeline or sample file cannot be read).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onyxserve.cli._options import add_command, add_json, add_repository
from onyxserve.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "export",
        "export a fitted scikit-learn pipeline (.joblib) as an ONNX model version",
        "Fold the pipeline's preprocessing into a manifest, convert the estimator with skl2onnx, check"
        " served scores against the pipeline on the sample rows, and write the version atomically.",
    )
    p.add_argument("pipeline", type=Path, help="fitted estimator or Pipeline saved with joblib.dump")
    p.add_argument("--name", required=True, help="model name (the folder in the repository)")
    add_repository(p, required=True)
    p.add_argument("--sample", required=True, type=Path, help="CSV of raw feature rows (header = feature names)")
    p.add_argument("--version", help="version number to write (default: the next free one)")
    p.add_argument("--target", help="a column of the sample to ignore (the label), if present")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import joblib
    import pandas as pd

    from onyxserve.training.export.writer import export_model

    try:
        estimator = joblib.load(args.pipeline)
    except Exception as exc:  # pickles fail in many ways; each is a file the user named
        raise UsageError(f"cannot load {args.pipeline}: {type(exc).__name__}: {exc}") from exc
    try:
        sample = pd.read_csv(args.sample)
    except Exception as exc:
        raise UsageError(f"cannot read {args.sample}: {type(exc).__name__}: {exc}") from exc
    if args.target and args.target in sample.columns:
        sample = sample.drop(columns=[args.target])
    result = export_model(
        estimator,
        name=args.name,
        repository=args.repository,
        sample=sample,
        version=args.version,
        lineage={"source": {"pipeline_file": str(args.pipeline), "sample_file": str(args.sample)}},
    )
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
