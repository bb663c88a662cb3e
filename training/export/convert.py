"""Convert the bare estimator (preprocessing already folded into the manifest) with skl2onnx.

The graph's interface is fixed for the server: one input ``"input"`` of shape ``[None, width]``,
float32, or float64 for HistGradientBoosting (whose trees compare in double; see ``trees``);
classifiers output ``"label"`` ``[N]`` and ``"probabilities"`` ``[N, C]``
(``zipmap=False``, a plain tensor rather than a list of dicts); regressors output ``"variable"``.
With text features the graph also takes one string input per text feature (``onnx_text``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onyxserve.training.errors import ExportError
from onyxserve.training.export.onnx_text import TextPart, add_text_inputs
from onyxserve.training.export.trees import TREE_OPS, input_dtype, round_down_thresholds, to_double

INPUT_NAME = "input"
ESTIMATOR_INPUT = "estimator_input"  # the estimator's own input when text columns join the core's
CLASSIFIER_OUTPUTS = {"label": "label", "probabilities": "probabilities"}
REGRESSOR_OUTPUTS = {"value": "variable"}


@dataclass(frozen=True)
class Converted:
    onnx_bytes: bytes
    input_name: str
    input_width: int
    outputs: dict[str, str]  # served name -> ONNX output name
    opset: int
    input_dtype: str = "float32"  # of the graph's input (ModelSpec.input_dtype)


def convert_estimator(
    estimator: Any,
    width: int,
    classifier: bool,
    *,
    texts: Sequence[TextPart] = (),
    order: Sequence[int] = (),
) -> Converted:
    """ONNX bytes for ``estimator``; ExportError names the estimator if skl2onnx cannot.

    ``width``: the core's columns. With ``texts``, the estimator takes ``width`` plus the text
    parts' columns, arranged by ``order`` (see ``sklearn_split.Split``)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    name = type(estimator).__name__
    text_width = sum(t.width for t in texts)
    options = {id(estimator): {"zipmap": False}} if classifier else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skl2onnx warns about opset choices it handles itself
            model = convert_sklearn(
                estimator,
                name=f"onyxserve-{name}",
                initial_types=[
                    (ESTIMATOR_INPUT if texts else INPUT_NAME, FloatTensorType([None, width + text_width]))
                ],
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
    dtype = "float32"
    if any(n.op_type in TREE_OPS for n in model.graph.node):
        where = f"estimator {name}"
        dtype = input_dtype(estimator)
        if dtype == "float64":
            to_double(model, estimator, ESTIMATOR_INPUT if texts else INPUT_NAME, where)
        else:
            round_down_thresholds(model, estimator, where)
    if texts:
        model = add_text_inputs(model, ESTIMATOR_INPUT, INPUT_NAME, width, texts, order, dtype)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return Converted(model.SerializeToString(), INPUT_NAME, width, dict(expected), opset, dtype)
