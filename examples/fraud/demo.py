"""The onyxserve demo: train a fraud model, export it, serve it, ask it.

1. generate credit-card-like transactions (Time, V1..V28, Amount, Class; ~0.3 % fraud)
2. fit StandardScaler + LogisticRegression with scikit-learn, save it with joblib
3. ``onyxserve export`` it to ONNX + manifest in a local model repository (parity-checked)
4. ``onyxserve serve`` the repository on 127.0.0.1, wait until ready
5. score transactions over V2 gRPC and V2 REST, show /metrics, then SIGTERM (graceful drain)

Run: ``python examples/fraud/demo.py [--workdir demo-run]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.training.synthetic import FEATURES, TARGET, fraud_transactions


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(target: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise SystemExit("server did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo-run"))
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)

    step("1. data: 20,000 generated card transactions")
    data = fraud_transactions(rows=20_000, seed=7)
    data.to_csv(work / "transactions.csv", index=False)
    train, holdout = data.iloc[:16_000], data.iloc[16_000:]
    print(f"{len(data)} rows, {int(data[TARGET].sum())} frauds -> {work / 'transactions.csv'}")

    step("2. train StandardScaler + LogisticRegression")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced"))
    model.fit(train[FEATURES], train[TARGET])
    auc = roc_auc_score(holdout[TARGET], model.predict_proba(holdout[FEATURES])[:, 1])
    joblib.dump(model, work / "fraud.joblib")
    holdout[FEATURES].iloc[:500].to_csv(work / "sample.csv", index=False)
    print(f"holdout AUC {auc:.3f} -> {work / 'fraud.joblib'}")

    step("3. onyxserve export (ONNX + manifest, parity-checked against scikit-learn)")
    repo = work / "models"
    export = [sys.executable, "-m", "onyxserve", "export", str(work / "fraud.joblib"), "--name", "fraud",
              "--repository", str(repo), "--sample", str(work / "sample.csv")]
    print("$ onyxserve export", " ".join(export[4:]))
    subprocess.run(export, check=True)

    step("4. onyxserve serve")
    grpc_port, http_port = free_port(), free_port()
    serve = [sys.executable, "-m", "onyxserve", "serve", "--repository", str(repo), "--grpc-port", str(grpc_port),
             "--http-port", str(http_port), "--log-level", "WARNING"]
    print("$ onyxserve serve", " ".join(serve[4:]))
    server = subprocess.Popen(serve)
    target = f"127.0.0.1:{grpc_port}"
    try:
        wait_ready(target, server)
        print(f"ready: gRPC {target}, HTTP 127.0.0.1:{http_port}")

        step("5. score five holdout transactions over V2 gRPC (one [5, 30] FP32 tensor)")
        rows = holdout[FEATURES].to_numpy(np.float32)[:5]
        request = pb.ModelInferRequest(model_name="fraud")
        request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
        request.raw_input_contents.append(rows.tobytes())
        with grpc.insecure_channel(target) as channel:
            response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
        outputs = {o.name: raw for o, raw in zip(response.outputs, response.raw_output_contents)}
        labels = np.frombuffer(outputs["label"], dtype="<i8")
        proba = np.frombuffer(outputs["probabilities"], dtype="<f4").reshape(-1, 2)
        expected = model.predict_proba(holdout[FEATURES].iloc[:5])[:, 1]
        for i, (label, p, e) in enumerate(zip(labels, proba[:, 1], expected)):
            print(f"  row {i}: label {label}  P(fraud) served {p:.6f}  scikit-learn {e:.6f}")

        step("6. the same over V2 REST")
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": rows[0].tolist()}]}
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/fraud/infer",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        print(" ", json.dumps(answer["outputs"]))

        step("7. Prometheus /metrics (excerpt)")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
        for line in metrics.splitlines():
            if line.startswith(("onyxserve_requests_total", "onyxserve_batches_total", "onyxserve_rows_total")):
                print(" ", line)
    finally:
        step("8. SIGTERM: drain and exit")
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        print(f"server exited with {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
