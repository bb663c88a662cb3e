"""``onyxserve shadow-report``: how a model's shadow version compares with production on the
traffic a running server mirrored to it (``GET /v2/models/{name}/shadow``), as text, JSON or a
self-contained HTML page (onyxserve.html_report)."""

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
    p = add_command(subparsers, "shadow-report", "compare a model's shadow version with production (live traffic)")
    p.add_argument("model", help="model name")
    add_server_url(p)
    add_html(p)
    add_json(p)
    add_server_timeout(p, default=10.0)
    p.set_defaults(func=run)


def fetch(url: str, model: str, timeout_s: float) -> dict[str, Any]:
    """The report; an OnyxserveError with the server's message when it cannot be had."""
    return get_json(f"{url.rstrip('/')}/v2/models/{urllib.parse.quote(model, safe='')}/shadow", timeout_s)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) lines shared by the text and HTML forms."""
    rows = [
        ("production version", report["production_version"]),
        ("shadow version", report["shadow_version"] + ("" if report["active"] else " (no longer shadow)")),
        ("task", report["task"]),
        ("since", report["since"]),
        ("requests mirrored / dropped / errored / in flight",
         " / ".join(str(report["requests"][k]) for k in ("mirrored", "dropped", "errored", "in_flight"))),
        ("rows mirrored / dropped / errored", " / ".join(str(report["rows"][k]) for k in ("mirrored", "dropped", "errored"))),
    ]
    if "labels" in report:
        labels = report["labels"]
        rate = labels["agreement_rate"]
        rows.append(("label agreement", "-" if rate is None else f"{rate:.4%} ({labels['agree']} agree, "
                                                                    f"{labels['disagree']} disagree)"))
        diff = report["probability_diff"]
        rows.append((f"|dP| of the {diff['of']}: mean / p50 / p90 / p99 / max",
                     " / ".join(_num(diff[k]) for k in ("mean", "p50", "p90", "p99", "max"))))
    for key, title in (("value_diff", "|value difference|"), ("relative_diff", "relative difference")):
        if key in report:
            d = report[key]
            rows.append((f"{title}: mean / p50 / p90 / p99 / max",
                         " / ".join(_num(d[k]) for k in ("mean", "p50", "p90", "p99", "max"))))
    lat = report["shadow_latency_seconds"]
    rows.append(("shadow latency ms: p50 / p99 / max",
                 " / ".join("-" if lat[k] is None else f"{lat[k] * 1e3:.3g}" for k in ("p50", "p99", "max"))))
    for kind, entry in report["errors"].items():
        rows.append((f"errors: {kind}", f"{entry['count']} (last: {entry['last_message']})"))
    return rows


def write_html(report: dict[str, Any], path: Path) -> Path:
    from onyxserve.html_report import Report, plt

    page = Report(f"Shadow evaluation: {report['model']}",
                  f"production {report['production_version']} vs shadow {report['shadow_version']}; {report['scope']}")
    page.add_heading("Summary")
    page.add_table(("figure", "value"), summary_rows(report))
    for key, title, log_x in (
        ("probability_diff", "|P_shadow - P_production| per row", False),
        ("value_diff", "|value_shadow - value_production| per row", True),
        ("relative_diff", "relative difference per row", True),
    ):
        bins = report.get(key, {}).get("histogram") or []
        if not bins:
            continue
        fig, ax = plt.subplots(figsize=(8, 3.2))
        lows = [b[0] for b in bins]
        widths = [max(b[1] - b[0], 1e-12) for b in bins]
        ax.bar(lows, [b[2] for b in bins], width=widths, align="edge", color="#4a78b5")
        if log_x and min(lows) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(title)
        ax.set_ylabel("rows")
        page.add_heading(title)
        page.add_figure(fig, f"{report['rows']['mirrored']} rows compared since {report['since']}")
    return page.write(path)


def run(args: argparse.Namespace) -> int:
    report = fetch(args.url, args.model, args.timeout)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(f"shadow evaluation of model {report['model']}")
        width = max(len(k) for k, _ in summary_rows(report))
        for key, value in summary_rows(report):
            print(f"  {key:<{width}}  {value}")
    if args.html:
        print(f"wrote {write_html(report, args.html)}", file=sys.stderr)
    return 0
