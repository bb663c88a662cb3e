"""Build a V2 ``ModelInferRequest`` from numpy arrays, pandas DataFrames, dicts or lists of dicts.

Everything a request needs is checked here, before anything is sent: a missing feature, a row
count that differs between features, a matrix of the wrong width, a non-numeric value in a
numeric feature. The request carries ``raw_input_contents`` (little-endian, V2 BYTES layout for
categorical features): one ``[N, F]`` tensor for all-numeric models, else one ``[N]`` per feature.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import v2bytes

from .errors import invalid_input
from .schema import ModelSchema

Row = Mapping[str, Any]
InferData = Union[np.ndarray, "pd.DataFrame", Row, Sequence[Row]]  # noqa: F821 - pandas is optional


def build_request(
    schema: ModelSchema,
    data: Any,
    *,
    version: str = "",
    outputs: Sequence[str] = (),
    request_id: str = "",
    routing_key: str | int | None = None,
    variant: str | None = None,
) -> pb.ModelInferRequest:
    """The request for ``data`` (see ``InferData``); raises OnyxClientError (INVALID_ARGUMENT).
    ``routing_key``: the same key reaches the same production variant; ``variant``: that one."""
    request = pb.ModelInferRequest(model_name=schema.name, model_version=version, id=request_id)
    if routing_key is not None:
        request.parameters["routing_key"].string_param = str(routing_key)
    if variant is not None:
        request.parameters["variant"].string_param = variant
    if isinstance(data, np.ndarray) and schema.matrix_input is not None:
        _add_matrix(request, schema, _as_matrix(data, schema.n_matrix_features, schema.name))
    else:
        columns = _columns(schema, data)
        if schema.matrix_input is not None:
            numeric = [_numeric(schema.name, name, columns[name]) for name in schema.feature_names]
            matrix = np.column_stack(numeric)
            _add_matrix(request, schema, matrix)
        else:
            _add_columns(request, schema, columns)
    for name in outputs:
        request.outputs.add(name=name)
    return request


def _as_matrix(data: np.ndarray, width: int, model: str) -> np.ndarray:
    matrix = data.reshape(1, -1) if data.ndim == 1 else data
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise invalid_input(f"model '{model}' takes [N, {width}] rows, got shape {list(data.shape)}")
    if matrix.shape[0] == 0:
        raise invalid_input(f"no rows to send to model '{model}'")
    if matrix.dtype not in (np.float32, np.float64):
        try:
            matrix = matrix.astype(np.float64)
        except (TypeError, ValueError):
            raise invalid_input(f"model '{model}' takes numbers, got an array of {matrix.dtype}") from None
    return matrix


def _add_matrix(request: pb.ModelInferRequest, schema: ModelSchema, matrix: np.ndarray) -> None:
    dtype = "<f4" if matrix.dtype == np.float32 else "<f8"
    request.inputs.add(name=schema.matrix_input, datatype="FP32" if dtype == "<f4" else "FP64",
                       shape=list(matrix.shape))
    request.raw_input_contents.append(np.ascontiguousarray(matrix, dtype=dtype).tobytes())


def _add_columns(request: pb.ModelInferRequest, schema: ModelSchema, columns: dict[str, Any]) -> None:
    categorical = schema.categorical
    for name in schema.feature_names:
        values = columns[name]
        if name in categorical:
            raw = v2bytes.encode(_category(v) for v in values)
            request.inputs.add(name=name, datatype="BYTES", shape=[len(values)])
        else:
            column = _numeric(schema.name, name, values)
            raw = np.ascontiguousarray(column, dtype="<f8").tobytes()
            request.inputs.add(name=name, datatype="FP64", shape=[len(column)])
        request.raw_input_contents.append(raw)


def _columns(schema: ModelSchema, data: Any) -> dict[str, Any]:
    """Feature name -> the column's values (same length for all), for every feature of the model."""
    names = schema.feature_names
    if not names:
        raise invalid_input(
            f"the server does not list the features of model '{schema.name}' by name; "
            "send a numpy array with the features in the model's order"
        )
    if isinstance(data, np.ndarray):
        matrix = data.reshape(1, -1) if data.ndim == 1 else data
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise invalid_input(
                f"model '{schema.name}' takes {len(names)} features {list(names)}, "
                f"got an array of shape {list(data.shape)}"
            )
        columns = {name: matrix[:, j] for j, name in enumerate(names)}
    elif _is_dataframe(data):
        missing = [n for n in names if n not in data.columns]
        _refuse_missing(schema, missing, "the DataFrame")
        columns = {name: _frame_column(schema, data, name) for name in names}
    elif isinstance(data, Mapping):
        columns = _dict_columns(schema, data)
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and all(
        isinstance(row, Mapping) for row in data
    ):
        columns = _row_columns(schema, data)
    else:
        raise invalid_input(
            f"cannot build a request from {type(data).__name__}: pass a numpy array [N, F], a pandas "
            "DataFrame, a dict of feature values or a list of such dicts"
        )
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise invalid_input(f"features have different numbers of rows: {lengths}")
    if not lengths or next(iter(lengths.values())) == 0:
        raise invalid_input(f"no rows to send to model '{schema.name}'")
    return columns


def _frame_column(schema: ModelSchema, frame: Any, name: str) -> np.ndarray:
    series = frame[name]
    if name in schema.categorical:
        return series.to_numpy()
    try:  # nullable pandas dtypes hold pd.NA, which only to_numpy's na_value turns into NaN
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        message = f"feature '{name}' of model '{schema.name}' is numeric, got {series.dtype}"
        raise invalid_input(message) from None


def _dict_columns(schema: ModelSchema, data: Mapping[str, Any]) -> dict[str, Any]:
    """{feature: value} is one row; {feature: [values]} is a column per feature."""
    _refuse_missing(schema, [n for n in schema.feature_names if n not in data], "the dict")
    values = [data[name] for name in schema.feature_names]
    if all(_is_scalar(v) for v in values):
        return {name: [v] for name, v in zip(schema.feature_names, values)}
    scalars = [n for n, v in zip(schema.feature_names, values) if _is_scalar(v)]
    if scalars:
        raise invalid_input(f"mix of single values and columns in the dict: {scalars} are single values")
    return dict(zip(schema.feature_names, values))


def _row_columns(schema: ModelSchema, rows: Sequence[Row]) -> dict[str, list]:
    columns: dict[str, list] = {name: [] for name in schema.feature_names}
    for i, row in enumerate(rows):
        missing = [n for n in schema.feature_names if n not in row]
        _refuse_missing(schema, missing, f"row {i}")
        for name, column in columns.items():
            column.append(row[name])
    return columns


def _refuse_missing(schema: ModelSchema, missing: list[str], where: str) -> None:
    if missing:
        plural = "s" if len(missing) > 1 else ""
        shown = ", ".join(repr(n) for n in missing[:8]) + (", …" if len(missing) > 8 else "")
        raise invalid_input(f"{where} lacks feature{plural} [{shown}] of model '{schema.name}'")


def _numeric(model: str, name: str, values: Any) -> np.ndarray:
    try:
        column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        message = f"feature '{name}' of model '{model}' is numeric, got non-numeric values"
        raise invalid_input(message) from None
    if column.ndim != 1:
        raise invalid_input(f"feature '{name}' of model '{model}': expected one value per row")
    return column


def _category(value: Any) -> bytes | str:
    """A categorical value as V2 BYTES; a missing value (None, NaN) is the empty string the
    server treats as missing (imputed or refused, as the model was trained)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return b""
    pandas = sys.modules.get("pandas")
    if pandas is not None and value is pandas.NA:
        return b""
    if isinstance(value, (bytes, str)):
        return value
    return str(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes)) or np.ndim(value) == 0


def _is_dataframe(data: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a DataFrame means pandas is already imported
    return pandas is not None and isinstance(data, pandas.DataFrame)
