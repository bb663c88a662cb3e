"""Export a fitted scikit-learn estimator or pipeline as a servable model version.

    result = export_model(pipeline, name="fraud", repository="models/", sample=X_valid)

The preprocessing is folded into the manifest (``sklearn_split``), the estimator alone is
converted to ONNX (``onnx_convert``), the pair is loaded through the serving path and must
reproduce the pipeline's scores on the sample (``parity``); only then is the version written,
atomically, as ``<repository>/<name>/<version>/{model.onnx, manifest.json}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from onyxserve.core.scorer import OnnxScorer
from onyxserve.repository.manifest import FeatureSpec, Manifest, ModelSpec
from onyxserve.repository.store import (
    CONFIG_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    next_version,
    sha256_bytes,
    write_version,
)
from onyxserve.training.errors import ExportError
from onyxserve.training.export.baseline import WEAK_BASELINE_ROWS, BaselineSketch, compute_baseline
from onyxserve.training.export.convert import convert_estimator
from onyxserve.training.export.explain import split_explainer
from onyxserve.training.export.fold import Split, flatten, split_pipeline
from onyxserve.training.export.parity import ParityReport, Scores, check_parity, probe_feature, probe_missing
from sklearn.base import is_classifier

__all__ = ["DEFAULT_CONFIG", "ExportError", "ExportResult", "export_model"]

DEFAULT_CONFIG = {"max_batch_size": 32, "max_queue_delay_microseconds": 0, "max_queue_size": 1024}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_WRITE_ATTEMPTS = 50


@dataclass(frozen=True)
class ExportResult:
    version: str
    path: Path  # the version folder
    manifest: Manifest
    parity: ParityReport
    warnings: tuple[str, ...] = ()


def export_model(
    estimator: Any,
    *,
    name: str,
    repository: str | Path,
    sample: pd.DataFrame | np.ndarray,
    feature_names: Sequence[str] | None = None,
    lineage: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    baseline_data: pd.DataFrame | Iterable[pd.DataFrame] | None = None,
    version: str | None = None,
    register: bool = True,
) -> ExportResult:
    """Export ``estimator`` (fitted) as the next version of model ``name`` in ``repository``.

    ``sample``: raw feature rows as the client will send them (column order = the manifest's
    feature order); scored both ways by the parity gate and summarized as the drift baseline.
    ``baseline_data``: the training data (a frame, or frames in chunks: a datasource's
    ``read_frames``) the drift baseline is computed from, in one pass with bounded memory
    (``BaselineSketch``); without it the sample is summarised, with a warning below
    WEAK_BASELINE_ROWS rows.
    ``lineage``/``metrics``/``baseline`` are merged into the manifest (given keys win).
    ``version``: a whole number to write exactly (refused if it exists); default: the next one.
    ``register``: also index the version in the repository's registry (``registry.db``).
    Raises ExportError, naming the step, feature or row, if the model cannot be served exactly.
    """
    if not _NAME.match(name):
        raise ExportError(f"model name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.'")
    if version is not None and not (str(version).isdigit() and int(version) > 0):
        raise ExportError(f"version {version!r}: versions are positive whole numbers")
    if version is not None and (Path(repository) / name / str(int(version))).exists():
        raise ExportError(f"version {version} of '{name}' already exists in {repository}")
    frame, input_names = _sample_frame(estimator, sample, feature_names)
    if len(frame) == 0:
        raise ExportError("the sample has no rows; parity needs rows to check")
    split = split_pipeline(
        estimator,
        input_names,
        client_order=list(frame.columns),
        is_numeric=lambda col: pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]),
        estimator_allows_nan=_allows_nan,
    )
    classifier = is_classifier(split.estimator)
    predict = _predictor(estimator, input_names, classifier)
    labels = _labels(split.estimator) if classifier else None
    task = "regression" if not classifier else ("binary" if len(labels) == 2 else "multiclass")
    converted = convert_estimator(
        split.estimator, split.input_width, classifier, texts=split.texts, order=split.order
    )
    manifest = Manifest(
        name=name,
        version=str(int(version)) if version is not None else next_version(repository, name),
        task=task,
        features=split.features,
        model=ModelSpec(
            file=MODEL_FILE,
            sha256=sha256_bytes(converted.onnx_bytes),
            input_name=converted.input_name,
            input_width=converted.input_width,
            outputs=converted.outputs,
            input_dtype=converted.input_dtype,
        ),
        labels=labels,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        crosses=split.crosses,
    )
    manifest, warnings = _settle_missing(manifest, converted.onnx_bytes, frame, predict)
    scorer = _scorer(manifest, converted.onnx_bytes)
    expected = predict(frame)
    explain = split_explainer(estimator, lambda f: _pipeline_input(estimator, f, input_names), scorer, frame, split.order)
    report = check_parity(task, scorer, frame, predict, expected=expected, explain=explain)
    if baseline_data is None:
        drift_baseline = compute_baseline(manifest, frame, expected)
        if len(frame) < WEAK_BASELINE_ROWS:
            warnings += (
                f"the drift baseline is the {len(frame)}-row sample (fewer than {WEAK_BASELINE_ROWS}): its own noise"
                " weakens drift tests (a two-sample test of n live rows against m baseline rows counts as"
                " n m / (n + m) rows) and it has only 10 bins; pass the training data as the baseline",
            )
    else:
        drift_baseline = training_baseline(estimator, manifest, baseline_data, feature_names, predict)
    manifest = replace(
        manifest,
        metrics=_json_safe(dict(metrics or {})),
        baseline={**drift_baseline, **_json_safe(dict(baseline or {}))},
        lineage={
            **_lineage(estimator, split, frame, converted.opset, report, warnings),
            **_json_safe(dict(lineage or {})),
        },
    )
    version, manifest = _write(repository, name, manifest, converted.onnx_bytes, fixed=version is not None)
    ensure_config(repository, name)
    if register:  # every exported version is indexed (stages, approval, history) right away
        from onyxserve.repository.registry import register_version

        register_version(repository, name, version)
    return ExportResult(version, Path(repository) / name / version, manifest, report, warnings)


# ---- the sample and the pipeline ---------------------------------------------------------


def _sample_frame(
    estimator: Any, sample: pd.DataFrame | np.ndarray, feature_names: Sequence[str] | None
) -> tuple[pd.DataFrame, list[str]]:
    """The sample as a DataFrame in client column order, and the pipeline's input column names."""
    fitted_names = getattr(estimator, "feature_names_in_", None)
    n_in = getattr(estimator, "n_features_in_", None)
    if isinstance(sample, pd.DataFrame):
        frame = sample.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        if fitted_names is not None:
            names = [str(c) for c in fitted_names]
        elif feature_names is not None:
            names = [str(c) for c in feature_names]
        else:
            names = list(frame.columns)
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ExportError(f"the sample lacks the pipeline's input columns {missing}")
    else:
        array = np.asarray(sample)
        if array.ndim != 2:
            raise ExportError(f"the sample must be a 2-D array or a DataFrame, got shape {array.shape}")
        if fitted_names is not None:
            names = [str(c) for c in fitted_names]
        elif feature_names is not None:
            names = [str(c) for c in feature_names]
        else:
            names = [f"f{i}" for i in range(array.shape[1])]
        if len(names) != array.shape[1]:
            raise ExportError(f"the sample has {array.shape[1]} columns but {len(names)} feature names")
        frame = pd.DataFrame({n: array[:, i] for i, n in enumerate(names)})
        frame = frame.infer_objects()
    if n_in is not None and n_in != len(names):
        raise ExportError(f"the pipeline takes {n_in} input columns, the sample provides {len(names)}: {names}")
    if len(set(names)) != len(names):
        raise ExportError(f"duplicate feature names {names}")
    return frame, names


def training_baseline(
    estimator: Any,
    manifest: Manifest,
    data: pd.DataFrame | Iterable[pd.DataFrame],
    feature_names: Sequence[str] | None,
    predict: Any,
    chunk_rows: int = 50_000,
) -> dict[str, Any]:
    """The drift baseline of ``data`` (a frame, or frames in chunks), scored by the pipeline
    chunk by chunk: one pass, memory bounded by a chunk and the sketch's reservoirs."""
    sketch = BaselineSketch(manifest)
    chunks = (data.iloc[i : i + chunk_rows] for i in range(0, len(data), chunk_rows)) \
        if isinstance(data, pd.DataFrame) else data
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        frame, _ = _sample_frame(estimator, chunk, feature_names)
        sketch.add(frame, predict(frame))
    if sketch.rows == 0:
        raise ExportError("the baseline data has no rows")
    return sketch.result()


def _pipeline_input(estimator: Any, frame: pd.DataFrame, names: list[str]) -> Any:
    if getattr(estimator, "feature_names_in_", None) is not None:
        return frame[names]
    return frame[names].to_numpy()  # fitted without column names: positions only


def _predictor(estimator: Any, names: list[str], classifier: bool):
    if classifier and not hasattr(estimator, "predict_proba"):
        raise ExportError(
            f"estimator {type(flatten(estimator)[-1][1]).__name__} has no predict_proba (e.g. SGDClassifier"
            " with loss='hinge'); served classifiers return probabilities: use loss='log_loss' or"
            " 'modified_huber', or wrap it in CalibratedClassifierCV"
        )

    def predict(frame: pd.DataFrame) -> Scores:
        x = _pipeline_input(estimator, frame, names)
        try:
            if classifier:
                return {"label": np.asarray(estimator.predict(x)), "probabilities": estimator.predict_proba(x)}
            value = np.asarray(estimator.predict(x), dtype=np.float64)
        except Exception as exc:  # the pipeline's own failure on these rows
            raise ExportError(f"the pipeline cannot score the sample: {type(exc).__name__}: {exc}") from None
        if value.ndim > 1 and value.shape[1] != 1:
            raise ExportError(f"the regressor predicts {value.shape[1]} outputs; only one is served")
        return {"value": value.reshape(-1)}

    return predict


def _allows_nan(estimator: Any) -> bool:
    try:
        return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
    except AttributeError:
        return bool(getattr(estimator, "_get_tags", lambda: {})().get("allow_nan", False))


def _labels(estimator: Any) -> tuple[Any, ...]:
    classes = getattr(estimator, "classes_", None)
    if classes is None or np.ndim(classes) != 1:
        raise ExportError(f"estimator {type(estimator).__name__} has no 1-D classes_; multi-output is not served")
    if len(classes) < 2:
        raise ExportError(f"estimator {type(estimator).__name__} was fitted on a single class {list(classes)}")
    return tuple(_json_scalar(c) for c in classes)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    scalar = _json_scalar(value)
    if isinstance(scalar, str) and not isinstance(value, (str, bytes, np.str_)):
        return repr(value)
    return scalar


# ---- NaN handling ------------------------------------------------------------------------


def _scorer(manifest: Manifest, onnx_bytes: bytes) -> OnnxScorer:
    try:
        return OnnxScorer(manifest, onnx_bytes, intra_op_threads=1)
    except Exception as exc:
        raise ExportError(f"the exported version cannot be loaded for serving: {exc}") from None


def _settle_missing(
    manifest: Manifest, onnx_bytes: bytes, frame: pd.DataFrame, predict
) -> tuple[Manifest, tuple[str, ...]]:
    """Check NaN handling per feature; a converter that loses the estimator's native NaN support
    (seen: skl2onnx with RandomForest/ExtraTrees) gets NaN rejected at serving, with a warning."""
    failures = probe_missing(manifest.task, _scorer(manifest, onnx_bytes), frame, predict)
    rejected: list[str] = []
    nudges: list[str] = []
    features = list(manifest.features)
    for i, f in enumerate(features):
        problem = failures.get(f.name)
        if problem is None:
            continue
        if f.numeric.impute is not None:
            nudged = _nudge_impute(manifest, onnx_bytes, frame, predict, i)
            if nudged is None:
                raise ExportError(
                    f"feature '{f.name}': the folded imputation does not reproduce the pipeline: {problem}"
                )
            features[i] = nudged
            nudges.append(f.name)
            continue
        if frame[f.name].isna().any():
            raise ExportError(
                f"feature '{f.name}' has missing values in the sample, but the ONNX model does not handle NaN"
                f" like the estimator ({problem}); impute it in the pipeline"
            )
        features[i] = replace(f, numeric=replace(f.numeric, allow_nan=False))
        rejected.append(f.name)
    warnings: tuple[str, ...] = ()
    if nudges:
        warnings += (
            f"the imputed value of {', '.join(repr(n) for n in nudges)} sits on a tree split threshold; it is"
            " served one rounding step to the side scikit-learn's float64 arithmetic puts it on",
        )
    if rejected:
        names = ", ".join(f"'{n}'" for n in rejected[:6]) + (f" and {len(rejected) - 6} more" if len(rejected) > 6 else "")
        warnings += (
            f"the ONNX model does not reproduce the estimator's handling of NaN for {len(rejected)} feature(s)"
            f" ({names}), so the server will reject NaN there; impute in the pipeline to accept it",
        )
    return replace(manifest, features=tuple(features)), warnings


def _nudge_impute(
    manifest: Manifest, onnx_bytes: bytes, frame: pd.DataFrame, predict, index: int
) -> FeatureSpec | None:
    """A folded imputed value can land exactly on a tree's split threshold (a median and a
    threshold are both midpoints of two training values). Imputed before the scaler, the core
    computes scikit-learn's value bit for bit and this is not needed; imputed after it, the fill
    is moved back to raw units, off by an ulp, and scikit-learn's side of the threshold depends on
    that ulp. Try the neighbours of the normalized imputed value in the model's input dtype; keep
    the one the NaN probe accepts."""
    f = manifest.features[index]
    s = f.numeric
    dtype = np.dtype(manifest.model.input_dtype).type
    served = dtype(s.normalized(s.impute))
    for direction in (np.inf, -np.inf):
        target = float(np.nextafter(served, dtype(direction)))
        raw = (target - s.shift) / s.scale * s.divisor + s.offset if s.scale else s.impute
        candidate = replace(f, numeric=replace(s, impute=raw))
        if dtype(candidate.numeric.normalized(raw)) != dtype(target):
            continue  # the inverse did not land on the neighbour (clipped, or scale 0)
        trial = replace(manifest, features=(*manifest.features[:index], candidate, *manifest.features[index + 1 :]))
        if probe_feature(manifest.task, _scorer(trial, onnx_bytes), frame, predict, f.name) is None:
            return candidate
    return None


# ---- lineage, writing --------------------------------------------------------------------


def _sample_checksum(frame: pd.DataFrame) -> str:
    h = hashlib.sha256(json.dumps(list(frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    from onyxserve import __version__ as onyxserve_version  # noqa: PLC0415

    return {
        "onyxserve": onyxserve_version,
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _lineage(
    estimator: Any, split: Split, frame: pd.DataFrame, opset: int, report: ParityReport, warnings: tuple[str, ...]
) -> dict[str, Any]:
    final = split.estimator
    return {
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "estimator": {
            "class": f"{type(final).__module__}.{type(final).__name__}",
            "params": _json_safe(final.get_params(deep=False)),
        },
        "pipeline": {
            "class": f"{type(estimator).__module__}.{type(estimator).__name__}",
            "steps": list(split.steps),
        },
        "onnx_opset": opset,
        "sample": {"rows": len(frame), "columns": list(frame.columns), "sha256": _sample_checksum(frame)},
        "parity": report.to_dict(),
        "warnings": list(warnings),
    }


def _write(
    repository: str | Path, name: str, manifest: Manifest, onnx_bytes: bytes, fixed: bool
) -> tuple[str, Manifest]:
    """Write under the next free number (or exactly ``manifest.version`` if ``fixed``); the
    manifest's version must equal its folder's name, so a concurrent writer taking the number
    means rewriting the manifest and trying again."""
    for _ in range(_WRITE_ATTEMPTS):
        version = manifest.version if fixed else next_version(repository, name)
        manifest = replace(manifest, version=version)
        files = {MODEL_FILE: onnx_bytes, MANIFEST_FILE: manifest.to_json().encode("utf-8")}
        try:
            return write_version(repository, name, files, version=version), manifest
        except OSError:
            if not (Path(repository) / name / version).exists():
                raise
            if fixed:
                raise ExportError(f"version {version} of '{name}' was written by someone else meanwhile") from None
    raise ExportError(f"could not claim a version of '{name}' after {_WRITE_ATTEMPTS} attempts (busy writers?)")


def ensure_config(repository: str | Path, name: str) -> None:
    """Write the default serving ``config.json`` unless one exists (never overwritten, even in a race)."""
    target = Path(repository) / name / CONFIG_FILE
    if target.exists():
        return
    tmp = target.with_name(f".{CONFIG_FILE}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(DEFAULT_CONFIG, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)  # fails if another writer got there first: keep theirs
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
