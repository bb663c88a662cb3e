"""A binary version's decision threshold, set in the registry, decides the served label.

The real server polls the real registry.db; the threshold is set and cleared through the
registry CLI as a user would, and the labels are checked against the probabilities returned in
the same responses.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as triton
from onyxserve.repository.registry import Registry, RegistryError

from tests.server.models.test_stages import POLL, ROWS, client_wait, registry_cli, repo, staged_repo  # noqa: F401
from tests.serving import ServerProcess


def labelled(target: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(fraud)) of the fixed rows, from one response."""
    client = triton.InferenceServerClient(target)
    inp = triton.InferInput("input", list(ROWS.shape), "FP32")
    inp.set_data_from_numpy(ROWS)
    result = client.infer("fraud", [inp])  # the default version: 3, the newest
    client.close()
    return result.as_numpy("label"), result.as_numpy("probabilities")[:, 1]


def config_threshold(target: str) -> str | None:
    client = triton.InferenceServerClient(target)
    params = client.get_model_config("fraud", "3").config.parameters
    client.close()
    return params["threshold"].string_value if "threshold" in params else None


def test_threshold_set_and_cleared_in_the_registry_decides_the_label(repo):  # noqa: F811
    root, _ = repo
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        labels, p = labelled(server.grpc_target)
        np.testing.assert_array_equal(labels, (p > 0.5).astype(np.int64))  # the graph's own label
        assert config_threshold(server.grpc_target) is None
        # a threshold between the rows' scores, so that some labels must flip
        t = float(np.sort(p)[len(p) // 2 - 1]) + 1e-6 if np.ptp(p) > 0 else 0.5
        t = min(max(t, 0.01), 0.99)
        assert ((p >= t) != (p > 0.5)).any(), "the threshold must move some label for this test to mean anything"
        registry_cli(root, "threshold", "fraud", "3", repr(t))
        assert client_wait(lambda: config_threshold(server.grpc_target) == repr(t))
        labels, p2 = labelled(server.grpc_target)
        np.testing.assert_array_equal(p2, p)  # probabilities never change
        np.testing.assert_array_equal(labels, (p >= t).astype(np.int64))
        registry_cli(root, "threshold", "fraud", "3", "--clear")
        assert client_wait(lambda: config_threshold(server.grpc_target) is None)
        labels, _ = labelled(server.grpc_target)
        np.testing.assert_array_equal(labels, (p > 0.5).astype(np.int64))


def test_bad_thresholds_are_refused_by_the_registry(repo):  # noqa: F811
    root, _ = repo
    registry = Registry(root)
    with pytest.raises(RegistryError, match="between 0 and 1"):
        registry.set_threshold("fraud", "1", 1.5)
    done = subprocess.run(
        [sys.executable, "-m", "onyxserve", "registry", "threshold", "fraud", "9", "0.3", "--repository", str(root)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1 and "fraud/9 is not registered" in done.stderr
    assert registry.set_threshold("fraud", "1", 0.3) is None
    assert registry.set_threshold("fraud", "1", None) == 0.3
