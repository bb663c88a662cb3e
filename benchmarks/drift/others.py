"""alibi-detect's KSDrift and Evidently's default DataDriftPreset on the windows detect.py saved
(reference.npy, windows.npz, labels.json in the folder given), run in a virtualenv that has
both (they pin their own numpy and friends, so not the project's):

    python3 -m venv /tmp/drift-others && /tmp/drift-others/bin/pip install alibi-detect evidently
    /tmp/drift-others/bin/python benchmarks/drift/others.py FOLDER

KSDrift: p_val=0.05, correction="bonferroni" (a feature flagged when its p-value is below
0.05 / 30, scipy's KS underneath). Evidently 0.7: ``Report([DataDriftPreset()])`` as shipped;
with more than 1,000 reference rows its default per column is the normed Wasserstein distance,
drifted at >= 0.1. Onset windows are skipped (they only serve detect.py's delays); Evidently runs
on at most ``--evidently-windows`` windows per label (it takes ~1 s a window). Writes
others.json: per window size and detector, false alarms per feature / per window on the
stationary windows and power per shift (the shifted feature flagged), and seconds per window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = [f"f{i}" for i in range(30)]
TARGET = {"location +0.1 sd": "f0", "location +0.25 sd": "f0", "location +0.5 sd": "f0", "lognormal x 1.2": "f10"}


def evidently_flags(report_cls, preset_cls, ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, bool]:
    d = report_cls([preset_cls()]).run(current_data=cur, reference_data=ref).dict()
    flags = {}
    for m in d["metrics"]:
        cfg = m["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            method = cfg["method"].lower()
            distance = any(w in method for w in ("distance", "divergence", "psi"))
            value = float(m["value"])
            flags[cfg["column"]] = value >= cfg["threshold"] if distance else value < cfg["threshold"]
    return flags


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--evidently-windows", type=int, default=100)
    args = ap.parse_args()
    from alibi_detect.cd import KSDrift
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference = np.load(args.folder / "reference.npy")
    ref_frame = pd.DataFrame(reference.astype(np.float64), columns=FEATURES)
    windows = np.load(args.folder / "windows.npz")
    labels = json.loads((args.folder / "labels.json").read_text())
    ks = KSDrift(reference, p_val=0.05, correction="bonferroni")
    flags: dict = defaultdict(lambda: defaultdict(list))  # size -> (who, label) -> [per-feature flags]
    seconds: dict = defaultdict(lambda: defaultdict(list))
    used: dict = defaultdict(int)
    for i, (size, label) in enumerate(labels):
        if label.startswith("onset"):
            continue
        x = windows[f"w{i}"]
        t = time.perf_counter()
        p = ks.predict(x, return_p_val=True)["data"]["p_val"]
        seconds[size]["alibi"].append(time.perf_counter() - t)
        flags[size][("alibi", label)].append(dict(zip(FEATURES, (np.asarray(p) < 0.05 / 30).tolist())))
        if used[(size, label)] < args.evidently_windows:
            used[(size, label)] += 1
            t = time.perf_counter()
            f = evidently_flags(Report, DataDriftPreset, ref_frame, pd.DataFrame(x.astype(np.float64), columns=FEATURES))
            seconds[size]["evidently"].append(time.perf_counter() - t)
            flags[size][("evidently", label)].append(f)
        print(f"{i + 1}/{len(labels)}", file=sys.stderr, end="\r")
    out: dict = {}
    for size, by in flags.items():
        out[str(size)] = {}
        for who in ("alibi", "evidently"):
            calm = by.get((who, "stationary"), [])
            if not calm:
                continue
            r = {"per_feature": float(np.mean([w[f] for w in calm for f in FEATURES])),
                 "per_window": float(np.mean([any(w.values()) for w in calm])), "stationary_windows": len(calm),
                 "power": {}, "seconds_per_window": float(np.median(seconds[size][who]))}
            for shift, target in TARGET.items():
                shifted = by.get((who, shift), [])
                r["power"][shift] = float(np.mean([w[target] for w in shifted])) if shifted else float("nan")
            out[str(size)][who] = r
    (args.folder / "others.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
