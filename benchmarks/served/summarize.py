"""Summarize the served-benchmark JSON files (written by ``onyxserve loadtest --json-out``) as
Markdown tables, and, when onyxserve results are present, its ratios against the better MLServer
configuration at each concurrency (throughput: higher is better; p99: lower is better).

Usage: ``python benchmarks/served/summarize.py RESULTS_DIR [RESULTS_DIR ...]``; with several
directories (repeated runs of compare.sh) every figure is the median over the runs.

File names: ``<server>-<config>-<model>.json`` (e.g. ``mlserver-batching-fraud_lr.json``,
``onyxserve-workers2-fraud_lr.json``).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def load(results_dir: Path) -> dict[tuple[str, str, str], dict]:
    runs = {}
    for path in sorted(results_dir.glob("*.json")):
        server, config, model = path.stem.split("-", 2)
        runs[(server, config, model)] = json.loads(path.read_text())
    return runs


def median_of(runs_list: list[dict[tuple[str, str, str], dict]]) -> dict[tuple[str, str, str], dict]:
    """Per (server, config, model, concurrency): the median of each figure over repeated runs."""
    if len(runs_list) == 1:
        return runs_list[0]
    merged: dict[tuple[str, str, str], dict] = {}
    for key in sorted({k for runs in runs_list for k in runs}):
        by_level: dict[int, list[dict]] = {}
        for runs in runs_list:
            for r in runs.get(key, {}).get("results", []):
                by_level.setdefault(r["concurrency"], []).append(r)
        results = []
        for level, rs in sorted(by_level.items()):
            errors: dict[str, int] = {}
            for r in rs:
                for code, n in r["errors"].items():
                    errors[code] = errors.get(code, 0) + n
            results.append({
                "concurrency": level,
                "throughput_rps": statistics.median(r["throughput_rps"] for r in rs),
                "latency_ms": {p: statistics.median(r["latency_ms"][p] for r in rs) for p in rs[0]["latency_ms"]},
                "errors": errors,
                "aborted": any(r.get("aborted") for r in rs),
            })
        merged[key] = {"results": results}
    return merged


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(runs: dict[tuple[str, str, str], dict]) -> str:
    lines = [
        (
            "| server | config | model | concurrency | req/s | p50 ms | p90 ms | p95 ms | p99 ms | p99.9 ms "
            "| errors |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (server, config, model), run in runs.items():
        for r in run["results"]:
            lat = r["latency_ms"]
            errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
            if r.get("aborted"):
                errors += " (aborted)"
            lines.append(
                f"| {server} | {config} | {model} | {r['concurrency']} | {_f(r['throughput_rps'], 0)} | "
                f"{_f(lat['p50'])} | {_f(lat['p90'])} | {_f(lat['p95'])} | {_f(lat['p99'])} | "
                f"{_f(lat['p99.9'])} | {errors} |"
            )
    return "\n".join(lines)


def ratios(runs: dict[tuple[str, str, str], dict]) -> str:
    """onyxserve vs the better MLServer config (by throughput at that concurrency)."""
    lines = [
        (
            "| model | onyxserve | concurrency | onyxserve req/s | best MLServer req/s (config) | throughput ratio | "
            "onyxserve p99 ms | that MLServer p99 ms | p99 ratio |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    found = False
    for (server, config, model), run in runs.items():
        if server != "onyxserve":
            continue
        for r in run["results"]:
            c = r["concurrency"]
            best = None
            for (s2, c2, m2), other in runs.items():
                if s2 != "mlserver" or m2 != model:
                    continue
                for o in other["results"]:
                    if o["concurrency"] == c and (
                        best is None or o["throughput_rps"] > best[1]["throughput_rps"]
                    ):
                        best = (c2, o)
            if best is None:
                continue
            found = True
            cfg, o = best
            tput = r["throughput_rps"] / o["throughput_rps"] if o["throughput_rps"] else None
            p99, op99 = r["latency_ms"]["p99"], o["latency_ms"]["p99"]
            lines.append(
                f"| {model} | {config} | {c} | {_f(r['throughput_rps'], 0)} | {_f(o['throughput_rps'], 0)} ({cfg}) | "
                f"{_f(tput)}x | {_f(p99)} | {_f(op99)} | {_f(p99 / op99 if p99 and op99 else None)} |"
            )
    return "\n".join(lines) if found else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    runs = median_of([load(Path(d)) for d in argv])
    if not runs:
        print(f"no results in {' '.join(argv)}", file=sys.stderr)
        return 1
    if len(argv) > 1:
        print(f"Medians over {len(argv)} runs.\n")
    print(table(runs))
    r = ratios(runs)
    if r:
        print()
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
