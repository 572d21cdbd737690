"""How far the AI judge can be trusted: its agreement with the suite's checker, and the lenient-judge flag.

Measured on rollouts that have both a judge grade and a checker score (tasks with a checker). The judge
"passes" a reply when its grade reaches `[flywheel.judge] min_score`; the checker when the outcome score
reaches `[flywheel] min_score`. In constitution mode the judge grades its revision, so the comparison is
with the checker's score of that revision (`revision_score`); a constitution verdict without one is left out.

The judge normally sees only rollouts the checker passed (so it cannot turn a wrong answer into data);
to see how it treats wrong ones, `[flywheel.judge] audit_failed` checker-failed rollouts are graded too,
for this measurement only. A judge is flagged **lenient** when, among at least `lenient_min` graded
checker-failed replies, it passes more than `lenient_rate` of them (it agrees with wrong answers): then
its grades and preferences on tasks without a checker are not to be trusted. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratchet.types import Trajectory

if TYPE_CHECKING:
    from ratchet.flywheel.verify import Verdict


@dataclass(frozen=True)
class Agreement:
    n: int  # rollouts with both a judge grade and a checker score
    agree: int  # judge and checker said the same (both pass or both fail)
    checker_failed: int  # of n, the checker failed
    judge_passed_failed: int  # of those, the judge passed anyway
    lenient_rate_max: float
    lenient_min: int

    @property
    def rate(self) -> float | None:
        return self.agree / self.n if self.n else None

    @property
    def lenient_rate(self) -> float | None:
        return self.judge_passed_failed / self.checker_failed if self.checker_failed else None

    @property
    def lenient(self) -> bool:
        rate = self.lenient_rate
        return self.checker_failed >= self.lenient_min and rate is not None and rate > self.lenient_rate_max

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "agree": self.agree, "rate": self.rate, "checker_failed": self.checker_failed,
                "judge_passed_failed": self.judge_passed_failed, "lenient_rate": self.lenient_rate,
                "lenient_rate_max": self.lenient_rate_max, "lenient_min": self.lenient_min, "lenient": self.lenient}

    def summary(self) -> str:
        if not self.n:
            return "judge-vs-checker agreement: nothing graded by both"
        lenient = ("not measured (no checker-failed rollout graded; set [flywheel.judge] audit_failed)"
                   if not self.checker_failed else
                   f"passes {self.judge_passed_failed}/{self.checker_failed} checker-failed replies")
        flag = " - LENIENT JUDGE" if self.lenient else ""
        return f"judge-vs-checker agreement {self.agree}/{self.n} ({100 * (self.rate or 0):.0f}%); judge {lenient}{flag}"


def judge_checker_agreement(rollouts: Sequence[tuple[Trajectory, Verdict]], unchecked: frozenset[str],
                            min_score: float, judge_min: float, lenient_rate: float, lenient_min: int) -> Agreement:
    n = agree = failed = passed_failed = 0
    for traj, verdict in rollouts:
        jv = verdict.judge
        if jv is None or not jv.parsed or traj.task_id in unchecked:
            continue
        constitution = ":constitution:" in jv.judge
        if constitution and jv.revision_score is None:
            continue
        checker_pass = (jv.revision_score if constitution else traj.score) >= min_score
        judge_pass = jv.score >= judge_min
        n += 1
        agree += checker_pass == judge_pass
        if not checker_pass:
            failed += 1
            passed_failed += judge_pass
    return Agreement(n, agree, failed, passed_failed, lenient_rate, lenient_min)


def audit_sample(trajs: Sequence[Trajectory], unchecked: frozenset[str], min_score: float, n: int) -> set[tuple[str, int]]:
    """(task id, epoch) of up to n checker-failed rollouts that did not crash, spread over tasks (epoch-major)."""
    failed = [t for t in trajs if t.task_id not in unchecked and t.score < min_score and not t.error
              and t.messages and (t.output or "").strip()]
    failed.sort(key=lambda t: (t.epoch, t.task_id))
    return {(t.task_id, t.epoch) for t in failed[:n]}
