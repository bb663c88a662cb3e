"""Every error a client can get, provoked for real on the real server (in process, real ONNX
Runtime) and read over both transports: gRPC through tritonclient (unary calls and the
ModelStreamInfer stream) and REST over HTTP. Each case checks the status, that the message
names the model or field at fault, and that the same transport (the same stream) answers the
next request. ``test_every_onyx_error_has_a_case`` fails when an OnyxError subclass has none.

The repository holds the fraud pipeline under several names, each set up to fail one way:
``broken`` (its ONNX file changed after export), ``faulty`` (a graph ONNX Runtime refuses to
run on a value above 1e3: the unexpected exception inside inference), ``full`` and ``held``
(a lone request waits in a one-place queue for a fuller batch) and ``late`` (its queue deadline
is shorter than that wait). Nothing is mocked.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import tritonclient.grpc as triton
from onnx import helper, numpy_helper
from onyxserve.repository.store import sha256_bytes
from onyxserve.server import errors
from onyxserve.server.errors import OnyxError
from tritonclient.utils import InferenceServerException

from tests.model_factory import fraud_pipeline
from tests.server.inprocess import InProcessServer

ROW = np.zeros((1, 30), dtype=np.float32)
WAIT_S = 30.0  # bound on any one answer; no case needs more than about a second


# ---- the repository ----


def fail_on_huge_values(version_dir: Path) -> None:
    """Rewrite the version's graph so that ONNX Runtime fails at run time (not at load) on a
    batch holding a normalized value above 1e3: a Gather whose index is 1 then, out of the
    bounds of its one-element table. The failure follows the values, not the batch shape
    (the scorer may pad one-row batches). The manifest gets the new file's sha256, so the
    version loads like any other."""
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = onnx.load(version_dir / manifest["model"]["file"])
    graph, source = model.graph, manifest["model"]["input_name"]
    dtype = np.float64 if manifest["model"].get("input_dtype") == "float64" else np.float32
    checked = f"{source}_checked"
    for node in graph.node:
        node.input[:] = [checked if name == source else name for name in node.input]
    graph.initializer.extend([
        numpy_helper.from_array(np.array(1e3, dtype), "huge"),
        numpy_helper.from_array(np.zeros(1, dtype), "one_zero"),
    ])
    checks = [
        helper.make_node("ReduceMax", [source], ["largest"], keepdims=0),
        helper.make_node("Greater", ["largest", "huge"], ["is_huge"]),
        helper.make_node("Cast", ["is_huge"], ["index"], to=onnx.TensorProto.INT64),
        helper.make_node("Gather", ["one_zero", "index"], ["zero"]),  # index 1: out of bounds
        helper.make_node("Add", [source, "zero"], [checked]),
    ]
    for position, node in enumerate(checks):  # protobuf's repeated field: no slice assignment
        graph.node.insert(position, node)
    data = model.SerializeToString()
    (version_dir / manifest["model"]["file"]).write_bytes(data)
    manifest["model"]["sha256"] = sha256_bytes(data)
    manifest_path.write_text(json.dumps(manifest))


# lone requests wait in the queue for a fuller batch (8 rows) this long
QUEUE_CONFIGS = {
    "full": {"max_batch_size": 8, "max_queue_delay_microseconds": 1_000_000, "max_queue_size": 1},
    "held": {"max_batch_size": 8, "max_queue_delay_microseconds": 10_000_000, "max_queue_size": 1},
    "late": {"max_batch_size": 8, "max_queue_delay_microseconds": 300_000, "default_timeout_microseconds": 50_000},
}
UNLOAD_GRACE_S = 0.3  # shorter than held's wait: unloading fails its queued request


@pytest.fixture(scope="module")
def error_repo(tmp_path_factory) -> Path:
    from onyxserve.training.export.writer import export_model

    root = tmp_path_factory.mktemp("errors") / "models"
    pipeline, X = fraud_pipeline()
    for name in ("fraud", "broken", "faulty", *QUEUE_CONFIGS):
        export_model(pipeline, name=name, repository=root, sample=X.iloc[:50])
    onnx_file = root / "broken" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-8] + b"tampered")
    fail_on_huge_values(root / "faulty" / "1")
    for name, config in QUEUE_CONFIGS.items():
        (root / name / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def server(start_server, error_repo) -> InProcessServer:
    """Drift is off on it (FeatureDisabled); the grace is also the unload grace."""
    return start_server(error_repo, drift=False, shutdown_grace_s=UNLOAD_GRACE_S)


# ---- the transports, all answering Answer ----


@dataclass(frozen=True)
class Answer:
    status: str | int  # gRPC status name ("OK" too), or the HTTP status
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("OK", 200)


@dataclass(frozen=True)
class Infer:
    """One request, the same on every transport: an FP32 [rows, 30] matrix to ``model``."""

    model: str
    rows: np.ndarray = field(default_factory=ROW.copy)
    parameters: dict[str, Any] = field(default_factory=dict)  # V2 request parameters


def _triton_input(request: Infer) -> triton.InferInput:
    inp = triton.InferInput("input", list(request.rows.shape), "FP32")
    inp.set_data_from_numpy(request.rows)
    return inp


def _answer(error: InferenceServerException | None) -> Answer:
    if error is None:
        return Answer("OK")
    return Answer((error.status() or "").removeprefix("StatusCode."), error.message())


def _triton_answer(call: Callable[[], Any]) -> Answer:
    try:
        call()
    except InferenceServerException as exc:
        return _answer(exc)
    return _answer(None)


class Grpc:
    """Unary calls (no client deadline: the server's own queue deadline is what a case meets)."""

    def __init__(self, server: InProcessServer) -> None:
        self.client = triton.InferenceServerClient(server.grpc_target)

    def send(self, request: Infer) -> Future[Answer]:
        future: Future[Answer] = Future()

        def answered(result: Any, error: InferenceServerException | None) -> None:
            future.set_result(_answer(error))

        self.client.async_infer(request.model, [_triton_input(request)], answered,
                                parameters=request.parameters or None)
        return future

    def load(self, model: str) -> Answer:
        return _triton_answer(lambda: self.client.load_model(model))

    def unload(self, model: str) -> Answer:
        return _triton_answer(lambda: self.client.unload_model(model))

    def close(self) -> None:
        self.client.close()


class Stream(Grpc):
    """One ModelStreamInfer stream for the whole case. tritonclient hands an error answer over
    without its request id, so answers resolve the sent futures in the order they arrive: when
    requests overlap, a case compares what came back, not which request got what."""

    def __init__(self, server: InProcessServer) -> None:
        super().__init__(server)
        self._sent: queue.SimpleQueue[Future[Answer]] = queue.SimpleQueue()
        self._ids = itertools.count()
        self.client.start_stream(callback=self._answered)

    def _answered(self, result: Any, error: InferenceServerException | None) -> None:
        answer = _answer(error)
        if error is not None and error.status() is None:  # the stream's error_message: "STATUS: message"
            status, _, message = error.message().partition(": ")
            answer = Answer(status, message)
        self._sent.get_nowait().set_result(answer)

    def send(self, request: Infer) -> Future[Answer]:
        future: Future[Answer] = Future()
        self._sent.put(future)
        self.client.async_stream_infer(request.model, [_triton_input(request)], request_id=str(next(self._ids)),
                                       parameters=request.parameters or None)
        return future

    def close(self) -> None:
        self.client.stop_stream()
        super().close()


class Rest:
    def __init__(self, server: InProcessServer) -> None:
        self.url = server.http_url
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="rest-client")

    def call(self, method: str, path: str, body: dict | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=WAIT_S) as r:
                return Answer(r.status)
        except urllib.error.HTTPError as e:
            return Answer(e.code, json.loads(e.read()).get("error", ""))

    def send(self, request: Infer) -> Future[Answer]:
        rows = request.rows
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                            "data": rows.ravel().tolist()}]}
        if request.parameters:
            body["parameters"] = request.parameters
        return self._pool.submit(self.call, "POST", f"/v2/models/{request.model}/infer", body)

    def load(self, model: str) -> Answer:
        return self.call("POST", f"/v2/repository/models/{model}/load", {})

    def unload(self, model: str) -> Answer:
        return self.call("POST", f"/v2/repository/models/{model}/unload", {})

    def drift(self, model: str) -> Answer:
        return self.call("GET", f"/v2/models/{model}/drift")

    def close(self) -> None:
        self._pool.shutdown()


Transport = Grpc | Stream | Rest
TRANSPORTS: dict[str, type[Transport]] = {"grpc": Grpc, "stream": Stream, "rest": Rest}


# ---- how each error is provoked ----


def infer(request: Infer) -> Callable[[InProcessServer, Transport], Answer]:
    return lambda server, t: t.send(request).result(WAIT_S)


def one_refused(server: InProcessServer, t: Transport) -> Answer:
    """Two requests at once to a one-place queue: one waits there (answered after its batch
    delay), the other is refused at once, whichever arrived first."""
    first, second = t.send(Infer("full")), t.send(Infer("full"))
    answers = [first.result(WAIT_S), second.result(WAIT_S)]
    assert sum(a.ok for a in answers) == 1, answers
    return next(a for a in answers if not a.ok)


def unloaded_while_queued(server: InProcessServer, t: Transport) -> Answer:
    """A request waiting in held's queue when the model is unloaded (grace shorter than its
    wait). The queue holds one: the other request's refusal says one is queued by now."""
    sent = [t.send(Infer("held")), t.send(Infer("held"))]
    done, pending = wait(sent, timeout=WAIT_S, return_when=FIRST_COMPLETED)
    assert len(done) == 1 and next(iter(done)).result().status in ("RESOURCE_EXHAUSTED", 429), done
    try:
        assert t.unload("held").ok
        return next(iter(pending)).result(WAIT_S)
    finally:
        assert t.load("held").ok  # for the next case


def refused_while_draining(server: InProcessServer, t: Transport) -> Answer:
    """A server of its own, draining (what SIGTERM starts): refusing new requests while an open
    stream keeps grpc-core's stop waiting for its grace."""
    with InProcessServer(server.repository, drift=False, shutdown_grace_s=10.0) as draining:
        transport = type(t)(draining)
        holder = transport if isinstance(transport, Stream) else Stream(draining)
        try:
            assert holder.send(Infer("fraud")).result(WAIT_S).ok  # the stream is open
            draining.request_stop()
            deadline = time.monotonic() + WAIT_S
            while (answer := transport.send(Infer("fraud")).result(WAIT_S)).ok and time.monotonic() < deadline:
                time.sleep(0.01)  # answered until the refusing begins (right after NOT_SERVING)
            return answer
        finally:
            for each in {transport, holder}:
                each.close()


@dataclass(frozen=True)
class Case:
    error: type[OnyxError]
    scenario: str
    grpc_status: str  # what the class declares, written out: the wire must not change unnoticed
    http_status: int
    words: tuple[str, ...]  # the message names these (model, field, setting)
    provoke: Callable[[InProcessServer, Transport], Answer]
    transports: tuple[str, ...] = ("grpc", "stream", "rest")
    not_exposed: dict[str, str] = field(default_factory=dict)  # transport -> why it cannot be asked
    then: Infer | None = Infer("fraud")  # answered OK on the same transport right after
    logged: tuple[str, ...] = ()  # a server log record with a traceback names these

    def __str__(self) -> str:
        return f"{self.error.__name__}-{self.scenario}"


INTERNAL_WORDS = ("internal error", "server log")  # generic on purpose: the details are the log's
NOT_INFER = "not an inference: the stream carries inference requests only"

CASES = [
    Case(errors.InvalidInput, "wrong width", "INVALID_ARGUMENT", 400, ("input", "30"),
         infer(Infer("fraud", np.zeros((1, 29), np.float32)))),
    Case(errors.InvalidInput, "NaN without imputer", "INVALID_ARGUMENT", 400, ("fraud", "Time", "NaN"),
         infer(Infer("fraud", np.full((1, 30), np.nan, np.float32)))),
    Case(errors.ModelNotFound, "unknown model", "NOT_FOUND", 404, ("ghost",), infer(Infer("ghost"))),
    Case(errors.VariantNotFound, "variant the model does not have", "NOT_FOUND", 404,
         ("fraud", "production variants", "'ghost'"), infer(Infer("fraud", parameters={"variant": "ghost"}))),
    Case(errors.InvalidInput, "routing key of the wrong type", "INVALID_ARGUMENT", 400, ("routing_key", "1.5"),
         infer(Infer("fraud", parameters={"routing_key": 1.5}))),
    Case(errors.ModelNotReady, "failed to load", "UNAVAILABLE", 503, ("broken", "not ready", "sha256"),
         infer(Infer("broken"))),
    Case(errors.QueueFull, "one-place queue taken", "RESOURCE_EXHAUSTED", 429, ("full", "queue is full"),
         one_refused),
    Case(errors.DeadlineExpired, "queue deadline passed", "DEADLINE_EXCEEDED", 504, ("late", "deadline"),
         infer(Infer("late"))),
    Case(errors.ShuttingDown, "unloaded while queued", "UNAVAILABLE", 503, ("held", "unloaded"),
         unloaded_while_queued),
    Case(errors.ShuttingDown, "server draining", "UNAVAILABLE", 503, ("shutting down",),
         refused_while_draining, transports=("stream", "rest"), then=None,
         not_exposed={"grpc": "grpc-core refuses a new unary call itself once stop() began (its own "
                              "UNAVAILABLE, before any handler); only an open stream reaches ours"}),
    Case(errors.RepositoryError, "load unknown model", "FAILED_PRECONDITION", 400, ("ghost", "not in repository"),
         lambda server, t: t.load("ghost"), transports=("grpc", "rest"), not_exposed={"stream": NOT_INFER}),
    Case(errors.RepositoryError, "unload what is not loaded", "FAILED_PRECONDITION", 400,
         ("ghost", "not loaded"), lambda server, t: t.unload("ghost"), transports=("grpc", "rest"),
         not_exposed={"stream": NOT_INFER}),
    Case(errors.FeatureDisabled, "drift off", "NOT_FOUND", 404, ("drift", "ONYXSERVE_DRIFT"),
         lambda server, t: t.drift("fraud"), transports=("rest",),
         not_exposed={"grpc": "the drift report is REST-only (V2 gRPC has no such method)", "stream": NOT_INFER}),
    Case(errors.InternalError, "ONNX Runtime raises", "INTERNAL", 500, INTERNAL_WORDS,
         infer(Infer("faulty", np.full((2, 30), 1e9, np.float32))), then=Infer("faulty"),
         logged=("faulty/1",)),
]


@pytest.mark.parametrize(
    "case,kind", [(c, k) for c in CASES for k in c.transports], ids=lambda v: str(v).replace(" ", "_")
)
def test_error_reaches_the_client(server, case, kind, caplog):
    assert (case.grpc_status, case.http_status) == (case.error.status.name, case.error.http_status)
    caplog.set_level(logging.INFO)
    transport = TRANSPORTS[kind](server)
    try:
        answer = case.provoke(server, transport)
        assert answer.status == (case.http_status if kind == "rest" else case.grpc_status), answer
        for word in case.words:
            assert word in answer.message, answer
        if case.then is not None:  # the server, and the same stream, serve on
            assert transport.send(case.then).result(WAIT_S).ok
    finally:
        transport.close()
    if case.logged:
        traced = [r.getMessage() + str(r.exc_info) for r in caplog.records if r.exc_info]
        assert any(all(w in t for w in case.logged) for t in traced), traced


def all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in (direct, *all_subclasses(direct))}


def test_every_onyx_error_has_a_case():
    """On both transports: provoked by a case, or a case says why that transport cannot ask."""
    for case in CASES:
        assert case.transports, case
        assert set(case.transports) | set(case.not_exposed) == set(TRANSPORTS), case
        assert not set(case.transports) & set(case.not_exposed), case
    classes = all_subclasses(OnyxError)
    missing = [
        (cls.__name__, kind)
        for cls in classes
        for kind in ("grpc", "rest")
        if not any(c.error is cls and (kind in c.transports or kind in c.not_exposed) for c in CASES)
    ]
    assert not missing, f"OnyxError subclasses without a case in CASES: {missing}"
    assert set(errors.ALL_ERRORS) == classes  # the documented list is the real one
