"""The onyxserve fraud example, end to end: data -> datasource -> recipe -> train + tune ->
evaluate -> registry -> serve -> batch-predict.

 1. generate 30,000 credit-card-like transactions (Time, V1..V28, Amount, Class; ~0.3 % fraud),
    keep a stratified quarter aside as the holdout
 2. datasource: read train.csv once; schema inferred (Class = BINARY target), statistics, checksum
 3. recipe: examples/fraud/recipe.json (drop Time, clip Amount outliers, standardize)
 4. train a linear model (SGD, log loss) with class_weight balanced
 5. tune it briefly (optuna, 6 trials or 30 s, whichever comes first); keep the better model
 6. export it to ONNX + manifest as the next version of ``fraud`` (parity-checked)
 7. evaluate the version on the holdout through the served path: HTML report, and the threshold
    that keeps the false-positive rate <= 1 %
 8. registry: register, approve, promote to production
 9. ``onyxserve serve`` the repository on free loopback ports, wait until ready
10. score holdout transactions over V2 gRPC: served == offline (scikit-learn) scores
11. the same over V2 REST; 12. Prometheus /metrics
13. batch-predict the holdout to Parquet (== the served scores)
14. SIGTERM: graceful drain, exit 0

Each step prints the equivalent CLI command. Run: ``python examples/fraud/demo.py [--workdir demo-run]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
from onyxserve.protos import grpc_service_pb2 as pb
from onyxserve.protos import grpc_service_pb2_grpc as pb_grpc
from onyxserve.repository.registry import Registry
from onyxserve.server.models.decoder import MATRIX_INPUT
from onyxserve.training.batch.predict import batch_predict
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.evaluation.metrics import evaluate_version
from onyxserve.training.evaluation.report import write_report
from onyxserve.training.fit.train import SAMPLE_ROWS, export_trained, train_model
from onyxserve.training.fit.tune import tune_model
from onyxserve.training.recipe.spec import load_recipe
from onyxserve.training.synthetic import TARGET, fraud_transactions

HERE = Path(__file__).resolve().parent
ROWS = 30_000
LINEAR = {"max_passes": 10, "penalty": "l2", "alpha": 1e-3}
SPACE = {
    "alpha": {"type": "float", "low": 1e-4, "high": 1.5e-2, "log": True},  # more regularization: calibrated scores
    "penalty": {"type": "categorical", "choices": ["l2", "elasticnet"]},
    "max_passes": {"type": "int", "low": 5, "high": 30},
}
THRESHOLD_TARGET = "fpr<=1%"
TOLERANCE = 1e-5  # ONNX runs in float32; scikit-learn in float64


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cli(*words: object) -> None:
    print("$ onyxserve " + " ".join(str(w) for w in words), flush=True)


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
    repo = work / "models"
    if repo.exists():  # a fresh repository each run, so the version is 1 and the server serves it
        shutil.rmtree(repo)
    started = time.monotonic()

    step(f"1. data: {ROWS:,} generated card transactions, a stratified 25 % holdout")
    data = fraud_transactions(rows=ROWS, seed=7)
    holdout = data.groupby(TARGET, group_keys=False).sample(frac=0.25, random_state=7).sort_index()
    train = data.drop(holdout.index)
    train.to_csv(work / "train.csv", index=False)
    holdout.to_csv(work / "holdout.csv", index=False)
    for name, part in (("train.csv", train), ("holdout.csv", holdout)):
        print(f"{work / name}: {len(part):,} rows, {int(part[TARGET].sum())} frauds ({part[TARGET].mean():.2%})")

    step("2. datasource: schema + statistics of train.csv")
    cli("datasource create", work / "train.csv", "--target", TARGET, "--out", work / "train.datasource.json")
    ds = create_datasource(work / "train.csv", target=TARGET)
    ds.save(work / "train.datasource.json")
    kinds = ds.schema.attributes
    print(f"{ds.row_count:,} rows, {len(kinds)} attributes; target {ds.target} is {kinds[TARGET].value} "
          f"-> task {ds.task}; Amount max {ds.statistics['Amount'].get('max')}")

    step("3. recipe: " + str(HERE / "recipe.json"))
    recipe = load_recipe(HERE / "recipe.json")
    plan = recipe.plan(ds)
    print(f"{len(plan.inputs)} inputs (Time excluded); Amount: "
          + ", ".join(s.kind for s in recipe.features["Amount"]) + "; others: impute, normalize")

    step("4. train: linear (SGD, log loss), class_weight balanced")
    cli("train", work / "train.datasource.json", "--algorithm linear --recipe", HERE / "recipe.json",
        "--class-weight balanced --params", f"'{json.dumps(LINEAR)}'")
    base = train_model(ds, algorithm="linear", params=LINEAR, recipe=recipe, class_weight="balanced",
                       seed=0, progress=False)
    print(f"{len(base.prepared.X_train):,} training rows, {len(base.prepared.X_eval):,} evaluation rows: "
          + ", ".join(f"{k} {v:.4f}" for k, v in base.metrics.items()))

    step("5. tune: optuna, 6 trials or 30 s, whichever comes first")
    (work / "space.json").write_text(json.dumps(SPACE, indent=2) + "\n")
    cli("tune", work / "train.datasource.json", "--algorithm linear --recipe", HERE / "recipe.json",
        "--class-weight balanced --space", work / "space.json", "--trials 6 --time-budget 30 --metric average_precision --history",
        work / "trials.json")
    tuned = tune_model(ds, "linear", SPACE, strategy="optuna", trials=6, timeout_s=30, metric="average_precision",
                       class_weight="balanced", seed=0, history_path=work / "trials.json",
                       prepared=base.prepared, progress=False)
    print(f"{len(tuned.history)} trials in {tuned.seconds:.1f} s (stopped by {tuned.stopped_by}); "
          f"best average_precision {tuned.best_score:.4f} with {json.dumps(tuned.best_params)}")
    best = tuned.best if tuned.best_score > base.metrics["average_precision"] else base
    print(f"keeping the {'tuned' if best is tuned.best else 'untuned'} model (average_precision "
          f"{best.metrics['average_precision']:.4f} vs {base.metrics['average_precision']:.4f} untuned)")

    step("6. export: ONNX + manifest, parity-checked against scikit-learn")
    cli("tune ... --export --name fraud --repository", repo, "   # or: onyxserve train ... --export")
    exported = export_trained(best, name="fraud", repository=repo)
    version_dir, manifest = exported.path, exported.manifest
    print(f"{version_dir}: {len(manifest.feature_names)} raw features in, normalization in the manifest; "
          f"parity max |error| {exported.parity.max_error:.2g} on {SAMPLE_ROWS} evaluation rows")

    step(f"7. evaluate on the holdout (served path), threshold for {THRESHOLD_TARGET}, HTML report")
    report = work / "evaluation.html"
    cli("evaluate", version_dir, work / "holdout.csv", "--target", TARGET, "--threshold-for",
        f"'{THRESHOLD_TARGET}'", "--report", report)
    outcome = evaluate_version(version_dir, str(work / "holdout.csv"), TARGET, threshold_target=THRESHOLD_TARGET,
                               estimator=best.pipeline[-1], importance_rows=0)
    write_report(outcome, report)
    print(outcome.result.summary())
    threshold = outcome.result.threshold
    print(f"report: {report} ({report.stat().st_size // 1024} KiB)")

    step("8. registry: register, approve, promote to production")
    for words in (("register", "fraud", version_dir.name), ("approve", "fraud", version_dir.name),
                  ("promote", "fraud", version_dir.name, "--stage production")):
        cli("registry", words[0], "--repository", repo, *words[1:])
    registry = Registry(repo)
    registry.register_version("fraud", version_dir.name, actor="demo")
    registry.approve("fraud", version_dir.name, note="holdout evaluation in evaluation.html", actor="demo")
    registry.promote("fraud", version_dir.name, "production", actor="demo")
    record = registry.get_version("fraud", version_dir.name)
    print(f"fraud/{record.version}: {record.approval}, stages {list(record.stages)}, "
          f"threshold {record.threshold}, aliases {registry.aliases('fraud')}")

    step("9. onyxserve serve")
    grpc_port, http_port = free_port(), free_port()
    serve = [sys.executable, "-m", "onyxserve", "serve", "--repository", str(repo), "--grpc-port", str(grpc_port),
             "--http-port", str(http_port), "--log-level", "WARNING"]
    cli("serve", *serve[4:])
    server = subprocess.Popen(serve)
    target = f"127.0.0.1:{grpc_port}"
    code = None
    try:
        wait_ready(target, server)
        print(f"ready: gRPC {target}, HTTP 127.0.0.1:{http_port}")

        frauds = holdout.index[holdout[TARGET] == 1][:2].tolist()
        picked = holdout.loc[holdout.index[:4].tolist() + frauds]
        features = list(manifest.feature_names)
        rows = picked[features].to_numpy(np.float32)
        step(f"10. score {len(rows)} holdout transactions over V2 gRPC (one {list(rows.shape)} FP32 tensor)")
        request = pb.ModelInferRequest(model_name="fraud")
        request.inputs.add(name=MATRIX_INPUT, datatype="FP32", shape=list(rows.shape))
        request.raw_input_contents.append(rows.tobytes())
        with grpc.insecure_channel(target) as channel:
            response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
        outputs = {o.name: raw for o, raw in zip(response.outputs, response.raw_output_contents)}
        labels = np.frombuffer(outputs["label"], dtype="<i8")
        served = np.frombuffer(outputs["probabilities"], dtype="<f4").reshape(-1, 2)[:, 1]
        offline = best.pipeline.predict_proba(picked.drop(columns=[TARGET]))[:, 1]
        for i, (truth, label, p, e) in enumerate(zip(picked[TARGET], labels, served, offline)):
            flag = "FRAUD" if p >= threshold else "ok"
            print(f"  row {picked.index[i]:>5}: true {truth}  label {label}  P(fraud) served {p:.6f}  "
                  f"offline {e:.6f}  at threshold {threshold:.4f}: {flag}")
        if not np.array_equal(labels, (served >= threshold).astype(np.int64)):
            raise SystemExit("the served labels do not follow the registry's threshold")
        print(f"served labels follow the threshold the evaluation recorded in the registry ({threshold:.4f})")
        diff = float(np.max(np.abs(served - offline)))
        if diff > TOLERANCE:
            raise SystemExit(f"served and offline scores differ by {diff:.3g}")
        print(f"served == offline (max |difference| {diff:.2g}, float32)")

        step("11. the same over V2 REST")
        body = {"inputs": [{"name": MATRIX_INPUT, "datatype": "FP32", "shape": [1, len(features)],
                            "data": rows[-1].tolist()}]}
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/fraud/infer",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        rest = {o["name"]: o["data"] for o in answer["outputs"]}
        print(f"  row {picked.index[-1]}: label {rest['label'][0]}  P(fraud) {rest['probabilities'][1]:.6f}"
              f" (gRPC {served[-1]:.6f})")

        step("12. Prometheus /metrics (excerpt)")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
        for line in metrics.splitlines():
            if line.startswith(("onyxserve_requests_total", "onyxserve_batches_total", "onyxserve_rows_total")):
                print(" ", line)

        step("13. batch-predict the holdout to Parquet")
        out = work / "holdout_scores.parquet"
        cli("batch-predict", version_dir, work / "holdout.csv", "--out", out)
        summary = batch_predict(version_dir, str(work / "holdout.csv"), out, progress=False)
        print(summary.describe())
        table = pq.read_table(out).to_pandas()
        positions = [holdout.index.get_loc(i) for i in picked.index]
        batch = table["probability_1"].to_numpy()[positions]
        print(f"{len(table):,} rows, columns {list(table.columns)}; flagged at threshold {threshold:.4f}: "
              f"{int((table['probability_1'] >= threshold).sum())}; "
              f"batch == served for the scored rows: {bool(np.allclose(batch, served, rtol=0, atol=1e-6))}")
    finally:
        step("14. SIGTERM: drain and exit")
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        print(f"server exited with {code}")
    print(f"\ndone in {time.monotonic() - started:.0f} s; everything is in {work}/")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
