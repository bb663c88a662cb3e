#!/usr/bin/env bash
# Set up Seldon MLServer 1.7.1 beside onyxserve, for the side-by-side served benchmark.
#
#   benchmarks/served/setup_mlserver.sh MODELS_DIR [CONFIG_ROOT]
#
# MODELS_DIR   output of `python benchmarks/reference_models.py --out MODELS_DIR`
#              (fraud_lr.joblib, fraud_rf.joblib, versions.json)
# CONFIG_ROOT  where the two MLServer configurations are written (default MODELS_DIR/mlserver)
#
# Environment:
#   MLSERVER_VENV    the isolated virtualenv (default /tmp/mlserver-venv); reused when it already
#                    has mlserver 1.7.1 and the pinned scikit-learn
#   MLSERVER_PYTHON  interpreter for the venv (default python3.11; mlserver 1.7.1 wants >=3.9,<3.13)
#   MLSERVER_PORTS   "HTTP GRPC METRICS" (default "18080 18081 18082"), all on 127.0.0.1
#
# Pins: mlserver==1.7.1 and mlserver-sklearn==1.7.1 put no bound on numpy or scikit-learn (their
# metadata says only `numpy`, `scikit-learn`, `joblib`), so the venv gets exactly the
# scikit-learn, numpy and joblib that pickled the pipelines (read from versions.json): a
# scikit-learn pickle only loads reliably in the version that wrote it, and a numpy-2 pickle does
# not load under numpy 1.x. Checked with scikit-learn 1.9.1 / numpy 2.4.6 / joblib 1.6.0 on
# Python 3.11. Also pinned: uvloop==0.21.0 (see UVLOOP below).
#
# Two configurations, each a settings.json + one folder per model with model-settings.json:
#   CONFIG_ROOT/default   MLServer's defaults (parallel_workers left at its default, no batching)
#   CONFIG_ROOT/batching  adaptive batching: max_batch_size 32, max_batch_time 0.005 s,
#                         parallel_workers 0 (inference in the server process, as the batcher needs)
# Both load the same joblib files (by absolute path) and pin the input codec to a numpy array, so
# a request is one FP32 tensor [N, 30] whatever its name. Ask for outputs `predict` and
# `predict_proba` to get label + probabilities (by default the sklearn runtime returns `predict`).
set -euo pipefail

MODELS_DIR=$(cd "${1:?usage: setup_mlserver.sh MODELS_DIR [CONFIG_ROOT]}" && pwd)
CONFIG_ROOT=${2:-$MODELS_DIR/mlserver}
VENV=${MLSERVER_VENV:-/tmp/mlserver-venv}
PY=${MLSERVER_PYTHON:-python3.11}
read -r HTTP_PORT GRPC_PORT METRICS_PORT <<<"${MLSERVER_PORTS:-18080 18081 18082}"

versions="$MODELS_DIR/versions.json"
[[ -f $versions ]] || { echo "no $versions: run benchmarks/reference_models.py --out $MODELS_DIR first" >&2; exit 2; }
pin() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$versions" "$1"; }
SKLEARN=$(pin scikit-learn)
NUMPY=$(pin numpy)
JOBLIB=$(pin joblib)
# uvloop 0.22+ makes asyncio.get_event_loop() raise outside a running loop; MLServer 1.7.1's
# inference-pool workers call it at start and die ("There is no current event loop"), so no
# model loads. 0.21.0 is the last release that behaves as MLServer 1.7.1 expects.
UVLOOP=0.21.0

if ! "$VENV/bin/python" -c "
import importlib.metadata as m, sys
want = {'mlserver': '1.7.1', 'mlserver-sklearn': '1.7.1', 'scikit-learn': '$SKLEARN', 'numpy': '$NUMPY',
        'uvloop': '$UVLOOP'}
sys.exit(any(m.version(k) != v for k, v in want.items()))" 2>/dev/null; then
    echo "creating $VENV (mlserver 1.7.1, scikit-learn $SKLEARN, numpy $NUMPY, joblib $JOBLIB)" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip 2> >(grep -v 'is ignored: it is neither' >&2)
    "$VENV/bin/pip" install -q "mlserver==1.7.1" "mlserver-sklearn==1.7.1" \
        "scikit-learn==$SKLEARN" "numpy==$NUMPY" "joblib==$JOBLIB" "uvloop==$UVLOOP" \
        2> >(grep -v 'is ignored: it is neither' >&2)
fi
"$VENV/bin/python" -c "
import joblib, sys
for name in ('fraud_lr', 'fraud_rf'):
    joblib.load(sys.argv[1] + '/' + name + '.joblib')
print('pipelines load in the MLServer venv')" "$MODELS_DIR" >&2

write_config() {  # write_config DIR BATCHING(0|1)
    local dir=$1 batching=$2 workers_line=""
    mkdir -p "$dir"
    [[ $batching == 1 ]] && workers_line='"parallel_workers": 0,'
    cat >"$dir/settings.json" <<EOF
{
  "debug": false,
  "host": "127.0.0.1",
  "http_port": $HTTP_PORT,
  "grpc_port": $GRPC_PORT,
  "metrics_port": $METRICS_PORT,
  $workers_line
  "load_models_at_startup": true
}
EOF
    for name in fraud_lr fraud_rf; do
        mkdir -p "$dir/$name"
        local batch_lines=""
        [[ $batching == 1 ]] && batch_lines='"max_batch_size": 32,
  "max_batch_time": 0.005,'
        cat >"$dir/$name/model-settings.json" <<EOF
{
  "name": "$name",
  "implementation": "mlserver_sklearn.SKLearnModel",
  $batch_lines
  "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 30]}],
  "parameters": {
    "uri": "$MODELS_DIR/$name.joblib",
    "version": "1",
    "content_type": "np"
  }
}
EOF
    done
}
write_config "$CONFIG_ROOT/default" 0
write_config "$CONFIG_ROOT/batching" 1
echo "MLServer configs: $CONFIG_ROOT/default $CONFIG_ROOT/batching (gRPC 127.0.0.1:$GRPC_PORT)" >&2
