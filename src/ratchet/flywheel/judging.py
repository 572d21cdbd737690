"""The verify stage's model calls: which rollouts the AI judge grades, revisions re-scored by the checker,
and the pairwise comparisons of RLAIF. The decisions themselves are `verify.verdict_for` (no I/O).

What the judge grades:
- a rollout the checker passed (the judge is a second gate; it can drop, never add, a right answer);
- every rollout of a task without a checker (there the judge is the gate);
- `audit_failed` checker-failed rollouts, for the judge-vs-checker agreement rate only (agreement.py): their
  grade is stored with the verdict but never changes its reasons.
A constitution revision of a task with a checker is scored by that checker; a revision below `[flywheel]
min_score` is not used (`revision_passed = False`): the original reply stays the training target, and the
judge grades it against the same principles (`original_score`), since its grade of the revision says
nothing about the original.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ratchet.flywheel.agreement import audit_sample
from ratchet.flywheel.config import FlywheelConfig, JudgeConfig
from ratchet.flywheel.rlaif import Judged, couples, eligible_for, prefer
from ratchet.flywheel.verify import Judge, Verdict, verdict_for
from ratchet.types import Task, Trajectory

AUDIT_DEFAULT = 16  # audit_failed when unset and the judge gates something the checker does not


def audit_size(cfg: JudgeConfig | None, unchecked: frozenset[str]) -> int:
    if cfg is None:
        return 0
    if cfg.audit_failed is not None:
        return cfg.audit_failed
    return AUDIT_DEFAULT if (cfg.pairwise or unchecked) else 0


async def verify_all(trajs: Sequence[Trajectory], fw: FlywheelConfig, judge: Judge | None, suite: Any,
                     task_of: Callable[[str], Task], unchecked: frozenset[str]) -> list[tuple[Trajectory, Verdict]]:
    """A verdict per rollout: the outcome, the judge where it applies, and the process checks."""
    audit = audit_sample(trajs, unchecked, fw.min_score, audit_size(fw.judge, unchecked)) if judge else set()
    judge_min = fw.judge.min_score if fw.judge else 0.0

    async def one(traj: Trajectory) -> tuple[Trajectory, Verdict]:
        checked = traj.task_id not in unchecked
        gates = not checked or traj.score >= fw.min_score
        jv = None
        if judge is not None and traj.output and (gates or (traj.task_id, traj.epoch) in audit):
            task = task_of(traj.task_id)
            jv = await judge.judge(task, traj.output, seed=traj.seed)
            if jv.revision and checked:
                jv.revision_score = (await suite.score(task, jv.revision)).value
                jv.revision_passed = jv.revision_score >= fw.min_score
                if not jv.revision_passed and gates:  # the original stays the target, so it must pass the judge on its own
                    jv.original_score = await judge.grade(task, traj.output, seed=traj.seed + 3)
        verdict = verdict_for(traj, fw.min_score, jv if gates else None, judge_min, fw.drop_tool_errors, fw.drop_loops,
                              checked=checked, filter_mode=fw.filter, max_steps=fw.process_max_steps)
        verdict.judge = jv
        return traj, verdict

    return list(await asyncio.gather(*(one(t) for t in trajs)))


async def compare_pairs(rollouts: Sequence[tuple[Trajectory, Verdict]], judge: Judge | None, cfg: JudgeConfig | None,
                        task_of: Callable[[str], Task], unchecked: frozenset[str], max_per_task: int) -> list[Judged]:
    """The pairwise comparisons (both orders) of RLAIF: tasks without a checker, or all tasks with pairwise = true."""
    if judge is None or cfg is None or not (cfg.pairwise or unchecked):
        return []
    base = eligible_for(unchecked)

    def eligible(traj: Trajectory, verdict: Verdict) -> bool:
        return (cfg.pairwise or traj.task_id in unchecked) and base(traj, verdict)

    async def one(a: Any, b: Any) -> Judged:
        pref = await prefer(judge, task_of(a[0].task_id), a[2]["replies"][0], b[2]["replies"][0], seed=a[0].seed)
        return Judged(a, b, pref)

    return list(await asyncio.gather(*(one(a, b) for a, b in couples(rollouts, eligible, max_per_task))))
