#!/usr/bin/env bash
# Load MLServer (both configs, both reference models) with the onyxserve harness.
#
#   benchmarks/served/mlserver_baseline.sh MODELS_DIR [RESULTS_DIR]
#
# Needs setup_mlserver.sh MODELS_DIR to have run. Each (config, model) pair: closed loop over
# CONCURRENCY (default 1,4,16,64), WARMUP / DURATION per level (default 2s / 5s), one row per
# request from MODELS_DIR/sample.csv, outputs predict + predict_proba (label + probabilities,
# like onyxserve's label + probabilities). JSON per run in RESULTS_DIR (default MODELS_DIR/results).
# OUTPUTS (default "predict predict_proba") are the requested outputs; TAG is appended to the
# config part of the JSON names (e.g. TAG=_probaonly OUTPUTS=predict_proba).
# LOADTEST (default "onyxserve loadtest") is the harness command. On a shared machine,
# QUIET_LOAD=1.0 waits (up to QUIET_WAIT s, default 300) before each run for the 1-minute load
# average to drop below 1.0; the load average at the start of each run is printed either way.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
MODELS_DIR=$(cd "${1:?usage: mlserver_baseline.sh MODELS_DIR [RESULTS_DIR]}" && pwd)
RESULTS_DIR=${2:-$MODELS_DIR/results}
CONCURRENCY=${CONCURRENCY:-1,4,16,64}
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-5s}
LOADTEST=${LOADTEST:-onyxserve loadtest}
CONFIGS=${CONFIGS:-default batching}
MODELS=${MODELS:-fraud_lr fraud_rf}
OUTPUTS=${OUTPUTS:-predict predict_proba}
TAG=${TAG:-}
output_args=()
for o in $OUTPUTS; do output_args+=(--output "$o"); done
mkdir -p "$RESULTS_DIR"

wait_quiet() {
    [[ -n ${QUIET_LOAD:-} ]] || return 0
    local until=$((SECONDS + ${QUIET_WAIT:-300}))
    while awk -v max="$QUIET_LOAD" '{exit !($1 >= max)}' /proc/loadavg && ((SECONDS < until)); do
        sleep 5
    done
}

for config in $CONFIGS; do
    dir=$MODELS_DIR/mlserver/$config
    grpc_port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['grpc_port'])" "$dir/settings.json")
    "$here/run_mlserver.sh" start "$dir"
    trap '"$here/run_mlserver.sh" stop "$dir"' EXIT
    for model in $MODELS; do
        wait_quiet
        echo "== MLServer $config / $model / outputs: $OUTPUTS   (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
        $LOADTEST "127.0.0.1:$grpc_port" --model "$model" --data "$MODELS_DIR/sample.csv" \
            "${output_args[@]}" \
            --concurrency "$CONCURRENCY" --warmup "$WARMUP" --duration "$DURATION" \
            --json-out "$RESULTS_DIR/mlserver-$config$TAG-$model.json" || echo "(run ended with status $?)"
    done
    "$here/run_mlserver.sh" stop "$dir"
    trap - EXIT
done
