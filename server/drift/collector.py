"""Prometheus export of the drift counts and tests, read at scrape time.

Counters: the rows by bin (every worker's files summed, retired counts included, so a reload
never makes them drop). Gauges, per series and view (``window``: the last closed window, tested
once and cached; ``since_load``): p-value, BH-adjusted q-value, statistic and the drifted flag,
computed by this process's monitors from the counts summed over every worker -- any worker
answering a scrape gives the same numbers, so Prometheus needs no sum across workers (across
replicas: ``max by``)."""

from __future__ import annotations

from pathlib import Path

from onyxserve.server.drift.counts import shared_sources
from onyxserve.server.drift.monitor import LIVE, DriftMonitor, local_sources


class DriftCollector:
    """Exports every version's counts as counters, read when scraped: this process's monitors,
    or, in multiprocess mode, every worker's count files summed by label set."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory

    def describe(self) -> list:
        return []  # the families depend on the models loaded: collected at scrape time only

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        features: dict[tuple[str, ...], int] = {}
        predictions: dict[tuple[str, ...], int] = {}
        sources = shared_sources(self.directory) if self.directory is not None else local_sources()
        for layout, counts in sources:
            model, version = layout["model"], layout["version"]
            for s in layout["series"]:
                values = counts[s["offset"] : s["offset"] + len(s["bins"])]
                # fine bins summed into a few runs (plan.Series.groups); older layouts: every bin
                groups = s.get("groups") or [(b, k, k + 1) for k, b in enumerate(s["bins"])]
                for label, start, stop in groups:
                    value = int(values[start:stop].sum())
                    if s["kind"] == "feature":
                        key = (model, version, s["name"], label)
                        features[key] = features.get(key, 0) + value
                    else:
                        key = (model, version, s["name"], s["class"], label)
                        predictions[key] = predictions.get(key, 0) + value
        f = CounterMetricFamily("onyxserve_drift_feature_rows",
                                "Rows by the bin of a raw feature value, since the version loaded (drift).",
                                labels=("model", "version", "feature", "bin"))
        for key, value in features.items():
            f.add_metric(key, value)
        p = CounterMetricFamily("onyxserve_drift_prediction_rows",
                                "Rows by predicted label, probability bin (per class) or value bin (drift).",
                                labels=("model", "version", "output", "class", "bin"))
        for key, value in predictions.items():
            p.add_metric(key, value)
        yield f
        yield p
        yield from _gauges(list(LIVE))


SERIES = ("model", "version", "kind", "series", "view")


def _gauges(monitors: list[DriftMonitor]):
    from prometheus_client.core import GaugeMetricFamily

    pv = GaugeMetricFamily("onyxserve_drift_p_value", "Two-sample test p-value of a series against the"
                           " training baseline (view: window = the last closed window, or since_load).", labels=SERIES)
    qv = GaugeMetricFamily("onyxserve_drift_q_value", "Benjamini-Hochberg adjusted p-value across the"
                           " version's series (drifted when at most the server's drift_alpha).", labels=SERIES)
    st = GaugeMetricFamily("onyxserve_drift_statistic", "The test's statistic (test: ks = the largest CDF gap;"
                           " chi2 = Pearson's chi-square).", labels=(*SERIES, "test"))
    dr = GaugeMetricFamily("onyxserve_drift_drifted", "1 when the series is flagged as drifted.", labels=SERIES)
    wr = GaugeMetricFamily("onyxserve_drift_window_rows", "Rows of the last closed drift window.", labels=("model", "version"))
    we = GaugeMetricFamily("onyxserve_drift_window_end_timestamp_seconds",
                           "Unix time the last drift window closed.", labels=("model", "version"))
    for monitor in monitors:
        m = monitor.manifest
        if m is None or not monitor.series():
            continue
        views = [("since_load", monitor.tests.run(monitor.totals()[0]))]
        closed = list(monitor.closed)
        if closed:
            views.append(("window", monitor.window_results(closed[-1])))
            wr.add_metric((m.name, m.version), closed[-1].rows)
            we.add_metric((m.name, m.version), closed[-1].end_unix)
        for view, r in views:
            for i, s in enumerate(monitor.series()):
                key = (m.name, m.version, s.kind, s.name if not s.cls else f"{s.name}[{s.cls}]", view)
                if r.p_value[i] == r.p_value[i]:  # not NaN: tested
                    pv.add_metric(key, float(r.p_value[i]))
                    st.add_metric((*key, r.test[i]), float(r.statistic[i]))
                if r.q_value[i] == r.q_value[i]:
                    qv.add_metric(key, float(r.q_value[i]))
                dr.add_metric(key, 1.0 if r.drifted[i] else 0.0)
    yield from (pv, qv, st, dr, wr, we)
