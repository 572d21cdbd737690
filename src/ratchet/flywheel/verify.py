"""Verify rollouts: the outcome score, an optional AI judge, and process signals - kept apart.

The outcome comes from the suite's scorer (the evaluator has already run it). For tasks without a
checker, or to add a second opinion, an AI judge grades the reply through any ChatModel:
- rubric: the judge grades the reply against a written rubric and ends with "Score: N" (0-10);
- constitution (Constitutional AI): the judge critiques the reply against written principles, then
  revises it; the revision is graded against the same principles and, when it passes, becomes the
  training target in place of the original reply (the original stays as the rejected side of a pair).
Process signals (steps, tool errors, loops, tokens, time, error) describe *how* the rollout went; a
filter may drop a right answer reached through failing tools or a loop, so a lenient outcome check
is not the only gate (reward hacking).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ratchet.flywheel.config import JudgeConfig
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

    @property
    def parsed(self) -> bool:
        return self.score is not None

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "critique": self.critique[-2000:], "revision": self.revision, "judge": self.judge}


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

    async def _ask(self, messages: list[dict[str, str]], seed: int) -> str:
        async with self._gate:
            return (await self.model.chat(messages, self._params(seed))).text

    async def judge(self, task: Task, reply: str, seed: int = 0) -> JudgeVerdict:
        if self.config.kind == "rubric":
            answer = await self._ask(rubric_messages(task.input, reply, self.text), seed)
            return JudgeVerdict(parse_score(answer), critique=answer, judge=self.identity)
        critique = await self._ask(critique_messages(task.input, reply, self.text), seed)
        revision = (await self._ask(revise_messages(task.input, reply, self.text, critique), seed + 1)).strip()
        graded = await self._ask(rubric_messages(task.input, revision, self.text), seed + 2)
        return JudgeVerdict(parse_score(graded), critique=critique, revision=revision or None, judge=self.identity)


@dataclass
class Verdict:
    """Everything known about one rollout's quality; `good`/`bad` decide what it may become."""

    outcome: float
    signals: dict[str, Any]
    judge: JudgeVerdict | None = None
    reasons: list[str] = field(default_factory=list)  # why it is not good, if it is not

    @property
    def good(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "signals": self.signals, "reasons": self.reasons,
                "judge": self.judge.to_json() if self.judge else None}


def verdict_for(traj: Trajectory, min_score: float, judge: JudgeVerdict | None = None, judge_min: float = 0.0,
                drop_tool_errors: bool = True, drop_loops: bool = True) -> Verdict:
    """Decide (no I/O) whether a scored rollout is verified-good, and if not, why."""
    signals = process_signals(traj)
    reasons = []
    if traj.score < min_score:
        reasons.append("low_score")
    if traj.error:
        reasons.append("episode_error")
    if drop_loops and traj.loop:
        reasons.append("loop")
    if drop_tool_errors and traj.tool_errors:
        reasons.append("tool_errors")
    if not traj.messages:
        reasons.append("no_model_call")
    if judge is not None:
        if not judge.parsed:
            reasons.append("judge_unparsed")
        elif judge.score < judge_min:
            reasons.append("judge_low")
    return Verdict(outcome=traj.score, signals=signals, judge=judge, reasons=reasons)


def verifier_identity(suite_name: str, suite_fingerprint: str, judge: Judge | None) -> str:
    base = f"{suite_name}@{suite_fingerprint[:12]}"
    return f"{base}+{judge.identity}" if judge else base
