"""Where a datasource's data lives: a local file, an ``s3://`` object, or a SQL query.

- A local path (or ``file://`` URI) is read in place.
- ``s3://bucket/key`` is fetched with boto3 into a temporary file (streamed in 8 MiB blocks, so
  memory stays bounded; disk holds one copy while the datasource is read) and then read like a
  local file. The endpoint comes from ``s3_endpoint_url`` or ``ONYXSERVE_S3_ENDPOINT_URL``, else
  boto3's own configuration (``AWS_ENDPOINT_URL_S3``, profiles, ...).
- Any other ``scheme://`` is a SQLAlchemy URL, read with a query, ``chunk_rows`` rows at a time.

Checksums: sha256 of the bytes for files and objects; for SQL, sha256 of the canonical rows (the
column names, then each row as compact JSON of its values, one per line), since a database has no
bytes to hash. Passwords in SQL URLs are never written to a datasource record.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from onyxserve.training.errors import DatasourceError

S3_ENDPOINT_ENV = "ONYXSERVE_S3_ENDPOINT_URL"
_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    kind: str  # "file" | "s3" | "sql"
    uri: str  # a path, an s3:// URI, or a SQLAlchemy URL with the password hidden
    query: str | None = None
    secret_url: str | None = field(default=None, repr=False, compare=False)  # SQL URL as given

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "uri": self.uri}
        if self.query is not None:
            out["query"] = self.query
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Location:
        return cls(kind=obj["kind"], uri=obj["uri"], query=obj.get("query"))


def parse_location(text: str, query: str | None = None) -> Location:
    """A Location from what a user typed; SQL needs ``query``, files and objects refuse it."""
    text = str(text)
    if text.startswith("s3://"):
        bucket, _, key = text[5:].partition("/")
        if not bucket or not key:
            raise DatasourceError("an S3 location needs a bucket and a key: s3://bucket/key", where=text)
        loc = Location("s3", text)
    elif "://" in text and not text.startswith("file://"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(text)
        except ArgumentError as exc:
            raise DatasourceError(f"not a SQLAlchemy database URL: {exc}", where=text) from None
        if not query:
            raise DatasourceError(
                "a database location needs a query (--query 'SELECT ...')",
                where=url.render_as_string(hide_password=True),
            )
        return Location("sql", url.render_as_string(hide_password=True), query, secret_url=text)
    else:
        loc = Location("file", text.removeprefix("file://"))
    if query:
        raise DatasourceError("a query only applies to a database URL", where=text)
    return loc


@dataclass(frozen=True)
class FileContent:
    path: Path  # a local file to parse (a temporary copy for S3)
    name: str  # the name to detect the format from
    sha256: str
    size: int
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def fetch(location: Location, *, s3_endpoint_url: str | None = None) -> Iterator[FileContent]:
    """The file behind a file or S3 location, hashed; a temporary copy is removed afterwards."""
    if location.kind == "file":
        path = Path(location.uri)
        if not path.exists():
            raise DatasourceError("no such file", where=location.uri)
        if not path.is_file():
            raise DatasourceError("not a regular file", where=location.uri)
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                digest.update(block)
                size += len(block)
        yield FileContent(path, path.name, digest.hexdigest(), size)
    elif location.kind == "s3":
        with tempfile.TemporaryDirectory(prefix="onyxserve-s3-") as tmp:
            yield _download(location.uri, Path(tmp), s3_endpoint_url)
    else:
        raise DatasourceError(f"a {location.kind} location is not a file", where=location.uri)


def s3_client(endpoint_url: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or os.environ.get(S3_ENDPOINT_ENV) or None
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def _download(uri: str, tmp: Path, endpoint_url: str | None) -> FileContent:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[5:].partition("/")
    client = s3_client(endpoint_url)
    target = tmp / (Path(key).name or "object")
    digest, size = hashlib.sha256(), 0
    try:
        obj = client.get_object(Bucket=bucket, Key=key)
        with open(target, "wb") as out:
            for block in obj["Body"].iter_chunks(_BLOCK):
                digest.update(block)
                out.write(block)
                size += len(block)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise DatasourceError(f"the bucket {bucket!r} does not exist", where=uri, key=key) from None
        if code in ("NoSuchKey", "404"):
            raise DatasourceError(
                f"no object with this key in bucket {bucket!r}", where=uri, key=key
            ) from None
        raise DatasourceError(f"S3 refused the read ({code}): {exc}", where=uri, key=key) from None
    except BotoCoreError as exc:  # no endpoint, no credentials, a broken connection
        raise DatasourceError(f"S3 is unreachable: {exc}", where=uri, key=key) from None
    details = {"etag": obj.get("ETag", "").strip('"'), "endpoint": client.meta.endpoint_url}
    return FileContent(target, Path(key).name, digest.hexdigest(), size, details)


# -- SQL -------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A database value as the profiler and the checksum see it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def sql_frames(location: Location, chunk_rows: int, digest: Any) -> Iterator[pd.DataFrame]:
    """The query's rows in chunks; ``digest`` (a hashlib object) takes the canonical rows."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

    where = location.uri
    url = make_url(location.secret_url or location.uri)
    db = url.database or ""
    on_disk = url.get_backend_name() == "sqlite" and db not in ("", ":memory:") and not db.startswith("file:")
    if on_disk and not Path(db).is_file():  # sqlite would quietly create an empty database
        raise DatasourceError("no such SQLite database file", where=where)
    try:
        engine = create_engine(url)
    except (NoSuchModuleError, ImportError) as exc:
        raise DatasourceError(f"no driver for this database: {exc}", where=where) from None
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise DatasourceError(f"cannot connect to the database: {_reason(exc)}", where=where) from None
        with conn:
            try:
                result = conn.execution_options(stream_results=True).execute(text(location.query))
                columns = list(result.keys())
            except SQLAlchemyError as exc:
                raise DatasourceError(
                    f"the query failed: {_reason(exc)}", where=where, key=location.query
                ) from None
            if not result.returns_rows or not columns:
                raise DatasourceError("the query returns no columns", where=where, key=location.query)
            digest.update(json.dumps(columns, ensure_ascii=False).encode() + b"\n")
            while True:
                try:
                    rows = result.fetchmany(chunk_rows)
                except SQLAlchemyError as exc:
                    raise DatasourceError(f"reading rows failed: {_reason(exc)}", where=where) from None
                if not rows:
                    break
                plain = [tuple(_plain(v) for v in row) for row in rows]
                for row in plain:
                    digest.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                yield pd.DataFrame.from_records(plain, columns=columns)
    finally:
        engine.dispose()


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0]
