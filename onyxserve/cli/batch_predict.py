"""``onyxserve batch-predict``: score a whole file through the served path, streaming.

    onyxserve batch-predict VERSION_DIR INPUT --out scores.parquet [--row-id ID]
        [--chunk-rows 65536] [--compression auto] [--dask [ADDRESS]] [--dask-workers 2] [--no-progress]

INPUT is a CSV or Parquet file or a datasource record; the output format follows ``--out``'s
extension (.csv or .parquet). With ``--dask`` (a local cluster of ``--dask-workers`` workers, or
the scheduler at ADDRESS) the output is a folder of part files, one per partition.
Exit codes (``onyxserve.cli.run``): 0 done, 1 the input or model was refused (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from onyxserve.cli._options import add_chunk_rows, add_command, add_no_progress, deprecated_alias


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "batch-predict",
        "score a CSV/Parquet file or datasource with a model version (streaming, or on Dask)",
        "Stream INPUT in chunks through the compiled core + ONNX Runtime (the server's path, so the"
        " scores equal the online ones) and write row id + label/probabilities or value.",
    )
    p.add_argument("version_dir", type=Path, help="the model version folder (REPOSITORY/NAME/VERSION)")
    p.add_argument("input", help="CSV or Parquet file, or a datasource record (.datasource.json)")
    p.add_argument("--out", required=True, type=Path, help="output file: .csv or .parquet")
    p.add_argument("--row-id", help="input column copied to the output as the row id (default: row number)")
    add_chunk_rows(p)
    p.add_argument(
        "--dask",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="score partitions on Dask: a local cluster of --dask-workers, or the scheduler at ADDRESS",
    )
    workers = p.add_argument(
        "--dask-workers", type=int, default=2, metavar="N", help="workers of the local Dask cluster"
    )
    deprecated_alias(p, "--workers", workers)  # --workers means serving processes (serve)
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
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onyxserve.training.batch.predict import batch_predict, batch_predict_dask

    common = {
        "chunk_rows": args.chunk_rows,
        "row_id": args.row_id,
        "progress": not args.no_progress,
        "compression": args.compression,
        "threshold": None if args.threshold == "none" else args.threshold,
    }
    if args.dask:
        scheduler = None if args.dask == "local" else args.dask
        summary = batch_predict_dask(
            args.version_dir, args.input, args.out, scheduler=scheduler, n_workers=args.dask_workers, **common
        )
    else:
        summary = batch_predict(args.version_dir, args.input, args.out, **common)
    print(summary.describe())
    return 0
