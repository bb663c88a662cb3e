"""``onyxserve drift-report``: fetch a served version's drift report and print or render it.

    onyxserve drift-report --url http://127.0.0.1:8000 MODEL [--version V] [--html drift.html]
        [--json | --json-out drift.json] [--timeout 30]

The server computes the report (GET /v2/models/MODEL[/versions/V]/drift, see server/drift/report.py);
this command prints a summary and renders a self-contained HTML page: baseline vs live bars per
feature, the most drifted first, for the counts since load and for the recent window.
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


def summary_text(report: dict[str, Any]) -> str:
    since, window = report["since_load"], report["window"]
    lines = [
        f"{report['model']} version {report['version']}: {since['rows']} rows since load "
        f"({report['workers']} worker(s)), {window['rows']} in the last {window['seconds']:.0f}s; "
        f"PSI threshold {report['psi_threshold']}",
        f"drifted since load: {', '.join(since['drifted_features'] + since['drifted_predictions']) or 'none'}",
        f"drifted in the window: {', '.join(window['drifted_features'] + window['drifted_predictions']) or 'none'}",
    ]
    width = max((len(r["name"]) for r in since["features"] + since["predictions"]), default=8)
    for r in since["features"] + since["predictions"]:
        lines.append(f"  {r['name']:<{width}}  psi {_psi(r['psi']):>8}  rows {r['rows']:>8}"
                     + ("  DRIFTED" if r["drifted"] else ""))
    for name, why in report.get("unmonitored", {}).items():
        lines.append(f"  {name:<{width}}  not monitored: {why}")
    return "\n".join(lines)


def _rate_text(r: dict[str, Any]) -> str:
    if "unknown_rate" in r:
        return f"unknown {r['unknown_rate']:.2%} (baseline {r['baseline_unknown_rate']:.2%})"
    if "missing_rate" in r:
        return f"missing {r['missing_rate']:.2%} (baseline {r['baseline_missing_rate']:.2%})"
    return ""


def _bars(r: dict[str, Any], window: dict[str, Any] | None):
    import numpy as np

    from onyxserve.html_report import plt

    bins = r["bins"]
    x = np.arange(len(bins))
    series = [("baseline", r["baseline"], "#999999"), ("live since load", r["live"], "#1f77b4")]
    if window is not None and window["rows"]:
        series.append(("live, recent window", window["live"], "#ff7f0e"))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(min(11, 1.2 + 0.55 * len(bins)), 2.8))
    for k, (label, values, color) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label, color=color)
    ax.set_xticks(x, bins, rotation=45 if len(bins) > 4 else 0, ha="right" if len(bins) > 4 else "center",
                  fontsize=7)
    ax.set_ylabel("share of rows")
    state = "DRIFTED" if r["drifted"] else "ok"
    ax.set_title(f"{r['name']}: PSI {_psi(r['psi'])} ({state})", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def write_html(report: dict[str, Any], path: Path, max_plots: int = 40) -> Path:
    from onyxserve.html_report import Report

    since, window = report["since_load"], report["window"]
    windowed = {r["name"]: r for r in window["features"] + window["predictions"]}
    page = Report(
        f"Drift: {report['model']} version {report['version']}",
        f"{since['rows']} rows since the version loaded ({since['seconds']:.0f}s, {report['workers']} worker(s));"
        f" recent window: {window['rows']} rows over the last {window['seconds']:.0f}s"
        f" (configured {window['configured_seconds']:.0f}s); baseline: {report['baseline_rows']} training rows.",
    )
    page.add_text(f"PSI threshold {report['psi_threshold']} (flagged only with at least {report['min_rows']} rows);"
                  f" smoothing: {report['smoothing']}.")
    drifted = since["drifted_features"] + since["drifted_predictions"]
    page.add_text("Drifted since load: " + (", ".join(drifted) if drifted else "none") + ".")
    header = ["feature", "type", "PSI since load", "PSI window", "drifted", "rows", "rates vs baseline"]
    rows = [
        [r["name"], r["type"], _psi(r["psi"]), _psi(windowed.get(r["name"], {}).get("psi")),
         "yes" if r["drifted"] else "no", r["rows"], _rate_text(r)]
        for r in since["features"]
    ]
    page.add_heading("Features, most drifted first")
    page.add_table(header, rows)
    page.add_heading("Predictions")
    page.add_table(header[:1] + header[2:6],
                   [[r["name"], _psi(r["psi"]), _psi(windowed.get(r["name"], {}).get("psi")),
                     "yes" if r["drifted"] else "no", r["rows"]] for r in since["predictions"]])
    if report.get("unmonitored"):
        page.add_heading("Not monitored")
        page.add_table(["name", "why"], list(report["unmonitored"].items()))
    page.add_heading("Distributions: baseline vs live")
    for r in since["features"][:max_plots] + since["predictions"]:
        page.add_figure(_bars(r, windowed.get(r["name"])), f"{r['name']}: {_rate_text(r)}".rstrip(": "))
    return page.write(path)
