"""The manifests' own `onyxserve serve` arguments, run for real on loopback: every probe's
grpc.health.v1 service answers SERVING at the probed port, the sidecar's socket serves, and on
SIGTERM the standalone server reports NOT_SERVING while still answering, then exits within
the budget its manifest gives it."""

from __future__ import annotations

import math
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onyxserve.clients import InferenceClient

from tests.deploy.manifests import KUBERNETES, container, documents, env_value, find
from tests.serving import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
# set by ServerProcess or the test itself; the kubelet's view (pod IP, port 8001) cannot be had
# on loopback-only test machines
LOCAL = ("--repository", "--host", "--grpc-port", "--http-port", "--uds")


def manifest_server(path, name: str, repository, tmp_path) -> tuple[ServerProcess, dict]:
    spec = find(documents(path), "Deployment", name)["spec"]["template"]["spec"]
    onyx = container(spec, "onyxserve")
    args = [a for a in onyx["args"][1:] if a.split("=")[0] not in LOCAL]
    if any(a.startswith("--uds") for a in onyx["args"]):
        args.append(f"--uds={tmp_path / 'onyx.sock'}")
    # what the resourceFieldRef gives: limits.cpu with divisor 1, rounded up
    assert "resourceFieldRef" in env_value(onyx, "ONYXSERVE_INTRA_OP_THREADS")["valueFrom"]
    threads = str(math.ceil(float(onyx["resources"]["limits"]["cpu"])))
    server = ServerProcess(repository, args=args, env={"ONYXSERVE_INTRA_OP_THREADS": threads})
    server.log_path = tmp_path / "server.log"
    return server, onyx


def check(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            .status
        )


@pytest.mark.parametrize(
    "path, name",
    [
        (KUBERNETES / "sidecar.yaml", "fraud-app"),
        (KUBERNETES / "standalone" / "deployment.yaml", "onyxserve"),
    ],
    ids=["sidecar", "standalone"],
)
def test_probes_answer_serving(model_repo, tmp_path, path, name):
    server, onyx = manifest_server(path, name, model_repo[0], tmp_path)
    with server:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert check(server.grpc_target, onyx[probe]["grpc"].get("service", "")) == SERVING, probe
        if "--uds" in " ".join(onyx["args"]):
            with InferenceClient(f"unix://{tmp_path / 'onyx.sock'}") as client:
                labels, _ = client.predict("fraud", np.zeros((2, 30), dtype=np.float32))
            assert len(labels) == 2
    assert server.proc.returncode == 0, server.log()


def test_standalone_drain_follows_the_manifest(model_repo, tmp_path):
    path = KUBERNETES / "standalone" / "deployment.yaml"
    server, onyx = manifest_server(path, "onyxserve", model_repo[0], tmp_path)
    delay = float(next(a for a in onyx["args"] if a.startswith("--shutdown-delay=")).split("=")[1])
    grace = float(next(a for a in onyx["args"] if a.startswith("--shutdown-grace=")).split("=")[1])
    server.start()
    try:
        with InferenceClient(server.grpc_target) as client:
            client.predict("fraud", np.zeros((1, 30), dtype=np.float32))
            stopped_at = time.monotonic()
            server.proc.terminate()  # what the kubelet sends after the preStop sleep
            time.sleep(min(1.0, delay / 2))
            # the readiness probe now fails, yet requests are still answered during the delay
            assert check(server.grpc_target, "") != SERVING
            labels, _ = client.predict("fraud", np.zeros((1, 30), dtype=np.float32))
            assert len(labels) == 1
        assert server.proc.wait(delay + grace + 5) == 0, server.log()
        took = time.monotonic() - stopped_at
        assert delay <= took < delay + grace, f"exited after {took:.1f}s"
    finally:
        server.stop()
