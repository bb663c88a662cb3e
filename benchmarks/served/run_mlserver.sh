#!/usr/bin/env bash
# Start / stop MLServer on 127.0.0.1 with one of the configs written by setup_mlserver.sh.
#
#   benchmarks/served/run_mlserver.sh start CONFIG_DIR   # returns once both models are ready
#   benchmarks/served/run_mlserver.sh stop CONFIG_DIR
#
# CONFIG_DIR is e.g. MODELS_DIR/mlserver/default or MODELS_DIR/mlserver/batching. MLServer runs in
# its own process group (it forks an inference pool); the group id is kept in
# CONFIG_DIR/mlserver.pid and its log in CONFIG_DIR/mlserver.log. MLSERVER_VENV as for setup.
# READY_TIMEOUT (default 120 s) bounds the wait for readiness; on timeout the server is stopped.
set -euo pipefail

cmd=${1:?usage: run_mlserver.sh start|stop CONFIG_DIR}
dir=$(cd "${2:?usage: run_mlserver.sh start|stop CONFIG_DIR}" && pwd)
VENV=${MLSERVER_VENV:-/tmp/mlserver-venv}
pidfile=$dir/mlserver.pid
log=$dir/mlserver.log

setting() { "$VENV/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$dir/settings.json" "$1"; }

stop() {
    [[ -f $pidfile ]] || return 0
    local pgid
    pgid=$(cat "$pidfile")
    if kill -0 -- "-$pgid" 2>/dev/null; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 -- "-$pgid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$pgid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case $cmd in
start)
    stop
    http_port=$(setting http_port)
    # setsid: MLServer and its worker processes share a group we can stop as a whole
    # the new session's leader writes its own pid: with job control on, setsid forks and $! would
    # be the short-lived wrapper instead
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$VENV/bin/mlserver" start "$dir" \
        >"$log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do [[ -s $pidfile ]] && break; sleep 0.1; done
    deadline=$((SECONDS + ${READY_TIMEOUT:-120}))
    models=$(cd "$dir" && ls -d */ | tr -d /)
    while :; do
        ready=1
        for m in $models; do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/v2/models/$m/ready" || true)
            [[ $code == 200 ]] || { ready=0; break; }
        done
        [[ $ready == 1 ]] && break
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null || ((SECONDS > deadline)); then
            echo "MLServer did not become ready (see $log):" >&2
            tail -20 "$log" >&2
            stop
            exit 1
        fi
        sleep 0.5
    done
    echo "MLServer ready: $dir (gRPC 127.0.0.1:$(setting grpc_port), pid $(cat "$pidfile"))" >&2
    ;;
stop)
    stop
    ;;
*)
    echo "usage: run_mlserver.sh start|stop CONFIG_DIR" >&2
    exit 2
    ;;
esac
