"""Median-of-runs table for test_normalize_bench.py, as Markdown.

Usage: ``python benchmarks/micro/summarize.py run1.json run2.json run3.json`` where each file
comes from ``pytest benchmarks/micro --benchmark-enable --benchmark-json=runN.json``. Each cell
is the median over runs of pytest-benchmark's per-run median; ratios are numpy time / compiled.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

IMPLS = ("compiled", "numpy_lean", "reference")


def main(paths: list[str]) -> None:
    runs: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for b in json.load(f)["benchmarks"]:
                info = b["extra_info"]
                runs[info["model"], info["case"]][info["impl"]].append(b["stats"]["median"])
    heads = " | ".join(f"{i} (µs)" for i in IMPLS)
    print(f"| model | batch | {heads} | numpy_lean / compiled | reference / compiled |")
    print("|---|---|" + "---:|" * (len(IMPLS) + 2))
    for (model, case), by_impl in sorted(runs.items(), key=lambda kv: (kv[0][0], _rows(kv[0][1]))):
        med = {i: statistics.median(by_impl[i]) * 1e6 for i in IMPLS}
        cells = " | ".join(f"{med[i]:,.2f}" for i in IMPLS)
        lean, ref = med["numpy_lean"] / med["compiled"], med["reference"] / med["compiled"]
        print(f"| {model} | {case} | {cells} | {lean:.1f}x | {ref:.0f}x |")
    print(f"\n({len(paths)} runs; n per cell: {sorted({len(v) for r in runs.values() for v in r.values()})})")


def _rows(case: str) -> int:
    blocks, rows = case.split("x")
    return int(blocks) * int(rows) * (10**6 if int(rows) > 1 else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
