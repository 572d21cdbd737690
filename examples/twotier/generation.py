"""One generation of the lower tier's data flywheel with the recipe in params.toml; prints the gain.

The upper tier (`ratchet research`) runs this once per seed. It samples, verifies, filters, trains and
decides as `ratchet flywheel` does (ratchet.flywheel.engine.Flywheel), then measures the trained model
against the base model, paired (same tasks, same seeds), on the lower tier's holdout split: the split
whose confirmation promotes a model down there. The upper tier's own holdout trials
(RATCHET_SPLIT=holdout) measure it on the lower tier's test split instead, which no decision of either
tier reads otherwise. Prints {"gain": trained accuracy - base accuracy, ...}; everything lives in this
trial's private copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path

from ratchet.flywheel.config import parse_flywheel
from ratchet.flywheel.engine import Flywheel
from ratchet.project import open_project

HERE = Path(__file__).resolve().parent


def knobs() -> dict:
    raw = tomllib.loads((HERE / "params.toml").read_text())
    return {k: v["value"] for k, v in raw.items() if isinstance(v, dict) and "value" in v}


def recipe(base: dict, k: dict, size: dict, seed: int) -> dict:
    """The lower tier's [flywheel] table with the upper tier's knobs and the size applied."""
    train = {**base.get("train", {}), "lr": k["lr"], "epochs": k["epochs"], "method": k["method"],
             "max_steps": size["max_steps"], "seed": seed}
    return {**base, "samples_per_task": k["samples_per_task"], "min_score": k["min_score"], "seed": seed,
            "eval_seed": seed, "eval_epochs": size["eval_epochs"], "task_limit": size["task_limit"],
            "eval_limit": size["eval_limit"], "generations": 1, "train": train}


async def main() -> None:
    seed = int(os.environ.get("RATCHET_SEED", "0")) % 100_000
    split = "test" if os.environ.get("RATCHET_SPLIT") == "holdout" else "holdout"
    size_name = os.environ.get("TWOTIER_SIZE", "tiny")
    size = tomllib.loads((HERE / "sizes.toml").read_text())[size_name]
    project = open_project(HERE / "lower")
    fw = parse_flywheel(recipe(project.cfg.flywheel.to_json(), knobs(), size, seed))
    wheel = Flywheel(project, fw, on_event=lambda m: print(m, flush=True))
    try:
        summary = await wheel.run(generations=1)
        gen = summary.generations[-1]
        if gen["status"] == "skipped":  # the recipe kept no training example: nothing trained, the model unchanged
            print(json.dumps({"gain": 0.0, "split": split, "size": size_name,
                              "note": (gen.get("decision") or {}).get("reason")}), flush=True)
            return
        tasks = wheel.tasks[split]
        base = await wheel.evaluator(summary.base_model).evaluate(wheel.harness, tasks, split, fw.eval_epochs, seed)
        new = await wheel.evaluator(gen["candidate_model"]).evaluate(wheel.harness, tasks, split, fw.eval_epochs, seed)
    finally:
        await wheel.aclose()
        await project.aclose()
    print(json.dumps({"gain": round(new.mean - base.mean, 5), "base": base.mean, "trained": new.mean, "split": split,
                      "tasks": len(tasks), "size": size_name, "promoted_by_lower_tier": gen["status"] == "promoted",
                      "seconds": gen.get("seconds") or {}}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
