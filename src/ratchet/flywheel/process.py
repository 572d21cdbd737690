"""Process checks: how a rollout reached its answer, judged apart from whether the answer is right.

A right answer reached through failing tools, a loop, wasted steps, or in spite of what the tools said is
a poor training target even when the scorer passes it (the agent may have guessed, or the scorer may be
lenient). Each check reads only what the trajectory records: its model calls (`messages`), its tool and
skill calls (`tool_calls`, in order), the process signals the runtime set (`tool_errors`, `loop`,
`steps`, `error`) and the final answer (`output`). The findings never change the outcome score; the
flywheel filter uses them only in `[flywheel] filter = "outcome+process"` (docs/flywheel.md).

The kinds, in the order they are reported:
- tool_error: a tool/skill call failed (an error, or the python skill's non-zero exit), or the runtime
  counted more failed requests than the record shows;
- loop: the loop detector stopped the episode (its rule is the detail);
- repeated_call: a call identical to an earlier one (same name and arguments): its result was known;
- unused_result: a call that succeeded with a non-empty result that no model request and not the final
  answer contains (its first 32 word/number tokens, contiguous); the last call is exempt, because an
  episode that ends on a result has used it to decide;
- over_budget: more steps than `[flywheel] process_max_steps` (when set);
- contradicts_tool: the final answer's last number equals none of the numbers in the result of the last
  successful call that printed a number (the python skill printed 42, the answer says 41). Numbers are
  compared as values (relative tolerance 1e-6, thousands commas ignored); an answer without a number, or
  a rollout whose tools printed none, is not checked.
Pure functions: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ratchet.types import Trajectory

FINDING_KINDS = ("tool_error", "loop", "repeated_call", "unused_result", "over_budget", "contradicts_tool")
USE_PROBE_TOKENS = 32  # leading tokens of a result looked for in later text: long outputs are often cut when quoted
_TOKEN = re.compile(r"\w+|[^\w\s]")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


@dataclass(frozen=True)
class ProcessFinding:
    kind: str  # one of FINDING_KINDS
    detail: str = ""
    step: int | None = None  # index into the trajectory's tool_calls, where the finding is about one call

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "step": self.step}


@dataclass
class ProcessReport:
    """The process checks of one rollout: a list of named findings; none means a clean process."""

    findings: list[ProcessFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def kinds(self) -> list[str]:
        """The kinds found, each once, in FINDING_KINDS order (the first is the drop reason)."""
        found = {f.kind for f in self.findings}
        return [k for k in FINDING_KINDS if k in found]

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.findings]

    @classmethod
    def from_json(cls, rows: list[dict[str, Any]] | None) -> ProcessReport:
        return cls([ProcessFinding(r["kind"], r.get("detail", ""), r.get("step")) for r in rows or []])


def process_report(traj: Trajectory, max_steps: int | None = None) -> ProcessReport:
    """Run every process check on one rollout (see the module docstring for the rules)."""
    calls = list(traj.tool_calls)
    findings = [*_tool_errors(traj, calls)]
    if traj.loop or (traj.error or "").startswith("loop"):
        findings.append(ProcessFinding("loop", traj.error or "the loop detector stopped the episode"))
    findings += _repeated(calls)
    findings += _unused(traj, calls)
    steps = traj.steps or len(traj.messages) + len(calls)
    if max_steps is not None and steps > max_steps:
        findings.append(ProcessFinding("over_budget", f"{steps} steps, over the process budget of {max_steps}"))
    contradiction = _contradiction(traj.output, calls)
    if contradiction:
        findings.append(contradiction)
    return ProcessReport(findings)


def call_failed(call: dict[str, Any]) -> bool:
    result = call.get("result")
    if call.get("error"):
        return True
    return isinstance(result, dict) and (bool(result.get("error")) or result.get("returncode") not in (None, 0))


def result_text(call: dict[str, Any]) -> str:
    """What a call gave back, as text: the python skill's stdout, a tool message's content, or the result itself."""
    result = call.get("result")
    if isinstance(result, dict):
        for key in ("stdout", "content", "output", "result"):
            if key in result:
                return _as_text(result[key])
        return json.dumps(result, sort_keys=True)
    return _as_text(result)


def numbers(text: str) -> list[float]:
    return [float(x) for x in _NUMBER.findall(_THOUSANDS.sub("", text or ""))]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _tool_errors(traj: Trajectory, calls: list[dict[str, Any]]) -> list[ProcessFinding]:
    out = []
    for i, call in enumerate(calls):
        if call_failed(call):
            result = call.get("result") if isinstance(call.get("result"), dict) else {}
            why = call.get("error") or result.get("error") or f"exit code {result.get('returncode')}"
            out.append(ProcessFinding("tool_error", f"{call.get('name')}: {str(why)[:200]}", i))
    if traj.tool_errors > len(out):  # a refused or raising request is counted by the runtime but not recorded
        out.append(ProcessFinding("tool_error", f"the runtime counted {traj.tool_errors} failed tool requests, "
                                                f"{len(out)} of them recorded"))
    return out


def _signature(call: dict[str, Any]) -> str:
    return json.dumps([call.get("name"), call.get("args"), call.get("kwargs")], sort_keys=True, default=str)


def _repeated(calls: list[dict[str, Any]]) -> list[ProcessFinding]:
    first: dict[str, int] = {}
    out = []
    for i, call in enumerate(calls):
        sig = _signature(call)
        if sig in first:
            out.append(ProcessFinding("repeated_call", f"{call.get('name')}: the same call as step {first[sig]}", i))
        else:
            first[sig] = i
    return out


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    first = needle[0]
    return any(haystack[i] == first and haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def _message_text(m: dict[str, Any]) -> str:
    content = m.get("content")
    if isinstance(content, list):  # content parts
        content = " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    parts = [str(content or "")]
    for tc in m.get("tool_calls") or []:
        parts.append(json.dumps(tc, sort_keys=True, default=str))
    return "\n".join(parts)


def _unused(traj: Trajectory, calls: list[dict[str, Any]]) -> list[ProcessFinding]:
    if len(calls) < 2:
        return []
    seen = [_tokens(_message_text(m)) for call in traj.messages for m in call.get("request") or []]
    seen.append(_tokens(traj.output or ""))
    out = []
    for i, call in enumerate(calls[:-1]):
        probe = _tokens(result_text(call))[:USE_PROBE_TOKENS]
        if call_failed(call) or not probe:
            continue
        if not any(_contains(text, probe) for text in seen):
            out.append(ProcessFinding("unused_result", f"{call.get('name')}: its result reached no later model "
                                                       "request nor the answer", i))
    return out


def _contradiction(output: str | None, calls: list[dict[str, Any]]) -> ProcessFinding | None:
    final = numbers(output or "")
    if not final:
        return None
    for i in range(len(calls) - 1, -1, -1):
        if call_failed(calls[i]):
            continue
        shown = numbers(result_text(calls[i]))
        if not shown:
            continue
        if any(math.isclose(final[-1], x, rel_tol=1e-6, abs_tol=1e-9) for x in shown):
            return None
        return ProcessFinding("contradicts_tool", f"the answer says {final[-1]:g}; the last numeric tool result "
                                                  f"({calls[i].get('name')}, step {i}) showed "
                                                  f"{', '.join(f'{x:g}' for x in shown[:5])}", i)
    return None
