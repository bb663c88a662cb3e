#!/usr/bin/env bash
# drift on (A, :28471) vs drift off (B, :28481), same repository, one worker each, side by side
set -euo pipefail
PY=${PYTHON:-python}
WORK=${1:?usage: drift_compare.sh WORK_DIR (with repo/ and sample.csv)}
cd "$WORK"
$PY -m onyxserve serve --repository repo --model-control none --grpc-port 28471 --http-port 28470 > on.log 2>&1 &
ON=$!
ONYXSERVE_DRIFT=false $PY -m onyxserve serve --repository repo --model-control none --grpc-port 28481 --http-port 28480 > off.log 2>&1 &
OFF=$!
trap 'kill -TERM $ON $OFF 2>/dev/null; wait $ON $OFF 2>/dev/null || true' EXIT
for port in 28470 28480; do
  for _ in $(seq 1 100); do [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v2/health/ready || true) == 200 ]] && break; sleep 0.3; done
done
# each server must be ours and in the right mode: the drift report answers 200 on A, 404 on B
[[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:28470/v2/models/fraud_lr/drift) == 200 ]] || { echo "A is not a drift-on onyxserve"; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:28480/v2/models/fraud_lr/drift) == 404 ]] || { echo "B is not a drift-off onyxserve"; exit 1; }
kill -0 $ON && kill -0 $OFF
for run in 1 2 3; do
  echo "== run $run (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  $PY -m onyxserve loadtest 127.0.0.1:28471 --compare 127.0.0.1:28481 --model fraud_lr --data sample.csv \
      --concurrency 16 --warmup 2s --duration 5s --json-out run$run.json
done
curl -s http://127.0.0.1:28470/v2/models/fraud_lr/drift | python3 -c "import json,sys; r=json.load(sys.stdin); print('rows counted by A:', r['since_load']['rows'])"
