"""The rows a load test sends: replayed from a CSV / JSONL file, or generated from a model's
manifest or from its V2 ModelMetadata.

Generated numeric features are random normal (from a manifest: in the feature's raw units,
``offset + z / scale``, so they land where the training data was); BYTES features draw from
``--categories`` (JSON ``{"feature": ["a", "b"]}``), the manifest's categories, or a small
default.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc

DEFAULT_CATEGORIES = ("a", "b", "c", "d")
# columns dropped from a data file unless --columns names them: the usual label names
LABEL_COLUMNS = frozenset({"Class", "class", "label", "target", "y"})


@dataclass(frozen=True)
class Feature:
    name: str
    datatype: str = "FP64"  # V2 datatype when sent on its own (what ModelMetadata advertises); "BYTES" for categorical

    @property
    def numeric(self) -> bool:
        return self.datatype != "BYTES"


@dataclass
class Workload:
    """Rows as columns: float64 arrays for numeric features, lists of str for BYTES ones."""

    features: list[Feature]
    columns: list[np.ndarray | list[str]]
    _matrix: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    @property
    def all_numeric(self) -> bool:
        return all(f.numeric for f in self.features)

    def matrix(self) -> np.ndarray:
        """The numeric rows as one ``[rows, F]`` float64 array."""
        if self._matrix is None:
            self._matrix = np.column_stack([np.asarray(c, dtype=np.float64) for c in self.columns])
        return self._matrix


@dataclass(frozen=True)
class ModelInterface:
    """The inputs and outputs a V2 server declares for a model (from ModelMetadata)."""

    inputs: list[tuple[str, str, list[int]]]  # name, datatype, shape (-1 = variable)
    outputs: list[str]

    @property
    def is_tensor(self) -> bool:
        """One numeric input ``[-1, F]``: the features travel as one matrix."""
        if len(self.inputs) != 1:
            return False
        _, datatype, shape = self.inputs[0]
        return datatype != "BYTES" and len(shape) == 2 and shape[1] != 1

    @property
    def width(self) -> int | None:
        if self.is_tensor:
            w = self.inputs[0][2][1]
            return int(w) if w > 0 else None
        return len(self.inputs)


def fetch_interface(target: str, model: str, version: str = "", timeout_s: float = 5.0) -> ModelInterface:
    """Ask a V2 server for a model's inputs and outputs (ModelMetadata); raises grpc.RpcError."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version), timeout=timeout_s)
    return ModelInterface(
        inputs=[(t.name, t.datatype, list(t.shape)) for t in meta.inputs],
        outputs=[t.name for t in meta.outputs],
    )


def _parse_column(name: str, values: Sequence[str]) -> tuple[Feature, np.ndarray | list[str]]:
    """Numeric if every non-empty value parses as a float (empty -> NaN), else BYTES."""
    try:
        return Feature(name, "FP64"), np.array([float(v) if v != "" else math.nan for v in values])
    except ValueError:
        return Feature(name, "BYTES"), [str(v) for v in values]


def _select(names: list[str], wanted: Sequence[str] | None, source: str) -> list[str]:
    if wanted:
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(f"{source}: no column(s) {missing}; it has {names[:40]}")
        return list(wanted)
    return [n for n in names if n not in LABEL_COLUMNS]


def from_file(path: str | Path, columns: Sequence[str] | None = None, limit: int = 100_000) -> Workload:
    """Rows from a CSV with a header, or JSONL (one object per line), ``.jsonl``/``.ndjson``.

    ``columns`` picks and orders the features; by default every column except the usual label
    names (Class, label, target, y). At most ``limit`` rows are read.
    """
    path = Path(path)
    if path.suffix in (".jsonl", ".ndjson"):
        records = []
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    records.append(json.loads(line))
                if len(records) >= limit:
                    break
        if not records:
            raise ValueError(f"{path}: no rows")
        names = _select(list(records[0]), columns, str(path))
        raw = {n: ["" if r.get(n) is None else str(r[n]) for r in records] for n in names}
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise ValueError(f"{path}: empty file")
            rows = []
            for row in reader:
                if row:
                    rows.append(row)
                if len(rows) >= limit:
                    break
        if not rows:
            raise ValueError(f"{path}: no rows")
        names = _select(header, columns, str(path))
        index = {n: header.index(n) for n in names}
        raw = {n: [r[index[n]] for r in rows] for n in names}
    features, cols = zip(*(_parse_column(n, raw[n]) for n in names))
    return Workload(list(features), list(cols))


def generate(
    features: Sequence[Feature],
    rows: int = 1024,
    seed: int = 0,
    categories: dict[str, Sequence[str]] | None = None,
    loc: Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
) -> Workload:
    """Random rows: numeric N(loc, scale) (default N(0, 1)), BYTES drawn uniformly from the
    feature's categories (``categories[name]``, else a small default)."""
    rng = np.random.default_rng(seed)
    categories = categories or {}
    cols: list[np.ndarray | list[str]] = []
    for i, f in enumerate(features):
        if f.numeric:
            mu = loc[i] if loc is not None else 0.0
            sd = scale[i] if scale is not None else 1.0
            cols.append(rng.normal(mu, sd, rows))
        else:
            choices = list(categories.get(f.name) or DEFAULT_CATEGORIES)
            cols.append([choices[j] for j in rng.integers(0, len(choices), rows)])
    return Workload(list(features), cols)


def from_interface(
    interface: ModelInterface,
    rows: int = 1024,
    seed: int = 0,
    categories: dict[str, Sequence[str]] | None = None,
) -> Workload:
    """Generated rows shaped by ModelMetadata: one ``[-1, F]`` input gives F numeric features
    ``f0..``; otherwise each input is one feature of its declared datatype."""
    if interface.is_tensor:
        width = interface.width
        if width is None:
            raise ValueError("the model's input has a variable feature dimension; give --data or --manifest")
        datatype = interface.inputs[0][1]
        features = [Feature(f"f{i}", datatype) for i in range(width)]
    else:
        features = [Feature(name, datatype) for name, datatype, _ in interface.inputs]
    return generate(features, rows, seed, categories)


_SENTENCES = (
    "payment for order 1042",
    "refund requested by the customer",
    "monthly subscription renewal",
    "",
    "gift card top up, thank you!",
    "wire transfer to savings account",
)


def from_manifest(
    path: str | Path, rows: int = 1024, seed: int = 0, categories: dict[str, Sequence[str]] | None = None
) -> Workload:
    """Generated rows shaped by an onyxserve manifest.json, numeric values in raw units."""
    from onyxserve.repository.manifest import Manifest

    manifest = Manifest.load(path)
    features, loc, scale, cats = [], [], [], dict(categories or {})
    for f in manifest.features:
        if f.text is not None:  # the manifest holds no vocabulary: plain sentences of common words
            features.append(Feature(f.name, "BYTES"))
            cats.setdefault(f.name, list(_SENTENCES))
            loc.append(0.0)
            scale.append(1.0)
        elif f.categorical is not None:
            features.append(Feature(f.name, "BYTES"))
            cats.setdefault(f.name, list(f.categorical.categories))
            loc.append(0.0)
            scale.append(1.0)
        else:
            spec = f.numeric
            features.append(Feature(f.name, "FP64"))
            # normalized = (x - offset) * scale ~ N(0, 1)  =>  x = offset + z / scale
            s = spec.scale if spec is not None and spec.scale not in (0.0,) else 1.0
            loc.append(spec.offset if spec is not None else 0.0)
            scale.append(abs(1.0 / s))
    return generate(features, rows, seed, cats, loc, scale)
