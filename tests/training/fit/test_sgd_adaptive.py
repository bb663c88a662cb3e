"""``learning_rate="adaptive"`` for the linear trainer: scikit-learn's rule across passes."""

from __future__ import annotations

import numpy as np
import pytest
from onyxserve.training.fit.sgd_adaptive import training_loss
from onyxserve.training.fit.train import prepare, train_prepared
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.metrics import log_loss, mean_squared_error

from tests.training.fit.train_data import fraud_datasource


@pytest.fixture(scope="module")
def fraud(tmp_path_factory):
    ds = fraud_datasource(tmp_path_factory.mktemp("adaptive"), rows=4_000)
    recipe = {"version": 1, "defaults": {"NUMERIC": [{"step": "normalize", "method": "standard"}]}}
    return prepare(ds, recipe=recipe, seed=0)


def test_adaptive_divides_the_rate_on_a_plateau_and_constant_does_not(fraud):
    params = {"learning_rate": "adaptive", "eta0": 0.5, "max_passes": 40, "shuffle": True}
    adaptive = train_prepared(fraud, "linear", params, progress=False)
    constant = train_prepared(fraud, "linear", {**params, "learning_rate": "constant"}, progress=False)
    assert adaptive.pipeline[-1].eta0 < 0.5  # divided by 5 at least once
    assert constant.pipeline[-1].eta0 == 0.5
    a = training_loss(adaptive.pipeline[-1], fraud.Xt_train, fraud.y_train)
    c = training_loss(constant.pipeline[-1], fraud.Xt_train, fraud.y_train)
    assert a < c  # a rate that shrinks on the plateau settles lower than one that keeps jumping


def test_training_loss_is_the_models_own():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    clf = SGDClassifier(loss="log_loss", eta0=0.01, learning_rate="constant", max_iter=20, tol=None).fit(X, y)
    assert training_loss(clf, X, y) == pytest.approx(log_loss(y, clf.predict_proba(X)), rel=1e-9)
    target = X @ np.array([1.0, -2.0, 0.5, 0.0])
    reg = SGDRegressor(max_iter=50, tol=None, random_state=0).fit(X, target)
    assert training_loss(reg, X, target) == pytest.approx(0.5 * mean_squared_error(target, reg.predict(X)))
