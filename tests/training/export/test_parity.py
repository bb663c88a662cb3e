"""The parity gate's comparisons, on arrays and on a real mismatching model."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.core.scorer import OnnxScorer
from onyxserve.training.export.convert import convert_estimator
from onyxserve.training.export.parity import (
    check_parity,
    compare_labels,
    compare_probabilities,
    compare_values,
)
from onyxserve.training.export.writer import ExportError, export_model
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.training.data import mixed_frame, targets


def test_probabilities_absolute_tolerance():
    expected = np.full((10, 3), 1 / 3)
    served = expected.astype(np.float32).copy()
    served[5, 1] += 5e-6
    assert compare_probabilities(expected, served) is None
    served[7, 2] += 2e-5
    bad = compare_probabilities(expected, served)
    assert bad.row == 7 and bad.error == pytest.approx(2e-5, rel=1e-2) and bad.tolerance == 1e-5


def test_nan_on_one_side_is_a_mismatch():
    expected = np.full((4, 2), 0.5)
    served = expected.copy()
    served[2, 0] = np.nan
    assert compare_probabilities(expected, served).row == 2
    assert compare_values(np.ones(4), np.array([1.0, np.nan, 1.0, 1.0])).row == 1


def test_values_relative_with_floor_at_the_predictions_scale():
    expected = np.array([1000.0, 0.001, -500.0, 20.0])
    rms = np.sqrt(np.mean(expected**2))
    assert compare_values(expected, expected + [0.009, 0.9e-5 * rms, -0.004, 0.0]) is None
    bad = compare_values(expected, expected + [0.0, 1.1e-5 * rms, 0.0, 0.0])  # near zero: the floor
    assert bad.row == 1 and bad.tolerance == pytest.approx(1e-5 * rms)
    bad = compare_values(expected, expected + [0.011, 0.0, 0.0, 0.0])  # large: relative
    assert bad.row == 0 and bad.tolerance == pytest.approx(1e-2)


def test_labels_compared_outside_probability_ties():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.5 + 5e-6, 0.5 - 5e-6]])
    bad, checked = compare_labels(np.array(["a", "a", "a"]), np.array(["b", "a", "b"]), proba)
    assert bad is None and checked == 1  # rows 0 and 2 are ties within the tolerance
    bad, _ = compare_labels(np.array(["a", "a", "a"]), np.array(["a", "b", "a"]), proba)
    assert bad.row == 1 and "'b'" in bad.detail


def test_a_mismatching_conversion_is_refused_naming_row_and_tolerance(tmp_path):
    frame = mixed_frame()[["age", "income", "visits"]].fillna(0)
    y = targets(mixed_frame(), "binary")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y)
    result = export_model(pipeline, name="m", repository=tmp_path, sample=frame)
    # the same interface, another model: what a tampered or mis-converted graph looks like
    other = LogisticRegression().fit(np.random.default_rng(0).normal(size=(50, 3)), y[:50])
    tampered = convert_estimator(other, 3, classifier=True).onnx_bytes
    scorer = OnnxScorer(result.manifest, tampered, intra_op_threads=1)

    def predict(f):
        return {"label": pipeline.predict(f), "probabilities": pipeline.predict_proba(f)}

    with pytest.raises(ExportError, match=r"parity check failed on sample row \d+: .* exceeds tolerance 1e-05"):
        check_parity("binary", scorer, frame, predict)
    assert check_parity("binary", OnnxScorer(result.manifest, (result.path / "model.onnx").read_bytes()), frame,
                        predict).max_error < 1e-5
