"""Verify rollouts: the outcome score, an optional AI judge, and process signals - kept apart.

The outcome comes from the suite's scorer (the evaluator has already run it). For tasks without a
checker, or to add a second opinion, an AI judge grades the reply through any ChatModel:
- rubric: the judge grades the reply against a written rubric and ends with "Score: N" (0-10);
- constitution (Constitutional AI): the judge critiques the reply against written principles, then
  revises it; the revision is graded against the same principles and, when it passes, becomes the
  training target in place of the original reply (the original stays as the rejected side of a pair).
Process signals (steps, tool errors, loops, tokens, time, error) and the process checks of `process.py`
(named findings: tool errors, loops, wasted steps, an answer that contradicts the tools) describe *how*
the rollout went; they are stored with the verdict apart from the outcome, and a filter may drop a right
answer reached through a bad process, so a lenient outcome check is not the only gate (reward hacking).
Where the suite has a checker, a constitution revision is scored by it again before it is used
(`revision_score`/`revision_passed`, set by the flywheel's verify stage).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ratchet.flywheel.config import JudgeConfig
from ratchet.flywheel.process import ProcessReport, process_report
from ratchet.models.base import ChatModel
from ratchet.types import SamplingParams, Task, Trajectory

_SCORE = re.compile(r"score\s*[:=]\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)


def process_signals(traj: Trajectory) -> dict[str, Any]:
    return {"steps": traj.steps, "tool_errors": traj.tool_errors, "loop": traj.loop, "tokens": traj.tokens,
            "seconds": traj.seconds, "error": traj.error, "signal": traj.failure_signal,
            "model_calls": len(traj.messages)}


@dataclass
class JudgeVerdict:
    score: float | None  # in [0, 1]; None when the judge's reply had no "Score: N"
    critique: str = ""
    revision: str | None = None  # constitution mode: the revised reply
    judge: str = ""  # judge identity for provenance
    revision_score: float | None = None  # the suite's checker on the revision (None: not re-checked, no checker)
    revision_passed: bool | None = None  # revision_score reached [flywheel] min_score; False: the revision is not used
    original_score: float | None = None  # revision_passed False: the judge's grade of the original, then the gate

    @property
    def gate_score(self) -> float | None:
        """The grade that decides the rollout: of the reply that will be trained on (the original, when the
        checker failed the revision)."""
        return self.original_score if self.revision_passed is False else self.score

    @property
    def parsed(self) -> bool:
        return self.score is not None

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "critique": self.critique[-2000:], "revision": self.revision, "judge": self.judge,
                "revision_score": self.revision_score, "revision_passed": self.revision_passed,
                "original_score": self.original_score}

    @property
    def usable_revision(self) -> str | None:
        """The revision, unless the checker failed it (then the original reply stays the training target)."""
        return self.revision if self.revision and self.revision_passed is not False else None


def parse_score(text: str) -> float | None:
    """The last "Score: N" (out of 10) in a judge reply, as a number in [0, 1]."""
    found = _SCORE.findall(text or "")
    if not found:
        return None
    return max(0.0, min(1.0, float(found[-1]) / 10.0))


def rubric_messages(task_input: str, reply: str, rubric: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a strict, fair grader. You grade only what is written."},
        {"role": "user", "content": f"Task:\n{task_input}\n\nResponse:\n{reply}\n\nRubric:\n{rubric}\n\n"
                                    "Grade the response against the rubric. Explain briefly, then end with a line "
                                    "'Score: N' where N is an integer from 0 (fails) to 10 (fully meets it)."},
    ]


def critique_messages(task_input: str, reply: str, constitution: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You review answers against written principles."},
        {"role": "user", "content": f"Principles:\n{constitution}\n\nTask:\n{task_input}\n\nResponse:\n{reply}\n\n"
                                    "Critique the response: list every way it breaks a principle or is wrong."},
    ]


def revise_messages(task_input: str, reply: str, constitution: str, critique: str) -> list[dict[str, str]]:
    return [
        *critique_messages(task_input, reply, constitution),
        {"role": "assistant", "content": critique},
        {"role": "user", "content": "Rewrite the response so that it follows the principles and fixes every problem "
                                    "in your critique. Reply with the revised response only."},
    ]


class Judge:
    """An AI judge over any ChatModel, with a rubric or a constitution; greedy and seeded, so reproducible."""

    def __init__(self, model: ChatModel, config: JudgeConfig, text: str, concurrency: int = 8):
        if not text.strip():
            raise ValueError("the judge needs a non-empty rubric or constitution")
        self.model, self.config, self.text = model, config, text
        self._gate = asyncio.Semaphore(concurrency)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        self.identity = f"judge:{config.kind}:{model.name}@{digest}"

    def _params(self, seed: int) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=self.config.max_tokens, seed=seed)

    async def ask(self, messages: list[dict[str, str]], seed: int) -> str:
        """One greedy judge call (the pairwise comparisons of rlaif.py use it too)."""
        async with self._gate:
            return (await self.model.chat(messages, self._params(seed))).text

    async def grade(self, task: Task, reply: str, seed: int = 0) -> float | None:
        """The rubric grade alone (of the original reply, when a constitution revision failed the checker)."""
        return parse_score(await self.ask(rubric_messages(task.input, reply, self.text), seed))

    async def judge(self, task: Task, reply: str, seed: int = 0) -> JudgeVerdict:
        if self.config.kind == "rubric":
            answer = await self.ask(rubric_messages(task.input, reply, self.text), seed)
            return JudgeVerdict(parse_score(answer), critique=answer, judge=self.identity)
        critique = await self.ask(critique_messages(task.input, reply, self.text), seed)
        revision = (await self.ask(revise_messages(task.input, reply, self.text, critique), seed + 1)).strip()
        graded = await self.ask(rubric_messages(task.input, revision, self.text), seed + 2)
        return JudgeVerdict(parse_score(graded), critique=critique, revision=revision or None, judge=self.identity)


PROCESS_PREFIX = "process:"  # a verdict reason "process:<finding kind>" (filter = "outcome+process" only)


@dataclass
class Verdict:
    """Everything known about one rollout's quality; `good`/`bad` decide what it may become.

    `reasons` mix outcome reasons and, in outcome+process mode only, "process:<kind>"; `process` always holds
    the process findings, so the data card can count what either filter mode keeps."""

    outcome: float
    signals: dict[str, Any]
    judge: JudgeVerdict | None = None
    reasons: list[str] = field(default_factory=list)  # why it is not good, if it is not
    process: ProcessReport = field(default_factory=ProcessReport)  # the process checks, apart from the outcome

    @property
    def good(self) -> bool:
        return not self.reasons

    @property
    def good_by_outcome(self) -> bool:
        """What filter = "outcome" keeps: no reason but the process findings (which only outcome+process adds)."""
        return all(r.startswith(PROCESS_PREFIX) for r in self.reasons)

    @property
    def good_by_outcome_and_process(self) -> bool:
        """What filter = "outcome+process" keeps, whichever mode ran."""
        return self.good_by_outcome and self.process.ok

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "signals": self.signals, "reasons": self.reasons,
                "judge": self.judge.to_json() if self.judge else None, "process": self.process.to_json()}


def verdict_for(traj: Trajectory, min_score: float, judge: JudgeVerdict | None = None, judge_min: float = 0.0,
                drop_tool_errors: bool = True, drop_loops: bool = True, *, checked: bool = True,
                filter_mode: str = "outcome", max_steps: int | None = None) -> Verdict:
    """Decide (no I/O) whether a scored rollout is verified-good, and if not, why.

    checked=False: the task has no checker (its score means nothing), so the judge is the outcome gate.
    filter_mode "outcome+process": each process finding kind is also a reason, "process:<kind>".
    """
    signals = process_signals(traj)
    report = process_report(traj, max_steps)
    reasons = []
    if checked and traj.score < min_score:
        reasons.append("low_score")
    if not checked and judge is None:  # nothing verified it: no judge, or no answer to grade
        reasons.append("unjudged")
    if traj.error:
        reasons.append("episode_error")
    if drop_loops and traj.loop:
        reasons.append("loop")
    if drop_tool_errors and traj.tool_errors:
        reasons.append("tool_errors")
    if not traj.messages:
        reasons.append("no_model_call")
    if judge is not None:
        gate = judge.gate_score
        if gate is None:
            reasons.append("judge_unparsed")
        elif gate < judge_min:
            reasons.append("judge_low")
    if filter_mode == "outcome+process":
        reasons += [PROCESS_PREFIX + kind for kind in report.kinds]
    return Verdict(outcome=traj.score, signals=signals, judge=judge, reasons=reasons, process=report)


def verifier_identity(suite_name: str, suite_fingerprint: str, judge: Judge | None) -> str:
    base = f"{suite_name}@{suite_fingerprint[:12]}"
    return f"{base}+{judge.identity}" if judge else base
