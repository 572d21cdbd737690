"""Which flywheel filter trains the better model here: `outcome` or `outcome+process` (docs/flywheel.md).

One flywheel generation per filter mode on this project (the embedded model writing programs that the
sandbox runs), from the same rollouts: the same generation seed, so the second mode's sampling replays
the first's from the model cache. The harness samples with `attempts = 3`, so a rollout may reach the
right answer after a program that crashed - exactly what the two modes disagree on (`tool_error`). The
two trained models are then compared paired (same tasks, same seeds) on the holdout split, through the
same paired test the loop decides with; each is also compared with the base model.

    python examples/program_aided/filter_modes.py [--workdir DIR] [--samples 4] [--train-tasks 40]

Works in a copy of the project (DIR, default a temp dir) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from ratchet.flywheel.config import parse_flywheel
from ratchet.flywheel.engine import Flywheel
from ratchet.loop.decision import decide_dev
from ratchet.project import open_project

HERE = Path(__file__).resolve().parent
MODES = ("outcome", "outcome+process")


def recipe(samples: int, train_tasks: int, eval_tasks: int, mode: str) -> dict:
    """One generation, small enough for two CPU cores; only `filter` differs between the two runs."""
    return {"generations": 1, "samples_per_task": samples, "task_limit": train_tasks, "eval_limit": eval_tasks or None,
            "eval_epochs": 1, "per_task_cap": 2, "seed": 0, "eval_seed": 0, "filter": mode,
            "train": {"method": "sft", "lora_r": 16, "lora_alpha": 32, "lr": 1e-3, "epochs": 2, "batch_size": 8,
                      "max_length": 384}}


def copy_project(dest: Path) -> Path:
    shutil.copytree(HERE, dest, ignore=shutil.ignore_patterns(".ratchet", "__pycache__", "filter_modes.py"),
                    dirs_exist_ok=True)
    params = dest / "harness" / "params.toml"
    text = params.read_text()
    sampled = re.sub(r"(\[attempts\]\n(?:(?!\n\[).)*?value = )\d+", r"\g<1>3", text, count=1, flags=re.S)
    if sampled == text:
        raise SystemExit(f"{params}: found no [attempts] value to set")
    params.write_text(sampled)
    return dest


async def one_mode(root: Path, mode: str, args: argparse.Namespace) -> dict:
    project = open_project(root)
    fw = parse_flywheel(recipe(args.samples, args.train_tasks, args.eval_tasks, mode))
    wheel = Flywheel(project, fw, on_event=lambda m: print(f"[{mode}] {m}", flush=True))
    started = time.monotonic()
    try:
        summary = await wheel.run(generations=1)
        gen = summary.generations[-1]
        counts = gen.get("counts") or {}
        return {"mode": mode, "model": gen.get("candidate_model"), "status": gen["status"], "counts": counts,
                "seconds": round(time.monotonic() - started), "base": summary.base_model}
    finally:
        await wheel.aclose()
        await project.aclose()


async def holdout_scores(root: Path, models: list[str]) -> dict[str, object]:
    """Every model on the same holdout tasks with the same seed and epochs (the generation's own)."""
    project = open_project(root)
    wheel = Flywheel(project, parse_flywheel(recipe(1, 1, 0, "outcome")), on_event=lambda m: None)
    try:
        tasks = wheel.tasks["holdout"]
        return {m: await wheel.evaluator(m).evaluate(wheel.harness, tasks, "holdout", 2, 1) for m in models}
    finally:
        await wheel.aclose()
        await project.aclose()


def row(name: str, a, b, alpha: float = 0.05) -> str:
    s = decide_dev(a.scores, b.scores, alpha=alpha)
    return (f"| {name} | {a.mean:.3f} | {b.mean:.3f} | {s.mean_diff:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}] | "
            f"{s.p_value:.3g} | {s.n_tasks} |")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--samples", type=int, default=4, help="rollouts per train task")
    ap.add_argument("--train-tasks", type=int, default=40)
    ap.add_argument("--eval-tasks", type=int, default=0, help="dev/holdout tasks (0: all)")
    args = ap.parse_args()
    root = copy_project(args.workdir or Path(tempfile.mkdtemp(prefix="filter-modes-")))
    started = time.monotonic()
    runs = [await one_mode(root, mode, args) for mode in MODES]
    trained = [r for r in runs if r["model"]]
    if len(trained) < 2:
        print(json.dumps(runs, indent=1))
        raise SystemExit("a mode trained no model (see above): nothing to compare")
    base = runs[0]["base"]
    scores = await holdout_scores(root, [base, *(r["model"] for r in trained)])
    outcome, process = (scores[r["model"]] for r in trained)
    print("\n| mode | rollouts | verified (outcome / +process) | process findings | SFT examples | wall s | decision |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        c = r["counts"]
        print(f"| {r['mode']} | {c.get('rollouts')} | {c.get('verified_outcome')} / {c.get('verified_outcome_process')} | "
              f"{c.get('process_findings')} | {(c.get('train_set') or {}).get('sft_fresh')} | {r['seconds']} | "
              f"{r['status']} |")
    print("\nholdout, 2 epochs, seed 1 (one-sided paired p for the second column beating the first):\n")
    print("| comparison | first | second | diff [90% CI] | p | tasks |")
    print("|---|---|---|---|---|---|")
    print(row("base -> outcome", scores[base], outcome))
    print(row("base -> outcome+process", scores[base], process))
    print(row("outcome -> outcome+process", outcome, process))
    print(row("outcome+process -> outcome", process, outcome))
    print(f"\ntotal wall time {time.monotonic() - started:.0f} s; project copy: {root}")


if __name__ == "__main__":
    asyncio.run(main())
