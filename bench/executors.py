"""The local executor vs the Ray executor on one machine, in one run: the same evaluation, the same seeds.

    python bench/executors.py [--tasks 60] [--epochs 2] [--cpus 2] [--model scripted|local]

Builds a throwaway arithmetic project (60 tasks; `scripted`: a deterministic model from a file, so the run
measures the executors' own cost; `local`: the embedded SmolLM2-135M, which each Ray worker loads for
itself), evaluates its dev split with `[executor] kind = "local"`, then with `kind = "ray"` on a local
cluster of `--cpus` CPUs at one and at a quarter CPU per episode, and prints episodes/s, the ratio to
local and whether the scores are identical. The cluster's start is timed apart (a run pays it once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

REPLY = r'''import re


def reply(messages, params):
    m = re.search(r"(-?\d+)\s*([+\-*])\s*(-?\d+)", messages[-1]["content"])
    if not m:
        return "I do not know."
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return str({"+": a + b, "-": a - b, "*": a * b}[op])
'''

TOML = """[project]
name = "executor-bench"

[model]
{model}

[suite]
kind = "jsonl"
path = "tasks.jsonl"
match = "numeric"

[suite.splits]
train = 0.0
dev = 1.0
holdout = 0.0
test = 0.0

[eval]
concurrency = 32
max_steps = 4
timeout_s = 60
"""
MODELS = {"scripted": 'backend = "scripted"\nname = "arith"\nscript = "reply.py"\ncache = false',
          "local": 'backend = "local"\ncache = false'}
HARNESS = "def solve(task, ctx):\n    return ctx.llm(task.input + ' Answer with the number only.', max_tokens=8)\n"


def make_project(root: Path, n: int, model: str) -> Path:
    root.mkdir(parents=True)
    (root / "ratchet.toml").write_text(TOML.format(model=MODELS[model]))
    (root / "reply.py").write_text(REPLY)
    (root / "tasks.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "input": f"Calculate {i} + {2 * i + 1}.",
                                                          "answer": 3 * i + 1}) + "\n" for i in range(n)))
    (root / "harness").mkdir()
    (root / "harness" / "harness.py").write_text(HARNESS)
    (root / "harness" / "params.toml").write_text('[temperature]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.0\n')
    return root


async def evaluate(root: Path, ledger: str, epochs: int, executor=None) -> tuple[float, dict]:
    from ratchet.harness.loader import load_harness
    from ratchet.project import open_project

    proj = open_project(root, ledger_url=f"sqlite:///{root / ledger}")
    if executor is not None:
        proj.evaluator.executor = executor
    try:
        tasks = proj.tasks("dev")
        start = time.monotonic()
        result = await proj.evaluator.evaluate(load_harness(proj.cfg.harness_dir), tasks, "dev", epochs, seed=3)
        return time.monotonic() - start, result.scores
    finally:
        await proj.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--model", choices=sorted(MODELS), default="scripted")
    args = ap.parse_args()
    import ray

    from ratchet.config import ExecutorSection, load_project
    from ratchet.executors import episode_config
    from ratchet.executors.ray import RayExecutor

    root = make_project(Path(tempfile.mkdtemp()) / "p", args.tasks, args.model)
    episodes = args.tasks * args.epochs
    rows = []
    local_s, local_scores = asyncio.run(evaluate(root, "local.sqlite", args.epochs))
    rows.append(("local", local_s, True))
    t0 = time.monotonic()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cluster_s = time.monotonic() - t0
    cfg = episode_config(load_project(root))
    try:
        for per_episode in (1.0, 0.25):
            section = ExecutorSection(kind="ray", episode_num_cpus=per_episode)
            executor = RayExecutor(section, cfg.model_copy(update={"executor": section}))
            warm_s, _ = asyncio.run(evaluate(root, f"warm-{per_episode}.sqlite", 1, executor))  # workers start, import
            s, scores = asyncio.run(evaluate(root, f"ray-{per_episode}.sqlite", args.epochs, executor))
            rows.append((f"ray, {per_episode:g} CPU/episode (warm-up {warm_s:.1f}s)", s, scores == local_scores))
    finally:
        ray.shutdown()
    print(f"{episodes} episodes ({args.tasks} tasks x {args.epochs} epochs), model {args.model}, Ray cluster of "
          f"{args.cpus} CPUs (start {cluster_s:.1f}s, not counted below)")
    for name, s, same in rows:
        print(f"  {name:<40} {s:7.2f}s  {episodes / s:7.2f} episodes/s  {local_s / s:5.2f}x local  "
              f"scores {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
