"""Evaluate a trained model against the current one and decide whether it is promoted.

The same comparison step as `ratchet evolve` and `ratchet research` (`loop.compare.compare`): the
same harness, tasks and episode seeds for both models, repeated epochs; a first dev slice that stops
a clearly worse model early; all of dev; then, only if dev accepts, confirmation on holdout through
the reusable-holdout mechanism. The decision settings are the project's `[loop]` section. A rejected
model is kept in the registry for audit and never becomes current.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from ratchet.config import LoopSection
from ratchet.evaluate import EvalResult, Evaluator
from ratchet.harness.loader import Harness
from ratchet.loop import compare as step
from ratchet.loop.decision import DecisionStats, decide_dev
from ratchet.loop.holdout import HoldoutResult, Thresholdout
from ratchet.loop.memory import Lesson, draft_next_step
from ratchet.loop.record import CandidateStatus, HoldoutRecord
from ratchet.types import Task


@dataclass
class Comparison:
    dev: DecisionStats  # all of dev, or the first slice when the candidate was stopped early
    holdout: HoldoutResult | None
    promoted: bool
    reason: str
    means: dict[str, float]  # dev/holdout means of parent and candidate (ledger and report only)
    eval_ids: dict[str, str]
    rollouts: int = 0  # run for this comparison (reused ones are not counted)
    tokens: int = 0  # of every rollout the comparison rests on, reused ones included (the record)
    stopped_early: bool = False
    spent_tokens: int = 0  # of the rollouts run now: what the budget is charged (not recorded)
    usd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"dev": self.dev.to_json(), "holdout": self.holdout.to_json() if self.holdout else None,
                "promoted": self.promoted, "reason": self.reason, "means": self.means, "eval_ids": self.eval_ids,
                "rollouts": self.rollouts, "tokens": self.tokens, "stopped_early": self.stopped_early}


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
                  holdout_tasks: Sequence[Task], *, epochs: int, seed: int, loop: LoopSection,
                  mechanism: Thresholdout, run_id: str | None = None,
                  progress: Callable[[str], AbstractContextManager[Callable[[int, int], None]]] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  price: Callable[[int, int], float] = lambda _p, _c: 0.0) -> Comparison:
    """Run the paired evaluations the comparison step asks for (reusing any already in the ledger) and decide."""
    results: dict[str, EvalResult] = {}
    spent = {"rollouts": 0, "tokens": 0, "usd": 0.0}
    tokens: dict[str, int] = {}
    tasks = {"dev": list(dev_tasks), "holdout": list(holdout_tasks)}

    async def score(side: step.Side, split: str, units: Sequence[str]) -> step.Scores:
        key = f"{split}/{'current' if side == 'parent' else 'candidate'}"
        wanted = set(units)
        chosen = [t for t in tasks[split] if t.id in wanted]
        label = key if len(chosen) == len(tasks[split]) else f"{key} (first slice)"
        with (progress(label) if progress else nullcontext(None)) as cb:
            result = await (parent if side == "parent" else candidate).evaluate(
                harness, chosen, split, epochs, seed, run_id=run_id, progress=cb, should_stop=should_stop)
        results[key] = result
        tokens[key] = result.tokens
        spent["rollouts"] += result.spent.rollouts
        spent["tokens"] += result.spent.tokens
        spent["usd"] += price(result.spent.prompt_tokens, result.spent.completion_tokens)
        return result.scores

    out = await step.compare(score, [t.id for t in dev_tasks], [t.id for t in holdout_tasks], loop, mechanism,
                             seed=seed)
    d = out.decision
    promoted = out.status == CandidateStatus.ACCEPTED
    reason = decide_promotion(d.stats, d.holdout)[1] if d.holdout or not promoted else d.reason
    means = {f"{k.replace('/', '_')}": r.mean for k, r in results.items()}
    return Comparison(dev=d.stats, holdout=d.holdout, promoted=promoted, reason=reason, means=means,
                      eval_ids={k: r.eval_id for k, r in results.items()}, rollouts=spent["rollouts"],
                      tokens=sum(tokens.values()), stopped_early=d.stopped_early, spent_tokens=spent["tokens"],
                      usd=spent["usd"])


def comparison_from_json(d: dict[str, Any]) -> Comparison:
    holdout = d.get("holdout")
    return Comparison(dev=DecisionStats.from_json(d["dev"]),
                      holdout=HoldoutRecord.from_json(holdout) if holdout else None,
                      promoted=bool(d["promoted"]), reason=d["reason"], means=dict(d.get("means") or {}),
                      eval_ids=dict(d.get("eval_ids") or {}), rollouts=int(d.get("rollouts", 0)),
                      tokens=int(d.get("tokens", 0)), stopped_early=bool(d.get("stopped_early", False)))


def lesson_for(run_id: str, generation: int, name: str, method: str, cmp: Comparison, counts: dict[str, Any]) -> Lesson:
    """The generation's lesson for the shared memory: what was trained, on what, and what it measured on dev."""
    d = cmp.dev
    return Lesson(run_id=run_id, round=generation, candidate=name,
                  change_summary=f"fine-tuned {name} ({method}) on {counts.get('train_set')} examples from "
                                 f"{counts.get('verified_good', 0)} verified rollouts",
                  hypothesis="training on the model's own verified replies makes right answers more likely",
                  effect=d.mean_diff, ci_low=d.ci_low, ci_high=d.ci_high,
                  decision="confirmed" if cmp.promoted else "rejected",
                  next_step=draft_next_step(d, {}, kept=cmp.promoted), signals={})


def final_report(base: str, final: str, base_eval: EvalResult, final_eval: EvalResult, epochs: int,
                 alpha: float) -> dict[str, Any]:
    """Base vs final model on holdout, as paired statistics (a report for people; nothing decides on it)."""
    stats = decide_dev(base_eval.scores, final_eval.scores, alpha=alpha)
    return {"base": base, "final": final, "base_mean": base_eval.mean, "final_mean": final_eval.mean,
            "base_se": base_eval.se, "final_se": final_eval.se, "n_tasks": base_eval.n_tasks, "epochs": epochs,
            "stats": stats.to_json()}
