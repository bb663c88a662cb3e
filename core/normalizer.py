"""Gather request rows into one batch matrix while normalizing them (the Python side).

Python validates and allocates here; the compiled kernels in ``_normalize.pyx`` assume valid
input and loop without the GIL. See ``FeatureNormalizer.gather``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from onyxserve.core.text import TextValueError, decode_text
from onyxserve.repository.manifest import CrossSpec, FeatureSpec, Manifest, NumericSpec


class FeatureValueError(ValueError):
    """A feature value the model cannot take; names the feature and the row."""

    def __init__(self, feature: str, row: int, reason: str) -> None:
        super().__init__(f"feature '{feature}' row {row}: {reason}")
        self.feature = feature
        self.row = row
        self.reason = reason


@dataclass(frozen=True)
class RowBlock:
    """The rows of one request, in one of the two V2 request forms.

    ``matrix``: form A, one ``[n_rows, n_features]`` float32/float64 array, columns in manifest
    feature order (only for models whose features are all numeric).
    ``columns``: form B, one entry per manifest feature: a 1-D float32/float64 array of
    ``n_rows`` for numeric/binary features, a V2 BYTES buffer (bytes or memoryview) holding
    ``n_rows`` elements for categorical features (crosses are derived from these, never sent).
    Exactly one of the two is set.
    """

    n_rows: int
    matrix: np.ndarray | None = None
    columns: Sequence[np.ndarray | bytes | memoryview] | None = None


_INF, _NAN, _UNKNOWN, _TRUNC_PREFIX, _TRUNC_ELEMENT, _COUNT = range(1, 7)  # _normalize ST_*
_NUMERIC, _ONEHOT, _ORDINAL, _INPUT = 0, 1, 2, 3
_IMPUTE, _ALLOW_NAN, _UNKNOWN_ERROR, _SKETCH, _BINNED = 1, 2, 4, 8, 16


class FeatureNormalizer:
    """Gathers RowBlocks into one float32 (or, ``dtype="float64"``, float64) batch matrix,
    normalizing as it copies. Values are computed in float64 either way and rounded once.

    All per-feature parameters are packed into contiguous arrays here, once; ``gather`` then
    makes one compiled pass per batch (see ``_normalize.Plan.run``).

    ``sketch_edges``: optional drift sketches updated in the same pass. For a numeric feature,
    sorted finite bin edges of the raw value; its counts have ``len(edges) + 2`` slots: below
    the first edge, the ``len(edges) - 1`` bins of ``numpy.histogram(x, edges)``, above the
    last edge, NaN. For a categorical feature the value is ignored (use None); its counts are
    one slot per category, then one for unknown (a value not in the table), then one for
    missing (an empty value, unless "" is itself a category).
    A batch rejected with FeatureValueError leaves the counts unchanged. With sketches, calls
    on one normalizer must not run concurrently (the counts are plain integers). A binned
    feature's sketch counts its raw value like any numeric one.

    ``crosses``: derived one-hot features written after the features of each block, from the
    raw bytes of their two categorical inputs.

    ``allocate_counts``: optional ``n -> int64 array`` (zeroed, contiguous, length at least n)
    the sketches count into instead of private memory, e.g. a file mapped by several processes.

    ``dtype``: of the matrix ``gather`` writes, the ONNX graph's input (``ModelSpec.input_dtype``).
    """

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        width: int,
        sketch_edges: Mapping[str, np.ndarray | None] | None = None,
        crosses: Sequence[CrossSpec] = (),
        allocate_counts: Callable[[int], np.ndarray] | None = None,
        dtype: str = "float32",
    ) -> None:
        # Imported here so the reference oracle can import this module without the build.
        from onyxserve.core._normalize import CategoryTable, Plan

        # Text features bypass the kernel: their strings go to the ONNX graph (see ``texts``).
        every = tuple(features)
        self.text_features = tuple((j, f) for j, f in enumerate(every) if f.is_text)
        self._core_index = [j for j, f in enumerate(every) if not f.is_text] if self.text_features else None
        self.features = tuple(f for f in every if not f.is_text)
        self.width = int(width)
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.n_features = n = len(self.features)
        self.crosses = tuple(crosses)
        sketch_edges = dict(sketch_edges or {})
        unknown = set(sketch_edges) - {f.name for f in self.features}
        if unknown:
            raise ValueError(f"sketch_edges names unknown features {sorted(unknown)}")
        _check_columns((*self.features, *self.crosses), self.width)

        column = np.array([f.column for f in self.features], dtype=np.intp)
        kind = np.zeros(n, dtype=np.uint8)
        flags = np.zeros(n, dtype=np.uint8)
        # rows: offset, divisor, scale, shift, clip_low, clip_high, fill (numeric impute / ordinal
        # unknown_value)
        num = np.array([[0.0, 1.0, 1.0, 0.0, -np.inf, np.inf, 0.0]] * n, dtype=np.float64).T.copy()
        cat = np.array([[-1, -1, 0]] * n, dtype=np.intp).T.copy()  # drop, impute_code, n_cat
        sketch = np.zeros((3, n), dtype=np.intp)  # counts offset, edges offset, n_edges
        tables: list[CategoryTable | None] = [None] * n
        edges: list[np.ndarray] = []
        bins = np.zeros((2, n), dtype=np.intp)  # offset into bin_edges, n interior edges
        bin_edges: list[float] = []
        slices: dict[str, slice] = {}
        n_counts = n_edges = 0
        for j, f in enumerate(self.features):
            if f.categorical is not None:
                c = f.categorical
                tables[j] = table = CategoryTable(c.categories)
                kind[j] = {"ordinal": _ORDINAL, "none": _INPUT}.get(c.encoding, _ONEHOT)
                flags[j] |= _UNKNOWN_ERROR if c.unknown == "error" else 0
                num[6, j] = c.unknown_value
                cat[:, j] = (
                    -1 if c.drop is None or c.encoding == "ordinal" else c.drop,
                    -1 if c.impute is None else table.lookup(c.impute),
                    len(c.categories),
                )
                if c.impute is not None:
                    flags[j] |= _IMPUTE
                size = len(c.categories) + 2  # then unknown, then missing (empty)
            else:
                s = f.numeric or NumericSpec()
                fill = 0.0 if s.impute is None else s.impute
                num[:, j] = (s.offset, s.divisor, s.scale, s.shift, s.clip_low, s.clip_high, fill)
                flags[j] |= (_IMPUTE if s.impute is not None else 0) | (_ALLOW_NAN if s.allow_nan else 0)
                if s.bins is not None:
                    flags[j] |= _BINNED
                    bins[:, j] = (len(bin_edges), len(s.bins))
                    bin_edges += _check_bins(f.name, s)
                if f.name in sketch_edges:
                    e = _check_edges(f.name, sketch_edges[f.name])
                    sketch[1:, j] = (n_edges, len(e))
                    edges.append(e)
                    n_edges += len(e)
                size = sketch[2, j] + 2
            if f.name in sketch_edges:
                flags[j] |= _SKETCH
                sketch[0, j] = n_counts
                slices[f.name] = slice(n_counts, n_counts + size)
                n_counts += size
        self._counts = np.zeros(n_counts, dtype=np.int64) if allocate_counts is None else _counts_from(allocate_counts, n_counts)
        self.sketch_counts: dict[str, np.ndarray] = {k: self._counts[s] for k, s in slices.items()}
        flat_edges = np.concatenate(edges) if edges else np.zeros(0, dtype=np.float64)
        if n == 0:  # a model of text features only: the core has nothing to write
            self._plan = None
            return
        self._plan = Plan(
            [f.name for f in self.features], self.width, column, kind, flags, num, cat, tables,
            sketch, flat_edges, self._counts, bins, np.array(bin_edges, dtype=np.float64),
            _cross_params(self.crosses, self.features, CategoryTable),
        )

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        sketch_edges: Mapping[str, np.ndarray | None] | None = None,
        allocate_counts: Callable[[int], np.ndarray] | None = None,
    ) -> FeatureNormalizer:
        return cls(
            manifest.features, manifest.model.input_width, sketch_edges, manifest.crosses, allocate_counts,
            manifest.model.input_dtype,
        )

    def gather(self, blocks: Sequence[RowBlock], out: np.ndarray | None = None) -> np.ndarray:
        """Normalize ``blocks`` into ``out`` (``self.dtype``, C-contiguous ``[sum n_rows, width]``,
        allocated when None) and return it. FeatureValueError for a bad value, naming the
        feature and the row within its block; TypeError/ValueError for malformed arguments."""
        if self._core_index is not None:
            blocks = [self._core_block(b) for b in blocks]
        if self._plan is None:
            return np.zeros((sum(b.n_rows for b in blocks), 0), dtype=self.dtype)
        if out is not None and out.dtype != self.dtype:
            raise TypeError(f"out is {out.dtype}, this model's input is {self.dtype}")
        result = self._plan.run(blocks, out, self.dtype == np.float64)
        if result is None:
            raise self._value_error(blocks, self._plan.error)
        return result

    def gather_one(self, block: RowBlock) -> np.ndarray:
        return self.gather((block,))

    def texts(self, blocks: Sequence[RowBlock]) -> dict[str, np.ndarray]:
        """The ONNX graph's string inputs for ``blocks``: ``{input_name: object array [N, 1]}``,
        decoded from each text feature's V2 BYTES (form B); FeatureValueError names the row."""
        out: dict[str, np.ndarray] = {}
        for j, f in self.text_features:
            values: list[str] = []
            for block in blocks:
                if block.columns is None:
                    raise ValueError(f"feature '{f.name}': text features need form B (one input per feature)")
                try:
                    values += decode_text(block.columns[j], block.n_rows, f.text.lowercase)
                except TextValueError as exc:
                    raise FeatureValueError(f.name, exc.row, exc.reason) from None
            out[f.text.input_name] = np.array(values, dtype=object).reshape(-1, 1)
        return out

    def prepare(
        self, blocks: Sequence[RowBlock], out: np.ndarray | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Everything the ONNX graph takes for ``blocks``: the normalized batch (into ``out``
        if given, as ``gather``) and the texts. Texts are decoded first: ``gather`` counts the
        drift sketches and leaves them unchanged only when it is the one refusing the batch."""
        texts = self.texts(blocks) if self.text_features else {}
        return self.gather(blocks, out), texts

    def _core_block(self, block: RowBlock) -> RowBlock:
        if block.columns is None:  # the decoder only builds form A for all-numeric models
            raise ValueError("a model with text features takes form B (one input per feature)")
        return RowBlock(n_rows=block.n_rows, columns=[block.columns[j] for j in self._core_index])

    def reset_sketches(self) -> None:
        self._counts[:] = 0

    def _value_error(self, blocks: Sequence[RowBlock], error: tuple[int, ...]) -> FeatureValueError:
        status, b, row, j, a, n, c = error
        f = self.features[j]
        if status == _INF:
            reason = "is infinite"
        elif status == _NAN:
            reason = "is NaN and the model has no imputer"
        elif status == _UNKNOWN:
            value = f.categorical.impute if c else bytes(memoryview(blocks[b].columns[j])[a : a + n])
            if isinstance(value, bytes):
                value = value.decode("utf-8", "backslashreplace")
            reason = f"unknown category {value!r}"
        elif status == _TRUNC_PREFIX:
            reason = f"malformed BYTES: truncated length prefix at byte {a}"
        elif status == _TRUNC_ELEMENT:
            size = memoryview(blocks[b].columns[j]).nbytes
            reason = f"malformed BYTES: element {a} claims {n} bytes at byte {c}, only {size - c} left"
        else:
            reason = f"has {a} elements, expected {blocks[b].n_rows}"
        return FeatureValueError(f.name, row, reason)


def _check_bins(name: str, spec: NumericSpec) -> list[float]:
    e = np.asarray(spec.bins, dtype=np.float64)
    if not np.isfinite(e).all() or (np.diff(e) <= 0).any():
        raise ValueError(f"bins of '{name}' must be finite and strictly increasing")
    if spec.allow_nan:
        raise ValueError(f"feature '{name}': a binned feature has no bin for NaN (allow_nan must be false)")
    return e.tolist()


def _cross_params(crosses: Sequence[CrossSpec], features: Sequence[FeatureSpec], table_type) -> list[tuple]:
    """(a, b, column, drop, CategoryTable, separator bytes) per cross, for the Plan."""
    index = {f.name: j for j, f in enumerate(features)}
    out = []
    for x in crosses:
        c = x.categorical
        parents = []
        for name in x.inputs:
            j = index.get(name)
            if j is None or features[j].categorical is None:
                raise ValueError(f"cross '{x.name}': input '{name}' is not a categorical feature")
            parents.append(j)
        if c.encoding != "onehot" or c.unknown != "ignore" or c.impute is not None:
            raise ValueError(f"cross '{x.name}': only one-hot with unknown 'ignore' and no imputer is supported")
        drop = -1 if c.drop is None else c.drop
        out.append((*parents, x.column, drop, table_type(c.categories), x.separator.encode("utf-8")))
    return out


def _check_columns(features: Sequence[FeatureSpec | CrossSpec], width: int) -> None:
    """The kernel writes without bounds checks: every column must be written exactly once."""
    owner = np.full(width, -1)
    for j, f in enumerate(features):
        if f.column < 0 or f.column + f.width > width:
            last = f.column + f.width - 1
            raise ValueError(f"feature '{f.name}' writes columns {f.column}..{last}, width {width}")
        if (owner[f.column : f.column + f.width] >= 0).any():
            raise ValueError(f"feature '{f.name}' overlaps another feature's columns")
        owner[f.column : f.column + f.width] = j
    if (owner < 0).any():
        raise ValueError(f"columns {np.flatnonzero(owner < 0)[:5].tolist()} are written by no feature")


def _counts_from(allocate: Callable[[int], np.ndarray], n: int) -> np.ndarray:
    counts = allocate(n)
    if not isinstance(counts, np.ndarray) or counts.dtype != np.int64 or counts.ndim != 1 or len(counts) < n:
        raise ValueError(f"allocate_counts({n}) must return a 1-D int64 array of at least {n} slots")
    if not counts.flags.c_contiguous or not counts.flags.writeable:
        raise ValueError("allocate_counts must return a writeable C-contiguous array")
    return counts[:n]


def _check_edges(name: str, edges: np.ndarray | None) -> np.ndarray:
    e = np.ascontiguousarray(edges, dtype=np.float64).reshape(-1) if edges is not None else np.zeros(0)
    if len(e) == 0 or not np.isfinite(e).all() or (np.diff(e) <= 0).any():
        raise ValueError(f"sketch edges of '{name}' must be a non-empty, strictly increasing finite array")
    return e
