"""The dynamic batcher's policy, on a real event loop with a real (slow) batch function."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from onyxserve.core.normalizer import RowBlock
from onyxserve.repository.config import ModelConfig
from onyxserve.server.batcher import BatchResult, DynamicBatcher
from onyxserve.server.errors import DeadlineExpired, InvalidInput, QueueFull
from onyxserve.server.metrics import ModelMetrics


class Recorder:
    """Echoes each row's value back as ``value`` and records the batches it ran."""

    def __init__(self, seconds: float = 0.0, fail_on: float | None = None, reject: float | None = None):
        self.seconds = seconds
        self.fail_on = fail_on
        self.reject = reject
        self.batches: list[list[float]] = []
        self.started = threading.Event()

    def __call__(self, blocks):
        self.started.set()
        time.sleep(self.seconds)
        values = [float(b.matrix[0, 0]) for b in blocks]
        self.batches.append(values)
        if self.fail_on in values:
            raise RuntimeError("model crashed")
        failed = {i: InvalidInput(f"row {v} rejected") for i, v in enumerate(values) if v == self.reject}
        good = [b for i, b in enumerate(blocks) if i not in failed]
        column = np.concatenate([b.matrix[:, 0] for b in good]) if good else np.empty(0)
        return BatchResult({"value": column.astype(np.float32)}, failed)


def block(value: float, rows: int = 1) -> RowBlock:
    return RowBlock(n_rows=rows, matrix=np.full((rows, 1), value, dtype=np.float32))


async def make(recorder: Recorder, **config) -> DynamicBatcher:
    config.setdefault("inline_max_rows", 0)  # run in the compute thread, so requests can pile up
    batcher = DynamicBatcher("m/1", recorder, ModelConfig(**config), ModelMetrics("test-batcher", "1"))
    await batcher.start()
    return batcher


async def test_requests_accumulate_while_the_runner_is_busy():
    recorder = Recorder(seconds=0.05)
    batcher = await make(recorder, max_batch_size=8)
    first = asyncio.create_task(batcher.submit(block(0)))
    while not recorder.started.is_set():
        await asyncio.sleep(0.001)
    rest = [asyncio.create_task(batcher.submit(block(v))) for v in range(1, 13)]
    results = await asyncio.gather(first, *rest)
    assert [float(r["value"][0]) for r in results] == list(range(13))
    assert recorder.batches[0] == [0]
    assert recorder.batches[1] == [1, 2, 3, 4, 5, 6, 7, 8]  # capped at max_batch_size rows
    assert recorder.batches[2] == [9, 10, 11, 12]
    await batcher.stop()


async def test_a_lone_request_is_not_held_back():
    batcher = await make(Recorder(), max_batch_size=32, inline_max_rows=64)
    start = time.perf_counter()
    await batcher.submit(block(1))
    assert time.perf_counter() - start < 0.05
    await batcher.stop()


async def test_queue_delay_waits_for_a_fuller_batch_and_full_batches_go_at_once():
    recorder = Recorder()
    batcher = await make(recorder, max_batch_size=4, max_queue_delay_microseconds=50_000)
    tasks = [asyncio.create_task(batcher.submit(block(v))) for v in range(3)]
    await asyncio.gather(*tasks)
    assert recorder.batches == [[0, 1, 2]]
    assert batcher.stats.execution_count == 1
    start = time.perf_counter()
    await asyncio.gather(*(batcher.submit(block(v)) for v in range(4)))
    assert time.perf_counter() - start < 0.04  # full: no 50 ms wait
    await batcher.stop()


async def test_batching_off_runs_one_request_at_a_time():
    recorder = Recorder(seconds=0.01)
    batcher = await make(recorder, max_batch_size=0)
    await asyncio.gather(*(batcher.submit(block(v)) for v in range(4)))
    assert recorder.batches == [[0], [1], [2], [3]]
    await batcher.stop()


async def test_a_full_queue_fails_fast():
    recorder = Recorder(seconds=0.1)
    batcher = await make(recorder, max_batch_size=1, max_queue_size=2)
    running = asyncio.create_task(batcher.submit(block(0)))
    while not recorder.started.is_set():
        await asyncio.sleep(0.001)
    queued = [asyncio.create_task(batcher.submit(block(v))) for v in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull, match="queue is full"):
        await batcher.submit(block(3))
    await asyncio.gather(running, *queued)
    await batcher.stop()


async def test_expired_requests_are_dropped_before_running():
    recorder = Recorder(seconds=0.05)
    batcher = await make(recorder, max_batch_size=8)
    running = asyncio.create_task(batcher.submit(block(0)))
    while not recorder.started.is_set():
        await asyncio.sleep(0.001)
    doomed = asyncio.create_task(batcher.submit(block(1), timeout_s=0.01))
    kept = asyncio.create_task(batcher.submit(block(2), timeout_s=5))
    with pytest.raises(DeadlineExpired):
        await doomed
    await asyncio.gather(running, kept)
    assert all(1.0 not in b for b in recorder.batches)
    await batcher.stop()


async def test_a_failing_batch_fails_every_request_in_it():
    recorder = Recorder(seconds=0.05, fail_on=3)
    batcher = await make(recorder, max_batch_size=8)
    first = asyncio.create_task(batcher.submit(block(0)))
    while not recorder.started.is_set():
        await asyncio.sleep(0.001)
    same_batch = [asyncio.create_task(batcher.submit(block(v))) for v in (2, 3, 4)]
    assert float((await first)["value"][0]) == 0
    results = await asyncio.gather(*same_batch, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert float((await batcher.submit(block(5)))["value"][0]) == 5  # and it keeps serving
    await batcher.stop()


async def test_a_rejected_request_fails_alone():
    recorder = Recorder(seconds=0.05, reject=3)
    batcher = await make(recorder, max_batch_size=8)
    first = asyncio.create_task(batcher.submit(block(0)))
    while not recorder.started.is_set():
        await asyncio.sleep(0.001)
    same_batch = [asyncio.create_task(batcher.submit(block(v, rows=2))) for v in (2, 3, 4)]
    await first
    results = await asyncio.gather(*same_batch, return_exceptions=True)
    assert isinstance(results[1], InvalidInput)
    assert results[0]["value"].tolist() == [2, 2] and results[2]["value"].tolist() == [4, 4]
    await batcher.stop()
