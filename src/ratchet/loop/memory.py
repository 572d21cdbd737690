"""Lessons: what each round tried, what it measured, and what to try next; recalled by the proposer.

A lesson is written after every round, kept or not, so that rejected ideas are not proposed again
and the proposer can build on what worked. The ledger stores lessons; ``memory.md`` is a readable
rendering of them in the run directory. Recall is deliberately simple: rank by how much of the
current failure mix a lesson's failure signals cover, then kept lessons, then newer ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.loop.decision import DecisionStats

KEPT_DECISIONS = frozenset({"accepted", "confirmed", "kept"})

# What usually helps against each failure signal (Trajectory.failure_signal); a starting point, not a rule.
SIGNAL_HINTS = {
    "wrong_answer": "add a reasoning or self-check step, or a worked example in the prompt",
    "format": "state the exact answer format and show one example of it",
    "tool_error": "show how to call the failing skill, or validate tool arguments before calling",
    "loop": "add a rule to stop or change approach when an action repeats",
    "timeout": "cut the number of steps or the tokens per step",
    "budget": "cut the number of steps or the tokens per step",
    "memory": "reduce what the program keeps in memory",
    "crash": "fix the error in the harness program that the tracebacks show",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Lesson:
    run_id: str
    round: int
    candidate: str  # candidate id or commit
    change_summary: str
    hypothesis: str
    effect: float  # measured mean difference on dev (never a holdout number)
    ci_low: float
    ci_high: float
    decision: str  # accepted | confirmed | rejected | stopped_early | ...
    next_step: str
    signals: dict[str, int]  # failure summary of the parent the change aimed at
    created_at: str = field(default_factory=_now)  # ISO 8601, UTC

    @property
    def kept(self) -> bool:
        return self.decision in KEPT_DECISIONS

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Lesson:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _newest_first(lessons: Sequence[Lesson]) -> list[Lesson]:
    return sorted(lessons, key=lambda les: (les.created_at, les.run_id, les.round), reverse=True)


def _interval(lesson: Lesson) -> str:
    if math.isnan(lesson.ci_low) or math.isnan(lesson.ci_high):
        return ""
    return f" [{lesson.ci_low:+.3f}, {lesson.ci_high:+.3f}]"


def lesson_text(lesson: Lesson) -> str:
    """One compact paragraph for a proposer prompt."""
    return (
        f"Round {lesson.round} ({lesson.decision}): {lesson.change_summary.strip()} "
        f"Hypothesis: {lesson.hypothesis.strip()} "
        f"Effect on dev: {lesson.effect:+.3f}{_interval(lesson)}. "
        f"Next: {lesson.next_step.strip()}"
    )


def render_memory_md(lessons: Sequence[Lesson]) -> str:
    """A readable memory.md: newest first, one short block per lesson."""
    lines = ["# Memory", "", f"{len(lessons)} lessons, newest first.", ""]
    for les in _newest_first(lessons):
        signals = ", ".join(f"{k} {v}" for k, v in sorted(les.signals.items(), key=lambda kv: -kv[1])) or "none"
        lines += [
            f"## Round {les.round} — {les.decision} — {les.candidate}",
            f"*{les.created_at}, run {les.run_id}; failures addressed: {signals}*",
            "",
            f"- Change: {les.change_summary.strip()}",
            f"- Hypothesis: {les.hypothesis.strip()}",
            f"- Effect on dev: {les.effect:+.3f}{_interval(les)}",
            f"- Next: {les.next_step.strip()}",
            "",
        ]
    return "\n".join(lines)


def write_memory_md(path: str | Path, lessons: Sequence[Lesson]) -> None:
    """Write memory.md atomically: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_memory_md(lessons))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def relevance(lesson: Lesson, failure_summary: Mapping[str, int]) -> float:
    """Share of the current failures whose signal the lesson also addressed (0..1)."""
    total = sum(v for v in failure_summary.values() if v > 0)
    if total == 0:
        return 0.0
    return sum(n for s, n in failure_summary.items() if n > 0 and lesson.signals.get(s, 0) > 0) / total


def recall(lessons: Sequence[Lesson], failure_summary: Mapping[str, int], k: int = 5) -> list[Lesson]:
    """The k lessons most relevant now: by relevance, then kept before rejected, then newest.

    Lessons that share no signal still fill the list (ranked last): early in a run they are the only
    record of what has been tried.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    recency = {id(les): rank for rank, les in enumerate(_newest_first(lessons))}
    ranked = sorted(
        lessons, key=lambda les: (-relevance(les, failure_summary), not les.kept, recency[id(les)])
    )
    return ranked[:k]


def draft_next_step(decision_stats: DecisionStats, signals: Mapping[str, int]) -> str:
    """A templated "what to try next" from the decision and the failure mix (no model call)."""
    failing = sorted((s for s, n in signals.items() if n > 0 and s != "ok"), key=lambda s: (-signals[s], s))
    target = ""
    if failing:
        top = failing[0]
        target = f" Largest failure group: {top} ({signals[top]}); {SIGNAL_HINTS.get(top, 'study its examples')}."
    d = decision_stats
    if d.accepted:
        head = f"Kept (effect {d.mean_diff:+.3f}). Build on it with a change aimed at the remaining failures."
    elif d.reason.startswith("stopped early") or d.ci_high < 0:
        head = f"It hurt (effect {d.mean_diff:+.3f}); do not retry it, try the opposite direction or another idea."
    elif d.ci_low < 0 < d.ci_high and d.mean_diff > 0:
        head = (
            f"Inconclusive (effect {d.mean_diff:+.3f}, CI [{d.ci_low:+.3f}, {d.ci_high:+.3f}]); "
            "a stronger version of the change, or more epochs, could show whether it is real."
        )
    else:
        head = f"No measurable gain (effect {d.mean_diff:+.3f}); change something else."
    return head + target
