"""Convert the bare estimator (preprocessing already folded into the manifest) with skl2onnx.

The graph's interface is fixed for the server: one float32 input ``"input"`` of shape
``[None, width]``; classifiers output ``"label"`` ``[N]`` and ``"probabilities"`` ``[N, C]``
(``zipmap=False``, a plain tensor rather than a list of dicts); regressors output ``"variable"``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from onyxserve.training.export_errors import ExportError

INPUT_NAME = "input"
CLASSIFIER_OUTPUTS = {"label": "label", "probabilities": "probabilities"}
REGRESSOR_OUTPUTS = {"value": "variable"}


@dataclass(frozen=True)
class Converted:
    onnx_bytes: bytes
    input_name: str
    input_width: int
    outputs: dict[str, str]  # served name -> ONNX output name
    opset: int


def convert_estimator(estimator: Any, width: int, classifier: bool) -> Converted:
    """ONNX bytes for ``estimator``; ExportError names the estimator if skl2onnx cannot."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    name = type(estimator).__name__
    options = {id(estimator): {"zipmap": False}} if classifier else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skl2onnx warns about opset choices it handles itself
            model = convert_sklearn(
                estimator,
                name=f"onyxserve-{name}",
                initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
                options=options,
            )
    except Exception as exc:  # skl2onnx raises many types (RuntimeError, MissingShapeCalculator, ...)
        raise ExportError(f"estimator {name}: skl2onnx cannot convert it: {type(exc).__name__}: {exc}") from None
    expected = CLASSIFIER_OUTPUTS if classifier else REGRESSOR_OUTPUTS
    produced = {o.name for o in model.graph.output}
    missing = set(expected.values()) - produced
    if missing:
        raise ExportError(
            f"estimator {name}: the ONNX graph has outputs {sorted(produced)}, expected {sorted(expected.values())}"
        )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return Converted(model.SerializeToString(), INPUT_NAME, width, dict(expected), opset)
