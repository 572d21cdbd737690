"""Evaluator throughput: dynamic batching vs the same episodes one at a time, on the embedded model.

    python bench/eval_throughput.py [--episodes 32] [--max-tokens 32]

Runs the arithmetic example's seed harness on N dev tasks twice through the real evaluator (sandboxed
episodes, model calls over the pipe): once with all episodes in flight (calls share forward passes),
once with concurrency 1. Both use the same seeds, each its own fresh ledger and no response cache, so
nothing is reused. Prints episodes/s for both and the ratio (target >= 5x on a 2-core CPU), and how the
batched run's model calls were grouped (decode runs, and calls that joined a run already decoding).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from ratchet.config import load_project
from ratchet.evaluate import Evaluator
from ratchet.harness.loader import load_harness
from ratchet.ledger import Ledger
from ratchet.models.local import LocalModel
from ratchet.project import make_services
from ratchet.suites import build_suite, tasks_for_split
from ratchet.types import SamplingParams

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "arithmetic"


async def run(model, cfg, harness, tasks, concurrency: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        ledger = Ledger(f"sqlite:///{d}/ledger.sqlite")
        suite = build_suite(cfg.suite, cfg.root)
        ev = Evaluator(suite, make_services(cfg, model), ledger, concurrency=concurrency)
        t0 = time.perf_counter()
        res = await ev.evaluate(harness, tasks, "dev", epochs=1, seed=1)
        return time.perf_counter() - t0, res.mean


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    cfg = load_project(EXAMPLE)
    harness = load_harness(cfg.harness_dir)
    harness.params.knobs["max_tokens"] = harness.params.knobs["max_tokens"].__class__(
        **{**harness.params.knobs["max_tokens"].__dict__, "value": args.max_tokens})
    suite = build_suite(cfg.suite, cfg.root)
    tasks = tasks_for_split(suite, "dev", cfg.suite.splits.model_dump(), cfg.suite.split_salt)[: args.episodes]
    model = LocalModel(cfg.model.name, max_batch=max(args.episodes, 1))
    await model.chat([{"role": "user", "content": "warm up"}], SamplingParams(max_tokens=4))
    warm_runs = len(model.batcher.batch_sizes)
    batched_s, batched_acc = await run(model, cfg, harness, tasks, concurrency=len(tasks))
    runs, joined = model.batcher.batch_sizes[warm_runs:], sum(model.batcher.joined[warm_runs:])
    serial_s, serial_acc = await run(model, cfg, harness, tasks, concurrency=1)
    await model.aclose()
    n = len(tasks)
    print(f"{'mode':<28} {'episodes':>8} {'seconds':>8} {'episodes/s':>11} {'accuracy':>9}")
    print(f"{'dynamic batching':<28} {n:>8} {batched_s:>8.1f} {n / batched_s:>11.2f} {batched_acc:>9.2f}")
    print(f"{'one at a time':<28} {n:>8} {serial_s:>8.1f} {n / serial_s:>11.2f} {serial_acc:>9.2f}")
    print(f"batched run: {len(runs)} decode runs of {runs} calls, {joined} of them joined a run already decoding")
    print(f"speed-up: {serial_s / batched_s:.1f}x (target >= 5x)")


if __name__ == "__main__":
    asyncio.run(main())
