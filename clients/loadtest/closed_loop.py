"""Closed loop, inside one load process: N tasks, each sending its next request as soon as the
previous one is answered. Latency is send -> response."""

from __future__ import annotations

import asyncio
import time

import grpc

from ._common import Recorder, connect, infer_callable, make_channels, wait_for_start
from .stats import WorkerResult

_BACKOFF_S = 0.01  # after UNAVAILABLE, so a dead server does not turn the loop into a spin


async def closed_loop(
    target: str,
    pool: list[bytes],
    concurrency: int,
    start_ns: int,
    warmup_ns: int,
    duration_ns: int,
    timeout_s: float,
    connections: int = 2,
    offset: int = 0,
    drift_pool: list[bytes] | None = None,
    drift_at_ns: int | None = None,
) -> WorkerResult:
    """Run ``concurrency`` in-flight requests from ``start_ns`` (time.monotonic_ns clock, shared by
    the processes of a run) for warm-up + duration; record the sends inside the window. Requests
    sent from ``drift_at_ns`` on come from ``drift_pool`` (the same rows, drifted). Returns once
    every task has stopped: at most ``timeout_s`` after the window ends."""
    measure_start = start_ns + warmup_ns
    end = measure_start + duration_ns
    rec = Recorder(measure_start, end)
    if concurrency <= 0:
        return rec.result()
    channels = make_channels(target, max(1, min(connections, concurrency)))
    calls = [infer_callable(c) for c in channels]
    n = len(pool)
    try:
        await connect(channels, start_ns)
        await wait_for_start(rec, start_ns)

        async def worker(i: int) -> None:
            call = calls[i % len(calls)]
            j = offset + i
            while rec.aborted is None:
                sent = time.monotonic_ns()
                if sent >= end:
                    return
                try:
                    rows = drift_pool if drift_at_ns is not None and sent >= drift_at_ns else pool
                    response = await call(rows[j % n], timeout=timeout_s)
                    rec.ok(sent, time.monotonic_ns() - sent, response)
                except grpc.aio.AioRpcError as exc:
                    rec.error(sent, exc)
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        await asyncio.sleep(_BACKOFF_S)
                j += concurrency

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for c in channels:
            await c.close(grace=None)
    return rec.result()
