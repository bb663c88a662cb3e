#!/usr/bin/env bash
# Fresh machine -> a served fraud model answering requests. Installs onyxserve (with the
# training extra, which includes export) into the current Python, then runs examples/fraud/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[training]"
python3 examples/fraud/demo.py --workdir "${DEMO_DIR:-demo-run}"
