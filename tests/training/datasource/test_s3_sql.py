"""Datasources on S3 (a real moto server on 127.0.0.1) and in SQLite through SQLAlchemy."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from onyxserve.training.datasource.locations import S3_ENDPOINT_ENV, parse_location
from onyxserve.training.datasource.record import create_datasource, load_datasource, read_frames
from onyxserve.training.errors import DatasourceError

from onyxserve.cli import main
from tests.training.datasource.ds_data import mixed, write
from tests.training.datasource.test_datasource import same_stats

STARTUP_SECONDS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    """A standalone moto S3 server as a subprocess; killed at teardown."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                try:
                    urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(
                            f"moto server did not start within {STARTUP_SECONDS}s (exit {proc.poll()}):\n"
                            + log_path.read_text(errors="replace")[-2000:]
                        )
                    time.sleep(0.1)
            yield url
        finally:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """A boto3 client on the moto server, with throwaway credentials in the environment."""
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv(S3_ENDPOINT_ENV, moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket="data")
    return client


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_s3_object_equals_the_local_file(tmp_path, s3, suffix):
    path = write(mixed(rows=120), tmp_path / f"tx{suffix}")
    s3.upload_file(str(path), "data", f"in/tx{suffix}")
    local = create_datasource(path, target="fraud")
    remote = create_datasource(f"s3://data/in/tx{suffix}", target="fraud", chunk_rows=25)
    assert remote.location.to_dict() == {"kind": "s3", "uri": f"s3://data/in/tx{suffix}"}
    assert remote.checksum == local.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    assert remote.size_bytes == path.stat().st_size and remote.details["etag"]
    assert remote.schema == local.schema and remote.row_count == 120 and remote.name == "tx"
    same_stats(remote.statistics, local.statistics)
    assert pd.concat(read_frames(remote)).shape == (120, 7)


def test_s3_endpoint_by_option_and_cli(tmp_path, s3, moto_endpoint, monkeypatch, capsys):
    path = write(mixed(rows=40), tmp_path / "tx.csv")
    s3.upload_file(str(path), "data", "tx.csv")
    monkeypatch.delenv(S3_ENDPOINT_ENV)
    ds = create_datasource("s3://data/tx.csv", s3_endpoint_url=moto_endpoint)
    assert ds.row_count == 40 and ds.details["endpoint"] == moto_endpoint
    out = tmp_path / "ds.json"
    assert (
        main(
            [
                "datasource",
                "create",
                "s3://data/tx.csv",
                "--target",
                "fraud",
                "--out",
                str(out),
                "--s3-endpoint-url",
                moto_endpoint,
            ]
        )
        == 0
    )
    assert "location  s3://data/tx.csv" in capsys.readouterr().out
    assert load_datasource(out).checksum == ds.checksum


@pytest.mark.parametrize(
    "uri, message",
    [
        (
            "s3://no-such-bucket/tx.csv",
            "s3://no-such-bucket/tx.csv, key 'tx.csv': the bucket 'no-such-bucket' does not exist",
        ),
        (
            "s3://data/missing.csv",
            "s3://data/missing.csv, key 'missing.csv': no object with this key in bucket 'data'",
        ),
        ("s3://data", "s3://data: an S3 location needs a bucket and a key"),
    ],
)
def test_s3_errors_name_bucket_and_key(s3, uri, message):
    with pytest.raises(DatasourceError) as err:
        create_datasource(uri)
    assert message in str(err.value)


def test_bad_rows_and_values_on_s3_are_named_by_uri_and_row(tmp_path, s3):
    # the object is read from a temporary copy; errors and warnings still name the s3:// URI
    body = "amount,label\n" + "".join(f"{i / 10},{i % 2}\n" for i in range(60))
    s3.put_object(Bucket="data", Key="ragged.csv", Body=(body + "1,0,9\n").encode())
    with pytest.raises(DatasourceError) as err:
        create_datasource("s3://data/ragged.csv")
    assert str(err.value).startswith("s3://data/ragged.csv, row 61: malformed CSV: expected 2 fields, found 3")
    s3.put_object(Bucket="data", Key="mm.csv", Body=body.replace("\n4.2,", "\n4.2mm,").encode())
    with pytest.warns(UserWarning, match=r"column 'amount': inferred NUMERIC, .* row 43 '4.2mm'"):
        ds = create_datasource("s3://data/mm.csv", chunk_rows=7)
    assert ds.violations["rows"] == [{"row": 43, "column": "amount", "reason": "not a finite number: '4.2mm'"}]


def test_an_unreachable_s3_endpoint_is_named(s3, monkeypatch):
    monkeypatch.setenv(S3_ENDPOINT_ENV, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(
        DatasourceError, match=r"s3://data/tx.csv, key 'tx.csv': S3 is unreachable: .*127\.0\.0\.1"
    ):
        create_datasource("s3://data/tx.csv")
    assert time.monotonic() - started < 15


# -- SQL -------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_db(tmp_path):
    frame = mixed(rows=150)
    path = tmp_path / "tx.db"
    with sqlite3.connect(path) as conn:
        frame.to_sql("tx", conn, index=False)
    return path, frame


def test_sql_query_datasource(tmp_path, sqlite_db):
    path, frame = sqlite_db
    url = f"sqlite:///{path}"
    query = "SELECT * FROM tx ORDER BY id"
    ds = create_datasource(url, query=query, target="fraud")
    assert ds.data_format == "sql" and ds.checksum_of == "canonical rows"
    assert ds.location.to_dict() == {"kind": "sql", "uri": url, "query": query} and ds.name == "query"
    assert ds.row_count == 150 and ds.task == "binary"
    assert {k: v.value for k, v in ds.schema.attributes.items()} == {
        "id": "CATEGORICAL",
        "amount": "NUMERIC",
        "count": "NUMERIC",
        "online": "BINARY",
        "merchant": "CATEGORICAL",
        "note": "TEXT",
        "fraud": "BINARY",
    }
    csv = create_datasource(write(frame, tmp_path / "tx.csv"), target="fraud")
    same_stats(ds.statistics, csv.statistics)  # the same data gives the same statistics from either source
    chunked = create_datasource(url, query=query, target="fraud", chunk_rows=7)
    assert chunked.checksum == ds.checksum
    same_stats(chunked.statistics, ds.statistics)
    # the checksum is of the rows: another order or one changed value gives another
    assert create_datasource(url, query="SELECT * FROM tx ORDER BY id DESC").checksum != ds.checksum
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tx SET amount = 1 WHERE id = 'tx00003'")
    assert create_datasource(url, query=query).checksum != ds.checksum
    with pytest.raises(DatasourceError, match="the data changed since datasource 'query' was created"):
        list(read_frames(ds))


def test_sql_cli(tmp_path, sqlite_db, capsys):
    path, _ = sqlite_db
    out = tmp_path / "sql.json"
    assert (
        main(
            [
                "datasource",
                "create",
                f"sqlite:///{path}",
                "--query",
                "SELECT amount, fraud FROM tx",
                "--target",
                "fraud",
                "--name",
                "tx",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "query     SELECT amount, fraud FROM tx" in capsys.readouterr().out
    assert json.loads(out.read_text())["rowCount"] == 150


@pytest.mark.parametrize(
    "make_url, query, message",
    [
        (lambda p: f"sqlite:///{p.parent / 'nope.db'}", "SELECT 1", "nope.db: no such SQLite database file"),
        (
            lambda p: f"sqlite:///{p}",
            "SELECT * FROM absent",
            "key 'SELECT * FROM absent': the query failed: no such table: absent",
        ),
        (lambda p: f"sqlite:///{p}", "SELEKT 1", 'the query failed: near "SELEKT": syntax error'),
        (lambda p: f"sqlite:///{p}", "SELECT * FROM tx WHERE 0", "the data has no rows"),
        (lambda p: f"sqlite:///{p}", None, "a database location needs a query"),
        (lambda p: "nodb+nodriver://host/db", "SELECT 1", "no driver for this database"),
        (
            lambda p: f"sqlite:///{p}",
            "SELECT amount FROM tx",
            "column 'fraud': the schema names column 'fraud'",
        ),
    ],
)
def test_sql_errors_name_the_database_and_query(sqlite_db, make_url, query, message):
    path, _ = sqlite_db
    target = "fraud" if "amount FROM" in (query or "") else None
    with pytest.raises(DatasourceError) as err:
        create_datasource(make_url(path), query=query, target=target)
    assert message in str(err.value)


def test_an_unreachable_database_server_is_named():
    port = free_port()
    loc = parse_location(f"postgresql://user:secret@127.0.0.1:{port}/db", query="SELECT 1")
    assert "secret" not in loc.uri and "***" in loc.uri
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        with pytest.raises(DatasourceError, match="no driver for this database"):
            create_datasource(loc)
        return
    with pytest.raises(DatasourceError, match="cannot connect to the database"):
        create_datasource(loc)


def test_sql_values_are_made_plain(tmp_path):
    path = tmp_path / "types.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n NUMERIC, b BLOB, flag BOOLEAN, y INTEGER)")
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            [(1.5, b"\x01\x02", True, 0), (None, None, False, 1), (2.5, b"\xff", True, 1)],
        )
    ds = create_datasource(f"sqlite:///{path}", query="SELECT * FROM t", target="y")
    assert ds.statistics["n"]["missing"] == 1 and ds.statistics["n"]["mean"] == 2.0
    assert ds.schema.attributes["flag"].value == "BINARY"
    assert np.isclose(pd.concat(read_frames(ds))["n"].sum(), 4.0)
