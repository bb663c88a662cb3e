"""The stability check: repeat measured windows at one level until throughput settles.

A level is stable when the throughput of its last ``LAST`` windows varies by less than the
threshold: ``(max - min) / mean < threshold``. Windows repeat until then, at most
``max_windows``; the level's result pools the last ``LAST`` windows (the ones the verdict is
about). With several targets (a comparison) the windows alternate A, B, A, B, ... and go on
until every target is stable or has had ``max_windows``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .stats import LoadResult, combine

LAST = 3


def spread(throughputs: Sequence[float]) -> float:
    """(max - min) / mean; infinite when the mean is 0."""
    mean = sum(throughputs) / len(throughputs)
    return (max(throughputs) - min(throughputs)) / mean if mean > 0 else float("inf")


def is_stable(windows: Sequence[LoadResult], threshold: float) -> bool:
    return len(windows) >= LAST and spread([w.throughput_rps for w in windows[-LAST:]]) < threshold


def run_level(
    steps: Sequence[Callable[[], LoadResult]],
    threshold: float | None = None,
    max_windows: int = 6,
) -> list[LoadResult]:
    """One level for each target: ``steps[i]()`` runs one window on target i. Without a
    threshold, one window each (in order); with one, rounds of windows until every target is
    stable or has run ``max_windows``. Stops at a window that was cut short (server gone)."""
    if threshold is None:
        results = []
        for step in steps:
            results.append(step())
            if results[-1].aborted:
                break
        return results
    if max_windows < LAST:
        raise ValueError(f"max_windows must be >= {LAST} for the stability check")
    windows: list[list[LoadResult]] = [[] for _ in steps]
    aborted = False
    while not aborted:
        pending = [i for i, w in enumerate(windows) if len(w) < max_windows and not is_stable(w, threshold)]
        if not pending:
            break
        for i in pending:
            windows[i].append(steps[i]())
            if windows[i][-1].aborted:
                aborted = True
                break
    return [_verdict(w, threshold) for w in windows if w]


def _verdict(windows: list[LoadResult], threshold: float) -> LoadResult:
    result = combine(windows[-LAST:])
    last = [w.throughput_rps for w in windows[-LAST:]]
    result.stability = {
        "threshold": threshold,
        "windows": len(windows),
        "stabilized": is_stable(windows, threshold),
        "throughput_rps": [w.throughput_rps for w in windows],
        "spread": spread(last) if len(last) >= 2 else None,
    }
    return result
