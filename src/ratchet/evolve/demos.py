"""The demo pool behind `ctx.demos(k)`: few-shot examples bootstrapped from verified successes on train.

The idea of DSPy's BootstrapFewShot: run the seed harness on train tasks, keep the rollouts the suite
scores fully correct (scored here, in the parent process: the harness never sees a gold answer), and
offer the task input with the model's reply as demonstrations.

One pool per run, built when the run starts, from the run's seed (the user's harness, or a candidate
they adopted: each run's pool is the next version). It stays fixed for the run, so a candidate and its
parent always see the same pool and their runs stay paired, and its version is part of every
evaluation's id (`EpisodeServices.demos_version`). Every demo records where it came from (task id,
split, eval id, harness commit) in the run's state and in a `demo_pool` event of the ledger. Only the
train split is drawn from: the tasks come from `project.tasks("train")` and each is checked again
against the split assignment. A pool is built only for a seed whose params.toml declares a `demos` knob.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ratchet.evaluate import EvalInterrupted, EvalResult
from ratchet.harness.loader import load_harness
from ratchet.harness.params import HarnessParams
from ratchet.harness.runtime import EpisodeServices
from ratchet.ledger import Ledger
from ratchet.project import Project
from ratchet.suites.base import split_of

DEMO_KNOB = "demos"
STATE_KEY = "demo_pool"
POOL_SIZE = 8  # demos kept
TRAIN_TASKS = 32  # train tasks the seed is run on to find them
MAX_REPLY_CHARS = 1200  # longer replies make poor demonstrations


@dataclass
class DemoPool:
    version: str | None  # None: an empty pool (the seed solved no train task)
    demos: list[dict[str, Any]] = field(default_factory=list)  # task_id, input, output + provenance
    tried: int = 0  # train tasks the seed was run on

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "demos": self.demos, "tried": self.tried}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DemoPool:
        return cls(d.get("version"), list(d.get("demos") or []), int(d.get("tried", 0)))

    def for_episodes(self) -> list[dict[str, str]]:
        """What the sandbox gets: the examples, without the provenance."""
        return [{"task_id": d["task_id"], "input": d["input"], "output": d["output"]} for d in self.demos]


def uses_demos(params: HarnessParams) -> bool:
    return DEMO_KNOB in params.knobs


def install(services: EpisodeServices, pool: DemoPool | None) -> None:
    """Offer `pool` to every episode from now on (None: no pool)."""
    services.demos = pool.for_episodes() if pool else []
    services.demos_version = pool.version if pool and pool.demos else None


def pool_from_result(result: EvalResult, inputs: dict[str, str], commit: str, size: int = POOL_SIZE) -> DemoPool:
    """The `size` shortest verified successes of an evaluation on train (task order among equals), with where
    each came from. Shortest first because `ctx.demos(k)` takes the first k: a short reply shows the answer's
    form most plainly, costs the fewest prompt tokens, and is the least likely to have been scored right by
    accident (a checker that reads, say, the last number in a long ramble can pass a wrong derivation)."""
    verified = []
    for traj in result.trajectories:
        if traj.score < 1.0 or not traj.output:
            continue
        reply = traj.messages[-1]["replies"][0] if traj.messages and traj.messages[-1].get("replies") else traj.output
        if len(reply) > MAX_REPLY_CHARS or any(d["task_id"] == traj.task_id for d in verified):
            continue
        verified.append({"task_id": traj.task_id, "input": inputs[traj.task_id], "output": reply.strip(),
                         "split": "train", "eval_id": result.eval_id, "commit": commit, "epoch": traj.epoch})
    demos = sorted(verified, key=lambda d: len(d["output"]))[:size]  # sorted() is stable: task order on ties
    version = hashlib.sha256(json.dumps(demos, sort_keys=True).encode()).hexdigest()[:12] if demos else None
    return DemoPool(version, demos, tried=result.n_tasks)


async def prepare(project: Project, engine: Any, say=lambda _m: None) -> DemoPool | None:
    """The run's pool: the one recorded for it, or a new one built from its seed; installed on the evaluator."""
    ledger, run_id = project.ledger, engine.run_id
    saved = ledger.get_state(run_id, STATE_KEY)
    if saved is not None:
        pool = DemoPool.from_json(saved)
        install(project.services, pool)
        return pool
    seed = engine.repo.ensure_repo()
    harness = load_harness(engine.repo.worktree(seed))
    if not uses_demos(harness.params):
        install(project.services, None)
        return None
    cfg = project.cfg
    fractions = cfg.suite.splits.model_dump()
    tasks = project.tasks("train")[:TRAIN_TASKS]
    leaked = [t.id for t in tasks if split_of(t.id, fractions, cfg.suite.split_salt) != "train"]
    if leaked:  # cannot happen through project.tasks; checked because the guarantee matters
        raise RuntimeError(f"demo pool: tasks {leaked[:3]} are not in the train split")
    install(project.services, None)  # the seed's own train rollouts are run without a pool
    pool = DemoPool(None)
    if tasks:
        say(f"demo pool: running the seed on {len(tasks)} train tasks to find verified examples")
        try:
            result = await project.evaluator.evaluate(harness, tasks, "train", 1, cfg.eval.seed + engine.eval_seed(0),
                                                      run_id=run_id, should_stop=engine.control.should_stop,
                                                      on_rollout=engine._spend_rollout)
        except EvalInterrupted as e:
            from ratchet.loop.engine import LoopStopped

            raise LoopStopped(engine.control.stop_reason() or str(e)) from None
        pool = pool_from_result(result, {t.id: t.input for t in tasks}, seed)
    ledger.set_state(run_id, STATE_KEY, pool.to_json())
    ledger.add_event("demo_pool", {"version": pool.version, "tried": pool.tried, "n": len(pool.demos),
                                   "provenance": [{k: d[k] for k in ("task_id", "split", "eval_id", "commit", "epoch")}
                                                  for d in pool.demos]}, run_id=run_id)
    say(f"demo pool {pool.version or '(empty)'}: {len(pool.demos)} verified examples from {pool.tried} train tasks")
    install(project.services, pool)
    return pool


def run_pool(ledger: Ledger, run_id: str) -> DemoPool | None:
    saved = ledger.get_state(run_id, STATE_KEY)
    return DemoPool.from_json(saved) if saved is not None else None


def latest_pool(ledger: Ledger, project_name: str) -> tuple[str, DemoPool] | None:
    """The pool of the latest evolve run of a project that has one (what `ratchet eval` offers)."""
    for run in ledger.runs("evolve"):  # newest first
        if run.get("project") == project_name and (pool := run_pool(ledger, run["id"])) is not None and pool.demos:
            return run["id"], pool
    return None


def offer_latest(project: Project, harness: Any) -> str | None:
    """Offer a harness evaluated outside a run (`ratchet eval`, `ratchet plan`) the pool of the project's latest
    run, as that run's harnesses saw it; returns a line saying so, or None when there is none to offer."""
    found = latest_pool(project.ledger, project.cfg.project.name) if uses_demos(harness.params) else None
    if found is None:
        return None
    install(project.services, found[1])
    return f"demo pool {found[1].version}: {len(found[1].demos)} train examples from run {found[0]}"
