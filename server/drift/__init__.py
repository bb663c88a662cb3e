"""Drift monitoring: live feature and prediction distributions against the training baseline.

``plan``: what a version watches, from its manifest's baseline. ``counts``: where the counts
live (private memory, or shared files under ``--workers N``). ``monitor``: one version's counts,
fed by the compiled gather pass (features) and ``observe`` (predictions), with the snapshots of
the recent window. ``statistics``: the two-sample tests
(KS, chi-square), distances and the Benjamini-Hochberg flag, vectorised over series. ``report``:
the JSON report (test, p-value, distances, PSI per series). ``collector``: the counts as
Prometheus counters, read at scrape time.
"""

from onyxserve._lazy import lazy_exports

_EXPORTS = {
    "DriftSettings": ".monitor",
    "DriftMonitor": ".monitor",
    "plan_drift": ".plan",
    "build_report": ".report",
    "DriftCollector": ".collector",
}
__all__ = sorted(_EXPORTS)
# the names of the module this package replaced (onyxserve.server.drift), for one release
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, legacy_module=(".plan", ".counts", ".monitor", ".report"))
