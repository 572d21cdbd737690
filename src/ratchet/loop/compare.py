"""The one comparison step: first dev slice -> all of dev -> holdout -> a typed decision.

evolve, research and the flywheel's promotion all decide through `compare`: it asks a score
function for the score tables it needs, in order, and stops asking as soon as the answer is known,
so a clearly worse candidate costs only the first slice (its own and its parent's) and holdout is spent only
on a dev win.
It knows nothing of harnesses, commands or models: a tier passes a function that scores the parent
or the candidate on a split's units.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ratchet.config import LoopSection
from ratchet.loop.decision import decide_dev, decide_slice, mean_rule
from ratchet.loop.holdout import Thresholdout
from ratchet.loop.record import CandidateStatus, Decision, HoldoutRecord

Scores = dict[str, list[float]]
Side = Literal["parent", "candidate"]
ScoreFn = Callable[[Side, str, Sequence[str]], Awaitable[Scores]]


@dataclass
class Outcome:
    """The decision, the candidate's status it implies, and the candidate's dev scores it rests on
    (the slice's, for a candidate stopped early)."""

    status: CandidateStatus
    decision: Decision
    candidate_dev: Scores


def slice_units(dev_units: Sequence[str], fraction: float) -> list[str]:
    return list(dev_units[: max(2, int(len(dev_units) * fraction))])


def mean_of(scores: Scores) -> float:
    values = [s for v in scores.values() for s in v]
    return sum(values) / len(values) if values else 0.0


def per_task_diffs(parent: Scores, cand: Scores) -> dict[str, float]:
    return {t: round(mean_of({t: cand[t]}) - mean_of({t: parent[t]}), 4) for t in cand if t in parent}


async def compare(score: ScoreFn, dev_units: Sequence[str], holdout_units: Sequence[str], loop: LoopSection,
                  holdout: Thresholdout, *, seed: int, decision: Decision | None = None) -> Outcome:
    """Decide whether the candidate beats its parent. `holdout` is charged when asked (its state changes).

    `decision` carries what is known before evaluation (the round seed, the guard's risk notes)."""
    out = await compare_dev(score, dev_units, loop, seed=seed, decision=decision)
    if out.status != CandidateStatus.EVALUATING:
        return out
    return await confirm_on_holdout(score, holdout_units, loop, holdout, out)


async def compare_dev(score: ScoreFn, dev_units: Sequence[str], loop: LoopSection, *, seed: int,
                      decision: Decision | None = None) -> Outcome:
    """The dev part: first slice, then all of dev. Status EVALUATING means dev accepted and holdout is next
    (a population round first corrects the dev decisions of its candidates for their number: loop/population.py)."""
    decision = decision or Decision()
    first = slice_units(dev_units, loop.slice_fraction)
    # both sides on the first slice only: a candidate stopped there costs the parent no more than the slice;
    # scoring all of dev afterwards reuses the slice's rollouts from the ledger
    parent_slice = await score("parent", "dev", first)
    cand_slice = await score("candidate", "dev", first)
    early = decide_slice(parent_slice, cand_slice)
    if early is not None:
        decision.slice, decision.final, decision.reason = early, "rejected", early.reason
        return Outcome(CandidateStatus.REJECTED, decision, cand_slice)
    parent_dev = await score("parent", "dev", dev_units)
    cand_dev = await score("candidate", "dev", dev_units)
    decision.dev = decide_dev(parent_dev, cand_dev, loop.alpha, loop.min_effect, seed=seed)
    decision.per_task = per_task_diffs(parent_dev, cand_dev)
    if loop.decision_rule == "mean":  # the naive contrast rule: no test, no holdout
        kept = mean_rule(parent_dev, cand_dev)
        decision.final, decision.reason = ("accepted" if kept else "rejected"), "mean rule (contrast only)"
        return Outcome(CandidateStatus.ACCEPTED if kept else CandidateStatus.REJECTED, decision, cand_dev)
    if not decision.dev.accepted:
        decision.final, decision.reason = "rejected", decision.dev.reason
        return Outcome(CandidateStatus.REJECTED, decision, cand_dev)
    return Outcome(CandidateStatus.EVALUATING, decision, cand_dev)


async def confirm_on_holdout(score: ScoreFn, holdout_units: Sequence[str], loop: LoopSection, holdout: Thresholdout,
                             dev: Outcome) -> Outcome:
    """The holdout part, for a candidate dev accepted: Thresholdout confirms the dev gain, or not."""
    decision = dev.decision
    assert decision.dev is not None
    parent_h = await score("parent", "holdout", holdout_units)
    cand_h = await score("candidate", "holdout", holdout_units)
    confirmation = holdout.confirm(decision.dev.mean_diff, parent_h, cand_h, loop.alpha)
    decision.holdout = HoldoutRecord.from_result(confirmation, mean_of(parent_h), mean_of(cand_h))
    decision.final, decision.reason = ("accepted" if confirmation.confirmed else "rejected"), confirmation.reason
    status = CandidateStatus.ACCEPTED if confirmation.confirmed else CandidateStatus.REJECTED
    return Outcome(status, decision, dev.candidate_dev)
