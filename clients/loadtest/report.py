"""The load test as a self-contained HTML page (``--html``), built from the JSON results with
``onyxserve.html_report.Report``: latency over time, percentile curves, throughput against the
load, the results table and errors by code; for a comparison, both targets side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

# html_report's pyplot: imported there after selecting the display-less backend
from onyxserve.html_report import Report, plt

_TAIL_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def targets_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-target parts of a results dict: a comparison's ``targets``, else the report."""
    return report.get("targets", [report])


def _label(t: dict[str, Any]) -> str:
    return f"{t.get('name', '')} {t['target']} {t['model']}".strip()


def _load(r: dict[str, Any]) -> str:
    return f"c={r['concurrency']}" if r["mode"] == "closed" else f"{r['rate']:g}/s"


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def write_html(report: dict[str, Any], path: str | Path) -> Path:
    targets = targets_of(report)
    config = report.get("config", {})
    mode = report.get("load_mode", report.get("mode"))
    subtitle = (
        f"{' vs '.join(_label(t) for t in targets)} | {mode} loop | started {report.get('started_at', '')} | "
        f"warm-up {config.get('warmup_s')} s, window {config.get('duration_s')} s, "
        f"{config.get('processes')} processes x {config.get('connections')} channels, "
        f"{config.get('rows_per_request')} row(s)/request, rows from {config.get('rows_source')}"
    )
    page = Report("Load test" + (" comparison" if len(targets) > 1 else ""), subtitle)
    aborted = report.get("aborted")
    if aborted:
        page.add_text(f"The run stopped early: {aborted}. What was measured before is below.")
    if report.get("drift"):
        d = report["drift"]
        parts = ", ".join(f"{f['feature']}: x*{f['scale']:g}{f['shift']:+g}" for f in d["features"])
        page.add_text(f"Drift injected: {parts}, from {d['from_s']:g} s after the start.")

    page.add_heading("Results")
    _results_table(page, targets)
    if report.get("ratios"):
        page.add_heading("Ratios (B / A)")
        page.add_table(
            ["load", "throughput B/A", "p50 B/A", "p99 B/A"],
            [
                [r["load"], _num(r["throughput_b_over_a"]), _num(r["p50_b_over_a"]), _num(r["p99_b_over_a"])]
                for r in report["ratios"]
            ],
        )
    if any(t["results"] for t in targets):
        page.add_heading("Latency and throughput over time")
        page.add_figure(
            _over_time(targets, report.get("drift")),
            "per second of each measured window, by send time; gaps are warm-ups and pauses",
        )
        page.add_heading("Latency percentiles")
        page.add_figure(_percentile_curves(targets), "latency at each percentile, one line per load level")
        page.add_heading("Throughput against " + ("concurrency" if mode == "closed" else "offered rate"))
        page.add_figure(_against_load(targets, mode), "one point per load level")
    page.add_heading("Errors by code")
    _errors_table(page, targets)
    return page.write(path)


def _results_table(page: Report, targets: list[dict[str, Any]]) -> None:
    head = ["target", "load", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors", "windows"]
    rows = []
    for t in targets:
        for r in t["results"]:
            lat = r["latency_ms"]
            s = r.get("stability")
            windows = "1" if not s else f"{s['windows']} ({'stable' if s['stabilized'] else 'not stable'})"
            rows.append(
                [t.get("name") or t["target"], _load(r), _num(r["throughput_rps"])]
                + [_num(lat[k]) for k in ("p50", "p90", "p99", "p99.9")]
                + [r["error_count"], windows + (" aborted" if r.get("aborted") else "")]
            )
    if rows:
        page.add_table(head, rows)
    else:
        page.add_text("No window finished.")


def _errors_table(page: Report, targets: list[dict[str, Any]]) -> None:
    rows = [
        [t.get("name") or t["target"], _load(r), code, count, r.get("error_details", {}).get(code, "")]
        for t in targets
        for r in t["results"]
        for code, count in r["errors"].items()
    ]
    if rows:
        page.add_table(["target", "load", "code", "count", "first message"], rows)
    else:
        page.add_text("No errors.")


def _segments(line: dict[str, list[float]], key: str) -> tuple[list[float], list[float]]:
    """x (bin middles) and y of one timeline series, NaN between bins that are not adjacent
    (separate windows), so the plot does not join them."""
    xs: list[float] = []
    ys: list[float] = []
    for t, v in zip(line["t_s"], line[key]):
        if xs and t + 0.5 - xs[-1] > 1.5:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(t + 0.5)
        ys.append(_num(v))
    return xs, ys


def _over_time(targets: list[dict[str, Any]], drift: dict[str, Any] | None):
    n = len(targets)
    fig, axes = plt.subplots(2, n, figsize=(6.5 * n, 6), sharex=True, sharey="row", squeeze=False)
    top = 1.0
    for col, t in enumerate(targets):
        lat_ax, rps_ax = axes[0][col], axes[1][col]
        for r in t["results"]:
            line = r.get("timeline") or {}
            if not line.get("t_s"):
                continue
            lat_ax.plot(*_segments(line, "p99_ms"), color="tab:red", marker=".")
            lat_ax.plot(*_segments(line, "p50_ms"), color="tab:blue", marker=".")
            xs, ys = _segments(line, "requests_per_s")
            rps_ax.plot(xs, ys, color="tab:green", marker=".")
            rps_ax.annotate(_load(r), (xs[0], ys[0]), fontsize=7)
            top = max([top, *line["requests_per_s"]])
        lat_ax.plot([], [], color="tab:blue", label="p50")
        lat_ax.plot([], [], color="tab:red", label="p99")
        lat_ax.set_yscale("log")
        _plain_log_y(lat_ax)
        lat_ax.set_title(_label(t), fontsize=9)
        lat_ax.set_ylabel("latency ms")
        lat_ax.legend(loc="upper left", fontsize=8)
        rps_ax.set_ylabel("OK requests/s")
        rps_ax.set_xlabel("seconds from the start")
        if drift and drift.get("from_s", 0) > 0:
            for ax in (lat_ax, rps_ax):
                ax.axvline(drift["from_s"], color="gray", linestyle=":")
        for ax in (lat_ax, rps_ax):
            ax.grid(alpha=0.3)
    axes[1][0].set_ylim(0, top * 1.1)  # the row shares y: after every column is drawn
    return fig


_PLAIN = FuncFormatter(lambda v, _: f"{v:g}")


def _plain_log_y(ax) -> None:
    """Log latency axis labelled 0.5, 1, 2, 5 ...: the default labels only powers of ten, so a
    run whose latencies sit between 0.5 and 1.5 ms showed a single label ("10^0")."""
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(_PLAIN)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _tail_x(p: float) -> float:
    """Percentile -> 1 / (1 - p): the tail spreads out on a log axis."""
    return 1.0 / max(1e-6, 1.0 - p / 100.0)


def _percentile_curves(targets: list[dict[str, Any]]):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = ("-", "--", ":", "-.")
    cmap = plt.get_cmap("viridis")
    for ti, t in enumerate(targets):
        results = t["results"]
        for ri, r in enumerate(results):
            curve = r.get("latency_curve") or {}
            points = [
                (_tail_x(p), v)
                for p, v in zip(curve.get("percentile", []), curve.get("latency_ms", []))
                if v is not None and p < 100.0
            ]
            if not points:
                continue
            xs, ys = zip(*points)
            label = f"{t.get('name') or t['target']} {_load(r)}"
            color = cmap(ri / max(1, len(results) - 1))
            ax.plot(xs, ys, linestyle=styles[ti % len(styles)], color=color, marker=".", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xticks([_tail_x(p) for p in _TAIL_TICKS], [f"{p:g}%" for p in _TAIL_TICKS])
    ax.minorticks_off()
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency ms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def _against_load(targets: list[dict[str, Any]], mode: str):
    fig, (rps_ax, lat_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for t in targets:
        rs = t["results"]
        if not rs:
            continue
        x = [r["concurrency"] if mode == "closed" else r["rate"] for r in rs]
        name = t.get("name") or t["target"]
        rps_ax.plot(x, [r["throughput_rps"] for r in rs], marker="o", label=name)
        lat_ax.plot(x, [_num(r["latency_ms"]["p99"]) for r in rs], marker="o", label=f"{name} p99")
        lat_ax.plot(
            x, [_num(r["latency_ms"]["p50"]) for r in rs], marker=".", linestyle="--", label=f"{name} p50"
        )
    xlabel = "concurrency" if mode == "closed" else "offered rate (requests/s)"
    loads = sorted({r["concurrency"] if mode == "closed" else r["rate"] for t in targets for r in t["results"]})
    for ax in (rps_ax, lat_ax):
        ax.set_xscale("log")
        # one labelled tick per load level measured (log minor labels read "2x10^0")
        ax.xaxis.set_major_locator(FixedLocator(loads))
        ax.xaxis.set_major_formatter(_PLAIN)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if mode == "open":
        top = max((r["rate"] for t in targets for r in t["results"]), default=1)
        rps_ax.plot([1, top], [1, top], color="gray", linestyle=":", label="offered")
    rps_ax.set_ylabel("OK requests/s")
    lat_ax.set_ylabel("latency ms")
    lat_ax.set_yscale("log")
    _plain_log_y(lat_ax)
    return fig
