#!/usr/bin/env bash
# Fresh machine -> the whole test suite. Installs onyxserve with its test extra, checks the
# committed protobuf code, runs the compiled core's tests once with bounds checks on (debug
# build), then rebuilds optimised and runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
python3 protos/generate.py --check
ONYXSERVE_CYTHON_DEBUG=1 python3 setup.py -q build_ext --inplace --force
python3 -m pytest -q tests/core -p no:cacheprovider
python3 setup.py -q build_ext --inplace --force
python3 -m pytest -q -p no:cacheprovider "$@"
