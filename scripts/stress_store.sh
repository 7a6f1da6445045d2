#!/usr/bin/env bash
# The run store's concurrency under load: tests/engine/test_sweep.py and tests/engine/test_store.py, repeated.
# Odd repetitions run beside a busy loop on every core; even ones are pinned to one core with
# taskset, a busy loop sharing it. Races that hide on an idle machine show up here.
#
#   scripts/stress_store.sh [REPETITIONS]        (default 30; PYTHON=.venv/bin/python)
set -u
cd "$(dirname "$0")/.."
reps=${1:-30}
python=${PYTHON:-.venv/bin/python}
log=${LOG:-runs/stress_store.log}
mkdir -p "$(dirname "$log")"
: >"$log"
failures=0
hogs=()
stop_hogs() { [ ${#hogs[@]} -gt 0 ] && kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null; hogs=(); }
trap stop_hogs EXIT
for i in $(seq 1 "$reps"); do
  if ((i % 2)); then
    mode="busy loop on all $(nproc) cores"
    for _ in $(seq "$(nproc)"); do (while :; do :; done) & hogs+=($!); done
    runner=()
  else
    mode="taskset to core 0 with a busy loop on it"
    taskset -c 0 bash -c 'while :; do :; done' & hogs+=($!)
    runner=(taskset -c 0)
  fi
  start=$(date +%s)
  if "${runner[@]}" "$python" -m pytest -q -p no:cacheprovider tests/engine/test_sweep.py tests/engine/test_store.py >>"$log" 2>&1; then
    result=passed
  else
    result=FAILED
    failures=$((failures + 1))
  fi
  stop_hogs
  echo "repetition $i/$reps ($mode): $result in $(($(date +%s) - start)) s" | tee -a "$log"
done
echo "$failures of $reps repetitions failed (log: $log)"
[ "$failures" -eq 0 ]
