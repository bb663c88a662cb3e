"""``onyxserve batch-predict``: score a whole file through the served path, streaming.

    onyxserve batch-predict VERSION_DIR INPUT --out scores.parquet [--row-id ID]
        [--chunk-rows 65536] [--compression auto] [--dask [ADDRESS]] [--no-progress]

INPUT is a CSV or Parquet file or a datasource record; the output format follows ``--out``'s
extension (.csv or .parquet). With ``--dask`` (a local cluster of 2 workers, or the scheduler
at ADDRESS) the output is a folder of part files, one per partition.
Exit codes: 0 done, 1 the input or model was refused (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch-predict",
        help="score a CSV/Parquet file or datasource with a model version (streaming, or on Dask)",
        description="Stream INPUT in chunks through the compiled core + ONNX Runtime (the server's"
        " path, so the scores equal the online ones) and write row id + label/probabilities or value.",
    )
    p.add_argument("version_dir", type=Path, help="the model version folder (REPOSITORY/NAME/VERSION)")
    p.add_argument("input", help="CSV or Parquet file, or a datasource record (.datasource.json)")
    p.add_argument("--out", required=True, type=Path, help="output file: .csv or .parquet")
    p.add_argument("--row-id", help="input column copied to the output as the row id (default: row number)")
    p.add_argument("--chunk-rows", type=int, default=65_536, help="rows per chunk (bounds memory)")
    p.add_argument(
        "--dask",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="score partitions on Dask: a local cluster of 2 workers, or the scheduler at ADDRESS",
    )
    p.add_argument("--workers", type=int, default=2, help="workers of the local Dask cluster")
    p.add_argument(
        "--compression",
        default="auto",
        help="Parquet output codec: auto (snappy on the row id and label, none on the float"
        " scores), or snappy, zstd, lz4, gzip, brotli, none for every column",
    )
    p.add_argument(
        "--threshold",
        default="registry",
        help="binary models: label = positive iff its probability >= this; 'registry' (default) uses the"
        " threshold the registry holds for the version, as the server does; 'none' keeps the model's label",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onyxserve.training.batch.predict import BatchError, batch_predict, batch_predict_dask

    try:
        if args.dask:
            summary = batch_predict_dask(
                args.version_dir,
                args.input,
                args.out,
                scheduler=None if args.dask == "local" else args.dask,
                n_workers=args.workers,
                chunk_rows=args.chunk_rows,
                row_id=args.row_id,
                progress=not args.no_progress,
                compression=args.compression,
                threshold=None if args.threshold == "none" else args.threshold,
            )
        else:
            summary = batch_predict(
                args.version_dir,
                args.input,
                args.out,
                chunk_rows=args.chunk_rows,
                row_id=args.row_id,
                progress=not args.no_progress,
                compression=args.compression,
                threshold=None if args.threshold == "none" else args.threshold,
            )
    except BatchError as exc:
        print(f"batch-predict: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0
