"""Open loop, inside one load process: requests leave on a schedule (constant spacing or a
Poisson process) whether or not earlier ones were answered.

Latency is measured from the *scheduled* send time, so when the server (or this client) falls
behind, the waiting shows in the figures instead of silently lowering the offered load
(coordinated omission). ``send_lag`` (actual - scheduled send time) says how much of that was the
client's own lateness.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np

from ._common import Recorder, connect, infer_callable, make_channels, wait_for_start
from .stats import WorkerResult


def schedule_gaps_ns(rate: float, arrival: str, count: int, seed: int) -> np.ndarray:
    """``count`` inter-arrival gaps in ns for ``rate`` requests/s: constant or exponential."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    mean_ns = 1e9 / rate
    if arrival == "constant":
        return np.full(count, mean_ns)
    if arrival == "poisson":
        return np.random.default_rng(seed).exponential(mean_ns, count)
    raise ValueError(f"arrival must be 'constant' or 'poisson', got {arrival!r}")


async def open_loop(
    target: str,
    pool: list[bytes],
    rate: float,
    arrival: str,
    start_ns: int,
    warmup_ns: int,
    duration_ns: int,
    timeout_s: float,
    connections: int = 2,
    max_inflight: int = 4096,
    phase_ns: int = 0,
    seed: int = 0,
    offset: int = 0,
    drift_pool: list[bytes] | None = None,
    drift_at_ns: int | None = None,
) -> WorkerResult:
    """Send at ``rate`` requests/s from ``start_ns + phase_ns`` until the window ends; at most
    ``max_inflight`` outstanding (beyond that, sends wait, and the wait counts as latency).
    Requests scheduled from ``drift_at_ns`` on come from ``drift_pool``. Returns at most
    ``timeout_s`` (+1 s) after the window ends."""
    measure_start = start_ns + warmup_ns
    end = measure_start + duration_ns
    rec = Recorder(measure_start, end)
    expected = int(rate * (warmup_ns + duration_ns) / 1e9 * 1.2) + 64
    gaps = schedule_gaps_ns(rate, arrival, expected, seed)
    channels = make_channels(target, max(1, connections))
    calls = [infer_callable(c) for c in channels]
    sem = asyncio.Semaphore(max_inflight)
    tasks: set[asyncio.Task] = set()
    n = len(pool)

    async def send(i: int, scheduled: int) -> None:
        try:
            actual = time.monotonic_ns()
            if scheduled >= measure_start:
                rec.lags.append(actual - scheduled)
            try:
                rows = drift_pool if drift_at_ns is not None and scheduled >= drift_at_ns else pool
                response = await calls[i % len(calls)](rows[(offset + i) % n], timeout=timeout_s)
                rec.ok(scheduled, time.monotonic_ns() - scheduled, response)
            except grpc.aio.AioRpcError as exc:
                rec.error(scheduled, exc)
        finally:
            sem.release()

    try:
        await connect(channels, start_ns)
        await wait_for_start(rec, start_ns)
        scheduled = float(start_ns + phase_ns)
        i = 0
        while rec.aborted is None:
            if i >= len(gaps):  # a long Poisson tail: draw more
                gaps = np.concatenate([gaps, schedule_gaps_ns(rate, arrival, expected, seed + i)])
            due = int(scheduled)
            if due >= end:
                break
            now = time.monotonic_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            await sem.acquire()
            task = asyncio.create_task(send(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            scheduled += gaps[i]
            i += 1
        if tasks:
            await asyncio.wait(set(tasks), timeout=timeout_s + 1.0)
    finally:
        for t in tasks:
            t.cancel()
        for c in channels:
            await c.close(grace=None)
    return rec.result()
