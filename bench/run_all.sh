#!/usr/bin/env bash
# Run the benchmarks one after the other (they must not overlap: two cores).
#
#   bash bench/run_all.sh           full sizes (~15 min; the 1M-version build is most of it)
#   bash bench/run_all.sh --quick   smaller sizes (~3 min)
#
# SEARCH_DB=/path/registry.db reuses (or builds once and keeps) the search database.
# A benchmark that crashes is reported at the end; missed targets print FAIL
# but are not errors.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found: apt-get install -y wrk" >&2
  exit 1
fi

quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
fi
search_db=()
if [ -n "${SEARCH_DB:-}" ]; then
  search_db=(--db "$SEARCH_DB")
fi

failed=()
run() {
  echo
  echo "== $* =="
  "$PY" "$@" || failed+=("$1")
}

if [ "$quick" = 1 ]; then
  run bench/startup.py --runs 3
  run bench/point_reads.py --duration 5 --models 50
  run bench/search_1m.py --models 1000 --versions 100 --runs 10 --walks 2 "${search_db[@]}"
  run bench/transfer.py --size 256MiB --rounds 1
else
  run bench/startup.py
  run bench/point_reads.py
  run bench/search_1m.py "${search_db[@]}"
  run bench/transfer.py
fi

echo
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
echo "all benchmarks ran (see PASS / FAIL above)"
