"""End to end: short, bounded closed- and open-loop runs of the real harness (load processes,
grpc.aio channels, raw-bytes calls) against a real grpc.aio V2 server.

The server is a tiny V2 servicer written here (ModelMetadata + ModelInfer with
onyxserve.protos), run in a thread with its own event loop, so these tests do not depend on the
onyxserve server and load nothing heavier than a dot product.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest
from onyxserve.clients.loadtest import run_closed_loop, run_open_loop, run_sweep
from onyxserve.clients.loadtest.cli import standalone
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.protos import v2bytes

WIDTH = 4
WEIGHTS = np.float32([0.5, -1.0, 0.25, 2.0])


class TinyV2(pb_grpc.GRPCInferenceServiceServicer):
    """Model 'dot' takes input [-1, 4] FP32; model 'mixed' takes 'amount' FP32 and 'country'
    BYTES per feature. Both answer label [N] INT64 and probabilities [N, 2] FP32."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.bad: list[str] = []

    async def ModelMetadata(self, request, context):
        T = pb.ModelMetadataResponse.TensorMetadata
        outputs = [
            T(name="label", datatype="INT64", shape=[-1]),
            T(name="probabilities", datatype="FP32", shape=[-1, 2]),
        ]
        if request.name == "dot":
            inputs = [T(name="input", datatype="FP32", shape=[-1, WIDTH])]
        elif request.name == "mixed":
            inputs = [
                T(name="amount", datatype="FP32", shape=[-1, 1]),
                T(name="country", datatype="BYTES", shape=[-1, 1]),
            ]
        else:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        return pb.ModelMetadataResponse(
            name=request.name, versions=["1"], platform="tiny", inputs=inputs, outputs=outputs
        )

    async def ModelInfer(self, request, context):
        self.seen[request.model_name] += 1
        if request.model_name == "dot":
            x = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(
                tuple(request.inputs[0].shape)
            )
            score = x @ WEIGHTS
        elif request.model_name == "mixed":
            amount = np.frombuffer(request.raw_input_contents[0], dtype="<f4")
            countries = v2bytes.decode(request.raw_input_contents[1])
            if len(countries) != amount.size or any(c not in (b"FR", b"DE") for c in countries):
                self.bad.append(repr(countries))
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad country")
            score = amount
        else:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown model")
        p1 = (1.0 / (1.0 + np.exp(-score))).astype(np.float32)
        probs = np.column_stack([1 - p1, p1]).astype(np.float32)
        label = (p1 > 0.5).astype(np.int64)
        resp = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        resp.outputs.add(name="label", datatype="INT64", shape=[len(label)])
        resp.outputs.add(name="probabilities", datatype="FP32", shape=list(probs.shape))
        resp.raw_output_contents.extend([label.tobytes(), probs.tobytes()])
        return resp


class ServerThread:
    """The tiny server on its own event loop in a daemon thread; ``stop()`` kills it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.servicer = TinyV2()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: grpc.aio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, self._server)
        self.port = self._server.add_insecure_port(self.address)
        await self._server.start()

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(5.0), "tiny server did not start"
        return self

    def stop(self) -> None:
        if self._server is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            self._server = None


@pytest.fixture
def tcp_server():
    server = ServerThread("127.0.0.1:0").start()
    yield server
    server.stop()


@pytest.fixture
def uds_server(tmp_path):
    server = ServerThread(f"unix://{tmp_path}/tiny.sock").start()
    yield server
    server.stop()


@pytest.mark.timeout(30)
def test_closed_loop_sweep_over_tcp(tcp_server):
    target = f"127.0.0.1:{tcp_server.port}"
    started = time.monotonic()
    results = run_sweep(target, "dot", [1, 4], duration_s=0.8, warmup_s=0.2, processes=2, connections=2)
    assert time.monotonic() - started < 15
    assert [r.concurrency for r in results] == [1, 4]
    for r in results:
        assert r.aborted is None and r.errors == {}
        assert r.requests > 20 and r.throughput_rps > 20
        lat = r.latency_ms
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"] < 1000
        assert r.outputs == {"label": [1], "probabilities": [1, 2]}
        assert 0 < r.client_cpu_us_per_request < 100_000
    # every measured request reached the server (the rest were warm-up or in flight at the end)
    measured = sum(r.requests + r.warmup_requests for r in results)
    assert tcp_server.servicer.seen["dot"] >= measured


@pytest.mark.timeout(30)
def test_open_loop_over_a_unix_socket_sends_at_the_rate(uds_server):
    target = f"unix://{uds_server.address.removeprefix('unix://')}"
    r = run_open_loop(
        target,
        "dot",
        rate=200.0,
        duration_s=1.0,
        warmup_s=0.5,
        arrival="constant",
        processes=2,
        rows_per_request=3,
    )
    assert r.aborted is None and r.errors == {}
    # constant arrivals: 200/s over a 1 s window, give or take the window's edges
    assert 190 <= r.requests <= 210
    assert r.rows_per_s == pytest.approx(3 * r.throughput_rps)
    # the client keeps to its schedule (loose bounds: CI machines are shared and busy)
    assert r.send_lag_ms is not None and r.send_lag_ms["p50"] < 250
    assert r.latency_ms["p50"] < 3000


@pytest.mark.timeout(30)
def test_per_feature_bytes_rows_generated_from_metadata(tcp_server):
    r = run_closed_loop(
        f"127.0.0.1:{tcp_server.port}",
        "mixed",
        concurrency=2,
        duration_s=0.5,
        warmup_s=0.1,
        processes=1,
        per_feature=True,
        categories={"country": ["FR", "DE"]},
    )
    assert r.errors == {} and r.requests > 10
    assert tcp_server.servicer.bad == []


@pytest.mark.timeout(30)
def test_errors_are_counted_by_status_code(tcp_server):
    # rows for 'dot' sent to a model the server does not know: every request is NOT_FOUND
    from onyxserve.clients.loadtest.api import prepare

    plan = prepare(f"127.0.0.1:{tcp_server.port}", "dot")
    plan.pool = [p.replace(b"\n\x03dot", b"\n\x05other", 1) for p in plan.pool]
    assert pb.ModelInferRequest.FromString(plan.pool[0]).model_name == "other"
    r = run_closed_loop(
        f"127.0.0.1:{tcp_server.port}",
        "dot",
        concurrency=2,
        duration_s=0.5,
        warmup_s=0.1,
        processes=1,
        plan=plan,
    )
    assert r.requests == 0 and set(r.errors) == {"NOT_FOUND"} and r.errors["NOT_FOUND"] > 5
    assert r.error_details["NOT_FOUND"] == "unknown model"


@pytest.mark.timeout(40)
def test_a_server_that_dies_mid_run_gives_one_line_and_the_results_so_far(tcp_server, tmp_path, capsys):
    out = tmp_path / "out.json"

    def kill_during_second_window() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # rewritten after each window
            try:
                if json.loads(out.read_text())["results"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        time.sleep(0.6)
        tcp_server.stop()

    threading.Thread(target=kill_during_second_window, daemon=True).start()
    started = time.monotonic()
    code = standalone(
        [
            f"127.0.0.1:{tcp_server.port}",
            "--model",
            "dot",
            "--concurrency",
            "2,4",
            "--warmup",
            "200ms",
            "--duration",
            "1.2s",
            "--processes",
            "1",
            "--json-out",
            str(out),
        ]
    )
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1
    assert elapsed < 20
    stopped = [line for line in captured.err.splitlines() if "stopped early" in line]
    assert len(stopped) == 1 and "server unavailable" in stopped[0]
    report = json.loads(out.read_text())
    assert report["aborted"].startswith("server unavailable")
    first, second = report["results"]
    assert first["concurrency"] == 2 and first["aborted"] is None and first["requests"] > 0, first
    assert second["aborted"] and second["errors"].get("UNAVAILABLE", 0) > 0
    assert "c=2" in captured.out  # the table still shows what was measured


@pytest.mark.timeout(20)
def test_unreachable_target_is_one_clear_error(capsys):
    code = standalone(["127.0.0.1:9", "--model", "dot", "--duration", "1s"])
    assert code == 1
    assert "cannot get ModelMetadata of 'dot' from 127.0.0.1:9: UNAVAILABLE" in capsys.readouterr().err
