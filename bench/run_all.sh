#!/usr/bin/env bash
# Run every benchmark in sequence. --quick uses smaller sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ "${1:-}" = "--quick" ]; then
  $PY bench/startup.py --runs 3
  $PY bench/http_load.py --duration 5 --models 50
  $PY bench/search_scale.py --models 1000 --versions 100 --runs 10
  $PY bench/transfer.py --size-mib 256
else
  $PY bench/startup.py
  $PY bench/http_load.py
  $PY bench/search_scale.py
  $PY bench/transfer.py
fi
