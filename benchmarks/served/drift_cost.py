"""CPU cost of drift counting per batch: ServedModel.run_batch (normalize + sketch, ONNX Runtime,
prediction counts) with drift on and off, alternated, in one process.

    python benchmarks/served/drift_cost.py MODEL_VERSION_DIR [--rows 1,16] [--rounds 5]

Prints the median (and min) microseconds per batch over ``rounds`` alternated rounds.
"""

from __future__ import annotations

import argparse
import timeit
from pathlib import Path

import numpy as np
from onyxserve.core.normalizer import RowBlock
from onyxserve.repository.config import ModelConfig
from onyxserve.server.drift.monitor import DriftSettings
from onyxserve.server.models.served import ServedModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version_dir", type=Path)
    parser.add_argument("--rows", default="1,16")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    models = {"on": ServedModel.load(args.version_dir, ModelConfig(), 1, DriftSettings()),
              "off": ServedModel.load(args.version_dir, ModelConfig(), 1, DriftSettings(enabled=False))}
    width = len(models["on"].manifest.features)
    for n in (int(r) for r in args.rows.split(",")):
        blocks = [RowBlock(n, matrix=np.random.default_rng(0).normal(size=(n, width)).astype(np.float32))]
        times: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(args.rounds):
            for name, model in models.items():
                best = min(timeit.repeat(lambda: model.run_batch(blocks), number=2000, repeat=3)) / 2000 * 1e6
                times[name].append(best)
        print(f"{n} row(s)/batch: " + ", ".join(
            f"drift {k} {np.median(v):.1f} us (min {min(v):.1f})" for k, v in times.items()))
    models["on"].drift.close()


if __name__ == "__main__":
    main()
