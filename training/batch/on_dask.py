"""Batch prediction on Dask: partition the file, score the partitions on the workers.

Parquet is partitioned by row groups (row numbers come from the file's metadata). CSV is
partitioned by byte ranges cut at line ends, as ``dask.dataframe.read_csv`` does, so a quoted
field must not contain a newline; a first light pass counts each range's lines on the workers
so every part knows its first row number. Each worker process loads the version once (a
module-level cache) and scores its partitions chunk by chunk with the same ``score_chunk`` as
the single-process path, writing ``part-NNNNN.<ext>`` into a temporary folder that replaces
``out_path`` when every part is done. Workers must see the input and output paths (a shared
file system on a real cluster).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from onyxserve.training.batch.predict import (
    BatchError,
    BatchSummary,
    OutputWriter,
    Scratch,
    _empty_schema,
    check_options,
    decision_threshold,
    input_columns,
    load,
    output_format,
    score_chunk,
)
from onyxserve.training.batch.source import (
    Chunk,
    csv_convert_options,
    csv_header,
    file_format,
    locate_csv_error,
    missing_columns_error,
)
from onyxserve.training.errors import DatasourceError, restated

_SCORERS: dict[str, Any] = {}  # per worker process: version folder -> OnnxScorer


@dataclass(frozen=True)
class Part:
    index: int
    kind: str  # "parquet" | "csv"
    path: str
    row_groups: tuple[int, ...] = ()
    start_byte: int = 0
    end_byte: int = 0
    first_row: int = 0


def _scorer(version_dir: str) -> Any:
    if version_dir not in _SCORERS:
        _SCORERS[version_dir] = load(version_dir, intra_op_threads=1)
    return _SCORERS[version_dir]


def plan_parquet(path: Path, partition_bytes: int) -> list[Part]:
    meta = pq.ParquetFile(path).metadata
    parts, groups, size, first, row = [], [], 0, 0, 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        groups.append(i)
        size += rg.total_byte_size
        row += rg.num_rows
        if size >= partition_bytes or i == meta.num_row_groups - 1:
            parts.append(Part(len(parts), "parquet", str(path), tuple(groups), first_row=first))
            groups, size, first = [], 0, row
    return parts


def plan_csv(path: Path, partition_bytes: int) -> list[Part]:
    """Byte ranges after the header line, each ending just after a newline (or at the end)."""
    total = path.stat().st_size
    with open(path, "rb") as f:
        header = f.readline()
        start = len(header)
        cuts = [start]
        while cuts[-1] < total:
            target = cuts[-1] + partition_bytes
            if target >= total:
                cuts.append(total)
                break
            f.seek(target)
            f.readline()  # to the end of the line the cut fell into
            cuts.append(min(f.tell(), total))
    return [
        Part(i, "csv", str(path), start_byte=a, end_byte=b)
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
        if b > a
    ]


def count_lines(part: Part) -> int:
    """Rows in a CSV byte range (a last line without a newline counts too)."""
    with open(part.path, "rb") as f:
        f.seek(part.start_byte)
        remaining, lines, last = part.end_byte - part.start_byte, 0, b"\n"
        while remaining > 0:
            block = f.read(min(remaining, 8 << 20))
            if not block:
                break
            lines += block.count(b"\n")
            last = block[-1:]
            remaining -= len(block)
    return lines + (last != b"\n")


def _chunks(part: Part, columns: dict[str, Any], chunk_rows: int):
    if part.kind == "parquet":
        pf = pq.ParquetFile(part.path)
        start = part.first_row
        # one row group at a time (iterating several lets pyarrow read ahead without bound),
        # without pyarrow's decoding threads: the workers are single-threaded processes, one
        # per core, and those threads would only compete with the other workers
        for group in part.row_groups:
            for batch in pf.iter_batches(
                batch_size=chunk_rows, row_groups=[group], columns=columns["columns"], use_threads=False
            ):
                yield Chunk(start, batch=batch, where=part.path)
                start += batch.num_rows
        return
    names, per_row = csv_header(Path(part.path), ",")
    with open(part.path, "rb") as f:
        head = f.readline()
        f.seek(part.start_byte)
        body = f.read(part.end_byte - part.start_byte)
    data = head + body
    convert = csv_convert_options(columns["columns"], columns["string_columns"], columns["float_columns"])
    read_options = pacsv.ReadOptions(block_size=int(max(per_row * chunk_rows, 1 << 16)), use_threads=False)
    start = part.first_row

    def located(exc: pa.ArrowInvalid) -> DatasourceError:
        return locate_csv_error(
            exc,
            lambda: pa.BufferReader(data),
            where=part.path,
            parse_options=pacsv.ParseOptions(),
            convert_options=convert,
            block_size=read_options.block_size,
            rows_before=start - part.first_row,
            names=names,
            first_row=part.first_row + 1,
        )

    try:
        reader = pacsv.open_csv(pa.BufferReader(data), read_options=read_options, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise located(exc) from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise located(exc) from None
        yield Chunk(start, batch=batch, where=part.path)
        start += batch.num_rows


def score_part(
    version_dir: str,
    part: Part,
    out_dir: str,
    ext: str,
    row_id: str | None,
    chunk_rows: int,
    compression: str = "auto",
    threshold: float | None = None,
) -> int | BatchError:
    """On a worker: score one partition into ``out_dir/part-NNNNN.ext``; returns its rows, or
    the BatchError that refused its data (file, row, column, value). ``threshold``: resolved
    once by the client (``decision_threshold``)."""
    scorer = _scorer(version_dir)
    columns = input_columns(scorer.manifest, row_id)
    writer = OutputWriter(Path(out_dir) / f"part-{part.index:05d}.{ext}", compression)
    scratch = Scratch(scorer.manifest.model)
    rows = 0
    try:
        for chunk in _chunks(part, columns, chunk_rows):
            writer.write(score_chunk(scorer, chunk, row_id, scratch, threshold))
            rows += chunk.n_rows
        writer.commit(_empty_schema(scorer.manifest, row_id))
    except (BatchError, DatasourceError) as exc:
        # returned, not raised: a raised one is logged by the worker as "Compute Failed" with
        # a traceback, while it is a refusal of the data that the client reports in one line
        writer.abort()
        return restated(BatchError, exc)
    except BaseException:
        writer.abort()
        raise
    return rows


def _client(scheduler: Any, n_workers: int) -> tuple[Any, Any]:
    import logging

    from distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.WARNING,
        )
        return Client(cluster), cluster
    if isinstance(scheduler, Client):
        return scheduler, None
    return Client(scheduler), None


def run_on_dask(
    version_dir: str | Path,
    source: str | Path,
    out_path: str | Path,
    *,
    scheduler: Any = None,
    n_workers: int = 2,
    chunk_rows: int = 65_536,
    partition_bytes: int = 64 << 20,
    row_id: str | None = None,
    progress: bool = True,
    compression: str = "auto",
    threshold: float | str | None = "registry",
) -> BatchSummary:
    check_options(chunk_rows, compression)
    started = time.perf_counter()
    version_dir = str(Path(version_dir).resolve())
    manifest = load(version_dir, intra_op_threads=1).manifest  # fail here, not on every worker
    cut = decision_threshold(version_dir, manifest, threshold)  # the registry is read here only
    try:
        path = _local_file(source)
        fmt = file_format(path)
        if fmt == "parquet":
            parts = plan_parquet(path, partition_bytes)
            available = pq.ParquetFile(path).schema_arrow.names
        elif fmt == "csv":
            parts = plan_csv(path, partition_bytes)
            available = csv_header(path, ",")[0]
        else:
            raise BatchError(f"{path}: Dask batch prediction reads CSV or Parquet files, not {fmt}")
    except DatasourceError as exc:  # a datasource record that cannot be read, a header not UTF-8
        raise restated(BatchError, exc) from None
    except (pa.ArrowException, OSError) as exc:
        parquet = str(source).lower().endswith((".parquet", ".pq"))
        raise BatchError(f"{source}: {'not a readable Parquet file' if parquet else 'cannot be read'} ({exc})") from None
    missing = missing_columns_error(available, input_columns(manifest, row_id)["columns"], str(path))
    if missing is not None:
        raise restated(BatchError, missing)
    out = Path(out_path)
    ext = "parquet" if output_format(out) == "parquet" else "csv"
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    client, cluster = _client(scheduler, n_workers)
    try:
        if fmt == "csv":
            counts = client.gather(client.map(count_lines, parts, pure=False))
            first = 0
            for i, n in enumerate(counts):
                parts[i] = Part(**{**parts[i].__dict__, "first_row": first})
                first += n
        futures = client.map(
            score_part,
            [version_dir] * len(parts),
            parts,
            [str(tmp)] * len(parts),
            [ext] * len(parts),
            [row_id] * len(parts),
            [chunk_rows] * len(parts),
            [compression] * len(parts),
            [cut] * len(parts),
            pure=False,
        )
        rows = _wait(futures, progress, len(parts))
        workers = len(client.scheduler_info().get("workers", {}))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    _replace_dir(tmp, out)
    return BatchSummary(
        rows=rows, seconds=time.perf_counter() - started, out=out, parts=len(parts), workers=workers
    )


def _wait(futures: list[Any], progress: bool, total: int) -> int:
    from distributed import as_completed
    from tqdm.auto import tqdm

    rows = 0
    with tqdm(total=total, unit="part", disable=not progress, leave=False, desc="scoring partitions") as bar:
        for future in as_completed(futures):
            try:
                done = future.result()
            except (BatchError, DatasourceError) as exc:  # raised outside score_part's guard
                done = restated(BatchError, exc)
            if isinstance(done, BatchError):  # pickled with its parts (row, column, value)
                for f in futures:
                    f.cancel()
                raise done from None
            rows += done
            bar.update(1)
    return rows


def _replace_dir(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        if not out.is_dir():
            raise BatchError(f"{out} exists and is not a folder of parts; remove it first")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _local_file(source: Any) -> Path:
    if isinstance(source, (str, Path)) and str(source).endswith(".datasource.json"):
        from onyxserve.training.datasource.record import load_datasource

        uri = load_datasource(source).location.uri
        if "://" in uri:
            raise BatchError(
                f"{uri}: Dask batch prediction reads files the workers can open; copy it locally"
            )
        source = uri
    if not isinstance(source, (str, Path)):
        raise BatchError("Dask batch prediction takes a CSV or Parquet file path")
    path = Path(source).resolve()
    if not path.is_file():
        raise BatchError(f"{path}: no such file")
    return path
