"""Batch prediction against pyarrow alone reading the same file; peak memory per run.

    python benchmarks/batch/bench_batch.py generate --rows 1000000 --dir /tmp/onyx-batch
    python benchmarks/batch/bench_batch.py generate --rows 250000 --dir /tmp/onyx-batch
    python benchmarks/batch/bench_batch.py run --dir /tmp/onyx-batch --repeat 3 --json out.json
    python benchmarks/batch/bench_batch.py run --dir /tmp/onyx-batch --files 'fraud-*.parquet' \
        --modes read_all,batch --python /tmp/venv-branch/bin/python --python python  # two installs

``generate`` writes ``fraud-<rows>.csv`` and ``.parquet`` (training/synthetic.fraud_transactions:
Time, V1..V28, Amount, Class; Parquet row groups of 65,536 rows) and, once, exports a
StandardScaler + LogisticRegression fraud model to ``<dir>/models/fraud/1``. ``run`` starts one
subprocess per measurement (so each peak RSS is its own: ``ru_maxrss`` of the process, and of
its reaped descendants for Dask's workers) and prints a table of medians. Repeats run in rounds
(every mode, then the next round), each run noting the 1-minute load average.

Modes: ``read_all`` = pyarrow reads the whole file (``csv.read_csv`` / ``parquet.read_table``,
multithreaded); ``read_stream`` = pyarrow streams it as batch_predict does (``csv.open_csv`` in
2 MiB blocks / ``iter_batches`` one row group at a time); ``batch`` = ``batch_predict`` to Parquet; ``dask`` = ``batch_predict_dask`` on a
LocalCluster of 2 workers (cluster start-up included; ``dask_warm`` excludes it, its workers still
import onnxruntime and load the model; ``dask_hot`` times a second job on the same cluster, whose
workers already hold the model, as a long-lived cluster's would).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]


def generate(rows: int, out_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from onyxserve.training.synthetic import fraud_transactions

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = fraud_transactions(rows, seed=11)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pacsv.write_csv(table, out_dir / f"fraud-{rows}.csv")
    pq.write_table(table, out_dir / f"fraud-{rows}.parquet", row_group_size=65_536)
    if not (out_dir / "models" / "fraud" / "1").exists():
        from onyxserve.training.export.writer import export_model
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train = fraud_transactions(100_000, seed=1)
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
            train[FEATURES], train["Class"]
        )
        export_model(pipe, name="fraud", repository=out_dir / "models", sample=train[FEATURES].iloc[:1000])
    for p in sorted(out_dir.glob(f"fraud-{rows}.*")):
        print(f"{p}: {p.stat().st_size / 1e6:,.0f} MB")


def one(mode: str, path: Path, model: Path, out: Path) -> dict:
    """One measurement, in this (fresh) process."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from onyxserve.training.batch.predict import batch_predict, batch_predict_dask

    csv = path.suffix == ".csv"
    cpu0 = _cpu()
    started = time.perf_counter()  # imports done: the rate is the work's, model loading included
    extra = {}
    if mode == "read_all":
        rows = (pacsv.read_csv(path) if csv else pq.read_table(path)).num_rows
    elif mode == "read_stream":
        rows = 0
        if csv:
            # the same reading as batch_predict's: 2 MiB parse blocks, one row group at a time
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=2 << 20))
            for batch in reader:
                rows += batch.num_rows
        else:
            pf = pq.ParquetFile(path)
            for group in range(pf.metadata.num_row_groups):
                for batch in pf.iter_batches(batch_size=65_536, row_groups=[group]):
                    rows += batch.num_rows
    elif mode == "batch":
        rows = batch_predict(model, path, out, progress=False).rows
    elif mode in ("dask", "dask_warm", "dask_hot"):
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
        client = Client(cluster)
        if mode == "dask_hot":  # a long-lived cluster: its workers have scored with this model before
            batch_predict_dask(model, path, out, scheduler=client, progress=False)
        if mode in ("dask_warm", "dask_hot"):
            started = time.perf_counter()
        rows = batch_predict_dask(model, path, out, scheduler=client, progress=False).rows
        seconds = time.perf_counter() - started
        worker_rss = client.run(lambda: __import__("resource").getrusage(0).ru_maxrss)
        extra["worker_peak_mb"] = max(worker_rss.values()) / 1024
        client.close()
        cluster.close()
        return {"mode": mode, "rows": rows, "seconds": seconds, "self_peak_mb": _rss(), **extra}
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - started
    extra["cpu_s"] = _cpu() - cpu0  # all threads of this process: less sensitive to machine load
    return {"mode": mode, "rows": rows, "seconds": seconds, "self_peak_mb": _rss(), **extra}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def wait_idle(min_idle: float, max_wait: float = 60.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine was ``min_idle`` % idle over one second:
    other people's test runs share these two cores. Returns the idle % last seen."""
    deadline = time.monotonic() + max_wait
    while True:
        t0, i0 = _cpu_times()
        time.sleep(1.0)
        t1, i1 = _cpu_times()
        idle = 100.0 * (i1 - i0) / max(t1 - t0, 1)
        if idle >= min_idle or time.monotonic() > deadline:
            return idle


def warm_memory(mb: int) -> None:
    """Touch ``mb`` MB in a throwaway process. On this VM the host takes back guest memory
    that stays free a few seconds, and touching it again is slow (measured: 720 MB took 2.1 s
    cold, 0.055 s warm), so whichever run first allocates a lot pays it: pyarrow's whole-file
    read (740 MB) measured 1.0-2.1 s cold against 0.21-0.26 s warm. Warming before every run
    measures each at its best."""
    code = f"import numpy as np; np.ones({mb} << 17)"  # float64: 128 Ki values per MB
    subprocess.run([sys.executable, "-c", code], check=True)


def run(
    out_dir: Path,
    repeat: int,
    modes: list[str],
    json_path: Path | None,
    pythons: list[str],
    files_glob: str,
    warm_mb: int = 1024,
    min_idle: float = 0.0,
) -> None:
    """Rounds of every mode (and interpreter) in turn, so drifting machine load hits them alike."""
    model = out_dir / "models" / "fraud" / "1"
    files = sorted(p for p in out_dir.glob(files_glob) if p.suffix in (".csv", ".parquet"))
    results = []
    for path in files:
        for i in range(repeat):
            for mode in modes:
                for python in pythons:
                    idle = wait_idle(min_idle) if min_idle else None
                    if warm_mb:
                        warm_memory(warm_mb)
                    out = out_dir / f"scores-{mode}.parquet"
                    cmd = [python, __file__, "one", mode, str(path), str(model), str(out)]
                    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    r["file"], r["python"], r["load1"], r["round"] = path.name, python, os.getloadavg()[0], i
                    r["idle_before"] = idle
                    results.append(r)
                    print(
                        f"{path.name:22} {mode:12} {_label(python, pythons):>8} run {i + 1}:"
                        f" {r['rows'] / r['seconds']:>12,.0f} rows/s  {r['seconds']:6.2f} s"
                        f"  peak {r['self_peak_mb']:6.0f} MB  load {r['load1']:.2f}"
                        + (f"  idle before {idle:.0f}%" if idle is not None else "")
                        + (f"  cpu {r['cpu_s']:.2f} s" if "cpu_s" in r else "")
                        + (f" (workers {r['worker_peak_mb']:.0f} MB)" if "worker_peak_mb" in r else ""),
                        flush=True,
                    )
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    print(
        "\n| file | mode | code | rows/s (median) | seconds | CPU s | peak RSS MB (process) |"
        " peak RSS MB (worker) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for path in files:
        for mode in modes:
            for python in pythons:
                rs = [
                    r
                    for r in results
                    if r["file"] == path.name and r["mode"] == mode and r["python"] == python
                ]
                secs = statistics.median(r["seconds"] for r in rs)
                rate = statistics.median(r["rows"] / r["seconds"] for r in rs)
                peak = statistics.median(r["self_peak_mb"] for r in rs)
                wpeak = (
                    statistics.median(r["worker_peak_mb"] for r in rs) if "worker_peak_mb" in rs[0] else None
                )
                cpu = f"{statistics.median(r['cpu_s'] for r in rs):.2f}" if "cpu_s" in rs[0] else "-"
                print(
                    f"| {path.name} | {mode} | {_label(python, pythons)} | {rate:,.0f} | {secs:.2f} | {cpu} |"
                    f" {peak:,.0f} | " + (f"{wpeak:,.0f} |" if wpeak is not None else "- |")
                )
    print()
    print_ratios(results, pythons)


def print_ratios(results: list[dict], pythons: list[str]) -> None:
    """batch / read_all rate within each round (runs seconds apart, under the same load), and
    their median: steadier than the ratio of the two medians on a shared machine."""
    for name in sorted({r["file"] for r in results}):
        for python in pythons:
            rounds: dict[int, dict[str, float]] = {}
            for r in results:
                if r["file"] == name and r["python"] == python:
                    rounds.setdefault(r["round"], {})[r["mode"]] = r["rows"] / r["seconds"]
            ratios = [m["batch"] / m["read_all"] for m in rounds.values() if {"batch", "read_all"} <= set(m)]
            if ratios:
                shown = " ".join(f"{x:.2f}" for x in ratios)
                print(
                    f"{name} {_label(python, pythons)}: batch/read_all per round {shown};"
                    f" median {statistics.median(ratios):.2f}"
                )


def _label(python: str, pythons: list[str]) -> str:
    # which installed onyxserve ran: the interpreter's position in --python (one: "-")
    return "-" if len(pythons) == 1 else f"py{pythons.index(python) + 1}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--rows", type=int, default=1_000_000)
    g.add_argument("--dir", type=Path, default=Path("/tmp/onyx-batch"))
    r = sub.add_parser("run")
    r.add_argument("--dir", type=Path, default=Path("/tmp/onyx-batch"))
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--modes", default="read_all,read_stream,batch,dask,dask_warm")
    r.add_argument("--json", type=Path)
    r.add_argument(
        "--python",
        action="append",
        help="interpreter to run each measurement with (repeat to compare two installs of onyxserve"
        " side by side, e.g. a branch's venv and main's; default: this one)",
    )
    r.add_argument("--files", default="fraud-*.*", help="glob of the input files in --dir")
    r.add_argument(
        "--min-idle",
        type=float,
        default=0.0,
        help="before each run wait (up to 60 s) until the CPUs were this %% idle over 1 s (0: off)",
    )
    r.add_argument(
        "--warm-mb",
        type=int,
        default=1024,
        help="touch this much memory before each run (0: off); see warm_memory",
    )
    o = sub.add_parser("one")
    o.add_argument("mode")
    o.add_argument("path", type=Path)
    o.add_argument("model", type=Path)
    o.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.cmd == "generate":
        generate(args.rows, args.dir)
    elif args.cmd == "run":
        run(
            args.dir,
            args.repeat,
            args.modes.split(","),
            args.json,
            args.python or [sys.executable],
            args.files,
            args.warm_mb,
            args.min_idle,
        )
    else:
        print(json.dumps(one(args.mode, args.path, args.model, args.out)))


if __name__ == "__main__":
    main()
