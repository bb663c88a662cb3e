"""Latency statistics: exact percentiles over raw samples merged across load processes.

Each load process keeps every latency of its measurement window with its send time (two int64
nanoseconds, 16 bytes a request: 10 s at 5,000 requests/s is 800 kB) and sends them back whole,
so the merged percentiles are exact, not an approximation of per-process histograms, and the
per-second timeline (throughput, p50, p99 over the run) comes from the same samples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
# the points of the percentile curve (latency at each percentile), dense towards the tail
CURVE_PERCENTILES = (
    0.0,
    10.0,
    25.0,
    50.0,
    75.0,
    90.0,
    95.0,
    97.5,
    99.0,
    99.5,
    99.75,
    99.9,
    99.95,
    99.99,
    100.0,
)


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
    sent_ns: bytes = b""  # int64 monotonic_ns send (or scheduled) time of each latency above
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
    # seconds from the run's origin (the first window's start) to this window's measured start
    window_start_s: float = 0.0
    # per second of the window: t_s (from the run's origin), requests (OK), p50_ms, p99_ms
    timeline: dict[str, list[float]] = field(default_factory=dict)
    # latency at CURVE_PERCENTILES: {"percentile": [...], "latency_ms": [...]}
    latency_curve: dict[str, list[float]] = field(default_factory=dict)
    # set by the stability check: windows run, throughput of each, spread of the last 3, verdict
    stability: dict[str, Any] | None = None
    # the raw samples (int64 ns), kept for combining windows; not written to JSON
    samples_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    sent_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RAW_FIELDS}
        data["error_count"] = self.error_count
        return _nan_to_none(data)


_RAW_FIELDS = frozenset({"samples_ns", "sent_ns"})


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def timeline(
    latencies_ns: np.ndarray, sent_ns: np.ndarray, start_ns: int, duration_s: float, origin_ns: int
) -> dict[str, list[float]]:
    """Per second of ``[start_ns, start_ns + duration)`` by send time: OK requests per second,
    p50 and p99 (ms). ``t_s`` is each bin's start in seconds from ``origin_ns``. A last partial
    second counts per second of its own length."""
    bins = max(1, math.ceil(duration_s - 1e-9))
    out: dict[str, list[float]] = {"t_s": [], "requests_per_s": [], "p50_ms": [], "p99_ms": []}
    if sent_ns.size != latencies_ns.size:
        return out
    index = ((sent_ns - start_ns) // 1_000_000_000).clip(0, bins - 1)
    order = np.argsort(index, kind="stable")
    edges = np.searchsorted(index[order], np.arange(bins + 1))
    for k in range(bins):
        chunk = latencies_ns[order[edges[k] : edges[k + 1]]]
        width = min(1.0, duration_s - k) if duration_s > k else 1.0
        p = percentiles(chunk, (50.0, 99.0))
        out["t_s"].append(round((start_ns - origin_ns) / 1e9 + k, 3))
        out["requests_per_s"].append(chunk.size / width)
        out["p50_ms"].append(p["p50"])
        out["p99_ms"].append(p["p99"])
    return out


def latency_curve(latencies_ns: np.ndarray) -> dict[str, list[float]]:
    p = percentiles(latencies_ns, CURVE_PERCENTILES)
    return {
        "percentile": list(CURVE_PERCENTILES),
        "latency_ms": [p[percentile_key(q)] for q in CURVE_PERCENTILES],
    }


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
    window_start_ns: int = 0,
    origin_ns: int | None = None,
) -> LoadResult:
    """Merge the per-process results of one window into one exact LoadResult.
    ``window_start_ns`` is the measured window's start, ``origin_ns`` the run's (for the
    timeline; default the window's start)."""
    lat = merge_samples(p.latencies_ns for p in parts)
    sent = merge_samples(p.sent_ns for p in parts)
    origin = window_start_ns if origin_ns is None else origin_ns
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
        window_start_s=round((window_start_ns - origin) / 1e9, 3),
        timeline=timeline(lat, sent, window_start_ns, covered, origin),
        latency_curve=latency_curve(lat),
        samples_ns=lat,
        sent_ns=sent,
    )


def combine(results: list[LoadResult]) -> LoadResult:
    """Several windows at the same level as one result: samples pooled (percentiles exact),
    throughput = requests / total measured time, errors summed, timelines concatenated."""
    if len(results) == 1:
        return results[0]
    first, last = results[0], results[-1]
    lat = np.concatenate([r.samples_ns for r in results])
    sent = np.concatenate([r.sent_ns for r in results])
    duration = sum(r.duration_s for r in results)
    throughput = lat.size / duration if duration > 0 else 0.0
    cpu = [r.client_cpu_us_per_request for r in results if r.client_cpu_us_per_request is not None]
    cores = [r.client_cpu_cores for r in results if r.client_cpu_cores is not None]
    lines: dict[str, list[float]] = {}
    for r in results:
        for key, values in r.timeline.items():
            lines.setdefault(key, []).extend(values)
    return LoadResult(
        mode=first.mode,
        concurrency=first.concurrency,
        rate=first.rate,
        arrival=first.arrival,
        duration_s=round(duration, 3),
        requests=int(lat.size),
        errors=merge_errors(r.errors for r in results),
        throughput_rps=throughput,
        rows_per_request=first.rows_per_request,
        rows_per_s=throughput * first.rows_per_request,
        latency_ms=percentiles(lat),
        send_lag_ms=last.send_lag_ms,  # raw lags are not kept: the latest window's
        warmup_requests=sum(r.warmup_requests for r in results),
        aborted=next((r.aborted for r in results if r.aborted), None),
        outputs=first.outputs,
        client_cpu_us_per_request=sum(cpu) / len(cpu) if cpu else None,
        client_cpu_cores=sum(cores) / len(cores) if cores else None,
        client_start_late_ms=max(r.client_start_late_ms for r in results),
        error_details={k: v for r in reversed(results) for k, v in r.error_details.items()},
        window_start_s=first.window_start_s,
        timeline=lines,
        latency_curve=latency_curve(lat),
        samples_ns=lat,
        sent_ns=sent,
    )


def _cores(parts: list[WorkerResult]) -> float | None:
    """CPU of all load processes over the longest span measured (an idle process's span is ~0)."""
    span = max((p.cpu_wall_s for p in parts), default=0.0)
    return sum(p.cpu_s for p in parts) / span if span > 0 else None


def format_table(results: list[LoadResult]) -> str:
    """A fixed-width table, one line per window."""
    return format_table_dicts([r.to_dict() for r in results])


def format_table_dicts(results: list[dict[str, Any]]) -> str:
    """``format_table`` over results as written to JSON (``LoadResult.to_dict``)."""
    head = ["mode", "load", "req/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms", "errors"]
    rows = [head]
    for r in results:
        load = f"c={r['concurrency']}" if r["mode"] == "closed" else f"{r['rate']:g}/s {r['arrival']}"
        lat = r["latency_ms"]
        errs = ", ".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"
        rows.append(
            [r["mode"], load, f"{r['throughput_rps']:,.0f}"]
            + [_ms(lat[percentile_key(p)]) for p in PERCENTILES]
            + [errs + (" (aborted)" if r["aborted"] else "")]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"
