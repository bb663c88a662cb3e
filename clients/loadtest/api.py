"""The Python API of the load-test harness.

    from onyxserve.clients.loadtest import run_closed_loop, run_open_loop
    r = run_closed_loop("127.0.0.1:8001", "fraud_lr", concurrency=16, duration_s=10)
    print(r.throughput_rps, r.latency_ms["p99"])

Both functions build the request pool once (``prepare``), start the load processes, run the
window(s) and return ``LoadResult`` (a list for a sweep). TARGET is ``host:port`` or
``unix:///path``; only plain V2 gRPC is spoken, so any V2 server (onyxserve, MLServer, Triton)
can be loaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from . import workload as wl
from .drift import Drift, apply_drift
from .requests import RequestForm, build_pool
from .runner import _START_LEAD_NS, LoadRunner
from .stability import run_level
from .stats import LoadResult


@dataclass
class Plan:
    """What a run sends: the serialized request pool and how it was made."""

    pool: list[bytes]
    form: RequestForm
    workload: wl.Workload
    interface: wl.ModelInterface | None
    source: str  # where the rows came from
    drift: list[Drift] = field(default_factory=list)
    drift_from_s: float = 0.0  # drifted rows from this long after the run's start
    drift_pool: list[bytes] | None = None  # the drifted pool when drift starts later than 0

    def drift_dict(self) -> dict | None:
        """How the rows were drifted, for the results (None: not drifted)."""
        if not self.drift:
            return None
        return {"features": [d.to_dict() for d in self.drift], "from_s": self.drift_from_s}


def load_categories(path_or_json: str | None) -> dict[str, list[str]] | None:
    """``--categories``: a JSON file path or an inline JSON object ``{"feature": ["a", ...]}``."""
    if not path_or_json:
        return None
    text = path_or_json
    if not text.lstrip().startswith("{"):
        text = Path(path_or_json).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("--categories must be a JSON object: feature -> list of categories")  # noqa: TRY004
    return {str(k): [str(x) for x in v] for k, v in data.items()}


def prepare(
    target: str,
    model: str,
    version: str = "",
    *,
    data: str | Path | None = None,
    columns: Sequence[str] | None = None,
    manifest: str | Path | None = None,
    categories: dict[str, list[str]] | None = None,
    rows: int = 1024,
    seed: int = 0,
    per_feature: bool = False,
    rows_per_request: int = 1,
    input_name: str | None = None,
    datatype: str | None = None,
    outputs: Sequence[str] = (),
    max_requests: int = 1024,
    use_metadata: bool = True,
    drift: Sequence[Drift] = (),
    drift_from_s: float = 0.0,
) -> Plan:
    """Work out the rows and the request form and pre-serialize the request pool.

    Rows come from ``data`` (CSV/JSONL), else ``manifest`` (an onyxserve manifest.json), else the
    model's V2 ModelMetadata. The metadata, when the server answers it, also supplies the input
    name and datatype of the ``[N, F]`` form and the per-feature datatypes; explicit arguments
    win. A server that cannot be reached raises ``grpc.RpcError`` only when the rows depend on it.
    ``drift`` shifts / rescales features of every request, or of those sent ``drift_from_s``
    after the run's start (then the plan carries a clean and a drifted pool of the same rows).
    """
    interface = None
    if use_metadata:
        try:
            interface = wl.fetch_interface(target, model, version)
        except grpc.RpcError:
            if data is None and manifest is None:
                raise
    if data is not None:
        if columns is None and interface is not None and not interface.is_tensor and per_feature:
            columns = [name for name, _, _ in interface.inputs]
        work = wl.from_file(data, columns)
        source = str(data)
    elif manifest is not None:
        work = wl.from_manifest(manifest, rows, seed, categories)
        source = str(manifest)
    else:
        assert interface is not None
        work = wl.from_interface(interface, rows, seed, categories)
        source = "ModelMetadata"

    form = _request_form(work, interface, per_feature, rows_per_request, input_name, datatype, outputs)
    if per_feature and interface is not None and not interface.is_tensor:
        declared = {name: dt for name, dt, _ in interface.inputs}
        work.features = [
            wl.Feature(f.name, declared.get(f.name, f.datatype)) if f.numeric else f for f in work.features
        ]
    elif not per_feature and interface is not None and interface.is_tensor:
        width = interface.width
        if width is not None and width != len(work.features):
            raise ValueError(
                f"model '{model}' takes {width} features in input '{interface.inputs[0][0]}', "
                f"the rows have {len(work.features)} ({source}); pick them with --columns"
            )
    drifted = apply_drift(work, drift) if drift else None
    pool = build_pool(work, model, version, form, max_requests)
    drift_pool = None
    if drifted is not None:
        drift_pool = build_pool(drifted, model, version, form, max_requests)
        if drift_from_s <= 0:
            pool, drift_pool = drift_pool, None
    return Plan(pool, form, work, interface, source, list(drift), max(0.0, drift_from_s), drift_pool)


def _request_form(
    work: wl.Workload,
    interface: wl.ModelInterface | None,
    per_feature: bool,
    rows_per_request: int,
    input_name: str | None,
    datatype: str | None,
    outputs: Sequence[str],
) -> RequestForm:
    tensor_meta = interface.inputs[0] if interface is not None and interface.is_tensor else None
    rank = 2
    if per_feature and interface is not None and not interface.is_tensor and interface.inputs:
        rank = 1 if len(interface.inputs[0][2]) == 1 else 2
    return RequestForm(
        per_feature=per_feature,
        rows_per_request=rows_per_request,
        input_name=input_name or (tensor_meta[0] if tensor_meta else "input"),
        datatype=datatype or (tensor_meta[1] if tensor_meta else "FP32"),
        outputs=tuple(outputs),
        feature_rank=rank,
    )


def _runner(target: str, plan: Plan, processes: int, connections: int, timeout_s: float) -> LoadRunner:
    return LoadRunner(
        target,
        plan.pool,
        processes=processes,
        connections=connections,
        timeout_s=timeout_s,
        rows_per_request=plan.form.rows_per_request,
        drift_pool=plan.drift_pool,
        drift_after_s=plan.drift_from_s,
    )


def run_levels(
    targets: Sequence[tuple[str, Plan]],
    levels: Sequence[float],
    duration_s: float,
    *,
    mode: str = "closed",
    arrival: str = "poisson",
    warmup_s: float = 2.0,
    processes: int = 2,
    connections: int = 2,
    timeout_s: float = 5.0,
    max_inflight: int = 4096,
    seed: int = 0,
    stable: float | None = None,
    max_windows: int = 6,
    on_result: Callable[[int, LoadResult], None] | None = None,
) -> list[list[LoadResult]]:
    """The general run: for each level (concurrency, or rate when ``mode`` is 'open'), a window
    on each target in turn (A, B, A, B, ... with the stability check ``stable``, a fraction such
    as 0.1). Returns the results per target. Stops after a level where a window was cut short
    (server gone) or where no request to a target succeeded, keeping what was measured;
    ``on_result(target_index, result)`` sees each level's result as it arrives (to save it)."""
    per_target: list[list[LoadResult]] = [[] for _ in targets]
    with ExitStack() as stack:
        runners = [
            stack.enter_context(_runner(t, plan, processes, connections, timeout_s)) for t, plan in targets
        ]
        origin = time.monotonic_ns() + _START_LEAD_NS  # one time axis for every target
        for runner in runners:
            runner.origin_ns = origin

        def window(runner: LoadRunner, level: float) -> Callable[[], LoadResult]:
            if mode == "open":
                return lambda: runner.open(float(level), arrival, warmup_s, duration_s, max_inflight, seed)
            return lambda: runner.closed(int(level), warmup_s, duration_s)

        for level in levels:
            results = run_level([window(r, level) for r in runners], stable, max_windows)
            stop = False
            for i, result in enumerate(results):
                if result.aborted is None and result.requests == 0 and result.error_count:
                    code = max(result.errors, key=result.errors.__getitem__)
                    message = result.error_details.get(code, "")
                    result.aborted = f"no request succeeded ({code}: {message})"
                per_target[i].append(result)
                if on_result is not None:
                    on_result(i, result)
                stop = stop or result.aborted is not None
            if stop or len(results) < len(runners):
                break
    return per_target


def run_sweep(
    target: str,
    model: str,
    concurrencies: Sequence[int],
    duration_s: float,
    *,
    version: str = "",
    warmup_s: float = 2.0,
    processes: int = 2,
    connections: int = 2,
    timeout_s: float = 5.0,
    plan: Plan | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
    stable: float | None = None,
    max_windows: int = 6,
    **prepare_args,
) -> list[LoadResult]:
    """Closed-loop concurrency sweep: one warm-up + measured window per level, in order (with
    ``stable``, e.g. 0.1: windows repeat until throughput varies < 10 %, see ``stability``).
    Stops early (keeping what was measured) if the server goes away."""
    plan = plan or prepare(target, model, version, **prepare_args)
    return run_levels(
        [(target, plan)],
        concurrencies,
        duration_s,
        warmup_s=warmup_s,
        processes=processes,
        connections=connections,
        timeout_s=timeout_s,
        stable=stable,
        max_windows=max_windows,
        on_result=None if on_result is None else lambda _, r: on_result(r),
    )[0]


def run_closed_loop(target: str, model: str, concurrency: int, duration_s: float, **kwargs) -> LoadResult:
    """One closed-loop window: ``concurrency`` requests always in flight (split across
    ``processes``), warm-up ``warmup_s`` then ``duration_s`` measured. Keyword arguments as for
    ``run_sweep`` and ``prepare`` (data, per_feature, rows_per_request, input_name, outputs, ...)."""
    return run_sweep(target, model, [concurrency], duration_s, **kwargs)[0]


def run_open_sweep(
    target: str,
    model: str,
    rates: Sequence[float],
    duration_s: float,
    *,
    arrival: str = "poisson",
    version: str = "",
    warmup_s: float = 2.0,
    processes: int = 2,
    connections: int = 2,
    timeout_s: float = 5.0,
    max_inflight: int = 4096,
    seed: int = 0,
    plan: Plan | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
    stable: float | None = None,
    max_windows: int = 6,
    **prepare_args,
) -> list[LoadResult]:
    """Open-loop windows at each arrival rate (requests/s), ``arrival`` 'poisson' or 'constant'.
    Latency counts from the scheduled send time."""
    plan = plan or prepare(target, model, version, seed=seed, **prepare_args)
    return run_levels(
        [(target, plan)],
        rates,
        duration_s,
        mode="open",
        arrival=arrival,
        warmup_s=warmup_s,
        processes=processes,
        connections=connections,
        timeout_s=timeout_s,
        max_inflight=max_inflight,
        seed=seed,
        stable=stable,
        max_windows=max_windows,
        on_result=None if on_result is None else lambda _, r: on_result(r),
    )[0]


def run_open_loop(target: str, model: str, rate: float, duration_s: float, **kwargs) -> LoadResult:
    """One open-loop window at ``rate`` requests/s; keyword arguments as for ``run_open_sweep``."""
    return run_open_sweep(target, model, [rate], duration_s, **kwargs)[0]
