"""``onyxserve drift-report``: fetch a served version's drift report and print or render it.

    onyxserve drift-report --url http://127.0.0.1:8000 MODEL [--version V] [--html drift.html]
        [--json | --json-out drift.json] [--timeout 30]

The server computes the report (GET /v2/models/MODEL[/versions/V]/drift, see server/drift/report.py);
this command prints a summary and renders a self-contained HTML page: baseline vs live bars per
feature, the most drifted first, for the counts since load and for the last closed window (the
open one while none has closed yet).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from onyxserve.cli._options import add_command, add_html, add_json, add_server_timeout, add_server_url
from onyxserve.cli._server import get_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "drift-report", "a served model's drift against its training baseline")
    p.add_argument("model", help="model name")
    add_server_url(p)
    p.add_argument("--version", default="", help="model version (default: the version serving by default)")
    p.add_argument("--psi-threshold", type=float, help="flag PSI above this (default: the server's setting)")
    add_html(p)
    add_json(p, deprecated_path=True)  # --json PATH wrote the report to a file: now --json-out PATH
    p.add_argument("--max-plots", type=int, default=40, help="plot at most this many features (most drifted)")
    add_server_timeout(p, default=30.0)
    p.set_defaults(func=run)


def fetch(url: str, model: str, version: str = "", psi_threshold: float | None = None,
          timeout: float = 30.0) -> dict[str, Any]:
    path = f"/v2/models/{urllib.parse.quote(model, safe='')}"
    if version:
        path += f"/versions/{urllib.parse.quote(version, safe='')}"
    query = f"?psi_threshold={psi_threshold}" if psi_threshold is not None else ""
    return get_json(url.rstrip("/") + path + "/drift" + query, timeout)


def run(args: argparse.Namespace) -> int:
    report = fetch(args.url, args.model, args.version, args.psi_threshold, args.timeout)
    print(json.dumps(report, indent=2) if args.json else summary_text(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.html:
        path = write_html(report, args.html, args.max_plots)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)  # stdout holds only the JSON
    return 0


def _psi(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def summary_text(report: dict[str, Any]) -> str:
    since, window = report["since_load"], _window(report)
    lines = [
        f"{report['model']} version {report['version']}: {since['rows']} rows since load "
        f"({report['workers']} worker(s)), {window['rows']} in {_window_text(window)}; "
        f"flagged at adjusted p <= {report['alpha']} ({report['correction']})",
        f"drifted since load: {', '.join(since['drifted_features'] + since['drifted_predictions']) or 'none'}",
        f"drifted in {_window_text(window)}: "
        f"{', '.join(window['drifted_features'] + window['drifted_predictions']) or 'none'}",
    ]
    width = max((len(r["name"]) for r in since["features"] + since["predictions"]), default=8)
    for r in since["features"] + since["predictions"]:
        lines.append(f"  {r['name']:<{width}}  {r['test']:>4} {_psi(r['statistic']):>8}  p {_p(r['p_value']):>8}"
                     f"  q {_p(r['q_value']):>8}  psi {_psi(r['psi']):>8}  rows {r['rows']:>8}"
                     + ("  DRIFTED" if r["drifted"] else ""))
    for name, why in report.get("unmonitored", {}).items():
        lines.append(f"  {name:<{width}}  not monitored: {why}")
    return "\n".join(lines)


def _window(report: dict[str, Any]) -> dict[str, Any]:
    """The last closed window; the open one while none has closed (older servers: "window")."""
    return report.get("window") or report.get("current_window") or {}


def _window_text(w: dict[str, Any]) -> str:
    state = "window" if w.get("closed", True) else "open window"
    return f"{state} {w.get('index', '')} ({w.get('seconds', 0):.0f}s)".replace("  ", " ")


def _rate_text(r: dict[str, Any]) -> str:
    if "unknown_rate" in r:
        text = f"unknown {r['unknown_rate']:.2%} (baseline {r['baseline_unknown_rate']:.2%})"
        if "missing_rate" in r:
            text += f", missing {r['missing_rate']:.2%} (baseline {r['baseline_missing_rate']:.2%})"
        return text
    if "missing_rate" in r:
        return f"missing {r['missing_rate']:.2%} (baseline {r['baseline_missing_rate']:.2%})"
    return ""


PLOT_RUNS = 20  # fine bins (hundreds) are summed into this many runs for the bar plots


def _runs(r: dict[str, Any]) -> tuple[list[str], list[tuple[int, int]]]:
    """Bar labels and (start, stop) slot ranges: every slot while few, else the inner bins
    summed into PLOT_RUNS runs of consecutive bins beside below / above / missing."""
    bins, edges = r["bins"], r.get("edges") or []
    inner = len(edges) - 1
    if inner <= PLOT_RUNS:
        return list(bins), [(k, k + 1) for k in range(len(bins))]
    first = 1 if bins[0] == "below" else 0
    cuts = [round(inner * g / PLOT_RUNS) for g in range(PLOT_RUNS + 1)]
    labels = ["below"] if first else []
    ranges = [(0, 1)] if first else []
    for g in range(PLOT_RUNS):
        labels.append(f"[{edges[cuts[g]]:.3g}, {edges[cuts[g + 1]]:.3g}{']' if g == PLOT_RUNS - 1 else ')'}")
        ranges.append((first + cuts[g], first + cuts[g + 1]))
    labels += bins[first + inner :]  # above, missing
    ranges += [(k, k + 1) for k in range(first + inner, len(bins))]
    return labels, ranges


def _bars(r: dict[str, Any], window: dict[str, Any] | None):
    import numpy as np

    from onyxserve.html_report import plt

    bins, ranges = _runs(r)

    def summed(shares: list[float]) -> list[float]:
        return [sum(shares[a:b]) for a, b in ranges]

    x = np.arange(len(bins))
    series = [("baseline", summed(r["baseline"]), "#999999"), ("live since load", summed(r["live"]), "#1f77b4")]
    if window is not None and window["rows"]:
        series.append(("live, last window", summed(window["live"]), "#ff7f0e"))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(11, 1.2 + 0.55 * len(bins)), 2.8))
    for k, (label, values, color) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label, color=color)
    ax.set_xticks(x, bins, rotation=45 if len(bins) > 4 else 0, ha="right" if len(bins) > 4 else "center",
                  fontsize=7)
    ax.set_ylabel("share of rows")
    state = "DRIFTED" if r["drifted"] else "ok"
    ax.set_title(f"{r['name']}: {r['test']} {_psi(r['statistic'])}, p {_p(r['p_value'])} ({state})", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def write_html(report: dict[str, Any], path: Path, max_plots: int = 40) -> Path:
    from onyxserve.html_report import Report

    since, window = report["since_load"], _window(report)
    windowed = {r["name"]: r for r in window.get("features", []) + window.get("predictions", [])}
    ws = report.get("window_settings", {})
    page = Report(
        f"Drift: {report['model']} version {report['version']}",
        f"{since['rows']} rows since the version loaded ({since['seconds']:.0f}s, {report['workers']} worker(s));"
        f" {_window_text(window)}: {window.get('rows', 0)} rows (windows close after {ws.get('seconds', 0):.0f}s"
        f" or {ws.get('rows') or 'any number of'} rows); baseline: {report['baseline_rows']} training rows.",
    )
    page.add_text(f"Drifted: adjusted p-value at most {report['alpha']} ({report['correction']}), and at least"
                  f" the rows the test needs. Tests: " + "; ".join(f"{k}: {v}" for k, v in report["tests"].items())
                  + f". PSI (secondary, threshold {report['psi_threshold']}): smoothing {report['smoothing']}.")
    drifted = since["drifted_features"] + since["drifted_predictions"]
    page.add_text("Drifted since load: " + (", ".join(drifted) if drifted else "none") + ".")
    header = ["feature", "type", "test", "statistic", "p since load", "q since load", "p window", "JS distance",
              "Wasserstein", "PSI", "drifted", "rows", "rates vs baseline"]

    def row(r: dict[str, Any]) -> list[Any]:
        w = windowed.get(r["name"], {})
        return [r["name"], r["type"], r["test"], _psi(r["statistic"]), _p(r["p_value"]), _p(r["q_value"]),
                _p(w.get("p_value")), _psi(r["js_distance"]), _p(r.get("wasserstein")), _psi(r["psi"]),
                "yes" if r["drifted"] else "no", r["rows"], _rate_text(r)]

    page.add_heading("Features, most drifted first")
    page.add_table(header, [row(r) for r in since["features"]])
    page.add_heading("Predictions")
    page.add_table(header[:1] + header[2:-1], [row(r)[:1] + row(r)[2:-1] for r in since["predictions"]])
    if report.get("unmonitored"):
        page.add_heading("Not monitored")
        page.add_table(["name", "why"], list(report["unmonitored"].items()))
    page.add_heading("Distributions: baseline vs live")
    for r in since["features"][:max_plots] + since["predictions"]:
        page.add_figure(_bars(r, windowed.get(r["name"])), f"{r['name']}: {_rate_text(r)}".rstrip(": "))
    return page.write(path)
