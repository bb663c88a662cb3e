"""Prometheus export of the drift counts, read at scrape time."""

from __future__ import annotations

from pathlib import Path

from onyxserve.server.drift.counts import shared_sources
from onyxserve.server.drift.monitor import local_sources


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
