"""Inference engines side by side on the embedded model: ratchet `local`, vLLM, plain transformers `generate`.

    python bench/engines.py [--engines vllm,local,local-bf16,generate,...] [--lengths 32,128] [--conc 1,8,32]

The same prompts (distinct per call, so vLLM's prefix cache gets no free hits), greedy, at each concurrency
level and each max_tokens, through:
- `local`: ratchet's own backend (transformers, fp32, dynamic batching), and its cheap variants:
  `local-bf16` (dtype bfloat16: AVX-512 BF16 CPUs have bf16 matmuls), `local-compile` (torch.compile of the
  forward pass, dynamic shapes);
- `vllm`: `[model] backend = "vllm"`, the server started by ratchet from the venv scripts/setup.sh --vllm
  makes (bf16), over HTTP through the OpenAI SDK client; run first and stopped before the others, so that
  its processes do not compete with them; `vllm-all-cores` lets its worker use every core
  (VLLM_CPU_NUM_OF_RESERVED_CPU=0; by default vLLM on x86 keeps one core for its scheduler process);
- `generate`: `model.generate` on batches of `concurrency` left-padded prompts, fp32, and its variants
  `generate-bf16`, `generate-static` (static KV cache), `generate-static-compile` (static cache plus
  torch.compile, the combination transformers documents for speed).
Prints tokens/s and calls/s per cell, the ratio of tokens/s to `local` in the same cell, tokens per CPU
second (this process, plus vLLM's processes for vLLM: steadier than wall time when others share the
machine) and its ratio, how many greedy texts equal local's, and the load average. Startup (vLLM's
server start, torch.compile warm-up) is timed apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ratchet.config import ModelSection
from ratchet.models import build_model
from ratchet.models.gguf import resolve_local_model
from ratchet.models.local import LocalModel, torch_threads
from ratchet.process_guard import group_members
from ratchet.types import SamplingParams

QUESTIONS = [
    "What is {a}+{b}?",
    "What is {a} times {b}?",
    "Name a fruit that starts with the letter {c}.",
    "Give one word that rhymes with '{w}'.",
    "Is {a} an even number? Answer yes or no.",
    "Write one short sentence about the number {a}.",
    "Translate '{w}' into French.",
    "Explain in two sentences why the sky looks {w2}.",
]
WORDS = ["cat", "house", "rain", "light", "tree", "blue", "stone", "river"]
COLOURS = ["blue", "red at sunset", "grey", "dark at night"]
ENGINES = ["vllm", "vllm-all-cores", "local", "local-bf16", "local-compile", "generate", "generate-bf16", "generate-static",
           "generate-static-compile"]

COMPILE_NOTE = ("compile variants: concurrency 1 only. At 8 and 32 every new batch shape recompiled: local-compile "
                "measured 0.4-17 tok/s there, and generate-static-compile with fullgraph=True stopped at dynamo's "
                "recompile limit (first run of this script).")
Run = Callable[[list[str], int, int], Awaitable[tuple[list[str], int]]]  # prompts, max_tokens, conc -> texts, tokens


def prompts_for(n: int, offset: int) -> list[str]:
    out = []
    for k in range(offset, offset + n):
        out.append(QUESTIONS[k % len(QUESTIONS)].format(a=3 + 7 * k, b=11 + 5 * k, c="ABCDEFGHPRST"[k % 12],
                                                        w=WORDS[k % len(WORDS)], w2=COLOURS[k % len(COLOURS)]))
    return out


def calls_for(concurrency: int) -> int:
    return max(8, concurrency)  # enough calls that a level is measured on more than one round trip


@dataclass
class Cell:
    engine: str
    max_tokens: int
    concurrency: int
    calls: int
    tokens: int
    wall_s: float
    cpu_s: float
    texts: list[str]
    load: float  # the 1-minute load average after the cell: on a shared machine, how much else was running


def chat_runner(model) -> Run:
    async def run(prompts: list[str], max_tokens: int, concurrency: int) -> tuple[list[str], int]:
        slots = asyncio.Semaphore(concurrency)
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens)

        async def one(prompt: str):
            async with slots:
                return await model.chat([{"role": "user", "content": prompt}], params)

        done = await asyncio.gather(*(one(p) for p in prompts))
        return [c.text for c in done], sum(c.completion_tokens for c in done)

    return run


def generate_runner(dtype_name: str, static: bool, compile_: bool) -> Run:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_local_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype_name)).eval()
    eos = model.generation_config.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    if compile_:
        model.forward = torch.compile(model.forward)  # fullgraph=True stopped at dynamo's recompile limit
    eos_ids = set(eos if isinstance(eos, list) else [eos])

    def batch(prompts: list[str], max_tokens: int) -> tuple[list[str], int]:
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
                 for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        extra = {"cache_implementation": "static"} if static else {}
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad, **extra)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        lengths = [next((i for i, t in enumerate(row) if t in eos_ids), len(row)) for row in new]
        return [tok.decode(row[:n], skip_special_tokens=True) for row, n in zip(new, lengths)], sum(lengths)

    async def run(prompts: list[str], max_tokens: int, concurrency: int) -> tuple[list[str], int]:
        texts, tokens = [], 0
        for i in range(0, len(prompts), concurrency):
            t, n = await asyncio.to_thread(batch, prompts[i:i + concurrency], max_tokens)
            texts += t
            tokens += n
        return texts, tokens

    return run


def cpu_seconds(pgid: int | None = None) -> float:
    """CPU seconds used so far by this process (all its threads) and, given `pgid`, by that process group:
    a yardstick that other load on a shared machine moves far less than wall time."""
    total = time.process_time()
    if pgid is not None:
        for pid in group_members(pgid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


async def make_engine(name: str) -> tuple[Run, Callable[[], Awaitable[None]], Callable[[], float], float]:
    """(runner, close, cpu seconds so far, startup seconds) for an engine name."""
    t0 = time.perf_counter()
    if name.startswith("vllm"):
        env = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"} if name == "vllm-all-cores" else {}
        os.environ.update(env)  # the server inherits it
        try:
            model = build_model(ModelSection(backend="vllm", concurrency=64, timeout_s=600), Path.cwd())
        finally:
            for key in env:
                os.environ.pop(key)
        await model.ready()
        pgid = model.server.proc.pid  # the guard leads the group of every vLLM process
        return chat_runner(model), model.aclose, lambda: cpu_seconds(pgid), time.perf_counter() - t0
    if name.startswith("local"):
        model = LocalModel(dtype="bfloat16" if name == "local-bf16" else "float32", max_batch=32)
        if name == "local-compile":
            import torch

            hf = model.step_model.model
            hf.forward = torch.compile(hf.forward, dynamic=True)
        run = chat_runner(model)
        close = model.aclose
    else:
        run = generate_runner("bfloat16" if name == "generate-bf16" else "float32", "static" in name, "compile" in name)

        async def close() -> None:
            pass
    await run(["Hello"], 8, 1)  # warm-up: first-call allocations (and the first compile)
    return run, close, cpu_seconds, time.perf_counter() - t0


async def bench(engines: list[str], lengths: list[int], levels: list[int], cells: list[Cell], failed: list[str]) -> None:
    for name in engines:
        try:
            run, close, cpu, startup = await make_engine(name)
        except Exception as e:  # one engine that cannot start must not cost the others' figures
            failed.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
            print(f"{name}: FAILED {failed[-1]}", flush=True)
            continue
        print(f"{name}: ready in {startup:.0f} s", flush=True)
        try:
            for max_tokens in lengths:
                for offset, conc in enumerate(levels):
                    if "compile" in name and conc > 1:
                        continue  # a new batch shape recompiles: see COMPILE_NOTE
                    prompts = prompts_for(calls_for(conc), 100 * offset)
                    t0, c0 = time.perf_counter(), cpu()
                    texts, tokens = await run(prompts, max_tokens, conc)
                    wall, used = time.perf_counter() - t0, cpu() - c0
                    cells.append(Cell(name, max_tokens, conc, len(prompts), tokens, wall, used, texts, os.getloadavg()[0]))
                    print(f"  max_tokens {max_tokens:4d} x {conc:2d} concurrent: {tokens / wall:7.1f} tok/s "
                          f"{len(prompts) / wall:6.2f} calls/s", flush=True)
        except Exception as e:
            failed.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
            print(f"{name}: FAILED {failed[-1]}", flush=True)
        finally:
            await close()


def table(cells: list[Cell]) -> str:
    base = {(c.max_tokens, c.concurrency): c for c in cells if c.engine == "local"}
    lines = ["| engine | max_tokens | conc | calls | tok/s | calls/s | tok/s vs local | tok/CPU-s | vs local | "
             "texts = local | load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        ref = base.get((c.max_tokens, c.concurrency))
        ratio = f"{(c.tokens / c.wall_s) / (ref.tokens / ref.wall_s):.2f}x" if ref else "-"
        per_cpu = c.tokens / max(c.cpu_s, 1e-9)
        cpu_ratio = f"{per_cpu / (ref.tokens / max(ref.cpu_s, 1e-9)):.2f}x" if ref else "-"
        same = f"{sum(a == b for a, b in zip(c.texts, ref.texts))}/{c.calls}" if ref else "-"
        lines.append(f"| {c.engine} | {c.max_tokens} | {c.concurrency} | {c.calls} | {c.tokens / c.wall_s:.1f} | "
                     f"{c.calls / c.wall_s:.2f} | {ratio} | {per_cpu:.1f} | {cpu_ratio} | {same} | {c.load:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    ap.add_argument("--lengths", default="32,128", help="max_tokens values")
    ap.add_argument("--conc", default="1,8,32", help="concurrency levels")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        ap.error(f"unknown engine(s) {unknown}; choose from {ENGINES}")
    engines.sort(key=lambda e: not e.startswith("vllm"))  # vLLM first: its server is stopped before the others run
    lengths = [int(x) for x in args.lengths.split(",")]
    levels = [int(x) for x in args.conc.split(",")]
    print(f"{os.cpu_count()} CPUs, torch threads {torch_threads()}, load average {os.getloadavg()[0]:.1f}; greedy; "
          f"calls per level: {[calls_for(c) for c in levels]}", flush=True)
    t0 = time.perf_counter()
    cells: list[Cell] = []
    failed: list[str] = []
    try:
        asyncio.run(bench(engines, lengths, levels, cells, failed))
    finally:  # what was measured is printed, even after an interrupt
        print(f"\n{table(cells)}\n")
        for line in failed:
            print(f"failed: {line}")
        if any("compile" in e for e in engines):
            print(COMPILE_NOTE)
        print(f"whole run {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
