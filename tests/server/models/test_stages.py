"""The server follows the registry's stages: promote, rollback, bad promotions, the off switch.

Real parts only: models exported by the real export path (which indexes them in registry.db),
the registry driven through its CLI (``onyxserve registry ...`` in a subprocess) or its API, and
the real server process on loopback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.repository.registry import Registry
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.model_factory import fraud_frame
from tests.serving import ServerProcess

POLL = "0.2"  # seconds between repository scans in these tests
ROWS = fraud_frame(n=8, seed=7)[0].to_numpy(dtype=np.float32)


def _pipeline(c: float, seed: int):
    X, y = fraud_frame(seed=seed)
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(X, y), X


@pytest.fixture(scope="module")
def staged_repo(tmp_path_factory):
    """fraud versions 1, 2, 3 (three different fits, so three different scores), indexed in
    registry.db by the export and approved; no stage set yet. Returns (root, expected scores)."""
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("staged") / "models"
    expected = {}
    for version, (c, seed) in enumerate([(1.0, 0), (0.002, 1), (0.05, 2)], start=1):
        pipeline, X = _pipeline(c, seed)
        assert export_model(pipeline, name="fraud", repository=root, sample=X.iloc[:100]).version == str(version)
        expected[str(version)] = pipeline.predict_proba(pd.DataFrame(ROWS.astype(np.float64), columns=X.columns))[:, 1]
    registry = Registry(root)
    for version in ("1", "2", "3"):
        registry.approve("fraud", version)
    # the three fits must really differ, or "gets v1's scores" would prove nothing
    assert min(np.abs(expected[a] - expected[b]).max() for a, b in [("1", "2"), ("1", "3"), ("2", "3")]) > 1e-3
    return root, expected


@pytest.fixture
def repo(staged_repo, tmp_path):
    root, expected = staged_repo
    copy = tmp_path / "models"
    shutil.copytree(root, copy)
    return copy, expected


def registry_cli(repo, *args: str) -> str:
    """``onyxserve registry ACTION ...`` as a user types it; returns its output."""
    done = subprocess.run(
        [sys.executable, "-m", "onyxserve", "registry", *args, "--repository", str(repo)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def infer(target: str, version: str = "") -> tuple[str, np.ndarray]:
    """(version that answered, P(fraud) per row) for the fixed test rows."""
    request = pb.ModelInferRequest(model_name="fraud", model_version=version)
    request.inputs.add(name="input", datatype="FP32", shape=list(ROWS.shape))
    request.raw_input_contents.append(ROWS.tobytes())
    with grpc.insecure_channel(target) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    names = [o.name for o in response.outputs]
    probabilities = np.frombuffer(response.raw_output_contents[names.index("probabilities")], "<f4")
    return response.model_version, probabilities.reshape(len(ROWS), 2)[:, 1]


def wait_for_default(target: str, version: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    answered = None
    while time.monotonic() < deadline:
        answered = infer(target)[0]
        if answered == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"requests without a version still answered by version {answered}, not {version}")


def index(server: ServerProcess) -> dict[str, triton.service_pb2.RepositoryIndexResponse.ModelIndex]:
    models = triton.InferenceServerClient(server.grpc_target).get_model_repository_index().models
    return {m.version: m for m in models if m.name == "fraud"}


def reason(server: ServerProcess, version: str) -> str:
    entry = index(server).get(version)
    return entry.reason if entry is not None else ""


def http_index(server: ServerProcess) -> dict[str, dict]:
    request = urllib.request.Request(f"{server.http_url}/v2/repository/index", data=b"{}", method="POST")
    return {e["version"]: e for e in json.load(urllib.request.urlopen(request, timeout=10)) if e["name"] == "fraud"}


def stage_metric(server: ServerProcess) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("onyxserve_model_stage{") and 'model="fraud"' in line:
            labels = dict(part.split("=") for part in line[line.index("{") + 1 : line.index("}")].split(","))
            out[(labels["version"].strip('"'), labels["stage"].strip('"'))] = float(line.split()[-1])
    return out


def client_wait(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_promote_and_rollback_change_what_serves(repo):
    root, expected = repo
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        # no stage yet: config.json's version_policy (latest) as before
        version, scores = infer(server.grpc_target)
        assert version == "3"
        np.testing.assert_allclose(scores, expected["3"], rtol=1e-4, atol=1e-6)

        assert "production = 1" in registry_cli(root, "promote", "fraud", "1", "--stage", "production")
        wait_for_default(server.grpc_target, "1")
        version, scores = infer(server.grpc_target)
        np.testing.assert_allclose(scores, expected["1"], rtol=1e-4, atol=1e-6)
        client = triton.InferenceServerClient(server.grpc_target)
        assert client_wait(lambda: client.get_model_metadata("fraud").versions == ["1"])  # 3: no stage

        registry_cli(root, "promote", "fraud", "2", "--stage", "staging")
        assert client_wait(lambda: client.is_model_ready("fraud", "2"))
        version, scores = infer(server.grpc_target, "2")  # staging: by explicit version only
        assert version == "2"
        np.testing.assert_allclose(scores, expected["2"], rtol=1e-4, atol=1e-6)
        assert infer(server.grpc_target)[0] == "1"

        # the stage is visible: RepositoryIndex reason, HTTP index, model config, /metrics
        entries = index(server)
        assert entries["1"].state == "READY" and "registry stage: production" in entries["1"].reason
        assert "registry stage: staging" in entries["2"].reason
        assert http_index(server)["1"]["stages"] == ["production"]
        assert client.get_model_config("fraud").config.parameters["stage"].string_value == "production"
        assert client.get_model_config("fraud", "2").config.parameters["stage"].string_value == "staging"
        assert stage_metric(server) == {("1", "production"): 1.0, ("2", "staging"): 1.0}

        registry_cli(root, "promote", "fraud", "2", "--stage", "production")
        wait_for_default(server.grpc_target, "2")
        assert stage_metric(server)[("1", "production")] == 0.0
        assert client_wait(lambda: not client.is_model_ready("fraud", "1"))  # v1 holds no stage now

        assert "production 2 -> 1" in registry_cli(root, "rollback", "fraud")
        wait_for_default(server.grpc_target, "1")
        version, scores = infer(server.grpc_target)
        np.testing.assert_allclose(scores, expected["1"], rtol=1e-4, atol=1e-6)
        assert client.is_model_ready("fraud", "2")  # still staging
        assert "version 1 ready" in server.log() and "no longer holds a registry stage" in server.log()


def test_bad_promotion_keeps_serving_and_says_why(repo):
    root, expected = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    onnx = root / "fraud" / "2" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")  # tampered: sha256 mismatch
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        assert infer(server.grpc_target)[0] == "1"
        registry.promote("fraud", "2", "production")
        assert client_wait(lambda: "points at version 2" in reason(server, "2"))
        entry = index(server)["2"]
        assert entry.state == "UNAVAILABLE" and "sha256" in entry.reason
        assert "version 1 keeps serving as production" in entry.reason
        assert "standing in: production is version 2" in index(server)["1"].reason
        for _ in range(5):  # several polls later: still v1, and the broken files are not retried
            version, scores = infer(server.grpc_target)
            assert version == "1"
            np.testing.assert_allclose(scores, expected["1"], rtol=1e-4, atol=1e-6)
            time.sleep(0.2)
        assert server.log().count("version 2 failed to load") == 1

        # a stage pointing at a version whose folder is gone
        shutil.rmtree(root / "fraud" / "3")
        registry.promote("fraud", "3", "production")
        assert client_wait(lambda: "does not exist" in reason(server, "3"))
        assert infer(server.grpc_target)[0] == "1"

        # an unreadable registry: keep the stages last read, say so
        (root / "registry.db").write_bytes(b"this is not a database" * 100)
        for suffix in ("-wal", "-shm"):
            (root / f"registry.db{suffix}").unlink(missing_ok=True)
        assert client_wait(lambda: "registry unreadable" in index(server)["1"].reason)
        assert infer(server.grpc_target)[0] == "1"


def test_start_with_a_broken_production_serves_the_previous_one(repo):
    root, expected = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    registry.promote("fraud", "2", "production")
    (root / "fraud" / "2" / "manifest.json").write_text("{ broken")
    with ServerProcess(root, args=["--model-control", "none"]) as server:
        version, scores = infer(server.grpc_target)
        assert version == "1"  # production's predecessor, not "latest" (3) and not nothing
        np.testing.assert_allclose(scores, expected["1"], rtol=1e-4, atol=1e-6)
        entries = index(server)
        assert "manifest.json" in entries["2"].reason and entries["2"].state == "UNAVAILABLE"
        assert "standing in" in entries["1"].reason


def test_version_source_config_ignores_stages(repo):
    root, _ = repo
    Registry(root).promote("fraud", "1", "production")
    with ServerProcess(root, args=["--model-control", "none", "--version-source", "config"]) as server:
        assert infer(server.grpc_target)[0] == "3"
        assert all(not e.reason for e in index(server).values())
        assert stage_metric(server) == {}
    with ServerProcess(root, args=["--model-control", "none"], env={"ONYXSERVE_VERSION_SOURCE": "config"}) as server:
        assert infer(server.grpc_target)[0] == "3"


def test_explicit_mode_reads_stages_at_load(repo):
    root, _ = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    with ServerProcess(root, args=["--model-control", "explicit", "--load-model", "fraud"]) as server:
        assert infer(server.grpc_target)[0] == "1"
        registry.promote("fraud", "2", "production")
        time.sleep(0.5)
        assert infer(server.grpc_target)[0] == "1"  # explicit mode: no polling
        triton.InferenceServerClient(server.grpc_target).load_model("fraud")
        assert infer(server.grpc_target)[0] == "2"


def test_requests_during_switches_all_succeed(repo):
    root, _ = repo
    registry = Registry(root)
    registry.promote("fraud", "1", "production")
    with ServerProcess(root, args=["--poll-interval", POLL]) as server:
        answered: Counter[str] = Counter()
        errors: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                request = pb.ModelInferRequest(model_name="fraud")
                request.inputs.add(name="input", datatype="FP32", shape=list(ROWS.shape))
                request.raw_input_contents.append(ROWS.tobytes())
                for _ in range(20_000):  # bounded
                    if stop.is_set():
                        return
                    try:
                        answered[stub.ModelInfer(request, timeout=10).model_version] += 1
                    except grpc.RpcError as exc:
                        errors.append(f"{exc.code().name}: {exc.details()}")

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for target in ("2", "1", "3", "1"):  # four switches, each waited for
                registry.promote("fraud", target, "production")
                wait_for_default(server.grpc_target, target)
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not errors, errors[:5]
        assert set(answered) == {"1", "2", "3"}, answered
        assert sum(answered.values()) > 100
