#!/usr/bin/env bash
# The full evolve run of an agentic example (docs/harness.md, "Agentic examples"): plain vs agentic seed vs
# evolved, on dev, holdout and test. Works on a copy in DIR; BACKEND (default vllm) is the one edit to its
# ratchet.toml. The plain harness is a second copy with `run_examples = false`, scored on dev and holdout
# (`ratchet eval`); the sealed test split is unsealed once, by the evolved run, for its seed and best.
#   usage: bash scripts/agentic_run.sh EXAMPLE [DIR] [BACKEND]
# Run it again on a DIR that exists and it resumes the evolve run, then goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
example=${1:?usage: agentic_run.sh EXAMPLE [DIR] [BACKEND]}
dir=${2:-${TMPDIR:-/tmp}/ratchet-agentic/$example}
backend=${3:-vllm}
timed() { local t0; t0=$(date +%s); "$@"; local rc=$?; echo "WALL_S $(( $(date +%s) - t0 )) rc=$rc: $*"; return $rc; }
copy() {  # copy EXAMPLE to $1 (not its runs), engine set to $backend
  mkdir -p "$1" && cp -r "examples/$example/." "$1/" && rm -rf "$1/.ratchet" "$1/memory.md"
  sed -i "s/^backend = \"local\"/backend = \"$backend\"/" "$1/ratchet.toml"
  grep -q "^backend = \"$backend\"" "$1/ratchet.toml" || { echo "could not set [model] backend in $1/ratchet.toml"; exit 1; }
}
if [ -f "$dir/evolved/ratchet.toml" ]; then
  echo "$dir exists: resuming its evolve run"
  timed ratchet evolve "$dir/evolved" --resume || exit 1
else
  copy "$dir/evolved"
  timed ratchet evolve "$dir/evolved" || exit 1
fi
timed ratchet test "$dir/evolved" --unseal || exit 1
if [ ! -f "$dir/plain/ratchet.toml" ]; then
  copy "$dir/plain"
  python3 - "$dir/plain/harness/params.toml" <<'PY' || exit 1
import sys, tomlkit
path = sys.argv[1]
doc = tomlkit.parse(open(path).read())
doc["run_examples"]["value"] = False
open(path, "w").write(tomlkit.dumps(doc))
PY
fi
for split in dev holdout; do timed ratchet eval "$dir/plain" --split "$split" || exit 1; done
ratchet log "$dir/evolved"
