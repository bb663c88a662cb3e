"""Prediction counting: the plain-Python path for small batches counts exactly what the numpy
path for large ones does (same slots, same edges, labels by value)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from onyxserve.server.drift.monitor import SMALL_BATCH, DriftSettings
from onyxserve.server.models.manager import ModelRepository


@pytest.mark.parametrize("name", ["fraud", "iris"])
def test_small_and_large_batches_count_the_same(model_repo, name):
    root, _ = model_repo

    async def counts() -> tuple[np.ndarray, np.ndarray]:
        repo = ModelRepository(root, intra_op_threads=1, drift=DriftSettings(enabled=True))
        await repo.scan()
        try:
            monitor = repo.get(name).drift
            labels = np.asarray(monitor.plan.labels)
            rng = np.random.default_rng(0)
            n = 400
            proba = rng.dirichlet(np.ones(len(labels)), n).astype(np.float32)
            proba[:5, 0] = [0.0, 1.0, 0.1, 0.5, 1.0000001]  # edges, and a float32 just past 1
            outputs = {"label": labels[rng.integers(0, len(labels), n)], "probabilities": proba}
            start = monitor._pred.copy()
            for i in range(n):  # one row at a time: the plain-Python path
                monitor.observe({k: v[i : i + 1] for k, v in outputs.items()})
            small = monitor._pred - start
            start = monitor._pred.copy()
            monitor.observe(outputs)  # one large batch: numpy
            return small, monitor._pred - start
        finally:
            await repo.close(1.0)

    small, large = asyncio.run(counts())
    assert SMALL_BATCH >= 1 and small.sum() > 0
    np.testing.assert_array_equal(small, large)
