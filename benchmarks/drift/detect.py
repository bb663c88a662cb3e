"""Drift detection measured: synthetic streams through the real server (onyxserve serve, gRPC),
its live detector (tumbling row windows, flags read from /metrics) against scipy's
``ks_2samp`` on the same windows' raw values, and, when installed in another virtualenv
(``--others-python``), alibi-detect's KSDrift and Evidently's default DataDriftPreset.

    python benchmarks/drift/detect.py --out /tmp/drift-bench [--stationary 100] [--shifted 30] \\
        [--onsets 10] [--others-python /tmp/drift-others/bin/python]

The model: 30 numeric features (f0..f9 normal, f10..f19 lognormal(0, 0.5), f20..f29 uniform),
a logistic regression fitted on a 20,000-row reference, exported with that reference as its
drift baseline (500 quantile bins). Two copies serve with windows of 500 and 5,000 rows
(config.json ``drift_window_rows``); rows go in requests of 100 (500-row windows) or 500
(5,000-row windows), one at a time, so each window closes on its exact row count.

Streams per window size: ``--stationary`` windows drawn like the reference; ``--shifted``
windows per shift (f0 + 0.1, 0.25, 0.5 sd; f10 x 1.2); ``--onsets`` streams per shift with the
shift starting inside a window (a random request boundary) after one clean window, until the
shifted feature is flagged (at most 4 windows). Measured: false alarms per feature (share of
feature-windows flagged, stationary) and per window (share of windows with any feature flagged),
power (share of shifted windows in which the shifted feature is flagged), detection delay (rows
from the onset to the close of the first window that flags it), cost per window's tests.

scipy: ks_2samp on each feature's raw window against the raw reference, flagged by Bonferroni
at 0.05/30 (the issue's yardstick) and by Benjamini-Hochberg at 0.05 (onyxserve's rule; its
family also holds the 3 prediction series). Writes results.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FEATURES = [f"f{i}" for i in range(30)]
REFERENCE_ROWS = 20_000
ALPHA = 0.05
SHIFTS = {"location +0.1 sd": ("f0", "shift", 0.1), "location +0.25 sd": ("f0", "shift", 0.25),
          "location +0.5 sd": ("f0", "shift", 0.5), "lognormal x 1.2": ("f10", "scale", 1.2)}


def draw(n: int, rng: np.random.Generator, shift: str | None = None) -> pd.DataFrame:
    x = np.empty((n, 30))
    x[:, :10] = rng.normal(size=(n, 10))
    x[:, 10:20] = rng.lognormal(0.0, 0.5, size=(n, 10))
    x[:, 20:] = rng.uniform(size=(n, 10))
    if shift is not None:
        feature, kind, amount = SHIFTS[shift]
        j = FEATURES.index(feature)
        x[:, j] = x[:, j] + amount if kind == "shift" else x[:, j] * amount  # f0 has sd 1
    return pd.DataFrame(x, columns=FEATURES)


def build(root: Path, reference: pd.DataFrame) -> None:
    from onyxserve.training.export.writer import export_model
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    w = rng.normal(size=30) / 3
    logit = (reference.to_numpy() - reference.to_numpy().mean(axis=0)) @ w
    y = (rng.uniform(size=len(reference)) < 1 / (1 + np.exp(-logit))).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(reference, y)
    for name, rows in (("w500", 500), ("w5000", 5000)):
        export_model(model, name=name, repository=root, sample=reference.iloc[:1000], baseline_data=reference,
                     register=False)
        (root / name / "config.json").write_text(json.dumps({"max_batch_size": 5000, "drift_window_rows": rows}))


class Served:
    def __init__(self, root: Path) -> None:
        from tests.serving import ServerProcess

        self.server = ServerProcess(root, args=["--model-control", "none"], env={"ONYXSERVE_DRIFT_SNAPSHOT_S": "5"})

    def __enter__(self) -> Served:
        import tritonclient.grpc as triton

        self.server.start(timeout_s=120)
        self.client = triton.InferenceServerClient(self.server.grpc_target)
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        self.server.stop()

    def send(self, model: str, frame: pd.DataFrame, per_request: int) -> None:
        import tritonclient.grpc as triton

        for start in range(0, len(frame), per_request):
            part = frame.iloc[start : start + per_request].to_numpy(np.float64)
            inputs = []
            for j, name in enumerate(FEATURES):
                inp = triton.InferInput(name, [len(part)], "FP64")
                inp.set_data_from_numpy(np.ascontiguousarray(part[:, j]))
                inputs.append(inp)
            self.client.infer(model, inputs, client_timeout=60)

    def last_window(self, model: str) -> dict:
        """The last closed window's per-series flags and p-values, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.server.http_url + "/metrics", timeout=60) as response:
            text = response.read().decode()
        out: dict = {"drifted": {}, "p": {}, "rows": None, "end": None}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.labels.get("model") != model:
                    continue
                if s.name == "onyxserve_drift_window_rows":
                    out["rows"] = int(s.value)
                elif s.name == "onyxserve_drift_window_end_timestamp_seconds":
                    out["end"] = s.value
                elif s.labels.get("view") == "window" and s.name == "onyxserve_drift_drifted":
                    out["drifted"][s.labels["series"]] = bool(s.value)
                elif s.labels.get("view") == "window" and s.name == "onyxserve_drift_p_value":
                    out["p"][s.labels["series"]] = s.value
        return out


def scipy_flags(window: pd.DataFrame, reference: pd.DataFrame) -> tuple[dict, dict, float]:
    from scipy.stats import false_discovery_control, ks_2samp

    t = time.perf_counter()
    p = np.array([ks_2samp(window[f].to_numpy(), reference[f].to_numpy()).pvalue for f in FEATURES])
    cost = time.perf_counter() - t
    bonf = dict(zip(FEATURES, (p <= ALPHA / 30).tolist()))
    bh = dict(zip(FEATURES, (false_discovery_control(p, method="bh") <= ALPHA).tolist()))
    return bonf, bh, cost


def run_size(served: Served, size: int, reference: pd.DataFrame, args, rng, store: list) -> dict:
    model, per_request = f"w{size}", (100 if size == 500 else 500)
    records = []  # one per closed window: what was in it and who flagged what

    def window(frame: pd.DataFrame, label: str, shifted_rows: int) -> dict:
        before = served.last_window(model)["end"]
        served.send(model, frame, per_request)
        got = served.last_window(model)
        assert got["rows"] == size and got["end"] != before, (got["rows"], size)
        bonf, bh, cost = scipy_flags(frame, reference)
        rec = {"label": label, "shifted_rows": shifted_rows,
               "ours": {f: got["drifted"].get(f, False) for f in FEATURES},
               "ours_predictions": {k: v for k, v in got["drifted"].items() if k not in FEATURES},
               "scipy_bonferroni": bonf, "scipy_bh": bh, "scipy_seconds": cost}
        records.append(rec)
        store.append((size, label, frame.to_numpy(np.float32)))
        return rec

    for _ in range(args.stationary):
        window(draw(size, rng), "stationary", 0)
    for shift in SHIFTS:
        for _ in range(args.shifted):
            window(draw(size, rng, shift), shift, size)
    delays = {shift: {"ours": [], "scipy_bonferroni": [], "scipy_bh": []} for shift in SHIFTS}
    for shift in SHIFTS:
        target = SHIFTS[shift][0]
        for _ in range(args.onsets):
            window(draw(size, rng), "onset: clean", 0)
            offset = int(rng.integers(0, size // per_request)) * per_request  # the onset, inside the window
            found: dict[str, int | None] = {k: None for k in delays[shift]}
            shifted_so_far = 0
            for k in range(4):
                if k == 0:
                    frame = pd.concat([draw(offset, rng), draw(size - offset, rng, shift)], ignore_index=True)
                else:
                    frame = draw(size, rng, shift)
                shifted_so_far += size - (offset if k == 0 else 0)
                rec = window(frame, f"onset: {shift}", size - offset if k == 0 else size)
                for who in found:
                    if found[who] is None and rec[who][target]:
                        found[who] = shifted_so_far  # rows from the onset to this window's close
                if all(v is not None for v in found.values()):
                    break
            for who, v in found.items():
                delays[shift][who].append(v)
    return summarize(size, records, delays)


def summarize(size: int, records: list[dict], delays: dict) -> dict:
    who_all = ("ours", "scipy_bonferroni", "scipy_bh")
    calm = [r for r in records if r["label"] in ("stationary", "onset: clean")]
    out: dict = {"window_rows": size, "stationary_windows": len(calm), "false_alarms": {}, "power": {}, "delay": {}}
    for who in who_all:
        per_feature = np.mean([r[who][f] for r in calm for f in FEATURES])
        per_window = np.mean([any(r[who].values()) for r in calm])
        out["false_alarms"][who] = {"per_feature": float(per_feature), "per_window": float(per_window)}
    out["false_alarms"]["ours_with_predictions"] = {
        "per_window": float(np.mean([any(r["ours"].values()) or any(r["ours_predictions"].values()) for r in calm]))}
    for shift, (target, _, _) in SHIFTS.items():
        shifted = [r for r in records if r["label"] == shift]
        out["power"][shift] = {who: float(np.mean([r[who][target] for r in shifted])) for who in who_all}
        out["power"][shift]["windows"] = len(shifted)
        out["delay"][shift] = {}
        for who in who_all:
            v = delays[shift][who]
            caught = [d for d in v if d is not None]
            out["delay"][shift][who] = {"median_rows": float(np.median(caught)) if caught else None,
                                        "max_rows": int(max(caught)) if caught else None,
                                        "missed": len(v) - len(caught), "streams": len(v)}
    out["scipy_seconds_per_window"] = float(np.median([r["scipy_seconds"] for r in records]))
    return out


def others(python: str, reference: pd.DataFrame, store: list, workdir: Path) -> dict:
    """alibi-detect KSDrift and Evidently on the same windows, in the other virtualenv."""
    np.save(workdir / "reference.npy", reference.to_numpy(np.float32))
    np.savez(workdir / "windows.npz", **{f"w{i}": w for i, (_, _, w) in enumerate(store)})
    (workdir / "labels.json").write_text(json.dumps([[s, label] for s, label, _ in store]))
    done = subprocess.run([python, str(Path(__file__).with_name("others.py")), str(workdir)],
                          capture_output=True, text=True, timeout=5400, check=False)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return json.loads((workdir / "others.json").read_text())


def table(results: dict) -> str:
    lines = []
    for r in results["sizes"]:
        n = r["window_rows"]
        lines.append(f"\n#### Windows of {n:,} rows ({r['stationary_windows']} stationary windows)\n")
        lines.append("| detector | false alarms per feature | per window | " + " | ".join(
            f"power: {s}" for s in SHIFTS) + " |")
        lines.append("|---|---|---|" + "---|" * len(SHIFTS))
        names = {"ours": "onyxserve (BH 0.05, live)", "scipy_bonferroni": "scipy ks_2samp, Bonferroni 0.05/30",
                 "scipy_bh": "scipy ks_2samp, BH 0.05"}
        for who, name in names.items():
            fa = r["false_alarms"][who]
            lines.append(f"| {name} | {fa['per_feature']:.2%} | {fa['per_window']:.1%} | " + " | ".join(
                f"{r['power'][s][who]:.0%}" for s in SHIFTS) + " |")
        for who, name in (("alibi", "alibi-detect KSDrift (Bonferroni 0.05)"), ("evidently", "Evidently DataDriftPreset")):
            o = results.get("others", {}).get(str(n), {}).get(who)
            if o:
                lines.append(f"| {name} | {o['per_feature']:.2%} | {o['per_window']:.1%} | " + " | ".join(
                    f"{o['power'][s]:.0%}" for s in SHIFTS) + " |")
        lines.append("\nDetection delay, rows from the onset to the close of the first window flagging the "
                     f"shifted feature (median / max over {r['delay'][next(iter(SHIFTS))]['ours']['streams']} streams;"
                     " missed = not within 4 windows):\n")
        lines.append("| shift | onyxserve | scipy Bonferroni | scipy BH |")
        lines.append("|---|---|---|---|")
        for s in SHIFTS:
            cells = []
            for who in names:
                d = r["delay"][s][who]
                cells.append("-" if d["median_rows"] is None else
                             f"{d['median_rows']:,.0f} / {d['max_rows']:,}" + (f" ({d['missed']} missed)" if d["missed"] else ""))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append(f"\nscipy's 30 tests per window: {r['scipy_seconds_per_window'] * 1e3:.1f} ms (median).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="drift-bench-")))
    ap.add_argument("--stationary", type=int, default=100)
    ap.add_argument("--shifted", type=int, default=30)
    ap.add_argument("--onsets", type=int, default=10)
    ap.add_argument("--sizes", default="500,5000")
    ap.add_argument("--others-python", help="a python with alibi-detect and evidently installed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    reference = draw(REFERENCE_ROWS, rng)
    root = args.out / "models"
    if not root.exists():
        build(root, reference)
    store: list = []
    results: dict = {"reference_rows": REFERENCE_ROWS, "alpha": ALPHA, "args": {k: str(v) for k, v in vars(args).items()},
                     "sizes": []}
    t0 = time.perf_counter()
    with Served(root) as served:
        for size in (int(s) for s in args.sizes.split(",")):
            results["sizes"].append(run_size(served, size, reference, args, rng, store))
            print(f"windows of {size}: done after {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    if args.others_python:
        results["others"] = others(args.others_python, reference, store, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"\nwrote {args.out / 'results.json'} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
