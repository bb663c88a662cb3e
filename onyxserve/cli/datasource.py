"""``onyxserve datasource``: create a datasource record from data, show one, split one.

    onyxserve datasource create LOCATION [--query SQL] [--schema schema.json] [--target Class]
        [--row-id ID] [--exclude A,B] [--name N] [--out datasource.json] [--format csv|...]
        [--header | --no-header] [--chunk-rows N] [--s3-endpoint-url URL] [--json]
    onyxserve datasource show datasource.json [--json]
    onyxserve datasource split datasource.json --rearrangement '{"splitting": {...}}' --out rows.csv

LOCATION is a path, an s3://bucket/key URI, or a SQLAlchemy URL (with --query).
Exit codes (``onyxserve.cli.run``): 0 done, 1 the data or schema was refused (the message says
where), 2 usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onyxserve.cli._options import add_chunk_rows, add_command, add_json, add_s3_endpoint_url
from onyxserve.errors import OnyxserveError, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "datasource",
        "create, show or split a datasource (data + schema + statistics)",
        "Datasources: where the data is, its schema, statistics and checksum.",
    )
    sub = p.add_subparsers(dest="datasource_command", required=True, metavar="ACTION")

    c = add_command(
        sub,
        "create",
        "read data once and write its datasource record",
        "Read a CSV, JSON Lines, JSON array or Parquet file (local or s3://), or a SQL query, in"
        " chunks; infer or apply the schema; record row count, statistics and checksum."
        " LOCATION is a path, an s3://bucket/key URI, or a SQLAlchemy URL (with --query).",
    )
    c.add_argument("location", help="a path, s3://bucket/key, or a SQLAlchemy URL (with --query)")
    c.add_argument("--query", help="the SQL query when LOCATION is a database URL")
    c.add_argument(
        "--schema", type=Path, help="a schema file (Amazon ML format); types it omits are inferred"
    )
    c.add_argument("--target", help="the target attribute (overrides the schema's targetAttributeName)")
    c.add_argument("--row-id", help="the row id attribute")
    c.add_argument("--exclude", default="", help="attributes to exclude, comma-separated")
    c.add_argument("--name", help="the datasource's name (default: the file's stem)")
    c.add_argument("--out", type=Path, help="where to write the record (default: NAME.datasource.json)")
    c.add_argument(
        "--format",
        dest="data_format",
        choices=["csv", "tsv", "jsonl", "json", "parquet"],
        help="the file format (default: by extension, else by content)",
    )
    header = c.add_mutually_exclusive_group()
    header.add_argument(
        "--header", dest="header", action="store_true", default=None, help="the CSV's first line is a header"
    )
    header.add_argument("--no-header", dest="header", action="store_false", help="the CSV has no header line")
    add_chunk_rows(c)
    add_s3_endpoint_url(c)
    add_json(c)
    c.set_defaults(func=run_create)

    s = add_command(sub, "show", "print a datasource record's summary")
    s.add_argument("record", type=Path, help="a datasource.json written by 'datasource create'")
    add_json(s)
    s.set_defaults(func=run_show)

    sp = add_command(sub, "split", "write the rows a DataRearrangement selects to CSV or Parquet")
    sp.add_argument("record", type=Path, help="a datasource.json")
    sp.add_argument(
        "--rearrangement",
        required=True,
        help='DataRearrangement JSON, e.g. \'{"splitting": {"percentBegin": 0, "percentEnd": 70}}\','
        " or @file.json",
    )
    sp.add_argument("--out", required=True, type=Path, help="output file (.csv or .parquet)")
    add_s3_endpoint_url(sp)
    sp.set_defaults(func=run_split)


def run_create(args: argparse.Namespace) -> int:
    from onyxserve.training.datasource.record import create_datasource

    if args.chunk_rows < 1:
        raise UsageError("--chunk-rows must be at least 1")
    ds = create_datasource(
        args.location,
        schema=args.schema,
        target=args.target,
        row_id=args.row_id,
        exclude=[x.strip() for x in args.exclude.split(",") if x.strip()],
        name=args.name,
        query=args.query,
        data_format=args.data_format,
        header=args.header,
        chunk_rows=args.chunk_rows,
        s3_endpoint_url=args.s3_endpoint_url,
    )
    out = ds.save(args.out or Path(f"{ds.name}.datasource.json"))
    print(json.dumps(ds.to_dict(), indent=2) if args.json else f"{ds.summary()}\n\nwrote {out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from onyxserve.training.datasource.record import load_datasource

    ds = load_datasource(args.record)
    print(json.dumps(ds.to_dict(), indent=2) if args.json else ds.summary())
    return 0


def run_split(args: argparse.Namespace) -> int:
    import pandas as pd

    from onyxserve.training.datasource.record import load_datasource
    from onyxserve.training.datasource.splits import parse_split, split_datasource

    text = args.rearrangement
    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        split = parse_split(
            text, where=args.rearrangement if args.rearrangement.startswith("@") else "--rearrangement"
        )
        ds = load_datasource(args.record)
        frames = split_datasource(ds, split, s3_endpoint_url=args.s3_endpoint_url)
        rows = _write(frames, args.out, ds.schema, pd)
    except OSError as exc:  # the @file or the output: a refusal naming the file, not a bug
        raise OnyxserveError(str(exc)) from exc
    print(f"wrote {rows:,} of {ds.row_count:,} rows to {args.out}")
    return 0


def _write(frames, out: Path, schema, pd) -> int:
    rows = 0
    if out.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from onyxserve.training.datasource.schema import AttributeType

        numeric = (AttributeType.NUMERIC, AttributeType.BINARY)
        arrow_schema = pa.schema(
            [
                (name, pa.float64() if kind in numeric else pa.string())
                for name, kind in schema.attributes.items()
            ]
        )
        writer = None
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, schema=arrow_schema, preserve_index=False)
                writer = writer or pq.ParquetWriter(out, arrow_schema)
                writer.write_table(table)
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()
        return rows
    with open(out, "w", encoding="utf-8", newline="") as f:
        for frame in frames:
            frame.to_csv(f, header=rows == 0, index=False)
            rows += len(frame)
    return rows
