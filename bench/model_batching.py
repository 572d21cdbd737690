"""Dynamic batching vs one call at a time, on the embedded model, in one run.

    python bench/model_batching.py [--calls 32] [--max-tokens 32] [--device auto]

Issues N short chat calls concurrently (the local backend batches them into shared forward passes), then
the same N calls one after another, and prints calls/s for both and the ratio. Greedy decoding, so both
runs produce the same texts (up to float noise), which the script also reports. CPU seconds are printed
too: on a shared machine they are a steadier yardstick than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from ratchet.models.local import LocalModel
from ratchet.types import Completion, SamplingParams

QUESTIONS = [
    "What is {a}+{b}?",
    "What is {a} times {b}?",
    "Name a fruit that starts with the letter {c}.",
    "Give one word that rhymes with '{w}'.",
    "Is {a} an even number? Answer yes or no.",
    "Write one short sentence about the number {a}.",
    "Translate '{w}' into French.",
    "What comes after {a} when counting?",
]
WORDS = ["cat", "house", "rain", "light", "tree", "blue", "stone", "river"]


def make_prompts(n: int) -> list[str]:
    return [
        QUESTIONS[i % len(QUESTIONS)].format(a=3 + 7 * i, b=11 + 5 * i, c="ABCDEFGHPRST"[i % 12], w=WORDS[i % len(WORDS)])
        for i in range(n)
    ]


async def run_concurrent(model: LocalModel, prompts: list[str], params: SamplingParams) -> list[Completion]:
    return list(await asyncio.gather(*(model.chat([{"role": "user", "content": p}], params) for p in prompts)))


async def run_sequential(model: LocalModel, prompts: list[str], params: SamplingParams) -> list[Completion]:
    return [await model.chat([{"role": "user", "content": p}], params) for p in prompts]


def row(label: str, calls: int, tokens: int, wall_s: float, cpu_s: float) -> str:
    return f"{label:14s}: {wall_s:7.2f} s  {calls / wall_s:6.2f} calls/s  {tokens / wall_s:7.1f} tokens/s  cpu {cpu_s:6.1f} s"


async def main(calls: int, max_tokens: int, device: str, max_batch: int) -> None:
    t0 = time.perf_counter()
    model = LocalModel(device=device, max_batch=max_batch)
    print(f"model: {model!r} (loaded in {time.perf_counter() - t0:.1f} s)")
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average before: {os.getloadavg()[0]:.1f}")
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    prompts = make_prompts(calls)
    await model.chat([{"role": "user", "content": "Hello"}], params)  # warm-up: first-call allocations

    t0, c0 = time.perf_counter(), time.process_time()
    batched = await run_concurrent(model, prompts, params)
    batched_s, batched_cpu = time.perf_counter() - t0, time.process_time() - c0
    sizes = list(model.batcher.batch_sizes[1:])

    t0, c0 = time.perf_counter(), time.process_time()
    single = await run_sequential(model, prompts, params)
    single_s, single_cpu = time.perf_counter() - t0, time.process_time() - c0
    await model.aclose()

    tokens_b = sum(c.completion_tokens for c in batched)
    tokens_s = sum(c.completion_tokens for c in single)
    agree = sum(a.text == b.text for a, b in zip(batched, single))
    print(f"calls: {calls}, max_tokens: {max_tokens}, batch sizes used: {sizes}")
    print(row("one at a time", calls, tokens_s, single_s, single_cpu))
    print(row("batched", calls, tokens_b, batched_s, batched_cpu))
    print(f"ratio (batched / one at a time, calls/s): {single_s / batched_s:.2f}x", end="  ")
    print(f"(by CPU seconds: {single_cpu / batched_cpu:.2f}x)")
    print(f"identical greedy texts: {agree}/{calls}; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-batch", type=int, default=32)
    args = ap.parse_args()
    asyncio.run(main(args.calls, args.max_tokens, args.device, args.max_batch))
