"""``onyxserve loadtest TARGET --model NAME``: load any V2 gRPC server and report latency.

Examples::

    # closed-loop sweep, rows generated from the model's ModelMetadata
    onyxserve loadtest 127.0.0.1:8001 --model fraud_lr --concurrency 1,4,16,64

    # open loop, Poisson arrivals at 2000 requests/s, rows replayed from a CSV
    onyxserve loadtest unix:///tmp/onyx.sock --model fraud_lr --rate 2000 --arrival poisson \\
        --data sample.csv --json out.json

    # MLServer's sklearn runtime: ask for label and probabilities
    onyxserve loadtest 127.0.0.1:18081 --model fraud_lr --data sample.csv \\
        --output predict --output predict_proba
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")


def parse_duration(text: str) -> float:
    """'500ms', '2s', '1.5m' or a bare number of seconds -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 500ms, 10s, 1m)")
    value = float(m.group(1))
    return value * {"ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("rates must be > 0")
    return values


def register(subparsers: Any) -> None:
    """Add the ``loadtest`` subcommand."""
    p = subparsers.add_parser(
        "loadtest",
        help="load a V2 gRPC server (closed-loop sweep or open-loop rate) and report latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="host:port or unix:///path of a V2 gRPC server")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--version", default="", help="model version (default: the server's choice)")

    load = p.add_argument_group("load")
    load.add_argument(
        "--concurrency",
        type=_int_list,
        default=None,
        metavar="N[,N...]",
        help="closed loop: requests in flight, a sweep (default 1,4,16,64)",
    )
    load.add_argument(
        "--rate",
        type=_float_list,
        default=None,
        metavar="R[,R...]",
        help="open loop: arrival rate(s) in requests/s (switches to open loop)",
    )
    load.add_argument(
        "--arrival",
        choices=("poisson", "constant"),
        default="poisson",
        help="open loop: arrival process (default poisson)",
    )
    load.add_argument("--warmup", type=parse_duration, default=2.0, help="warm-up per window (default 2s)")
    load.add_argument("--duration", type=parse_duration, default=10.0, help="measured window (default 10s)")
    load.add_argument("--timeout", type=parse_duration, default=5.0, help="per-request deadline (default 5s)")
    load.add_argument("--processes", type=int, default=2, help="load processes (default 2)")
    load.add_argument("--connections", type=int, default=2, help="gRPC channels per process (default 2)")
    load.add_argument(
        "--max-inflight",
        type=int,
        default=4096,
        help="open loop: outstanding requests cap across processes (default 4096)",
    )

    rows = p.add_argument_group("rows")
    rows.add_argument("--data", type=Path, help="replay rows from a CSV (header) or JSONL file")
    rows.add_argument(
        "--columns",
        help="comma-separated feature columns of --data, in order (default: all but Class/label/target/y)",
    )
    rows.add_argument("--manifest", type=Path, help="generate rows from an onyxserve manifest.json")
    rows.add_argument(
        "--categories", help="JSON file or inline JSON {feature: [categories]} for BYTES features"
    )
    rows.add_argument("--rows", type=int, default=1024, help="generated rows (default 1024)")
    rows.add_argument("--seed", type=int, default=0, help="random seed for rows and arrivals (default 0)")

    req = p.add_argument_group("request form")
    req.add_argument(
        "--per-feature",
        action="store_true",
        help="one tensor per feature (BYTES for categorical) instead of one [N,F] tensor",
    )
    req.add_argument("--rows-per-request", type=int, default=1, help="rows in each request (default 1)")
    req.add_argument(
        "--input-name", help="name of the [N,F] input (default: from ModelMetadata, else 'input')"
    )
    req.add_argument(
        "--datatype", help="datatype of the [N,F] input (default: from ModelMetadata, else FP32)"
    )
    req.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="NAME",
        help="request this output (repeatable; default: the server's default outputs)",
    )
    req.add_argument("--no-metadata", action="store_true", help="do not ask the server for ModelMetadata")

    p.add_argument("--json", type=Path, help="write the results as JSON (rewritten after every window)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the load test described by ``args``; exit 0, 1 if a window was cut short, 2 on bad use."""
    import grpc

    from . import api

    if args.rate is not None and args.concurrency is not None:
        print("loadtest: give --concurrency (closed loop) or --rate (open loop), not both", file=sys.stderr)
        return 2
    if args.processes < 1 or args.connections < 1 or args.rows_per_request < 1:
        print("loadtest: --processes, --connections and --rows-per-request must be >= 1", file=sys.stderr)
        return 2
    try:
        plan = api.prepare(
            args.target,
            args.model,
            args.version,
            data=args.data,
            columns=[c.strip() for c in args.columns.split(",")] if args.columns else None,
            manifest=args.manifest,
            categories=api.load_categories(args.categories),
            rows=args.rows,
            seed=args.seed,
            per_feature=args.per_feature,
            rows_per_request=args.rows_per_request,
            input_name=args.input_name,
            datatype=args.datatype,
            outputs=args.output,
            use_metadata=not args.no_metadata,
        )
    except grpc.RpcError as exc:
        print(
            f"loadtest: cannot get ModelMetadata of '{args.model}' from {args.target}: "
            f"{exc.code().name}: {exc.details()}",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2

    if args.json:
        try:  # fail now, not after the first window
            _write_json(args.json, {"results": [], "note": "run in progress"})
        except OSError as exc:
            print(f"loadtest: cannot write --json {args.json}: {exc}", file=sys.stderr)
            return 2

    form = plan.form
    shape = (
        "per-feature tensors"
        if form.per_feature
        else f"'{form.input_name}' {form.datatype} [N,{len(plan.workload.features)}]"
    )
    print(
        f"target {args.target}  model {args.model}{':' + args.version if args.version else ''}  "
        f"rows from {plan.source} ({plan.workload.n_rows})  {shape}  {form.rows_per_request} row(s)/request  "
        f"{len(plan.pool)} distinct requests  {args.processes} processes x {args.connections} channels"
    )

    open_loop = args.rate is not None
    report: dict[str, Any] = {
        "target": args.target,
        "model": args.model,
        "version": args.version,
        "mode": "open" if open_loop else "closed",
        "config": {
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "timeout_s": args.timeout,
            "processes": args.processes,
            "connections": args.connections,
            "rows_per_request": form.rows_per_request,
            "per_feature": form.per_feature,
            "input_name": None if form.per_feature else form.input_name,
            "datatype": form.datatype,
            "outputs": list(form.outputs),
            "rows_source": plan.source,
            "arrival": args.arrival if open_loop else None,
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": [],
        "aborted": None,
    }
    collected = []

    def on_result(result) -> None:
        collected.append(result)
        level = f"concurrency {result.concurrency}" if result.mode == "closed" else f"rate {result.rate:g}/s"
        print(
            f"  {level}: {result.throughput_rps:,.0f} req/s, p99 {result.latency_ms['p99']:.3f} ms, "
            f"{result.error_count} errors",
            flush=True,
        )
        if result.client_start_late_ms > args.warmup * 1e3:
            print(
                f"  warning: a load process started {result.client_start_late_ms:.0f} ms late, past the "
                "warm-up: the client was short of CPU, this window under-states the load",
                flush=True,
            )
        report["results"].append(result.to_dict())
        if result.aborted:
            report["aborted"] = result.aborted
        if args.json:
            _write_json(args.json, report)

    common: dict[str, Any] = {
        "version": args.version,
        "warmup_s": args.warmup,
        "processes": args.processes,
        "connections": args.connections,
        "timeout_s": args.timeout,
        "plan": plan,
        "on_result": on_result,
    }
    if open_loop:
        api.run_open_sweep(
            args.target,
            args.model,
            args.rate,
            args.duration,
            arrival=args.arrival,
            max_inflight=args.max_inflight,
            seed=args.seed,
            **common,
        )
    else:
        api.run_sweep(args.target, args.model, args.concurrency or [1, 4, 16, 64], args.duration, **common)

    from .stats import format_table

    print()
    print(format_table(collected))
    if collected and collected[-1].outputs:
        print(f"outputs: {collected[-1].outputs}")
    details = {k: v for r in collected for k, v in r.error_details.items()}
    for code, message in sorted(details.items()):
        print(f"first {code} message: {message}")
    cpu = [
        (r.client_cpu_us_per_request, r.client_cpu_cores) for r in collected if r.client_cpu_us_per_request
    ]
    if cpu:
        per_request = ", ".join(f"{us:.0f}" for us, _ in cpu)
        cores = ", ".join(f"{c:.2f}" for _, c in cpu)
        print(f"harness CPU (all load processes, per window): {per_request} us/request; {cores} cores")
    if args.json:
        print(f"results written to {args.json}")
    if report["aborted"]:
        print(
            f"loadtest: run stopped early: {report['aborted']}; the results measured so far are above"
            + (f" and in {args.json}" if args.json else ""),
            file=sys.stderr,
        )
        return 1
    return 0


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def standalone(argv: list[str] | None = None) -> int:
    """Run ``loadtest`` without the rest of the ``onyxserve`` command (``python -m``)."""
    parser = argparse.ArgumentParser(prog="onyxserve")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["loadtest", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)
