#!/usr/bin/env bash
# One "suite nobody prepared" run (docs/new-suites.md): a project from `ratchet init --suite` with its
# default settings, evolved for its 20 rounds, the test split unsealed once, and the plan checked against
# the run. The only change to what init writes is the engine, `[model] backend` (default: vllm, which
# scripts/setup.sh --vllm installs; pass local to keep init's own backend).
#   usage: bash scripts/new_suite_run.sh DATASET [DIR] [BACKEND]
# Prints each command's wall time (WALL_S lines); everything else is ratchet's own output.
set -uo pipefail
dataset=${1:?usage: new_suite_run.sh DATASET [DIR] [BACKEND]}
dir=${2:-${TMPDIR:-/tmp}/ratchet-new-suites/$dataset}
backend=${3:-vllm}
timed() { local t0; t0=$(date +%s); "$@"; local rc=$?; echo "WALL_S $(( $(date +%s) - t0 )) rc=$rc: $*"; return $rc; }
timed ratchet init "$dir" --suite "reasoning_gym:$dataset" || exit 1
if [ "$backend" != local ]; then
  sed -i "s/^backend = \"local\"  /backend = \"$backend\"   /" "$dir/ratchet.toml"
  grep -q "^backend = \"$backend\"" "$dir/ratchet.toml" || { echo "could not set [model] backend in $dir/ratchet.toml"; exit 1; }
fi
timed ratchet plan "$dir" || exit 1
timed ratchet evolve "$dir" || exit 1
timed ratchet test "$dir" --unseal || exit 1
timed ratchet plan "$dir" --check
ratchet log "$dir"
