"""Tree ensembles in ONNX that split exactly where scikit-learn does.

scikit-learn's trees compare in two ways, and the exported graph must do the same:

- DecisionTree, RandomForest, ExtraTrees and GradientBoosting cast X to float32 and test
  ``float32(x) <= t`` with a float64 threshold ``t``. A float32 graph tests ``x32 <= t32``;
  that is the same test for every float32 ``x32`` iff ``t32`` is the largest float32 ``<= t``
  (rounded down; rounding to the nearest float32 sends a value equal to an upward-rounded
  ``t32`` left, where scikit-learn sends it right). ``round_down_thresholds`` makes sure of it
  (skl2onnx 1.20 already rounds down: it then changes nothing).
- HistGradientBoosting tests ``x <= t`` in float64 on the float64 matrix. No float32 graph can
  (a value between ``t`` and the next float32 goes the wrong way), so ``to_double`` rewrites
  the graph's trees to ai.onnx.ml opset 3 with double thresholds, leaf values and base values
  (``*_as_tensor``) and a float64 input: onnxruntime then compares and sums in double, as
  scikit-learn does; the served matrix is the core's float64 output (``input_dtype``).

Both read the fitted trees by the ids skl2onnx writes (``nodes_treeids``, ``nodes_nodeids``), and
check that every node's feature (and, for ``to_double``, the float32 rounding of each value)
is the one skl2onnx wrote, so a converter that numbers trees differently is refused rather
than patched wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onyxserve.training.errors import ExportError

TREE_OPS = ("TreeEnsembleRegressor", "TreeEnsembleClassifier")
_FLOAT_ATTRS = ("nodes_values", "nodes_hitrates", "base_values", "target_weights", "class_weights")

# (feature, threshold, value) of node ``n`` of tree ``t`` as skl2onnx numbers them; the value
# (a HistGradientBoosting leaf's) only for to_double
NodeOf = Callable[[int, int], tuple[int, float, float]]


def is_hist_gradient_boosting(estimator: Any) -> bool:
    return hasattr(estimator, "_predictors")


def input_dtype(estimator: Any) -> str:
    """The dtype the exported graph compares in: float64 for HistGradientBoosting."""
    return "float64" if is_hist_gradient_boosting(estimator) else "float32"


def _node_of(estimator: Any) -> NodeOf:
    if is_hist_gradient_boosting(estimator):
        per = estimator.n_trees_per_iteration_

        def hist(t: int, n: int) -> tuple[int, float, float]:
            node = estimator._predictors[t // per][t % per].nodes[n]
            return int(node["feature_idx"]), float(node["num_threshold"]), float(node["value"])

        return hist
    estimators = getattr(estimator, "estimators_", None)
    if estimators is None:
        trees = [estimator.tree_]  # a single DecisionTree
    else:
        # GradientBoosting: an [n_iter, K] array, numbered iteration * K + k (K = 1 for two classes)
        trees = [e.tree_ for e in np.asarray(estimators, dtype=object).ravel()]

    def classic(t: int, n: int) -> tuple[int, float, float]:
        return int(trees[t].feature[n]), float(trees[t].threshold[n]), np.nan

    return classic


def _attrs(node: Any) -> dict[str, Any]:
    return {a.name: a for a in node.attribute}


def _branches(node: Any, node_of: NodeOf, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the BRANCH_LEQ nodes and scikit-learn's float64 thresholds for them."""
    a = _attrs(node)
    modes = list(a["nodes_modes"].strings)
    if set(modes) - {b"LEAF", b"BRANCH_LEQ"}:
        raise ExportError(f"{where}: tree nodes use modes {sorted(set(modes))}; only BRANCH_LEQ is mapped")
    index = np.array([i for i, m in enumerate(modes) if m == b"BRANCH_LEQ"], dtype=np.intp)
    tree_ids, node_ids, features = a["nodes_treeids"].ints, a["nodes_nodeids"].ints, a["nodes_featureids"].ints
    thresholds = np.empty(len(index))
    try:
        for k, i in enumerate(index):
            feature, thresholds[k], _ = node_of(tree_ids[i], node_ids[i])
            if feature != features[i]:
                raise IndexError
    except (IndexError, KeyError):
        raise ExportError(f"{where}: the ONNX trees do not match the fitted trees node for node") from None
    return index, thresholds


def round_down_thresholds(model: Any, estimator: Any, where: str) -> int:
    """Make every float32 threshold the largest float32 <= scikit-learn's float64 one (see the
    module docstring); returns how many changed."""
    node_of = _node_of(estimator)
    changed = 0
    for node in (n for n in model.graph.node if n.op_type in TREE_OPS):
        index, t64 = _branches(node, node_of, where)
        values = _attrs(node)["nodes_values"].floats
        t32 = t64.astype(np.float32)
        up = t32.astype(np.float64) > t64  # rounded to the nearest, which was above
        t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
        for i, v in zip(index, t32):
            if values[i] != v:
                values[i] = v
                changed += 1
    return changed


def to_double(model: Any, estimator: Any, input_name: str, where: str) -> None:
    """Rewrite the HistGradientBoosting trees of ``model`` (in place) to double precision, with a
    float64 input ``input_name`` (see the module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    node_of = _node_of(estimator)
    for node in (n for n in model.graph.node if n.op_type in TREE_OPS):
        a = _attrs(node)
        index, t64 = _branches(node, node_of, where)
        values = np.zeros(len(a["nodes_modes"].strings))
        values[index] = t64
        kind = "target" if node.op_type == "TreeEnsembleRegressor" else "class"
        leaves = zip(a[f"{kind}_treeids"].ints, a[f"{kind}_nodeids"].ints)
        weights = np.array([node_of(t, n)[2] for t, n in leaves])  # tree weight 1, one value per leaf
        base = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
        for name, exact in (("nodes_values", values), (f"{kind}_weights", weights), ("base_values", base)):
            if name in a and not np.array_equal(np.float32(exact), np.asarray(a[name].floats, np.float32)):
                raise ExportError(f"{where}: the ONNX trees' {name} are not the fitted trees' values")
        keep = [x for x in node.attribute if x.name not in _FLOAT_ATTRS]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.extend(
            helper.make_attribute(f"{name}_as_tensor", numpy_helper.from_array(exact))
            for name, exact in (("nodes_values", values), (f"{kind}_weights", weights), ("base_values", base))
        )
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, 3)  # the *_as_tensor attributes
    for value in model.graph.input:
        if value.name == input_name:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE

