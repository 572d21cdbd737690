#!/usr/bin/env bash
# One "suite nobody prepared" run (docs/new-suites.md): a project from `ratchet init --suite` with its
# default settings, evolved for its 20 rounds, the test split unsealed once, and the plan checked against
# the run. The only change to what init writes is the engine, `[model] backend` (default: vllm, which
# scripts/setup.sh --vllm installs; pass local to keep init's own backend).
#   usage: bash scripts/new_suite_run.sh DATASET [DIR] [BACKEND]
# Run it again on a DIR that exists and it resumes that run (`ratchet evolve --resume`), then goes on.
# Prints each command's wall time (WALL_S lines); everything else is ratchet's own output.
set -uo pipefail
dataset=${1:?usage: new_suite_run.sh DATASET [DIR] [BACKEND]}
dir=${2:-${TMPDIR:-/tmp}/ratchet-new-suites/$dataset}
backend=${3:-vllm}
timed() { local t0; t0=$(date +%s); "$@"; local rc=$?; echo "WALL_S $(( $(date +%s) - t0 )) rc=$rc: $*"; return $rc; }
if [ -f "$dir/ratchet.toml" ]; then  # a run stopped part-way (Ctrl-C, a kill): continue it, keep its project as it is
  echo "$dir exists: resuming its evolve run"
  timed ratchet evolve "$dir" --resume || exit 1
else
  timed ratchet init "$dir" --suite "reasoning_gym:$dataset" || exit 1
  if [ "$backend" != local ]; then
    sed -i "s/^backend = \"local\"  /backend = \"$backend\"   /" "$dir/ratchet.toml"
    grep -q "^backend = \"$backend\"" "$dir/ratchet.toml" || { echo "could not set [model] backend in $dir/ratchet.toml"; exit 1; }
  fi
  timed ratchet plan "$dir" || exit 1
  timed ratchet evolve "$dir" || exit 1
fi
timed ratchet test "$dir" --unseal || exit 1
timed ratchet plan "$dir" --check
ratchet log "$dir"
