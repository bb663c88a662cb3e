"""Production variants on the real server: several versions share production traffic by weight.

Real parts only: three fraud versions exported by the real export path (indexed in registry.db),
the split set through the registry (its API, and its CLI as a user types it), config.json for a
model the registry does not control, and the real server in this process (``InProcessServer``,
poll mode, 0.1 s scans) over gRPC -- mostly one ModelStreamInfer stream, so 10,000 requests take
about a second -- and REST.

The split over N requests is checked within 4 binomial standard deviations,
``|n_v - N p_v| <= 4 sqrt(N p_v (1 - p_v))`` (at 10,000 requests and 10%: 1,000 +- 120). A
correct router fails one such check with probability 6e-5.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import grpc
import numpy as np
import pytest
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.repository.registry import Registry
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.model_factory import fraud_frame
from tests.server.inprocess import InProcessServer
from tests.server.models.test_stages import registry_cli

N = 10_000
M = 2_000  # the later checks of the same test: fewer requests, the same bound
SIGMAS = 4.0
ROW = fraud_frame(n=1, seed=5)[0].to_numpy(dtype=np.float32)
POLL = {"model_control": "poll", "poll_interval_s": 0.1, "drift": False}


@pytest.fixture(scope="module")
def variants_repo(tmp_path_factory):
    """fraud versions 1, 2, 3 (three fits), approved, no stage set."""
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("variants") / "models"
    for version, (c, seed) in enumerate([(1.0, 0), (0.01, 1), (0.1, 2)], start=1):
        X, y = fraud_frame(seed=seed)
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(X, y)
        assert export_model(pipeline, name="fraud", repository=root, sample=X.iloc[:50]).version == str(version)
    registry = Registry(root)
    for version in ("1", "2", "3"):
        registry.approve("fraud", version)
    return root


@pytest.fixture
def repo(variants_repo, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(variants_repo, copy)
    return copy


# ---- talking to the server ----


def request(i: int = 0, version: str = "", model: str = "fraud", **parameters) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=str(i))
    req.inputs.add(name="input", datatype="FP32", shape=list(ROW.shape))
    req.raw_input_contents.append(ROW.tobytes())
    for name, value in parameters.items():
        if isinstance(value, str):
            req.parameters[name].string_param = value
        elif isinstance(value, int):
            req.parameters[name].int64_param = value
        else:
            req.parameters[name].double_param = value
    return req


def stream(target: str, requests: list[pb.ModelInferRequest]) -> dict[str, pb.ModelInferResponse]:
    """Every request on one ModelStreamInfer stream; request id -> response (answers come back
    as they finish, not in order). Fails on any error answer."""
    with grpc.insecure_channel(target) as channel:
        answers = list(pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(requests), timeout=120))
    errors = [a.error_message for a in answers if a.error_message]
    assert not errors, errors[:3]
    out = {a.infer_response.id: a.infer_response for a in answers}
    assert len(out) == len(requests)
    return out


def unary(target: str, req: pb.ModelInferRequest) -> pb.ModelInferResponse:
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=10)


def refused(target: str, req: pb.ModelInferRequest) -> tuple[str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        unary(target, req)
    return caught.value.code().name, caught.value.details()


def answered_by(response: pb.ModelInferResponse) -> tuple[str, str]:
    """(variant, version) a response says answered it."""
    variant = response.parameters["variant"].string_param if "variant" in response.parameters else ""
    return variant, response.model_version


def split_of(answers: dict[str, pb.ModelInferResponse]) -> Counter:
    return Counter(answered_by(r) for r in answers.values())


def assert_binomial(counts: Counter, expected: dict[tuple[str, str], float], n: int) -> None:
    """Each (variant, version) answered n * share requests, within SIGMAS binomial sigmas."""
    assert set(counts) == {k for k, p in expected.items() if p > 0}, counts
    for key, p in expected.items():
        bound = SIGMAS * math.sqrt(n * p * (1 - p))
        assert abs(counts[key] - n * p) <= bound, (key, counts[key], n * p, bound)


def shares(server: InProcessServer) -> dict[str, float]:
    """Version -> variant share (percent) as ModelConfig says, for the versions serving."""
    out = {}
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for version in stub.ModelMetadata(pb.ModelMetadataRequest(name="fraud"), timeout=10).versions:
            try:
                config = stub.ModelConfig(pb.ModelConfigRequest(name="fraud", version=version), timeout=10).config
            except grpc.RpcError:  # unloaded since ModelMetadata listed it
                continue
            if "variant_share" in config.parameters:
                out[version] = float(config.parameters["variant_share"].string_value)
    return out


def wait_for(predicate, what, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"never got there: {what() if callable(what) else what} (last: {last!r})")


def wait_shares(server: InProcessServer, expected: dict[str, float]) -> None:
    wait_for(lambda: shares(server) == expected or None, lambda: f"split {expected}, have {shares(server)}")


def metric_samples(server: InProcessServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of ``name`` for model fraud: sorted label pairs -> value."""
    text = urllib.request.urlopen(f"{server.http_url}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") and 'model="fraud"' in line:
            body = line[line.index("{") + 1 : line.rindex("}")]
            labels = tuple(sorted((k, v.strip('"')) for k, v in (p.split("=", 1) for p in body.split(","))))
            out[labels] = float(line.rsplit(" ", 1)[1])
    return out


def ok_by_variant(server: InProcessServer) -> Counter:
    """onyxserve_requests_total{outcome="OK"} of fraud by (variant, version)."""
    out = Counter()
    for labels, value in metric_samples(server, "onyxserve_requests_total").items():
        d = dict(labels)
        if d["outcome"] == "OK":
            out[(d["variant"], d["version"])] += value
    return out


# ---- the split ----


def test_weights_split_the_traffic_random_and_sticky_and_rollback_restores_it(repo):
    registry = Registry(repo)
    registry.promote("fraud", 1, "production")
    with InProcessServer(repo, **POLL) as server:
        answers = stream(server.grpc_target, [request(i) for i in range(50)])
        assert split_of(answers) == {("v1", "1"): 50}  # the production version alone is variant v1

        assert "v1=1:90% v2=2:10%" in registry_cli(repo, "promote", "fraud", "2", "--canary", "10")
        wait_shares(server, {"1": 90.0, "2": 10.0})
        before = ok_by_variant(server)
        started = time.perf_counter()
        random_split = split_of(stream(server.grpc_target, [request(i) for i in range(N)]))
        elapsed = time.perf_counter() - started
        assert_binomial(random_split, {("v1", "1"): 0.9, ("v2", "2"): 0.1}, N)
        # the metric's variant label counts the same requests
        after = ok_by_variant(server)
        assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == dict(random_split)
        assert metric_samples(server, "onyxserve_variant_share") == {
            (("model", "fraud"), ("variant", "v1"), ("version", "1")): 0.9,
            (("model", "fraud"), ("variant", "v2"), ("version", "2")): 0.1,
        }

        # sticky: N distinct keys split by weight too, and each key answers the same way again
        keyed = stream(server.grpc_target, [request(i, routing_key=f"user-{i}") for i in range(N)])
        assert_binomial(split_of(keyed), {("v1", "1"): 0.9, ("v2", "2"): 0.1}, N)
        again = stream(server.grpc_target, [request(i, routing_key=f"user-{i}") for i in range(0, N, 10)])
        assert all(answered_by(again[i]) == answered_by(keyed[i]) for i in again)
        assert answered_by(unary(server.grpc_target, request(routing_key=7))) == answered_by(
            unary(server.grpc_target, request(routing_key="7")))  # an integer key is its decimal text

        # the next canary step moves keys only onto the canary, none off it (M of the keys)
        registry_cli(repo, "promote", "fraud", "2", "--canary", "50")
        wait_shares(server, {"1": 50.0, "2": 50.0})
        stepped = stream(server.grpc_target, [request(i, routing_key=f"user-{i}") for i in range(M)])
        assert_binomial(split_of(stepped), {("v1", "1"): 0.5, ("v2", "2"): 0.5}, M)
        assert not [i for i in stepped if answered_by(keyed[i])[1] == "2" and answered_by(stepped[i])[1] != "2"]

        # rollback restores the split before the step: 90/10 again, the same keys where they were
        assert "production 1 -> 1 (split v1=1:90% v2=2:10%)" in registry_cli(repo, "rollback", "fraud")
        wait_shares(server, {"1": 90.0, "2": 10.0})
        back = stream(server.grpc_target, [request(i, routing_key=f"user-{i}") for i in range(M)])
        assert all(answered_by(back[i]) == answered_by(keyed[i]) for i in back)
        assert_binomial(split_of(stream(server.grpc_target, [request(i) for i in range(M)])),
                        {("v1", "1"): 0.9, ("v2", "2"): 0.1}, M)
        registry_cli(repo, "rollback", "fraud")
        wait_shares(server, {"1": 100.0})  # v1 alone
        assert split_of(stream(server.grpc_target, [request(i) for i in range(200)])) == {("v1", "1"): 200}
    print(f"{N} requests on one stream in {elapsed:.2f}s; random {dict(random_split)},"
          f" by key {dict(split_of(keyed))} (4 sigma: +-{SIGMAS * math.sqrt(N * 0.09):.0f})")


def test_a_request_names_its_variant_or_version(repo):
    registry = Registry(repo)
    registry.promote("fraud", 1, "production")
    registry.set_split("fraud", [("blue", 1, 70), ("green", 2, 30), (None, 3, 0)])
    with InProcessServer(repo, **POLL) as server:
        target = server.grpc_target
        assert split_of(stream(target, [request(i, variant="green") for i in range(100)])) == {("green", "2"): 100}
        # a zero-weight variant takes no traffic but answers by name
        assert answered_by(unary(target, request(variant="v3"))) == ("v3", "3")
        assert ("v3", "3") not in split_of(stream(target, [request(i) for i in range(2000)]))
        # an explicit version bypasses routing: no variant in the answer, as before variants
        assert answered_by(unary(target, request(version="2", routing_key="k"))) == ("", "2")
        status, message = refused(target, request(variant="purple"))
        assert status == "NOT_FOUND" and "'purple'" in message and "blue=1:70%" in message
        status, message = refused(target, request(version="2", variant="green"))
        assert status == "INVALID_ARGUMENT" and "version or a variant, not both" in message
        status, message = refused(target, request(routing_key=1.5))
        assert status == "INVALID_ARGUMENT" and "'routing_key'" in message

        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": ROW.ravel().tolist()}]}
        url = f"{server.http_url}/v2/models/fraud/infer"

        def rest(payload: dict) -> tuple[int, dict]:
            req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.load(r)
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, answer = rest({**body, "parameters": {"variant": "green"}})
        assert (status, answer["model_version"], answer["parameters"]) == (200, "2", {"variant": "green"})
        sticky = {rest({**body, "parameters": {"routing_key": "alice"}})[1]["parameters"]["variant"] for _ in range(5)}
        assert len(sticky) == 1
        assert rest({**body, "parameters": {"variant": "purple"}})[0] == 404
        assert rest({**body, "parameters": "green"})[0] == 400
        status, answer = rest(body)
        assert status == 200 and answer["parameters"]["variant"] in ("blue", "green")

        # the Python clients, sync and asyncio
        import asyncio

        from onyxserve.clients import AsyncInferenceClient, InferenceClient

        with InferenceClient(target) as client:
            result = client.infer("fraud", ROW, variant="green")
            assert (result.variant, result.model_version) == ("green", "2")
            assert len({client.infer("fraud", ROW, routing_key="bob").variant for _ in range(5)}) == 1
            assert client.infer("fraud", ROW, model_version="1").variant is None

        async def async_variant() -> str | None:
            async with AsyncInferenceClient(target) as client:
                return (await client.infer("fraud", ROW, variant="blue", routing_key=3)).variant

        assert asyncio.run(async_variant()) == "blue"

        # where the split shows: RepositoryIndex reasons, the HTTP index, ModelConfig parameters
        index = {e["version"]: e for e in json.load(urllib.request.urlopen(urllib.request.Request(
            f"{server.http_url}/v2/repository/index", b"{}", method="POST"), timeout=10))}
        assert index["1"]["variant"] == "blue=1:70%" and "registry stage: production" in index["1"]["reason"]
        assert "production variant green=2:30% of requests without a version" in index["2"]["reason"]
        assert shares(server) == {"1": 70.0, "2": 30.0, "3": 0.0}


def test_weight_changes_under_load_drop_no_request(repo):
    """Four clients send without pause while the split changes seven times (a version joins,
    weights move, production moves and the old version is unloaded, two rollbacks): every
    request is answered, and each split is served."""
    registry = Registry(repo)
    registry.promote("fraud", 1, "production")
    steps = [
        (lambda: registry.canary("fraud", 2, 10), {"1": 90.0, "2": 10.0}),
        (lambda: registry.canary("fraud", 2, 50), {"1": 50.0, "2": 50.0}),
        (lambda: registry.set_split("fraud", [(None, 1, 2), (None, 2, 1), (None, 3, 1)]),
         {"1": 50.0, "2": 25.0, "3": 25.0}),
        (lambda: registry.promote("fraud", 3, "production"), {"3": 100.0}),  # 1 and 2 are unloaded
        (lambda: registry.rollback("fraud"), {"1": 50.0, "2": 25.0, "3": 25.0}),  # and loaded again
        (lambda: registry.canary("fraud", 3, 75), {"1": 16.6667, "2": 8.33333, "3": 75.0}),
        (lambda: registry.rollback("fraud"), {"1": 50.0, "2": 25.0, "3": 25.0}),
    ]
    with InProcessServer(repo, **POLL, shutdown_grace_s=5.0) as server:
        stop = threading.Event()
        seen: Counter = Counter()
        failures: list[str] = []

        def client(k: int) -> None:
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        seen[answered_by(stub.ModelInfer(request(i, routing_key=f"{k}-{i % 50}"), timeout=10))] += 1
                    except grpc.RpcError as exc:
                        failures.append(f"{exc.code().name}: {exc.details()}")

        clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in clients:
            t.start()
        try:
            for change, expected in steps:
                change()
                wait_shares(server, expected)
                served = sum(seen.values())
                wait_for(lambda: sum(seen.values()) > served + 200 or None, "requests after the change")
        finally:
            stop.set()
            for t in clients:
                t.join(30)
        assert not failures, failures[:5]
        assert {version for _, version in seen} == {"1", "2", "3"} and sum(seen.values()) > 1400
    print(f"{sum(seen.values())} requests, {len(steps)} split changes, none failed: {dict(seen)}")


def test_a_canary_that_cannot_load_gives_its_share_back(repo):
    registry = Registry(repo)
    registry.promote("fraud", 1, "production")
    onnx = repo / "fraud" / "2" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")  # tampered: sha256 mismatch
    registry.canary("fraud", 2, 30)
    with InProcessServer(repo, **POLL) as server:
        assert split_of(stream(server.grpc_target, [request(i) for i in range(500)])) == {("v1", "1"): 500}
        status, message = refused(server.grpc_target, request(variant="v2"))
        assert status == "UNAVAILABLE" and "variant 'v2' (version 2) is not ready" in message and "sha256" in message
        with grpc.insecure_channel(server.grpc_target) as channel:
            index = pb_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
        reason = next(m.reason for m in index.models if m.version == "2")
        assert "production variant v2=2:30% points at version 2" in reason and "goes to the other variants" in reason


def test_config_json_variants_without_the_registry(repo):
    """A model the registry does not control (no production stage) takes config.json's
    variants; a new split there is followed without reloading a version."""
    config = repo / "fraud" / "config.json"
    base = json.loads(config.read_text())
    config.write_text(json.dumps({**base, "variants": [{"version": 1, "weight": 3}, {"version": 2, "weight": 1,
                                                                                          "name": "canary"}]}))
    with InProcessServer(repo, **POLL) as server:
        n = 4000
        assert_binomial(split_of(stream(server.grpc_target, [request(i) for i in range(n)])),
                        {("v1", "1"): 0.75, ("canary", "2"): 0.25}, n)
        loaded = dict(server.dataplane.repository._served["fraud"])
        config.write_text(json.dumps({**base, "variants": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1,
                                                                                              "name": "canary"},
                                                           {"version": 7, "weight": 1}]}))
        wait_shares(server, {"1": 50.0, "2": 50.0})  # version 7 does not exist: left out, said why
        assert_binomial(split_of(stream(server.grpc_target, [request(i) for i in range(n)])),
                        {("v1", "1"): 0.5, ("canary", "2"): 0.5}, n)
        assert all(server.dataplane.repository._served["fraud"][v] is m for v, m in loaded.items())  # no reload
        with grpc.insecure_channel(server.grpc_target) as channel:
            index = pb_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
        assert any("config.json variant v7=7:33.3333333% points at version 7" in m.reason for m in index.models)
        config.write_text(json.dumps({**base, "variants": [{"version": 2, "weight": -1}]}))
        wait_for(lambda: any("'variants'" in m.reason and "weight -1" in m.reason for m in
                             pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_target))
                             .RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10).models), "the config error")


def test_the_shadow_sees_every_variants_requests(repo):
    registry = Registry(repo)
    registry.promote("fraud", 1, "production")
    registry.canary("fraud", 2, 50)
    registry.promote("fraud", 3, "shadow")
    with InProcessServer(repo, **POLL) as server:
        before = metric_samples(server, "onyxserve_shadow_requests_total")
        answers = stream(server.grpc_target, [request(i) for i in range(400)])
        counts = split_of(answers)

        def mirrored() -> dict[str, float]:
            after = metric_samples(server, "onyxserve_shadow_requests_total")
            out = {}
            for labels, value in after.items():
                d = dict(labels)
                if d["outcome"] == "mirrored" and d["shadow_version"] == "3":
                    out[d["version"]] = value - before.get(labels, 0.0)
            return out

        wait_for(lambda: mirrored() == {"1": counts[("v1", "1")], "2": counts[("v2", "2")]} or None,
                 f"every request mirrored from the variant that answered it ({counts})")
        report = server.dataplane.shadow_report("fraud")
        assert (report["production_version"], report["requests"]["mirrored"]) == ("1", counts[("v1", "1")])
        other = report["other_variants"]["2"]
        assert (other["production_version"], other["requests"]["mirrored"]) == ("2", counts[("v2", "2")])
