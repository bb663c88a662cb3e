"""The sidecar's footprint: idle memory and start-up time to ready of a real `onyxserve serve`.

For each configuration, --runs times: start the server as a sidecar would (`--uds`, the fraud
model, `--model-control none`), time from just before the process is spawned to the first
grpc.health.v1 SERVING answer for service "" (what the Kubernetes startupProbe waits for),
let it sit idle for --idle seconds, read its memory from /proc (RSS and PSS, summed over the
process and its children), then SIGTERM it and wait for it to exit.

    python benchmarks/served/sidecar_footprint.py [--repository DIR] [--runs 5] [--idle 3] [--json out.json]

Without --repository a fraud model (StandardScaler + LogisticRegression on 50,000 synthetic
fraud-like rows, the served benchmarks' `fraud_lr`) is fitted and exported into a temporary
repository first. Linux only (/proc). Everything runs on loopback / a unix socket.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
# name -> extra serve flags; {sock} and {port} are filled in per run
CONFIGS = {
    "uds": ["--uds", "{sock}", "--grpc-port", "{port}", "--http-port", "-1"],
    "uds, --workers 1": ["--uds", "{sock}", "--grpc-port", "{port}", "--http-port", "-1", "--workers", "1"],
    "uds + HTTP :8000 (metrics)": ["--uds", "{sock}", "--grpc-port", "{port}", "--http-port", "{http}"],
    "tcp, --workers 2": ["--grpc-port", "{port}", "--http-port", "{http}", "--workers", "2"],
}


def export_fraud(repository: Path) -> None:
    from onyxserve.training.export.writer import export_model
    from onyxserve.training.synthetic import FEATURES, TARGET, fraud_transactions
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = fraud_transactions(rows=50_000, seed=7, positive_rate=0.003)
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))])
    pipe.fit(frame[FEATURES].to_numpy(), frame[TARGET].to_numpy())
    export_model(
        pipe,
        name="fraud",
        repository=repository,
        sample=frame[FEATURES].iloc[:200].to_numpy(),
        feature_names=FEATURES,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc/<pid>/task/*/children."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def memory_kib(pid: int) -> dict[str, int]:
    """RSS and PSS (kB) summed over the process tree. PSS splits shared pages between processes."""
    total = {"rss_kib": 0, "pss_kib": 0, "processes": 0}
    for p in tree(pid):
        try:
            fields = dict(
                line.split(":", 1) for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:]
            )
        except OSError:
            continue
        total["rss_kib"] += int(fields["Rss"].split()[0])
        total["pss_kib"] += int(fields["Pss"].split()[0])
        total["processes"] += 1
    return total


def wait_serving(target: str, proc: subprocess.Popen, timeout_s: float) -> float:
    """Seconds until Health.Check("") says SERVING; short reconnect backoff so polling is fine-grained."""
    options = [
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 20),
    ]
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5).status == SERVING:
                    return time.monotonic()
            except grpc.RpcError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"not SERVING after {timeout_s}s")


def one_run(repository: Path, flags: list[str], idle_s: float, workdir: Path) -> dict:
    sock = workdir / "onyx.sock"
    port, http = free_port(), free_port()
    extra = [f.format(sock=sock, port=port, http=http) for f in flags]
    cmd = ["onyxserve", "serve", "--repository", str(repository), "--model-control", "none", *extra]
    target = f"unix://{sock}" if "--uds" in flags else f"127.0.0.1:{port}"
    with open(workdir / "server.log", "wb") as log:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready_s = wait_serving(target, proc, 120) - start
            time.sleep(idle_s)
            memory = memory_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}:\n{(workdir / 'server.log').read_text()}")
    return {"ready_s": ready_s, **memory}


def summarize(name: str, runs: list[dict]) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in ("ready_s", "rss_kib", "pss_kib")}
    return {
        "config": name,
        "runs": len(runs),
        "processes": runs[0]["processes"],
        "ready_s_median": med["ready_s"],
        "ready_s_min": min(r["ready_s"] for r in runs),
        "ready_s_max": max(r["ready_s"] for r in runs),
        "rss_mib_median": med["rss_kib"] / 1024,
        "pss_mib_median": med["pss_kib"] / 1024,
        "raw": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repository", type=Path, help="an exported repository (default: export the fraud model)"
    )
    parser.add_argument("--runs", type=int, default=5, help="starts per configuration (default 5)")
    parser.add_argument(
        "--idle", type=float, default=3.0, help="seconds idle before reading memory (default 3)"
    )
    parser.add_argument(
        "--config", action="append", choices=list(CONFIGS), help="configurations (default all)"
    )
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="onyx-footprint-") as tmp:
        workdir = Path(tmp)
        repository = args.repository
        if repository is None:
            repository = workdir / "models"
            export_fraud(repository)
        models = sorted(p.name for p in repository.iterdir() if p.is_dir())
        results = []
        for name in args.config or list(CONFIGS):
            runs = [one_run(repository, CONFIGS[name], args.idle, workdir) for _ in range(args.runs)]
            results.append(summarize(name, runs))
            print(
                f"{name}: ready {results[-1]['ready_s_median']:.3f}s, RSS {results[-1]['rss_mib_median']:.1f} MiB",
                file=sys.stderr,
            )

    print(
        f"models: {', '.join(models)}; {args.runs} starts each; memory after {args.idle:g}s idle; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after\n"
    )
    print("| configuration | processes | ready, median (min-max) | RSS, median | PSS, median |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['config']} | {r['processes']} | {r['ready_s_median']:.2f} s "
            f"({r['ready_s_min']:.2f}-{r['ready_s_max']:.2f}) | {r['rss_mib_median']:.0f} MiB "
            f"| {r['pss_mib_median']:.0f} MiB |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"models": models, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
