"""Lessons: what each round tried, what it measured, why, and what to try next; recalled by proposers.

A lesson is written after every round, kept or not, so that rejected ideas are not proposed again
and the proposer can build on what worked. Lessons belong to the project, not to one run: recall reads
the lessons of every run of the project (`project_lessons`), and ``memory.md`` in the project directory
is rewritten from all of them. Recall ranks by BM25 between the current failures and each lesson's text
(its change, hypothesis, critique and the failures it aimed at; `bm25.py`), plus the share of the
current failure signals it addressed, whether it was kept, and how recent it is (`recall`). The figures
in a lesson are the loop's, from its Decision; a proposer model may write only the why and the next step
(`critique.py`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.atomic_file import write_atomically
from ratchet.ledger import Ledger
from ratchet.loop.bm25 import bm25_scores, tokenize
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
    measured: str = ""  # the loop's figures beyond the effect: p, tasks, holdout confirmation (never holdout means)
    why: str = ""  # why the measurement differs from the prediction; written by the proposer model, if any
    critic: str = ""  # the model that wrote `why` and `next_step`; "" = the template
    failures: str = ""  # the parent's dev failures the change aimed at (clipped): matched by recall, never shown

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
    """One compact paragraph for a proposer prompt (and for the harness's memory skill)."""
    measured = f" Measured: {lesson.measured.strip()}." if lesson.measured.strip() else ""
    why = f" Why ({lesson.critic}): {lesson.why.strip()}" if lesson.why.strip() else ""
    return (
        f"Round {lesson.round} ({lesson.decision}): {lesson.change_summary.strip()} "
        f"Hypothesis: {lesson.hypothesis.strip()} "
        f"Effect on dev: {lesson.effect:+.3f}{_interval(lesson)}.{measured}{why} "
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
        ]
        if les.measured.strip():
            lines.append(f"- Measured: {les.measured.strip()}")
        if les.why.strip():
            lines.append(f"- Why ({les.critic}): {les.why.strip()}")
        lines += [f"- Next: {les.next_step.strip()}", ""]
    return "\n".join(lines)


def write_memory_md(path: str | Path, lessons: Sequence[Lesson]) -> None:
    """Write memory.md atomically: readers see the old file or the new one, never half of one."""
    write_atomically(Path(path), render_memory_md(lessons).encode("utf-8"))


def relevance(lesson: Lesson, failure_summary: Mapping[str, int]) -> float:
    """Share of the current failures whose signal the lesson also addressed (0..1)."""
    total = sum(v for v in failure_summary.values() if v > 0)
    if total == 0:
        return 0.0
    return sum(n for s, n in failure_summary.items() if n > 0 and lesson.signals.get(s, 0) > 0) / total


def lesson_document(lesson: Lesson) -> str:
    """The text recall matches against: the change, the prediction, the critique, the failures aimed at."""
    return " ".join([lesson.change_summary, lesson.hypothesis, lesson.why, lesson.next_step, " ".join(lesson.signals),
                     lesson.failures])


# Weights of recall's score: text relevance (BM25, scaled to the best match = 1) leads; the share of the
# current failure signals a lesson addressed, a kept outcome and recency (halving every 10 lessons) break ties.
TEXT_WEIGHT, SIGNAL_WEIGHT, KEPT_WEIGHT, RECENCY_WEIGHT, RECENCY_HALF_LIFE = 1.0, 0.5, 0.2, 0.2, 10


def recall(lessons: Sequence[Lesson], failure_summary: Mapping[str, int], k: int = 5, query: str = "") -> list[Lesson]:
    """The k lessons most relevant now.

    With a `query` (the current failure report, or what a harness asks its memory skill), by a weighted
    score: BM25 of the query against `lesson_document`, the share of the current failures whose signal
    the lesson addressed, kept, recent (the weights above). Without one, or when no lesson shares a word
    with it: by signal relevance, then kept before rejected, then newest. Lessons that match nothing still
    fill the list (ranked last): early on they are the only record of what has been tried.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    recency = {id(les): rank for rank, les in enumerate(_newest_first(lessons))}
    words = tokenize(query)
    text = bm25_scores([tokenize(lesson_document(les)) for les in lessons], words) if words else []
    best = max(text, default=0.0)
    if best <= 0.0:
        ranked = sorted(lessons, key=lambda les: (-relevance(les, failure_summary), not les.kept, recency[id(les)]))
        return ranked[:k]
    score = {id(les): TEXT_WEIGHT * t / best + SIGNAL_WEIGHT * relevance(les, failure_summary) + KEPT_WEIGHT * les.kept
             + RECENCY_WEIGHT * 0.5 ** (recency[id(les)] / RECENCY_HALF_LIFE) for les, t in zip(lessons, text)}
    return sorted(lessons, key=lambda les: (-score[id(les)], recency[id(les)]))[:k]


MEMORY_STATE = "memory_path"  # run state: the memory.md a run writes, which names the project its lessons belong to


def _memory_key(path: str | Path) -> str:
    return str(Path(path).resolve())


def claim_memory(ledger: Ledger, run_id: str, memory_path: str | Path) -> None:
    """Record which project memory (its memory.md) the run's lessons belong to; before its first lesson."""
    if ledger.get_state(run_id, MEMORY_STATE) != _memory_key(memory_path):
        ledger.set_state(run_id, MEMORY_STATE, _memory_key(memory_path))


def project_lessons(ledger: Ledger, run_id: str, memory_path: str | Path) -> list[Lesson]:
    """Every lesson of the project, oldest first: of the runs of the same kind (evolve, research) and project
    name that write the same memory.md. Two project directories with one name and one ledger (a shared
    PostgreSQL) keep their memories apart; a run that never wrote a lesson has no memory recorded, and nothing
    to add."""
    run = ledger.run(run_id)
    if run is None:
        return []
    key = _memory_key(memory_path)
    runs = [r["id"] for r in ledger.runs(run["kind"])
            if r["project"] == run["project"] and ledger.get_state(r["id"], MEMORY_STATE) in (key, None)]
    return [Lesson.from_json(_nan(x["data"])) for x in ledger.lessons(project_runs=runs)]


def _nan(d: Mapping[str, Any]) -> dict[str, Any]:
    """A stored lesson's figures: JSON has no NaN, so an effect never measured was stored as None."""
    return {k: (float("nan") if v is None and k in ("effect", "ci_low", "ci_high") else v) for k, v in d.items()}


def memory_answer(lessons: Sequence[Lesson], query: str, k: int = 3) -> str:
    """What the harness's `memory` skill returns for `query`: the k most relevant lessons, one a line."""
    return "\n".join(lesson_text(les) for les in recall(lessons, {}, k=k, query=query))


def draft_next_step(decision_stats: DecisionStats, signals: Mapping[str, int], kept: bool | None = None) -> str:
    """A templated "what to try next" from the decision and the failure mix (no model call). `kept`: whether the
    candidate was kept in the end (False for a dev gain that holdout did not confirm); None: dev decided alone."""
    failing = sorted((s for s, n in signals.items() if n > 0 and s != "ok"), key=lambda s: (-signals[s], s))
    target = ""
    if failing:
        top = failing[0]
        target = f" Largest failure group: {top} ({signals[top]}); {SIGNAL_HINTS.get(top, 'study its examples')}."
    d = decision_stats
    if d.accepted and kept is False:
        head = (f"A dev gain (effect {d.mean_diff:+.3f}) that holdout did not confirm, so it was not kept; "
                "it may be chance on dev, or real but smaller: measure it on more tasks or epochs before building on it.")
    elif d.accepted:
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
