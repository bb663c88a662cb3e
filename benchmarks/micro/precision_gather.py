"""The compiled gather's cost per output dtype (issue 11): 30 standard-scaled numeric features,
form A, float64 requests; medians of --repeats runs.

    python benchmarks/micro/precision_gather.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from onyxserve.core.normalizer import FeatureNormalizer, RowBlock
from onyxserve.repository.manifest import FeatureSpec, NumericSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    features = [FeatureSpec(f"f{j}", "numeric", j, numeric=NumericSpec(offset=float(rng.normal()),
                                                                        divisor=float(rng.uniform(0.5, 2))))
                for j in range(30)]
    for rows, loops in ((1, 20_000), (65_536, 20)):
        block = [RowBlock(rows, matrix=rng.normal(size=(rows, 30)))]
        for dtype in ("float32", "float64"):
            norm = FeatureNormalizer(features, 30, dtype=dtype)
            out = np.empty((rows, 30), dtype)
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for _ in range(loops):
                    norm.gather(block, out)
                runs.append((time.perf_counter() - start) / loops * 1e6)
            print(f"{rows:>6} rows -> {dtype}: median {statistics.median(runs):9.2f} us"
                  f" (min {min(runs):.2f}, max {max(runs):.2f})")


if __name__ == "__main__":
    main()
