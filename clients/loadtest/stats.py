"""Latency statistics: exact percentiles over raw samples merged across load processes.

Each load process keeps every latency of its measurement window (int64 nanoseconds, 8 bytes a
request: 10 s at 5,000 requests/s is 400 kB) and sends them back whole, so the merged
percentiles are exact, not an approximation of per-process histograms.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentile_key(p: float) -> str:
    """50 -> 'p50', 99.9 -> 'p99.9'."""
    return f"p{p:g}"


def percentiles(samples_ns: np.ndarray, ps: Iterable[float] = PERCENTILES) -> dict[str, float]:
    """Nearest-rank percentiles (the smallest sample with at least p% of samples at or below
    it), in milliseconds; plus mean, min and max. Empty input gives NaN for every key."""
    ps = tuple(ps)
    keys = [percentile_key(p) for p in ps] + ["mean", "min", "max"]
    n = int(samples_ns.size)
    if n == 0:
        return {k: math.nan for k in keys}
    ordered = np.sort(samples_ns.astype(np.int64, copy=False))
    out = {}
    for p in ps:
        rank = max(1, math.ceil(p / 100.0 * n))  # 1-based nearest rank
        out[percentile_key(p)] = float(ordered[rank - 1]) / 1e6
    out["mean"] = float(ordered.mean()) / 1e6
    out["min"] = float(ordered[0]) / 1e6
    out["max"] = float(ordered[-1]) / 1e6
    return out


@dataclass
class WorkerResult:
    """What one load process measured in one window; plain data so it pickles over a pipe."""

    latencies_ns: bytes = b""  # int64 native order, one per OK request sent in the window
    send_lag_ns: bytes = b""  # open loop: actual send time - scheduled time, per request sent
    errors: dict[str, int] = field(default_factory=dict)  # status code name -> count (window)
    error_details: dict[str, str] = field(default_factory=dict)  # status code name -> first message
    warmup_ok: int = 0
    warmup_errors: int = 0
    aborted: str | None = None  # why this process stopped early (server gone, ...)
    outputs: dict[str, list[int]] | None = None  # output name -> shape of the first response
    wall_s: float = 0.0  # window actually covered (shorter when aborted)
    cpu_s: float = 0.0  # this process's CPU time while sending (warm-up included)
    cpu_wall_s: float = 0.0  # the wall time cpu_s was measured over
    calls: int = 0  # requests completed over the whole command, OK or not
    start_late_s: float = 0.0  # how late this process began sending (starved of CPU, slow connect)


@dataclass
class LoadResult:
    """One measured window: a concurrency level (closed loop) or an arrival rate (open loop).

    ``throughput_rps`` counts successful requests sent inside the window, per second of window;
    ``rows_per_s`` multiplies that by rows per request. Latencies are in milliseconds: from send
    to response (closed loop) or from the scheduled send time to response (open loop), so time
    a request waited because the client or the server fell behind is included.
    """

    mode: str  # "closed" | "open"
    concurrency: int | None
    rate: float | None
    arrival: str | None
    duration_s: float
    requests: int
    errors: dict[str, int]
    throughput_rps: float
    rows_per_request: int
    rows_per_s: float
    latency_ms: dict[str, float]
    send_lag_ms: dict[str, float] | None = None
    warmup_requests: int = 0
    aborted: str | None = None
    outputs: dict[str, list[int]] | None = None
    # the harness's own CPU per request (all load processes, warm-up included): what the
    # generator takes from the cores it shares with the server under test
    client_cpu_us_per_request: float | None = None
    client_cpu_cores: float | None = None  # CPU the load processes used, in cores (1.0 = one core)
    # the latest a load process began sending, after the common start; beyond the warm-up it
    # ate into the measured window (the client, not the server, was short of CPU)
    client_start_late_ms: float = 0.0
    error_details: dict[str, str] = field(default_factory=dict)  # status code -> first message seen

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_count"] = self.error_count
        return _nan_to_none(data)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def merge_samples(chunks: Iterable[bytes]) -> np.ndarray:
    """Concatenate the int64 sample buffers of several processes."""
    arrays = [np.frombuffer(c, dtype=np.int64) for c in chunks if c]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)


def merge_errors(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))


def merge(
    parts: list[WorkerResult],
    *,
    mode: str,
    duration_s: float,
    rows_per_request: int,
    concurrency: int | None = None,
    rate: float | None = None,
    arrival: str | None = None,
) -> LoadResult:
    """Merge the per-process results of one window into one exact LoadResult."""
    lat = merge_samples(p.latencies_ns for p in parts)
    lag = merge_samples(p.send_lag_ns for p in parts)
    aborted = next((p.aborted for p in parts if p.aborted), None)
    # an aborted window covered less time: rate over what was really measured
    covered = min([p.wall_s for p in parts if p.aborted] or [duration_s])
    covered = covered if covered > 0 else duration_s
    throughput = lat.size / covered
    outputs = next((p.outputs for p in parts if p.outputs), None)
    calls = sum(p.calls for p in parts)
    cpu_us = sum(p.cpu_s for p in parts) / calls * 1e6 if calls else None
    return LoadResult(
        mode=mode,
        concurrency=concurrency,
        rate=rate,
        arrival=arrival,
        duration_s=round(covered, 3),
        requests=int(lat.size),
        errors=merge_errors(p.errors for p in parts),
        throughput_rps=throughput,
        rows_per_request=rows_per_request,
        rows_per_s=throughput * rows_per_request,
        latency_ms=percentiles(lat),
        send_lag_ms=percentiles(lag, (50.0, 99.0)) if mode == "open" else None,
        warmup_requests=sum(p.warmup_ok + p.warmup_errors for p in parts),
        aborted=aborted,
        outputs=outputs,
        client_cpu_us_per_request=cpu_us,
        client_cpu_cores=_cores(parts),
        error_details={k: v for p in reversed(parts) for k, v in p.error_details.items()},
        client_start_late_ms=max((p.start_late_s for p in parts), default=0.0) * 1e3,
    )


def _cores(parts: list[WorkerResult]) -> float | None:
    """CPU of all load processes over the longest span measured (an idle process's span is ~0)."""
    span = max((p.cpu_wall_s for p in parts), default=0.0)
    return sum(p.cpu_s for p in parts) / span if span > 0 else None


def format_table(results: list[LoadResult]) -> str:
    """A fixed-width table, one line per window."""
    head = ["mode", "load", "req/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms", "errors"]
    rows = [head]
    for r in results:
        load = f"c={r.concurrency}" if r.mode == "closed" else f"{r.rate:g}/s {r.arrival}"
        lat = r.latency_ms
        errs = ", ".join(f"{k}:{v}" for k, v in r.errors.items()) or "0"
        rows.append(
            [r.mode, load, f"{r.throughput_rps:,.0f}"]
            + [_ms(lat[percentile_key(p)]) for p in PERCENTILES]
            + [errs + (" (aborted)" if r.aborted else "")]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"
