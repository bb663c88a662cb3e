#!/usr/bin/env bash
# onyxserve vs MLServer 1.7.1, side by side, in one go, with the same harness and the same rows.
#
#   benchmarks/served/compare.sh WORK_DIR [RESULTS_DIR]
#
# 1. fits the reference pipelines into WORK_DIR (skipped if WORK_DIR/versions.json exists)
# 2. sets up MLServer's virtualenv and configs (setup_mlserver.sh; reuses an existing venv)
# 3. exports both pipelines with `onyxserve export` into WORK_DIR/onyx-repo, serves them with
#    `onyxserve serve --workers W` for each W in ONYX_WORKERS (default "1 2") and loads each model
# 4. loads MLServer default and batching configs identically (mlserver_baseline.sh)
# 5. prints the Markdown tables and ratios (summarize.py) into WORK_DIR/results/summary.md
#
# Load per (server, config, model): closed loop, CONCURRENCY (default 1,4,16,64), WARMUP /
# DURATION (default 2s / 5s), one row per request from sample.csv. onyxserve answers label +
# probabilities by default; MLServer is asked for predict + predict_proba, the same information.
# ONYX_GRPC_PORT / ONYX_HTTP_PORT default 18101 / 18100; MLServer's ports are set by setup.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=$(cd "$here/.." && pwd)
WORK=${1:?usage: compare.sh WORK_DIR}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RESULTS=${2:-$WORK/results}
CONCURRENCY=${CONCURRENCY:-1,4,16,64}
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-5s}
ONYX_WORKERS=${ONYX_WORKERS:-1 2}
ONYX_GRPC_PORT=${ONYX_GRPC_PORT:-18101}
ONYX_HTTP_PORT=${ONYX_HTTP_PORT:-18100}
MODELS="fraud_lr fraud_rf"
mkdir -p "$RESULTS"

[[ -f $WORK/versions.json ]] || python3 "$bench/reference_models.py" --out "$WORK"
"$here/setup_mlserver.sh" "$WORK"

# --- onyxserve ---------------------------------------------------------------------------
repo=$WORK/onyx-repo
rm -rf "$repo"
for m in $MODELS; do
    onyxserve export "$WORK/$m.joblib" --name "$m" --repository "$repo" --sample "$WORK/sample.csv"
done
for workers in $ONYX_WORKERS; do
    pidfile=$WORK/onyxserve.pid
    rm -f "$pidfile"
    # the new session's leader writes its own pid (with job control on, setsid forks and $! is wrong)
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" onyxserve serve --repository "$repo" \
        --grpc-port "$ONYX_GRPC_PORT" --http-port "$ONYX_HTTP_PORT" --workers "$workers" \
        >"$WORK/onyxserve.log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do [[ -s $pidfile ]] && break; sleep 0.1; done
    onyx_pid=$(cat "$pidfile")
    stop_onyx() {
        # SIGTERM to the main process only: it drains and stops its workers; the group is a fallback
        kill -TERM "$onyx_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$onyx_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$onyx_pid" 2>/dev/null || true
    }
    trap stop_onyx EXIT
    deadline=$((SECONDS + 120))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ONYX_HTTP_PORT/v2/health/ready" || true) == 200 ]]; do
        if ! kill -0 "$onyx_pid" 2>/dev/null || ((SECONDS > deadline)); then
            echo "onyxserve did not become ready:" >&2
            tail -20 "$WORK/onyxserve.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    for m in $MODELS; do
        echo "== onyxserve workers=$workers / $m   (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
        onyxserve loadtest "127.0.0.1:$ONYX_GRPC_PORT" --model "$m" --data "$WORK/sample.csv" \
            --concurrency "$CONCURRENCY" --warmup "$WARMUP" --duration "$DURATION" \
            --json-out "$RESULTS/onyxserve-workers$workers-$m.json" || echo "(run ended with status $?)"
    done
    stop_onyx
    trap - EXIT
done

# --- MLServer, both configurations ------------------------------------------------------------
CONCURRENCY=$CONCURRENCY WARMUP=$WARMUP DURATION=$DURATION "$here/mlserver_baseline.sh" "$WORK" "$RESULTS"

python3 "$here/summarize.py" "$RESULTS" > "$RESULTS/summary.md"
cat "$RESULTS/summary.md"
