"""Batch prediction: streamed CSV/Parquet/datasource input scored through the served path; the
scores equal OnnxScorer.score's and a running server's; the same on a local Dask cluster."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as triton
from onyxserve.core.scorer import load_version
from onyxserve.training.batch.predict import (
    BatchError,
    Scratch,
    batch_predict,
    batch_predict_dask,
    score_chunk,
)
from onyxserve.training.batch.source import Chunk, Prefetch, SourceError, open_source
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.export.parity import row_block

from onyxserve.cli import main
from tests.model_factory import fraud_frame, iris_like, price_frame
from tests.serving import triton_feature_inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    X, _ = fraud_frame(3000, seed=5)
    X.insert(0, "tx_id", [f"tx{i:05d}" for i in range(len(X))])
    X.loc[7, "V5"] = np.nan  # the fraud pipeline has no imputer: must be refused with its row
    X = X.drop(index=7).reset_index(drop=True)
    X.to_csv(d / "fraud.csv", index=False)
    X.to_parquet(d / "fraud.parquet", row_group_size=700)
    P, _ = price_frame(1000, seed=9)
    P.to_csv(d / "price.csv", index=False)
    _, I = iris_like()
    I.to_parquet(d / "iris.parquet")
    return d, X, P, I


def served(version_dir, frame):
    # one intra-op thread, as batch prediction runs: with more, ORT's tree ensembles sum in an
    # order that depends on the batch size (a probability may move by one float32 ulp)
    scorer = load_version(version_dir, intra_op_threads=1)
    return scorer.score([row_block(scorer.manifest, frame)])


@pytest.mark.parametrize("source", ["fraud.csv", "fraud.parquet", "frame"])
def test_binary_scores_equal_the_served_path(model_repo, files, tmp_path, source):
    root, _ = model_repo
    d, X, _, _ = files
    src = X if source == "frame" else d / source
    summary = batch_predict(
        root / "fraud" / "1", src, tmp_path / "out.parquet", chunk_rows=512, row_id="tx_id", progress=False
    )
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert summary.rows == len(X) == len(out)
    assert list(out.columns) == ["tx_id", "label", "probability_0", "probability_1"]
    assert (out["tx_id"] == X["tx_id"]).all()
    reference = pacsv.read_csv(d / "fraud.csv").to_pandas()  # the same float parsing as the stream
    expected = served(root / "fraud" / "1", reference)
    np.testing.assert_array_equal(
        out[["probability_0", "probability_1"]].to_numpy(), expected["probabilities"]
    )
    np.testing.assert_array_equal(out["label"].to_numpy(), expected["label"])


def test_reused_batch_matrix_is_fully_rewritten(model_repo, files):
    # the scratch matrix is reused chunk after chunk: poison it between chunks of different
    # sizes, and every score must still equal a freshly allocated matrix's
    root, _ = model_repo
    d, _, _, _ = files
    scorer = load_version(root / "fraud" / "1", intra_op_threads=1)
    scratch = Scratch(scorer.manifest.model)
    reader = open_source(d / "fraud.parquet", chunk_rows=1000, columns=list(scorer.manifest.feature_names))
    chunks = list(reader.chunks())
    assert len({c.n_rows for c in chunks}) > 1  # row groups of 700: chunks of 700 and less
    for chunk in sorted(chunks, key=lambda c: -c.n_rows):
        scratch.rows(chunk.n_rows)[:] = np.nan
        reused = score_chunk(scorer, chunk, None, scratch)
        fresh = score_chunk(scorer, chunk, None)
        assert reused.equals(fresh)
    big = scratch.rows(5000)
    assert big.shape == (5000, scorer.manifest.model.input_width) and big.flags.c_contiguous
    assert np.shares_memory(scratch.rows(10), big)  # smaller chunks reuse the same memory


def test_parquet_output_encodings(model_repo, files, tmp_path):
    root, _ = model_repo
    d, X, _, _ = files
    batch_predict(root / "fraud" / "1", d / "fraud.parquet", tmp_path / "rows.parquet", progress=False)
    meta = pq.ParquetFile(tmp_path / "rows.parquet").metadata
    row, label, proba = (meta.row_group(0).column(j) for j in range(3))
    assert "DELTA_BINARY_PACKED" in row.encodings  # row numbers: delta-encoded
    assert "RLE_DICTIONARY" in label.encodings and "RLE_DICTIONARY" not in proba.encodings
    # auto: snappy on the row id and label, the float scores (which barely compress) stored plain
    assert (row.compression, label.compression, proba.compression) == ("SNAPPY", "SNAPPY", "UNCOMPRESSED")
    rows = pq.read_table(tmp_path / "rows.parquet").column("row").to_numpy()
    np.testing.assert_array_equal(rows, np.arange(len(X)))
    batch_predict(
        root / "fraud" / "1", d / "fraud.parquet", tmp_path / "z.parquet", compression="zstd", progress=False
    )
    meta = pq.ParquetFile(tmp_path / "z.parquet").metadata
    assert {meta.row_group(0).column(j).compression for j in range(4)} == {"ZSTD"}
    z = pq.read_table(tmp_path / "z.parquet")
    assert z.equals(pq.read_table(tmp_path / "rows.parquet"))  # same values whatever the codec
    with pytest.raises(BatchError, match="compression 'snapy': expected one of auto, snappy"):
        batch_predict(root / "fraud" / "1", X, tmp_path / "x.parquet", compression="snapy", progress=False)
    # a string row id column is written as it is
    batch_predict(
        root / "fraud" / "1", d / "fraud.parquet", tmp_path / "ids.parquet", row_id="tx_id", progress=False
    )
    ids = pq.ParquetFile(tmp_path / "ids.parquet").metadata.row_group(0).column(0)
    assert ids.path_in_schema == "tx_id" and "DELTA_BINARY_PACKED" not in ids.encodings


def test_no_progress_bar_imports_neither_tqdm_nor_datasources(model_repo, files, tmp_path):
    # progress=False on a plain file: tqdm (and its monitor thread) and the datasource module
    # cost ~80 ms of import on the first call; neither is needed
    root, _ = model_repo
    d, _, _, _ = files
    code = textwrap.dedent(
        f"""
        import sys, threading
        from onyxserve.training.batch.predict import batch_predict
        batch_predict({str(root / "fraud" / "1")!r}, {str(d / "fraud.parquet")!r},
                      {str(tmp_path / "o.parquet")!r}, progress=False)
        print(sorted(m for m in sys.modules if m.startswith("tqdm") or m.endswith(".datasource")))
        print(sorted(t.name for t in threading.enumerate()))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules, threads = done.stdout.strip().splitlines()
    assert modules == "[]"
    assert threads == "['MainThread']"  # the reader thread is joined, no tqdm monitor


def test_prefetch_reads_ahead_at_once_and_stops_cleanly():
    import threading
    import time

    import pyarrow as pa

    batch = pa.record_batch({"x": np.arange(4.0)})
    produced, closed = [], threading.Event()

    def source(n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise SourceError(f"bad rows at chunk {i}")
                produced.append(i)
                yield Chunk(i * 4, batch=batch)
        finally:
            closed.set()

    ahead = Prefetch(source(100), depth=2)
    deadline = time.monotonic() + 5
    while len(produced) < 3 and time.monotonic() < deadline:  # before any next(): reading already
        time.sleep(0.01)
    assert produced == [0, 1, 2]  # two waiting in the queue, one blocked on put: bounded
    assert next(ahead).start == 0
    t = time.monotonic()
    ahead.close()  # the consumer gives up with a full queue: the thread must not hang
    assert time.monotonic() - t < 1 and not ahead._thread.is_alive()
    assert closed.is_set()  # the source's finally ran (file handles closed), not left to GC
    produced.clear()
    with Prefetch(source(10, fail_at=3)) as ahead:
        assert [c.start for c in (next(ahead), next(ahead), next(ahead))] == [0, 4, 8]
        with pytest.raises(SourceError, match="bad rows at chunk 3"):
            next(ahead)
        with pytest.raises(StopIteration):
            next(ahead)


def test_categorical_regression_and_multiclass(model_repo, files, tmp_path):
    root, _ = model_repo
    d, _, P, I = files
    batch_predict(
        root / "price" / "1", d / "price.csv", tmp_path / "price.csv", chunk_rows=128, progress=False
    )
    out = pacsv.read_csv(tmp_path / "price.csv").to_pandas()
    assert list(out.columns) == ["row", "value"] and (out["row"] == np.arange(len(P))).all()
    expected = served(root / "price" / "1", pacsv.read_csv(d / "price.csv").to_pandas())["value"]
    np.testing.assert_array_equal(out["value"].to_numpy(np.float32), expected)  # CSV keeps float32 exactly
    batch_predict(
        root / "iris" / "1", d / "iris.parquet", tmp_path / "iris.parquet", chunk_rows=50, progress=False
    )
    out = pq.read_table(tmp_path / "iris.parquet").to_pandas()
    expected = served(root / "iris" / "1", I)
    assert list(out.columns)[2:] == ["probability_setosa", "probability_versicolor", "probability_virginica"]
    np.testing.assert_array_equal(out.iloc[:, 2:].to_numpy(), expected["probabilities"])
    assert out["label"].tolist() == expected["label"].tolist()


def test_datasource_input(model_repo, files, tmp_path):
    root, _ = model_repo
    d, X, _, _ = files
    ds = create_datasource(str(d / "fraud.parquet"), chunk_rows=1000)
    ds.save(tmp_path / "fraud.datasource.json")
    batch_predict(
        root / "fraud" / "1", tmp_path / "fraud.datasource.json", tmp_path / "o.parquet", progress=False
    )
    out = pq.read_table(tmp_path / "o.parquet").to_pandas()
    np.testing.assert_array_equal(
        out["probability_1"].to_numpy(), served(root / "fraud" / "1", X)["probabilities"][:, 1]
    )


def test_scores_equal_a_running_server(model_repo, server, files, tmp_path):
    root, _ = model_repo
    d, X, P, _ = files
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        rows = X.iloc[[0, 5, 11, 1500, 2998]]
        batch_predict(root / "fraud" / "1", d / "fraud.parquet", tmp_path / "f.parquet", progress=False)
        out = pq.read_table(tmp_path / "f.parquet").to_pandas().iloc[rows.index]
        result = client.infer("fraud", triton_feature_inputs(rows.drop(columns=["tx_id"])))
        np.testing.assert_array_equal(
            out[["probability_0", "probability_1"]].to_numpy(), result.as_numpy("probabilities")
        )
        batch_predict(root / "price" / "1", P.iloc[:40], tmp_path / "p.parquet", progress=False)
        value = pq.read_table(tmp_path / "p.parquet").column("value").to_numpy()
        np.testing.assert_array_equal(
            value, client.infer("price", triton_feature_inputs(P.iloc[:40])).as_numpy("value")
        )
    finally:
        client.close()


def test_bad_input_names_file_column_row(model_repo, files, tmp_path):
    root, _ = model_repo
    _, X, _, _ = files
    vdir = root / "fraud" / "1"
    with pytest.raises(BatchError, match=r"missing column\(s\) 'V3'"):
        batch_predict(vdir, X.drop(columns=["V3"]), tmp_path / "o.parquet", progress=False)
    bad = X.copy()
    bad.loc[2100, "V5"] = np.nan
    # rows are 1-based in errors: the DataFrame's 2101st row
    with pytest.raises(BatchError, match="row 2101, column 'V5': the value is missing"):
        batch_predict(vdir, bad, tmp_path / "o.parquet", chunk_rows=1000, progress=False)
    assert not list(tmp_path.glob("*o.parquet*"))  # no half-written output left behind
    text = X.astype({"V9": object})
    text.loc[1234, "V9"] = "oops"
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(BatchError, match=r"text.csv.*'V9'|'V9'.*text.csv|oops"):
        batch_predict(vdir, tmp_path / "text.csv", tmp_path / "o.parquet", progress=False)
    with pytest.raises(BatchError, match="must end in .csv or .parquet"):
        batch_predict(vdir, X, tmp_path / "o.json", progress=False)


def test_cli(model_repo, files, tmp_path, capsys):
    root, _ = model_repo
    d, X, _, _ = files
    assert (
        main(
            [
                "batch-predict",
                str(root / "fraud" / "1"),
                str(d / "fraud.csv"),
                "--out",
                str(tmp_path / "s.csv"),
                "--row-id",
                "tx_id",
                "--no-progress",
            ]
        )
        == 0
    )
    assert f"scored {len(X):,} rows" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "s.csv").shape == (len(X), 4)
    assert (
        main(
            [
                "batch-predict",
                str(root / "nope" / "1"),
                str(d / "fraud.csv"),
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 1
    )


def test_dask_local_cluster_equals_single_process(model_repo, files, tmp_path):
    root, _ = model_repo
    d, X, _, _ = files
    vdir = root / "fraud" / "1"
    batch_predict(vdir, d / "fraud.parquet", tmp_path / "single.parquet", row_id="tx_id", progress=False)
    single = pq.read_table(tmp_path / "single.parquet").to_pandas()
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        for name in ("fraud.csv", "fraud.parquet"):
            summary = batch_predict_dask(
                vdir,
                d / name,
                tmp_path / "parts.parquet",
                scheduler=client,
                partition_bytes=60_000,
                chunk_rows=300,
                row_id="tx_id",
                progress=False,
            )
            assert summary.parts > 2 and summary.rows == len(X) and summary.workers == 2
            parts = sorted((tmp_path / "parts.parquet").glob("part-*.parquet"))
            assert len(parts) == summary.parts
            out = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
            pd.testing.assert_frame_equal(out, single)
        # without a row id the row numbers run across the parts
        batch_predict_dask(
            vdir,
            d / "fraud.csv",
            tmp_path / "rows.csv",
            scheduler=client,
            partition_bytes=60_000,
            progress=False,
        )
        rows = pd.concat([pd.read_csv(p) for p in sorted((tmp_path / "rows.csv").glob("part-*.csv"))])
        assert (rows["row"].to_numpy() == np.arange(len(X))).all()


def test_csv_output_of_several_chunks(model_repo, files, tmp_path):
    # the CSV writer was asked for a .schema pyarrow's CSVWriter does not have: the second
    # chunk of any CSV output failed with AttributeError
    root, _ = model_repo
    d, X, _, _ = files
    batch_predict(root / "fraud" / "1", d / "fraud.parquet", tmp_path / "s.csv", chunk_rows=500, progress=False)
    batch_predict(root / "fraud" / "1", d / "fraud.parquet", tmp_path / "s.parquet", chunk_rows=500, progress=False)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "s.csv"), pq.read_table(tmp_path / "s.parquet").to_pandas(), check_dtype=False
    )
