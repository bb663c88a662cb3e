"""Write walkthrough.ipynb (nbformat 4, no outputs): the steps of demo.py as notebook cells.

Run: ``python examples/fraud/make_notebook.py`` (rewrites examples/fraud/walkthrough.ipynb).
"""

from __future__ import annotations

import json
from pathlib import Path

CELLS: list[tuple[str, str]] = [
    ("markdown", """# The onyxserve fraud example, end to end

Generated credit-card transactions → datasource → recipe → train + tune → evaluate (HTML report,
threshold) → registry → serve → score over gRPC and REST → batch-predict → SIGTERM.
The same steps as `examples/fraud/demo.py`; each step names the equivalent CLI command.
Run it from the repository root after `pip install -e ".[training]"`."""),
    ("code", """import json
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
from onyxserve.server.models.decoder import MATRIX_INPUT
from onyxserve.training.batch.predict import batch_predict
from onyxserve.training.datasource.record import create_datasource
from onyxserve.training.evaluation.metrics import evaluate_version
from onyxserve.training.evaluation.report import write_report
from onyxserve.training.recipe.spec import load_recipe
from onyxserve.repository.registry import Registry
from onyxserve.training.synthetic import TARGET, fraud_transactions
from onyxserve.training.fit.train import export_trained, train_model
from onyxserve.training.fit.tune import tune_model

HERE = Path("examples/fraud")          # run from the repository root
work = Path("demo-notebook"); work.mkdir(exist_ok=True)  # git-ignored (/demo-*/)
repo = work / "models"
shutil.rmtree(repo, ignore_errors=True)  # a fresh repository: the model is version 1"""),
    ("markdown", "## 1. Data: 30,000 generated transactions (~0.3 % fraud), a stratified 25 % holdout"),
    ("code", """data = fraud_transactions(rows=30_000, seed=7)
holdout = data.groupby(TARGET, group_keys=False).sample(frac=0.25, random_state=7).sort_index()
train = data.drop(holdout.index)
train.to_csv(work / "train.csv", index=False)
holdout.to_csv(work / "holdout.csv", index=False)
len(train), int(train[TARGET].sum()), len(holdout), int(holdout[TARGET].sum())"""),
    ("markdown", ("## 2. Datasource: schema (Class inferred as the BINARY target), statistics, checksum\n\n"
                 "`onyxserve datasource create demo-notebook/train.csv --target Class --out demo-notebook/train.datasource.json`")),
    ("code", """ds = create_datasource(work / "train.csv", target=TARGET)
ds.save(work / "train.datasource.json")
print(ds.summary())
ds.schema.attributes[TARGET], ds.task"""),
    ("markdown", "## 3. Recipe: drop Time, clip Amount outliers, standardize (`examples/fraud/recipe.json`)"),
    ("code", """recipe = load_recipe(HERE / "recipe.json")
print((HERE / "recipe.json").read_text())
recipe.plan(ds).inputs"""),
    ("markdown", ("## 4. Train: linear (SGD, log loss), class_weight balanced\n\n"
                 "`onyxserve train demo-notebook/train.datasource.json --algorithm linear --recipe examples/fraud/recipe.json "
                 "--class-weight balanced --params '{\"max_passes\": 10, \"penalty\": \"l2\", \"alpha\": 0.001}'`")),
    ("code", """LINEAR = {"max_passes": 10, "penalty": "l2", "alpha": 1e-3}
base = train_model(ds, algorithm="linear", params=LINEAR, recipe=recipe, class_weight="balanced", seed=0, progress=False)
base.metrics"""),
    ("markdown", ("## 5. Tune: optuna, 6 trials or 30 s, whichever comes first\n\n"
                 "`onyxserve tune demo-notebook/train.datasource.json --algorithm linear --recipe examples/fraud/recipe.json "
                 "--class-weight balanced --space demo-notebook/space.json --trials 6 --time-budget 30 --metric average_precision "
                 "--history demo-notebook/trials.json`")),
    ("code", """SPACE = {
    "alpha": {"type": "float", "low": 1e-4, "high": 1.5e-2, "log": True},
    "penalty": {"type": "categorical", "choices": ["l2", "elasticnet"]},
    "max_passes": {"type": "int", "low": 5, "high": 30},
}
(work / "space.json").write_text(json.dumps(SPACE, indent=2))
tuned = tune_model(ds, "linear", SPACE, strategy="optuna", trials=6, timeout_s=30, metric="average_precision",
                   class_weight="balanced", seed=0, history_path=work / "trials.json", prepared=base.prepared,
                   progress=False)
best = tuned.best if tuned.best_score > base.metrics["average_precision"] else base
tuned.best_params, tuned.best_score, base.metrics["average_precision"]"""),
    ("markdown", ("## 6. Export: ONNX + manifest, parity-checked against scikit-learn\n\n"
                 "`onyxserve tune ... --export --name fraud --repository demo-notebook/models`")),
    ("code", """exported = export_trained(best, name="fraud", repository=repo)
version_dir, manifest = exported.path, exported.manifest
version_dir, manifest.feature_names, exported.parity.max_error"""),
    ("markdown", ("## 7. Evaluate on the holdout through the served path: threshold for FPR ≤ 1 %, HTML report\n\n"
                 "`onyxserve evaluate demo-notebook/models/fraud/1 demo-notebook/holdout.csv --target Class "
                 "--threshold-for 'fpr<=1%' --report demo-notebook/evaluation.html`")),
    ("code", """outcome = evaluate_version(version_dir, str(work / "holdout.csv"), TARGET, threshold_target="fpr<=1%",
                           estimator=best.pipeline[-1], importance_rows=0)
report = write_report(outcome, work / "evaluation.html")
threshold = outcome.result.threshold
print(outcome.result.summary())
print("report:", report)"""),
    ("markdown", ("## 8. Registry: register, approve, promote to production\n\n"
                 "`onyxserve registry register --repository demo-notebook/models fraud 1`, then `approve`, "
                 "then `promote ... --stage production`")),
    ("code", """registry = Registry(repo)
registry.register_version("fraud", version_dir.name, actor="notebook")
registry.approve("fraud", version_dir.name, note="holdout evaluation", actor="notebook")
registry.promote("fraud", version_dir.name, "production", actor="notebook")
registry.get_version("fraud", version_dir.name).to_dict()"""),
    ("markdown", "## 9. Serve on free loopback ports\n\n`onyxserve serve --repository demo-notebook/models --grpc-port P --http-port Q`"),
    ("code", """def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

grpc_port, http_port = free_port(), free_port()
server = subprocess.Popen([sys.executable, "-m", "onyxserve", "serve", "--repository", str(repo),
                           "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--log-level", "WARNING"])
target = f"127.0.0.1:{grpc_port}"
channel = grpc.insecure_channel(target)
stub = pb_grpc.GRPCInferenceServiceStub(channel)
deadline = time.monotonic() + 60
while True:
    try:
        if stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready:
            break
    except grpc.RpcError:
        if time.monotonic() > deadline or server.poll() is not None:
            raise
        time.sleep(0.2)
print("ready:", target)"""),
    ("markdown", "## 10. Score holdout transactions over V2 gRPC: served == offline"),
    ("code", """frauds = holdout.index[holdout[TARGET] == 1][:2].tolist()
picked = holdout.loc[holdout.index[:4].tolist() + frauds]
rows = picked[list(manifest.feature_names)].to_numpy(np.float32)
request = pb.ModelInferRequest(model_name="fraud")
request.inputs.add(name=MATRIX_INPUT, datatype="FP32", shape=list(rows.shape))
request.raw_input_contents.append(rows.tobytes())
response = stub.ModelInfer(request, timeout=5)
outputs = {o.name: raw for o, raw in zip(response.outputs, response.raw_output_contents)}
served = np.frombuffer(outputs["probabilities"], dtype="<f4").reshape(-1, 2)[:, 1]
offline = best.pipeline.predict_proba(picked.drop(columns=[TARGET]))[:, 1]
assert np.max(np.abs(served - offline)) < 1e-5
print("served == offline")
picked.assign(served=served, offline=offline, flagged=served >= threshold)[[TARGET, "served", "offline", "flagged"]]"""),
    ("markdown", "## 11. The same over V2 REST, and 12. Prometheus /metrics"),
    ("code", """body = {"inputs": [{"name": MATRIX_INPUT, "datatype": "FP32", "shape": [1, rows.shape[1]], "data": rows[-1].tolist()}]}
req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/fraud/infer", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
print(json.loads(urllib.request.urlopen(req, timeout=5).read())["outputs"])
metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
print("\\n".join(l for l in metrics.splitlines() if l.startswith(("onyxserve_requests_total", "onyxserve_rows_total"))))"""),
    ("markdown", ("## 13. Batch-predict the holdout to Parquet\n\n"
                 "`onyxserve batch-predict demo-notebook/models/fraud/1 demo-notebook/holdout.csv --out demo-notebook/holdout_scores.parquet`")),
    ("code", """summary = batch_predict(version_dir, str(work / "holdout.csv"), work / "holdout_scores.parquet", progress=False)
print(summary.describe())
scores = pq.read_table(work / "holdout_scores.parquet").to_pandas()
int((scores["probability_1"] >= threshold).sum()), scores.head()"""),
    ("markdown", "## 14. SIGTERM: the server drains and exits 0"),
    ("code", """channel.close()
server.send_signal(signal.SIGTERM)
server.wait(30)"""),
]


def notebook() -> dict:
    cells = []
    for i, (kind, text) in enumerate(CELLS):
        cell = {"cell_type": kind, "id": f"step-{i:02d}", "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("walkthrough.ipynb")
    out.write_text(json.dumps(notebook(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(out)
