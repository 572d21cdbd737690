"""The small shared vocabulary: tasks, scores, sampling parameters, completions, trajectories.

Everything here is plain data (dataclasses), so it crosses process boundaries as JSON and lands in
the ledger unchanged. Protocols that act on it live next to their implementations
(`models.base.ChatModel`, `suites.base.Suite`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become None (JSON has no NaN, PostgreSQL and browsers refuse it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class CandidateStatus(StrEnum):
    """Where a candidate is in its round. The first four are open, the rest final."""

    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    EVALUATING = "evaluating"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    GUARD_REJECTED = "guard_rejected"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({CandidateStatus.ACCEPTED, CandidateStatus.REJECTED, CandidateStatus.FAILED,
                   CandidateStatus.DUPLICATE, CandidateStatus.GUARD_REJECTED})
# evaluation starts (or resumes) from these
TO_EVALUATE = frozenset({CandidateStatus.PROPOSED, CandidateStatus.APPROVED, CandidateStatus.EVALUATING})


# {"role": "system"|"user"|"assistant"|"tool", "content": "..."}; in a tool-using conversation an assistant
# message may carry "tool_calls" and a tool message "tool_call_id" and "name" (the OpenAI shapes)
Message = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """One task as the harness sees it. The gold answer is *not* here: it stays inside the suite."""

    id: str
    input: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Score:
    value: float  # in [0, 1]
    feedback: str = ""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Added later, so their defaults are left out of to_json(): a call that does not use them keeps the cache
    # key and the ledger record it always had. Every backend honours them (scripted ignores sampling).
    top_k: int = 0  # 0 = off (all tokens)
    frequency_penalty: float = 0.0  # OpenAI semantics, in [-2, 2]
    presence_penalty: float = 0.0  # OpenAI semantics, in [-2, 2]
    repetition_penalty: float = 1.0  # vLLM / transformers semantics; 1 = off

    @property
    def distinct_samples(self) -> int:
        """Completions a backend must really generate: n greedy completions are one completion n times."""
        return 1 if self.temperature == 0 else self.n

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError(f"temperature must be in [0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {getattr(self, name)}")
        if not 0.0 < self.repetition_penalty <= 10.0:
            raise ValueError(f"repetition_penalty must be in (0, 10] (1 = off), got {self.repetition_penalty}")
        object.__setattr__(self, "stop", tuple(self.stop))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        for name, default in _LATER_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d

    def extras(self) -> dict[str, Any]:
        """The parameters set away from their defaults among those added later (top_k, the penalties)."""
        return {name: getattr(self, name) for name, default in _LATER_DEFAULTS.items() if getattr(self, name) != default}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SamplingParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown sampling parameter(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


_LATER_DEFAULTS: dict[str, Any] = {"top_k": 0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.0}


TOOL_CHOICES = ("auto", "required")


@dataclass(frozen=True)
class Tools:
    """Functions a model may call on one request, in the OpenAI `tools` shape, and whether it must.

    `choice`: "auto" (the model decides), "required" (some tool call), or one function's name (that one).
    Backends with native tool calling (openai, vllm) send these as they are; the others use the prompt
    convention in models/tool_prompt.py."""

    functions: tuple[dict[str, Any], ...]
    choice: str = "auto"

    def __post_init__(self) -> None:
        names = []
        for f in self.functions:
            fn = f.get("function") if isinstance(f, Mapping) else None
            if not (isinstance(fn, Mapping) and f.get("type") == "function" and isinstance(fn.get("name"), str)):
                raise ValueError('each tool must be {"type": "function", "function": {"name": ..., "parameters": {...}}}, '
                                 f"got {f!r}"[:300])
            names.append(fn["name"])
        if not names:
            raise ValueError("tools is empty; pass None for a call without tools")
        if self.choice not in TOOL_CHOICES and self.choice not in names:
            raise ValueError(f"tool choice must be auto, required or one of the tools {names}, got {self.choice!r}")
        object.__setattr__(self, "functions", tuple(self.functions))

    @property
    def names(self) -> list[str]:
        return [f["function"]["name"] for f in self.functions]

    @property
    def named(self) -> str | None:
        """The function a named choice asks for; None for "auto" and "required"."""
        return None if self.choice in TOOL_CHOICES else self.choice

    def to_json(self) -> dict[str, Any]:
        return {"functions": list(self.functions), "choice": self.choice}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Tools:
        return cls(tuple(d.get("functions") or ()), str(d.get("choice") or "auto"))


@dataclass
class Completion:
    texts: list[str]  # one per sample (params.n)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    # tool calls of the first sample, OpenAI shape: {"id", "type": "function", "function": {"name", "arguments"}},
    # "arguments" being the JSON text the model wrote (check it: a small model's may not parse)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class Trajectory:
    """One episode of a harness on a task: what happened, what came out, how it scored."""

    task_id: str
    epoch: int
    seed: int
    messages: list[dict[str, Any]] = field(default_factory=list)  # every model call: request + reply
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    output: str | None = None
    score: float = 0.0
    feedback: str = ""
    # process signals, kept apart from the outcome so filters can use both
    steps: int = 0
    tool_errors: int = 0
    loop: bool = False
    tokens: int = 0
    prompt_tokens: int = 0  # of `tokens`: what the model read (prices differ from what it wrote)
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None  # why the episode ended abnormally (timeout, budget, crash, loop)
    log: str = ""  # what the harness printed (tail)

    @property
    def failure_signal(self) -> str:
        """A coarse label for grouping failures: ok, wrong_answer, format, tool_error, loop, timeout, budget, crash."""
        if self.score >= 1.0:
            return "ok"
        if self.loop:
            return "loop"
        if self.error:
            for key in ("timeout", "budget", "memory"):
                if key in self.error.lower():
                    return key
            return "crash"
        if self.tool_errors:
            return "tool_error"
        if not (self.output or "").strip() or "format" in self.feedback.lower():
            return "format"
        return "wrong_answer"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Trajectory:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
