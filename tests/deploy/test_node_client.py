"""The Node.js example (examples/node-client) against a real server: `npm ci` from the committed
lockfile, then `node infer.js`, whose probabilities must equal the Python client's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onyxserve.clients import InferenceClient

from tests.model_factory import fraud_frame

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-client"
NPM_TIMEOUT_S = 300  # a cold `npm ci` downloads 33 small packages (~14 MB unpacked)

pytestmark = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="node and npm are not installed (the Node.js example needs Node >= 18 and npm)",
)


@pytest.fixture(scope="module")
def node_example() -> Path:
    """`npm ci` exactly as a user would run it: from the lockfile, into the example's node_modules."""
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return EXAMPLE / "infer.js"


def run_node(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(script), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_node_client_matches_python(node_example, server, tmp_path):
    frame, y = fraud_frame(n=400, seed=5)
    # a few rows of each class, so the probabilities compared are not all ~0
    rows = np.vstack([frame.to_numpy()[y == 1][:4], frame.to_numpy()[y == 0][:4]]).astype(np.float32)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows.tolist()))

    done = run_node(node_example, server.grpc_target, "fraud", "--rows", str(rows_file))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] == "fraud"

    with InferenceClient(server.grpc_target) as client:
        labels, probabilities = client.predict("fraud", rows)
    np.testing.assert_array_equal(answer["outputs"]["label"], labels)
    # both are the server's float32 values; JSON carries them exactly
    np.testing.assert_array_equal(
        np.asarray(answer["outputs"]["probabilities"], dtype=np.float32), probabilities
    )
    assert probabilities[:, 1].max() > 0.1, "the rows should include likely frauds"


def test_node_client_default_rows_and_string_labels(node_example, server):
    done = run_node(node_example, server.grpc_target, "iris")
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert len(outputs["label"]) == 3 and all(isinstance(label, str) for label in outputs["label"])
    assert np.allclose(np.sum(outputs["probabilities"], axis=1), 1.0, atol=1e-5)


def test_node_client_errors_are_one_line(node_example, server):
    done = run_node(node_example, server.grpc_target, "nope")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("infer.js: NOT_FOUND:")
    assert len(done.stderr.strip().splitlines()) == 1
