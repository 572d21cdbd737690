"""The lesson of one decided round: the loop's figures, and a critique by the proposer's model when there is one.

What was changed and predicted comes from the candidate row, what was measured from its Decision
(`critique.measured_facts`), so no figure in a lesson is ever a model's. With a proposer model configured
(the llm, agent and mix proposers have one), that model writes why the measurement differs from the
prediction and what to try next (`critique.write_critique`); its tokens go to the run's budget through
the engine's meter. Without one, or when its answer is unusable, the template (`memory.draft_next_step`)
writes the next step, as it always did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ratchet.loop.critique import measured_facts, write_critique
from ratchet.loop.memory import Lesson, draft_next_step
from ratchet.loop.proposers.search import derive_seed
from ratchet.loop.record import CandidateStatus, Decision
from ratchet.models.base import ChatModel

FAILURE_CHARS = 2000  # of the parent's failure report kept in the lesson, for recall to match on


def template_lesson(run_id: str, r: int, row: Mapping[str, Any], failures: str, signals: dict[str, int]) -> Lesson:
    """The lesson as the loop alone writes it."""
    decision = Decision.from_json(row["decision"])
    status = CandidateStatus(row["status"])
    stats = decision.stats
    label = "stopped_early" if status != CandidateStatus.ACCEPTED and decision.slice else status.value
    nan = math.nan
    return Lesson(
        run_id=run_id, round=r, candidate=row["id"], change_summary=row["summary"], hypothesis=row["hypothesis"] or "",
        effect=stats.mean_diff if stats else nan, ci_low=stats.ci_low if stats else nan,
        ci_high=stats.ci_high if stats else nan, decision=label,
        next_step=(draft_next_step(stats, signals, kept=status == CandidateStatus.ACCEPTED) if stats
                   else f"{row['status']}: {decision.reason}"[:300]),
        signals=signals, measured=measured_facts(status, decision), failures=failures[:FAILURE_CHARS])


async def round_lesson(run_id: str, r: int, row: Mapping[str, Any], failures: str, signals: dict[str, int],
                       model: ChatModel | None, seed: int) -> tuple[Lesson, list[str]]:
    """The round's lesson, critiqued by `model` when given; and why answers of the model were refused."""
    lesson = template_lesson(run_id, r, row, failures, signals)
    if model is None or not lesson.measured:
        return lesson, []
    critique = await write_critique(model, row, CandidateStatus(row["status"]), Decision.from_json(row["decision"]),
                                    signals, derive_seed(seed, r, "critique"))
    if critique is None:
        return lesson, []
    if critique.usable:
        lesson.why, lesson.next_step, lesson.critic = critique.why, critique.next_step, critique.critic
    return lesson, critique.errors
