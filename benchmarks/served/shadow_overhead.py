"""What a shadow version costs the primary: two `onyxserve serve` processes, side by side in one
run, loaded alternately with `onyxserve loadtest --compare` (same rows, same harness).

    python benchmarks/served/shadow_overhead.py WORK_DIR [--repeats 3] [--concurrency 16]

WORK_DIR holds fraud_lr.joblib and sample.csv (benchmarks/reference_models.py --out WORK_DIR).
fraud_lr is exported twice (versions 1 and 2 of one model, so the shadow costs one more run of
the same pipeline). A: production 1 only. B: production 1, shadow 2. Each repeat is one
`loadtest --compare` (A then B); the table gives per-repeat figures and medians, the servers'
CPU seconds per answered request (from /proc, whole process), and B's shadow report (rows
mirrored / dropped). Servers are stopped by pid (SIGTERM), loads bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ONYX = [sys.executable, "-m", "onyxserve"]


def run(*args: str, timeout: float = 600) -> str:
    done = subprocess.run([*ONYX, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"onyxserve {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def served_requests(http: str) -> float:
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("onyxserve_requests_total{") and 'outcome="OK"' in line)


def wait_ready(http: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if urllib.request.urlopen(f"{http}/v2/models/fraud_lr/ready", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{http} not ready after {timeout_s}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="16")
    parser.add_argument("--warmup", default="2s")
    parser.add_argument("--duration", default="5s")
    parser.add_argument("--ports", default="18400", help="first of four consecutive ports")
    args = parser.parse_args()
    work = args.work.resolve()
    base = work / "shadow-repo-a"
    shutil.rmtree(base, ignore_errors=True)
    for _ in range(2):
        run("export", str(work / "fraud_lr.joblib"), "--name", "fraud_lr", "--repository", str(base),
            "--sample", str(work / "sample.csv"))
    repos = {"A": base, "B": work / "shadow-repo-b"}
    shutil.rmtree(repos["B"], ignore_errors=True)
    shutil.copytree(base, repos["B"])
    for name, repo in repos.items():
        for version in ("1", "2"):
            run("registry", "approve", "fraud_lr", version, "--repository", str(repo))
        run("registry", "promote", "fraud_lr", "1", "--stage", "production", "--repository", str(repo))
        if name == "B":
            run("registry", "promote", "fraud_lr", "2", "--stage", "shadow", "--repository", str(repo))

    port = int(args.ports)
    servers: dict[str, tuple[subprocess.Popen, str, str]] = {}
    try:
        for i, (name, repo) in enumerate(repos.items()):
            grpc_port, http_port = port + 2 * i + 1, port + 2 * i
            log = open(work / f"shadow-server-{name}.log", "wb")  # noqa: SIM115 - the server writes it until stopped
            proc = subprocess.Popen([*ONYX, "serve", "--repository", str(repo), "--grpc-port", str(grpc_port),
                                     "--http-port", str(http_port)], stdout=log, stderr=subprocess.STDOUT)
            servers[name] = (proc, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}")
        for proc, _, http in servers.values():
            wait_ready(http, proc)
        rows = []
        for repeat in range(1, args.repeats + 1):
            before = {n: (cpu_seconds(p.pid), served_requests(h)) for n, (p, _, h) in servers.items()}
            out = work / f"shadow-compare-{repeat}.json"
            run("loadtest", servers["A"][1], "--compare", servers["B"][1], "--model", "fraud_lr",
                "--data", str(work / "sample.csv"), "--concurrency", args.concurrency, "--warmup", args.warmup,
                "--duration", args.duration, "--json-out", str(out))
            report = json.loads(out.read_text())
            for part in report["targets"]:
                name = part["name"]
                proc, _, http = servers[name]
                cpu = cpu_seconds(proc.pid) - before[name][0]
                answered = served_requests(http) - before[name][1]
                for r in part["results"]:
                    rows.append({"repeat": repeat, "server": name, "concurrency": r["concurrency"],
                                 "rps": r["throughput_rps"], "p50": r["latency_ms"]["p50"],
                                 "p99": r["latency_ms"]["p99"], "errors": r["error_count"],
                                 "cpu_us": cpu / max(answered, 1) * 1e6})
        shadow = json.load(urllib.request.urlopen(f"{servers['B'][2]}/v2/models/fraud_lr/shadow", timeout=10))
    finally:
        for proc, _, _ in servers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, _ in servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print("| repeat | server | concurrency | req/s | p50 ms | p99 ms | errors | server CPU µs/request |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['repeat']} | {r['server']} | {r['concurrency']} | {r['rps']:,.0f} | {r['p50']:.3f} | "
              f"{r['p99']:.3f} | {r['errors']} | {r['cpu_us']:.0f} |")
    for name in ("A", "B"):
        mine = [r for r in rows if r["server"] == name]
        print(f"| median | {name} | {args.concurrency} | {statistics.median(r['rps'] for r in mine):,.0f} | "
              f"{statistics.median(r['p50'] for r in mine):.3f} | {statistics.median(r['p99'] for r in mine):.3f} | "
              f"{sum(r['errors'] for r in mine)} | {statistics.median(r['cpu_us'] for r in mine):.0f} |")
    print(f"\nB's shadow report: requests {shadow['requests']}, rows {shadow['rows']}, "
          f"agreement {shadow['labels']['agreement_rate']}, |dP| max {shadow['probability_diff']['max']}, "
          f"shadow latency p50/p99 {shadow['shadow_latency_seconds']['p50']}/{shadow['shadow_latency_seconds']['p99']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
