"""Several load processes, each with its own grpc.aio channels and event loop, driven in step.

The parent pre-serializes the request pool once and hands it to every process at start. For each
window it sends one command with a common start time on ``time.monotonic_ns`` (one clock for all
processes on Linux); each process runs its share of the load and sends back its raw samples
through its pipe, which the parent merges exactly. Each window is bounded: a process that has
not answered ``timeout + 5 s`` after the window's end is killed and the run reports it.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .stats import LoadResult, WorkerResult, merge

# time for every process to receive the command and connect before the start
_START_LEAD_NS = 1_000_000_000
_ANSWER_GRACE_S = 5.0
_READY_TIMEOUT_S = 60.0  # spawning a process that imports grpc and numpy takes ~1 s, more under load


def _process_main(
    conn: Connection,
    target: str,
    pool: list[bytes],
    drift_pool: list[bytes] | None,
    connections: int,
    index: int,
) -> None:
    """Body of a load process: execute commands until told to stop (or the parent goes away)."""
    from .closed_loop import closed_loop
    from .open_loop import open_loop

    conn.send("ready")  # imports done: a start time the parent picks from now on is reachable
    while True:
        try:
            cmd = conn.recv()
        except (EOFError, OSError):
            return
        kind = cmd.pop("kind")
        if kind == "stop":
            return
        try:
            loop = closed_loop if kind == "closed" else open_loop
            result = asyncio.run(loop(target, pool, connections=connections, drift_pool=drift_pool, **cmd))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as this process's failure
            result = WorkerResult(aborted=f"load process {index} failed: {type(exc).__name__}: {exc}")
        conn.send(result)


@dataclass
class _Proc:
    process: mp.process.BaseProcess
    conn: Connection


class LoadRunner:
    """A pool of load processes for one target and one request pool; a context manager.

    ``pool`` is the list of serialized ModelInferRequest messages (see ``requests.build_pool``).
    ``connections`` is the number of gRPC channels (TCP connections) per process. ``drift_pool``
    (the same rows, drifted) replaces ``pool`` for sends ``drift_after_s`` after the origin on
    (``drift_at_ns`` once known). ``origin_ns``
    is the run's time origin for the timelines: the first window's start unless set (a
    comparison sets one origin for both targets' runners).
    """

    def __init__(
        self,
        target: str,
        pool: list[bytes],
        processes: int = 2,
        connections: int = 2,
        timeout_s: float = 5.0,
        rows_per_request: int = 1,
        drift_pool: list[bytes] | None = None,
        drift_after_s: float = 0.0,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.target = target
        self.pool = pool
        self.timeout_s = timeout_s
        self.rows_per_request = rows_per_request
        self.origin_ns: int | None = None
        self.drift_after_s = drift_after_s
        self.drift_at_ns: int | None = None
        self._has_drift = drift_pool is not None
        ctx = mp.get_context("spawn")  # grpc's core does not survive fork() with live channels
        self._procs: list[_Proc] = []
        for i in range(processes):
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_process_main, args=(child, target, pool, drift_pool, connections, i), daemon=True
            )
            p.start()
            child.close()
            self._procs.append(_Proc(p, parent))
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        for i, p in enumerate(self._procs):
            ok = False
            if p.conn.poll(max(0.0, deadline - time.monotonic())):
                try:
                    ok = p.conn.recv() == "ready"
                except (EOFError, OSError):
                    pass
            if not ok:
                self.close()
                raise RuntimeError(f"load process {i} did not start within {_READY_TIMEOUT_S:.0f} s")

    def __enter__(self) -> LoadRunner:  # noqa: PYI034 - final in practice; typing.Self needs 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p in self._procs:
            try:
                p.conn.send({"kind": "stop"})
            except (OSError, BrokenPipeError):
                pass
        for p in self._procs:
            p.process.join(timeout=2.0)
            if p.process.is_alive():
                p.process.terminate()
                p.process.join(timeout=2.0)
        self._procs.clear()

    def _run(self, commands: list[dict[str, Any]], window_end_ns: int) -> list[WorkerResult]:
        for p, cmd in zip(self._procs, commands):
            p.conn.send(cmd)
        deadline = window_end_ns / 1e9 + self.timeout_s + _ANSWER_GRACE_S
        results = []
        for i, p in enumerate(self._procs):
            remaining = max(0.0, deadline - time.monotonic())
            if p.conn.poll(remaining):
                try:
                    results.append(p.conn.recv())
                    continue
                except (EOFError, OSError):
                    pass
            alive = p.process.is_alive()
            results.append(
                WorkerResult(aborted=f"load process {i} {'did not answer in time' if alive else 'died'}")
            )
        return results

    def _start(self) -> int:
        """The next window's common start; the first one is the run's origin unless set."""
        start = time.monotonic_ns() + _START_LEAD_NS
        if self.origin_ns is None:
            self.origin_ns = start
        if self._has_drift and self.drift_at_ns is None:
            self.drift_at_ns = self.origin_ns + int(self.drift_after_s * 1e9)
        return start

    def closed(self, concurrency: int, warmup_s: float, duration_s: float) -> LoadResult:
        """One closed-loop window at total ``concurrency``, split across the processes."""
        n = len(self._procs)
        start = self._start()
        warm, dur = int(warmup_s * 1e9), int(duration_s * 1e9)
        commands = [
            {
                "kind": "closed",
                "drift_at_ns": self.drift_at_ns,
                "concurrency": concurrency // n + (i < concurrency % n),
                "start_ns": start,
                "warmup_ns": warm,
                "duration_ns": dur,
                "timeout_s": self.timeout_s,
                "offset": i * 7919,  # processes start at different rows of the pool
            }
            for i in range(n)
        ]
        parts = self._run(commands, start + warm + dur)
        return merge(
            parts,
            mode="closed",
            duration_s=duration_s,
            concurrency=concurrency,
            rows_per_request=self.rows_per_request,
            window_start_ns=start + warm,
            origin_ns=self.origin_ns,
        )

    def open(
        self,
        rate: float,
        arrival: str,
        warmup_s: float,
        duration_s: float,
        max_inflight: int = 4096,
        seed: int = 0,
    ) -> LoadResult:
        """One open-loop window at total ``rate`` requests/s: each process sends rate/n; with
        constant spacing the processes are phase-shifted so the merged stream stays even."""
        n = len(self._procs)
        start = self._start()
        warm, dur = int(warmup_s * 1e9), int(duration_s * 1e9)
        commands = [
            {
                "kind": "open",
                "drift_at_ns": self.drift_at_ns,
                "rate": rate / n,
                "arrival": arrival,
                "start_ns": start,
                "warmup_ns": warm,
                "duration_ns": dur,
                "timeout_s": self.timeout_s,
                "max_inflight": max(1, max_inflight // n),
                "phase_ns": int(i * 1e9 / rate),
                "seed": seed * 1000 + i,
                "offset": i * 7919,
            }
            for i in range(n)
        ]
        parts = self._run(commands, start + warm + dur)
        return merge(
            parts,
            mode="open",
            duration_s=duration_s,
            rate=rate,
            arrival=arrival,
            rows_per_request=self.rows_per_request,
            window_start_ns=start + warm,
            origin_ns=self.origin_ns,
        )
