"""Cost of one window's drift tests: ``DriftTests.run`` on 30 numeric features of fine bins
(plus a label and two probability series), as the report runs it per view.

    python benchmarks/drift/bench_tests.py [--features 30] [--bins 512] [--rows 5000] [--repeat 2000]

Prints the minimum, median and 99th percentile of one ``run`` in microseconds, for a stationary
window and a shifted one, and the load average (the machine's 2 cores are shared: the minimum is
the cost without contention, the median what a loaded machine gave).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from onyxserve.server.drift.plan import numeric_slots
from onyxserve.server.drift.statistics import CHI2, KS, DriftTests, SeriesBins, numeric_points


def build(features: int, bins: int, baseline_rows: int, seed: int = 0) -> tuple[DriftTests, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    series, edges_all, offset = [], [], 0
    for _ in range(features):
        base = rng.normal(size=baseline_rows)
        edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)))
        counts = np.bincount(numeric_slots(base, edges), minlength=len(edges) + 2)
        series.append(SeriesBins(offset, counts.tolist(), KS, numeric_points(edges)))
        edges_all.append(edges)
        offset += len(counts)
    series.append(SeriesBins(offset, [int(baseline_rows * 0.7), int(baseline_rows * 0.3)], CHI2))
    offset += 2
    for _ in range(2):  # class probabilities: 10 fixed bins
        pedges = np.linspace(0, 1, 11)
        counts = np.histogram(rng.beta(2, 5, baseline_rows), pedges)[0]
        series.append(SeriesBins(offset, counts.tolist(), KS, numeric_points(pedges, False)))
        offset += 10
    return DriftTests(series), edges_all


def window(tests: DriftTests, edges_all: list[np.ndarray], rows: int, shift: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [np.bincount(numeric_slots(rng.normal(size=rows) + shift, e), minlength=len(e) + 2) for e in edges_all]
    parts.append(np.array([int(rows * 0.7), rows - int(rows * 0.7)]))
    for _ in range(2):
        parts.append(np.histogram(rng.beta(2, 5, rows), np.linspace(0, 1, 11))[0])
    return np.concatenate(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--bins", type=int, default=512)
    ap.add_argument("--baseline-rows", type=int, default=200_000)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    tests, edges = build(args.features, args.bins, args.baseline_rows)
    for label, shift in (("stationary", 0.0), ("shifted 0.1 sd", 0.1)):
        counts = window(tests, edges, args.rows, shift, seed=1)
        tests.run(counts)  # warm
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            tests.run(counts)
            times.append(time.perf_counter() - t)
        us = np.array(times) * 1e6
        print(f"{label:>15}: {args.features} features x {args.bins} bins + 3 prediction series, window "
              f"{args.rows} rows: min {us.min():.0f} us, median {np.median(us):.0f} us, "
              f"p99 {np.percentile(us, 99):.0f} us (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
