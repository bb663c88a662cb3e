"""scikit-learn's ``learning_rate="adaptive"`` for a trainer that calls ``partial_fit`` per pass.

scikit-learn applies "adaptive" only inside ``fit``: keep ``eta0`` while the training loss
improves, divide it by 5 after ``patience`` passes without an improvement of ``tol``, stop
once it falls below 1e-6. ``partial_fit`` runs one pass at a fixed rate, so without this the
knob would silently behave as "constant". The loss is the model's own (without the penalty),
averaged over the rows, as scikit-learn's ``fit`` tracks it.
"""

from __future__ import annotations

import numpy as np

PATIENCE = 5  # scikit-learn's n_iter_no_change default
TOL = 1e-3  # scikit-learn's tol default
MIN_ETA = 1e-6


def training_loss(est, X: np.ndarray, y: np.ndarray) -> float:
    """Mean loss of ``est`` on (X, y) for the SGD losses the trainer offers."""
    loss = est.loss
    if loss in ("log_loss", "modified_huber"):
        sign = np.where(y == est.classes_[-1], 1.0, -1.0) if len(est.classes_) == 2 else None
        if sign is None:  # multiclass: one-vs-rest, summed over the binary problems as sklearn does
            f = est.decision_function(X)
            sign = np.where(y[:, None] == est.classes_[None, :], 1.0, -1.0)
        else:
            f = est.decision_function(X)
        z = sign * f
        if loss == "log_loss":
            per_row = np.logaddexp(0.0, -z)
        else:
            per_row = np.where(z >= -1.0, np.maximum(0.0, 1.0 - z) ** 2, -4.0 * z)
        return float(per_row.sum(axis=-1).mean() if per_row.ndim == 2 else per_row.mean())
    r = y - est.predict(X)
    if loss == "squared_error":
        return float(np.mean(0.5 * r * r))
    eps = est.epsilon
    a = np.abs(r)
    if loss == "huber":
        return float(np.mean(np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))))
    return float(np.mean(np.maximum(0.0, a - eps)))  # epsilon_insensitive


class AdaptiveRate:
    """Call ``after_pass`` after each pass; False means the rate fell below 1e-6: stop."""

    def __init__(self, est) -> None:
        self.est = est
        self.best = np.inf
        self.stalled = 0

    def after_pass(self, X: np.ndarray, y: np.ndarray) -> bool:
        loss = training_loss(self.est, X, y)
        if loss > self.best - TOL:
            self.stalled += 1
        else:
            self.stalled = 0
        self.best = min(self.best, loss)
        if self.stalled >= PATIENCE:
            self.stalled = 0
            self.est.eta0 /= 5.0
            if self.est.eta0 < MIN_ETA:
                return False
        return True
