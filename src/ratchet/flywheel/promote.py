"""Evaluate a trained model against the current one and decide whether it is promoted.

The same rule as `ratchet evolve`: a paired comparison on dev (same harness, same tasks, same
episode seeds, repeated epochs; `loop.decision.decide_dev`), then, only if dev accepts, confirmation
on holdout through the reusable-holdout mechanism (`loop.holdout.Thresholdout`). A rejected model is
kept in the registry for audit and never becomes current.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from ratchet.evaluate import EvalResult, Evaluator
from ratchet.harness.loader import Harness
from ratchet.loop.decision import DecisionStats, decide_dev
from ratchet.loop.holdout import HoldoutResult, Thresholdout
from ratchet.loop.memory import Lesson, draft_next_step
from ratchet.types import Task


@dataclass
class Comparison:
    dev: DecisionStats
    holdout: HoldoutResult | None
    promoted: bool
    reason: str
    means: dict[str, float]  # dev/holdout means of parent and candidate (ledger and report only)
    eval_ids: dict[str, str]
    rollouts: int = 0
    tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"dev": self.dev.to_json(), "holdout": self.holdout.to_json() if self.holdout else None,
                "promoted": self.promoted, "reason": self.reason, "means": self.means, "eval_ids": self.eval_ids,
                "rollouts": self.rollouts, "tokens": self.tokens}


def decide_promotion(dev: DecisionStats, holdout: HoldoutResult | None) -> tuple[bool, str]:
    """Promote only when dev accepted and holdout confirmed. No I/O."""
    if not dev.accepted:
        return False, f"dev: {dev.reason}"
    if holdout is None:
        return False, f"dev: {dev.reason}; holdout was not evaluated"
    if not holdout.confirmed:
        return False, f"dev: {dev.reason}; holdout: {holdout.reason}"
    return True, f"dev: {dev.reason}; holdout: {holdout.reason}"


async def compare(parent: Evaluator, candidate: Evaluator, harness: Harness, dev_tasks: Sequence[Task],
                  holdout_tasks: Sequence[Task], *, epochs: int, seed: int, alpha: float, min_effect: float,
                  mechanism: Thresholdout, run_id: str | None = None,
                  progress: Callable[[str], AbstractContextManager[Callable[[int, int], None]]] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Comparison:
    """Run the paired evaluations the decision needs (reusing any already in the ledger) and decide."""
    results: dict[str, EvalResult] = {}

    async def run(key: str, ev: Evaluator, tasks: Sequence[Task], split: str) -> EvalResult:
        with (progress(key) if progress else nullcontext(None)) as cb:
            results[key] = await ev.evaluate(harness, tasks, split, epochs, seed, run_id=run_id, progress=cb,
                                             should_stop=should_stop)
        return results[key]

    dev_parent = await run("dev/current", parent, dev_tasks, "dev")
    dev_cand = await run("dev/candidate", candidate, dev_tasks, "dev")
    dev = decide_dev(dev_parent.scores, dev_cand.scores, alpha=alpha, min_effect=min_effect, seed=seed)
    holdout: HoldoutResult | None = None
    if dev.accepted:
        ho_parent = await run("holdout/current", parent, holdout_tasks, "holdout")
        ho_cand = await run("holdout/candidate", candidate, holdout_tasks, "holdout")
        holdout = mechanism.confirm(dev.mean_diff, ho_parent.scores, ho_cand.scores, alpha=alpha)
    promoted, reason = decide_promotion(dev, holdout)
    means = {f"{k.replace('/', '_')}": r.mean for k, r in results.items()}
    return Comparison(dev=dev, holdout=holdout, promoted=promoted, reason=reason, means=means,
                      eval_ids={k: r.eval_id for k, r in results.items()},
                      rollouts=sum(r.n_rollouts - r.reused for r in results.values()),
                      tokens=sum(r.tokens for r in results.values()))


def comparison_from_json(d: dict[str, Any]) -> Comparison:
    holdout = d.get("holdout")
    return Comparison(dev=DecisionStats.from_json(d["dev"]),
                      holdout=HoldoutResult(**holdout) if holdout else None,
                      promoted=bool(d["promoted"]), reason=d["reason"], means=dict(d.get("means") or {}),
                      eval_ids=dict(d.get("eval_ids") or {}), rollouts=int(d.get("rollouts", 0)),
                      tokens=int(d.get("tokens", 0)))



def lesson_for(run_id: str, generation: int, name: str, method: str, cmp: Comparison, counts: dict[str, Any]) -> Lesson:
    """The generation's lesson for the shared memory: what was trained, on what, and what it measured on dev."""
    d = cmp.dev
    return Lesson(run_id=run_id, round=generation, candidate=name,
                  change_summary=f"fine-tuned {name} ({method}) on {counts.get('train_set')} examples from "
                                 f"{counts.get('verified_good', 0)} verified rollouts",
                  hypothesis="training on the model's own verified replies makes right answers more likely",
                  effect=d.mean_diff, ci_low=d.ci_low, ci_high=d.ci_high,
                  decision="confirmed" if cmp.promoted else "rejected", next_step=draft_next_step(d, {}), signals={})


def final_report(base: str, final: str, base_eval: EvalResult, final_eval: EvalResult, epochs: int,
                 alpha: float) -> dict[str, Any]:
    """Base vs final model on holdout, as paired statistics (a report for people; nothing decides on it)."""
    stats = decide_dev(base_eval.scores, final_eval.scores, alpha=alpha)
    return {"base": base, "final": final, "base_mean": base_eval.mean, "final_mean": final_eval.mean,
            "base_se": base_eval.se, "final_se": final_eval.se, "n_tasks": base_eval.n_tasks, "epochs": epochs,
            "stats": stats.to_json()}
