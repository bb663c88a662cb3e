"""``onyxserve loadtest TARGET --model NAME``: load any V2 gRPC server and report latency.

Examples:

    # closed-loop sweep, rows generated from the model's ModelMetadata
    onyxserve loadtest 127.0.0.1:8001 --model fraud_lr --concurrency 1,4,16,64

    # open loop, Poisson arrivals at 2000 requests/s, rows replayed from a CSV
    onyxserve loadtest unix:///tmp/onyx.sock --model fraud_lr --rate 2000 --arrival poisson \\
        --data sample.csv --json-out out.json

    # MLServer's sklearn runtime: ask for label and probabilities
    onyxserve loadtest 127.0.0.1:18081 --model fraud_lr --data sample.csv \\
        --output predict --output predict_proba

    # two servers, alternately (A, B per level), windows repeated until throughput varies < 10%,
    # V14 shifted by 2.5 after 30 s; JSON and an HTML page with the plots
    onyxserve loadtest 127.0.0.1:8001 --compare 127.0.0.1:9001 --model fraud --data sample.csv \\
        --stable 10% --drift V14:shift=2.5 --drift-from 30s --json-out out.json --html out.html

--json-out is rewritten after every window, so a run stopped early keeps what it measured; --json
prints the same report on stdout at the end (the progress lines then go to stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import IO, Any

from onyxserve.cli._options import add_command, add_html, add_json, deprecated_alias
from onyxserve.errors import Interrupted, OnyxserveError, UsageError

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


def _fraction(text: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a percentage such as 10% (or 0.1), got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("the stability threshold must be between 0% and 100%")
    return value


def _drift(text: str):
    from .drift import parse_drift

    try:
        return parse_drift(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    """Add the ``loadtest`` subcommand."""
    p = add_command(
        subparsers,
        "loadtest",
        "load a V2 gRPC server (closed-loop sweep or open-loop rate) and report latency",
        (__doc__ or "").partition("\n\n")[2] or None,  # the examples
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
        help="closed loop: requests in flight, a sweep (default: 1,4,16,64)",
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
        help="open loop: arrival process",
    )
    load.add_argument("--warmup", type=parse_duration, default=2.0, help="warm-up per window (default: 2s)")
    load.add_argument("--duration", type=parse_duration, default=10.0, help="measured window (default: 10s)")
    deadline = load.add_argument(
        "--deadline", type=parse_duration, default=5.0, help="per-request deadline (default: 5s)"
    )
    deprecated_alias(p, "--timeout", deadline)  # --timeout means waiting for a server (the report commands)
    load.add_argument("--processes", type=int, default=2, help="load processes")
    load.add_argument("--connections", type=int, default=2, help="gRPC channels per process")
    load.add_argument(
        "--max-inflight",
        type=int,
        default=4096,
        help="open loop: outstanding requests cap across processes",
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
    rows.add_argument("--rows", type=int, default=1024, help="generated rows")
    rows.add_argument("--seed", type=int, default=0, help="random seed for rows and arrivals")

    req = p.add_argument_group("request form")
    req.add_argument(
        "--per-feature",
        action="store_true",
        help="one tensor per feature (BYTES for categorical) instead of one [N,F] tensor",
    )
    req.add_argument("--rows-per-request", type=int, default=1, help="rows in each request")
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

    load.add_argument(
        "--stable",
        type=_fraction,
        metavar="PCT",
        help="repeat windows at each level until throughput varies < PCT (e.g. 10%%) over the last 3",
    )
    load.add_argument(
        "--max-windows", type=int, default=6, help="--stable: at most this many windows a level"
    )

    cmp = p.add_argument_group("comparison")
    cmp.add_argument(
        "--compare",
        metavar="TARGET_B",
        help="load TARGET and TARGET_B alternately (A, B at each level, same rows) and print B/A ratios",
    )
    cmp.add_argument("--model-b", help="model name on TARGET_B (default: --model)")
    cmp.add_argument("--version-b", help="model version on TARGET_B (default: --version)")

    drift = p.add_argument_group("drift injection (monitoring tests)")
    drift.add_argument(
        "--drift",
        type=_drift,
        action="append",
        default=[],
        metavar="FEATURE:OP=X",
        help="shift=X adds X to a numeric feature, scale=X multiplies it (repeatable), e.g. V14:shift=2.5",
    )
    drift.add_argument(
        "--drift-from",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="send drifted rows only from this long after the run's start (default: from the start)",
    )

    add_json(p, deprecated_path=True)  # --json PATH wrote the results to a file: now --json-out PATH
    add_html(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the load test described by ``args``: exit 0; an ``OnyxserveError`` (``onyxserve.cli.run``
    maps it: 1 if the run stopped early or a target could not be used, 2 on bad use, 130 on
    Ctrl-C) once what was measured is printed and written."""
    problem = _check_args(args)
    if problem:
        raise UsageError(problem)
    if args.html:
        try:
            from . import report as html_report  # matplotlib: the 'reports' extra
        except ImportError as exc:
            raise UsageError(f"--html needs matplotlib (pip install 'onyxserve[reports]'): {exc}") from exc
    text = sys.stderr if args.json else sys.stdout  # with --json, stdout holds only the report

    names = ["A", "B"] if args.compare else [""]
    targets = [args.target] + ([args.compare] if args.compare else [])
    models = [args.model] + ([args.model_b or args.model] if args.compare else [])
    versions = [args.version] + (
        [args.version if args.version_b is None else args.version_b] if args.compare else []
    )
    plans = []
    for name, target, model, version in zip(names, targets, models, versions):
        plan = _prepare(args, target, model, version)
        plans.append(plan)
        _describe(args, name, target, model, version, plan, text)

    report = _new_report(args, targets, models, versions, plans)
    for path, kind in ((args.json_out, "--json-out"), (args.html, "--html")):
        if path:
            try:  # fail now, not after the first window
                _write_json(path, report) if kind == "--json-out" else _write_text(
                    path, "<p>run in progress</p>\n"
                )
            except OSError as exc:
                raise UsageError(f"cannot write {kind} {path}: {exc}") from exc
    parts = _target_parts(report)

    def on_result(i: int, result) -> None:
        level = f"concurrency {result.concurrency}" if result.mode == "closed" else f"rate {result.rate:g}/s"
        prefix = f"  {names[i]} " if args.compare else "  "
        windows = ""
        if result.stability:
            s = result.stability
            windows = f", {s['windows']} windows, {'stable' if s['stabilized'] else 'NOT stable'}"
        print(
            f"{prefix}{level}: {result.throughput_rps:,.0f} req/s, p99 {result.latency_ms['p99']:.3f} ms, "
            f"{result.error_count} errors{windows}",
            file=text,
            flush=True,
        )
        if result.client_start_late_ms > args.warmup * 1e3:
            print(
                f"  warning: a load process started {result.client_start_late_ms:.0f} ms late, past the "
                "warm-up: the client was short of CPU, this window under-states the load",
                file=text,
                flush=True,
            )
        parts[i]["results"].append(result.to_dict())
        if result.aborted:
            parts[i]["aborted"] = parts[i]["aborted"] or result.aborted
            where = f"{names[i]} ({targets[i]}): " if args.compare else ""
            report["aborted"] = report["aborted"] or where + result.aborted
        if args.compare:
            report["ratios"] = _ratios(parts)
        if args.json_out:
            _write_json(args.json_out, report)

    from . import api

    interrupted = False
    try:
        api.run_levels(
            list(zip(targets, plans)),
            args.rate if args.rate is not None else (args.concurrency or [1, 4, 16, 64]),
            args.duration,
            mode="open" if args.rate is not None else "closed",
            arrival=args.arrival,
            warmup_s=args.warmup,
            processes=args.processes,
            connections=args.connections,
            timeout_s=args.deadline,
            max_inflight=args.max_inflight,
            seed=args.seed,
            stable=args.stable,
            max_windows=args.max_windows,
            on_result=on_result,
        )
    except RuntimeError as exc:  # a load process did not start
        report["aborted"] = str(exc)
    except KeyboardInterrupt:  # keep what was measured; Interrupted below exits 130
        report["aborted"] = "interrupted"
        interrupted = True

    _summary(args, names, targets, parts, report, text)
    if args.json:
        print(json.dumps(report, indent=2))
    if args.json_out:
        _write_json(args.json_out, report)
        print(f"results written to {args.json_out}", file=text)
    if args.html:
        html_report.write_html(report, args.html)
        print(f"HTML report written to {args.html}", file=text)
    if report["aborted"]:
        written = " and ".join(str(p) for p in (args.json_out, args.html) if p)
        raise (Interrupted if interrupted else OnyxserveError)(
            f"run stopped early: {report['aborted']}; the results measured so far are above"
            + (f" and in {written}" if written else "")
        )
    return 0


def _check_args(args: argparse.Namespace) -> str | None:
    if args.rate is not None and args.concurrency is not None:
        return "give --concurrency (closed loop) or --rate (open loop), not both"
    if args.processes < 1 or args.connections < 1 or args.rows_per_request < 1:
        return "--processes, --connections and --rows-per-request must be >= 1"
    if args.stable is not None and args.max_windows < 3:
        return "--max-windows must be >= 3 with --stable (the check looks at the last 3 windows)"
    if args.drift_from and not args.drift:
        return "--drift-from needs --drift"
    if (args.model_b or args.version_b is not None) and not args.compare:
        return "--model-b and --version-b go with --compare TARGET_B"
    return None


def _prepare(args: argparse.Namespace, target: str, model: str, version: str):
    """The request plan for one target; an OnyxserveError naming the target when it cannot be had."""
    import grpc

    from . import api

    try:
        return api.prepare(
            target,
            model,
            version,
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
            drift=args.drift,
            drift_from_s=args.drift_from,
        )
    except grpc.RpcError as exc:
        hint = ""
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            hint = (
                " (is the server up at that address, and speaking plaintext? the harness does not speak TLS)"
            )
        raise OnyxserveError(
            f"cannot get ModelMetadata of '{model}' from {target}: {exc.code().name}: {exc.details()}{hint}"
        ) from None
    except (OSError, ValueError) as exc:  # the rows or categories given cannot be used
        raise UsageError(str(exc)) from exc


def _describe(
    args: argparse.Namespace, name: str, target: str, model: str, version: str, plan, text: IO[str]
) -> None:
    form = plan.form
    shape = (
        "per-feature tensors"
        if form.per_feature
        else f"'{form.input_name}' {form.datatype} [N,{len(plan.workload.features)}]"
    )
    drift = ""
    if plan.drift:
        ops = ", ".join(f"{d.feature} x{d.scale:g}{d.shift:+g}" for d in plan.drift)
        drift = f"  drift {ops}" + (f" from {plan.drift_from_s:g} s" if plan.drift_from_s else "")
    print(
        f"{name + ': ' if name else ''}target {target}  model {model}{':' + version if version else ''}  "
        f"rows from {plan.source} ({plan.workload.n_rows})  {shape}  {form.rows_per_request} row(s)/request  "
        f"{len(plan.pool)} distinct requests  {args.processes} processes x {args.connections} channels{drift}",
        file=text,
    )


def _new_report(args, targets, models, versions, plans) -> dict[str, Any]:
    form, plan = plans[0].form, plans[0]
    open_loop = args.rate is not None
    config = {
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "timeout_s": args.deadline,
        "processes": args.processes,
        "connections": args.connections,
        "rows_per_request": form.rows_per_request,
        "per_feature": form.per_feature,
        "input_name": None if form.per_feature else form.input_name,
        "datatype": form.datatype,
        "outputs": list(form.outputs),
        "rows_source": plan.source,
        "arrival": args.arrival if open_loop else None,
        "stable": args.stable,
        "max_windows": args.max_windows if args.stable else None,
    }
    common = {
        "config": config,
        "drift": plan.drift_dict(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "aborted": None,
    }
    mode = "open" if open_loop else "closed"
    if not args.compare:
        return {
            "target": targets[0],
            "model": models[0],
            "version": versions[0],
            "mode": mode,
            **common,
            "results": [],
        }
    parts = [
        {
            "name": n,
            "target": t,
            "model": m,
            "version": v,
            "rows_source": p.source,
            "results": [],
            "aborted": None,
        }
        for n, t, m, v, p in zip("AB", targets, models, versions, plans)
    ]
    return {"mode": "compare", "load_mode": mode, **common, "targets": parts, "ratios": []}


def _target_parts(report: dict[str, Any]) -> list[dict[str, Any]]:
    return report.get("targets", [report])


def _ratio(b: float | None, a: float | None) -> float | None:
    return b / a if a and b is not None and a > 0 else None


def _ratios(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """B/A per load level both targets finished."""
    out = []
    for a, b in zip(parts[0]["results"], parts[1]["results"]):
        load = f"c={a['concurrency']}" if a["mode"] == "closed" else f"{a['rate']:g}/s"
        out.append(
            {
                "load": load,
                "throughput_b_over_a": _ratio(b["throughput_rps"], a["throughput_rps"]),
                "p50_b_over_a": _ratio(b["latency_ms"]["p50"], a["latency_ms"]["p50"]),
                "p99_b_over_a": _ratio(b["latency_ms"]["p99"], a["latency_ms"]["p99"]),
            }
        )
    return out


def _summary(args, names, targets, parts, report, text: IO[str]) -> None:
    from .stats import format_table_dicts

    for name, target, part in zip(names, targets, parts):
        results = part["results"]
        print(file=text)
        if name:
            print(f"{name}: {target}", file=text)
        print(format_table_dicts(results), file=text)
        if results and results[-1]["outputs"]:
            print(f"outputs: {results[-1]['outputs']}", file=text)
        details = {k: v for r in results for k, v in r["error_details"].items()}
        for code, message in sorted(details.items()):
            print(f"first {code} message: {message}", file=text)
        cpu = [
            (r["client_cpu_us_per_request"], r["client_cpu_cores"])
            for r in results
            if r["client_cpu_us_per_request"]
        ]
        if cpu:
            per_request = ", ".join(f"{us:.0f}" for us, _ in cpu)
            cores = ", ".join(f"{c:.2f}" if c is not None else "-" for _, c in cpu)
            print(f"harness CPU (all load processes, per window): {per_request} us/request; {cores} cores", file=text)
    if args.compare and report["ratios"]:
        print(file=text)
        print("B/A ratios (throughput, p50, p99):", file=text)
        for r in report["ratios"]:
            cells = [r[k] for k in ("throughput_b_over_a", "p50_b_over_a", "p99_b_over_a")]
            shown = ", ".join("-" if v is None else f"{v:.2f}" for v in cells)
            print(f"  {r['load']}: {shown}", file=text)


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def standalone(argv: list[str] | None = None) -> int:
    """Run ``loadtest`` without the rest of the ``onyxserve`` command (``python -m``)."""
    from onyxserve.cli import new_parser, run

    parser = new_parser()
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser, ["loadtest", *(sys.argv[1:] if argv is None else argv)])
