"""What the closed and open loops share: the raw-bytes call and the window recorder."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter

import grpc

from .stats import WorkerResult

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# After this long with nothing but UNAVAILABLE, the server is taken as gone and the run stops.
UNAVAILABLE_ABORT_NS = 1_000_000_000
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # each channel gets its own connection, so a server whose processes share the port
    # (SO_REUSEPORT) sees several connections and the kernel can spread them
    ("grpc.use_local_subchannel_pool", 1),
]


def _identity(data: bytes) -> bytes:
    return data


def make_channels(target: str, connections: int) -> list[grpc.aio.Channel]:
    return [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(connections)]


async def wait_for_start(rec: Recorder, start_ns: int) -> None:
    """Sleep until the common start; note how late this process is when it gets there."""
    delay = (start_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
    rec.start_late_s = max(0.0, (time.monotonic_ns() - start_ns) / 1e9)
    rec.reset_cpu()  # count the CPU of sending, not of start-up and connecting


async def connect(channels: list[grpc.aio.Channel], until_ns: int) -> None:
    """Open the connections before the window starts, so connection set-up is not measured; a
    server that is not there yet is left to the calls themselves (they report UNAVAILABLE)."""
    timeout = (until_ns - time.monotonic_ns()) / 1e9
    if timeout <= 0:
        return
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), timeout)
    except asyncio.TimeoutError:
        pass


def infer_callable(channel: grpc.aio.Channel):
    """ModelInfer taking and returning raw serialized bytes: no protobuf work per request."""
    return channel.unary_unary(MODEL_INFER, request_serializer=_identity, response_deserializer=_identity)


def first_response_outputs(data: bytes) -> dict[str, list[int]]:
    """Output names and shapes of one response (parsed once per process, as a sanity check)."""
    from onyxserve.protos import grpc_service_pb2 as pb

    resp = pb.ModelInferResponse.FromString(data)
    return {o.name: list(o.shape) for o in resp.outputs}


class Recorder:
    """Collects one process's samples for the window ``[start_ns, end_ns)`` of send times."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.latencies = array("q")
        self.sent = array("q")  # send (or scheduled) time of each latency
        self.lags = array("q")
        self.errors: Counter[str] = Counter()
        self.error_details: dict[str, str] = {}  # first message seen per status code
        self.warmup_ok = 0
        self.warmup_errors = 0
        self.outputs: dict[str, list[int]] | None = None
        self.aborted: str | None = None
        self._unavailable_since: int | None = None
        self._aborted_at: int | None = None
        self.calls = 0
        self.start_late_s = 0.0
        self._cpu_start = time.process_time()
        self._cpu_wall_start = time.monotonic()

    def reset_cpu(self) -> None:
        self._cpu_start = time.process_time()
        self._cpu_wall_start = time.monotonic()

    def ok(self, sent_ns: int, latency_ns: int, response: bytes | None = None) -> None:
        self.calls += 1
        self._unavailable_since = None
        if self.outputs is None and response is not None:
            try:
                self.outputs = first_response_outputs(response)
            except Exception as exc:  # noqa: BLE001 - a garbled reply is worth saying, not crashing
                self.outputs = {f"<unparseable response: {exc}>": []}
        if sent_ns < self.start_ns:
            self.warmup_ok += 1
        elif sent_ns < self.end_ns:
            self.latencies.append(latency_ns)
            self.sent.append(sent_ns)

    def error(self, sent_ns: int, exc: grpc.RpcError) -> None:
        self.calls += 1
        code = exc.code() if hasattr(exc, "code") else None
        name = code.name if code is not None else "UNKNOWN"
        if sent_ns < self.start_ns:
            self.warmup_errors += 1
        elif sent_ns < self.end_ns:
            self.errors[name] += 1
        if name not in self.error_details:
            self.error_details[name] = exc.details() if hasattr(exc, "details") else str(exc)
        if code == grpc.StatusCode.UNAVAILABLE:
            now = time.monotonic_ns()
            if self._unavailable_since is None:
                self._unavailable_since = now
            elif now - self._unavailable_since > UNAVAILABLE_ABORT_NS and self.aborted is None:
                details = exc.details() if hasattr(exc, "details") else ""
                self.aborted = f"server unavailable for over 1 s ({details})"
                self._aborted_at = now
        else:
            self._unavailable_since = None

    def result(self) -> WorkerResult:
        wall = (self.end_ns - self.start_ns) / 1e9
        if self._aborted_at is not None:
            wall = max(0.0, (min(self._aborted_at, self.end_ns) - self.start_ns) / 1e9)
        return WorkerResult(
            latencies_ns=self.latencies.tobytes(),
            sent_ns=self.sent.tobytes(),
            send_lag_ns=self.lags.tobytes(),
            errors=dict(self.errors),
            error_details=dict(self.error_details),
            warmup_ok=self.warmup_ok,
            warmup_errors=self.warmup_errors,
            aborted=self.aborted,
            outputs=self.outputs,
            wall_s=wall,
            cpu_s=time.process_time() - self._cpu_start,
            cpu_wall_s=time.monotonic() - self._cpu_wall_start,
            calls=self.calls,
            start_late_s=self.start_late_s,
        )
