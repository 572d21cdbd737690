"""Trajectories as a proposer reads them: which dev rollouts to show, and each one's whole record, bounded.

The selection rule (deterministic, so a resumed round writes the same workspace):

* failures (score < 1) are grouped by failure signal (`Trajectory.failure_signal`), larger groups first;
  one rollout is taken from each group in turn (round-robin across signals), the shortest first within a
  group (fewest steps, then tokens, then characters of output), at most one rollout per task, until
  `failures` are chosen;
* then up to `successes` rollouts that scored 1, shortest first, one per task, so a proposer sees what
  working looks like too.

Each file holds the task input, every model call (its messages, sampling parameters and replies), every
tool call with its result or error, the output, the scorer's feedback (gold answers already cut out by
the arena) and the process signals (steps, tool errors, loop, tokens, seconds, error). A file longer than
its byte bound is rendered again with each text clipped shorter (the middle is cut), then cut at the
bound; the total over all files is bounded too, and what did not fit is listed in INDEX.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ratchet.types import Trajectory

_CLIP_STEPS = (None, 4000, 1500, 600, 250, 100)


@dataclass(frozen=True)
class ViewLimits:
    failures: int = 8  # failing rollouts shown
    successes: int = 2  # successful rollouts shown
    file_bytes: int = 12_000  # one trajectory file
    total_bytes: int = 100_000  # all trajectory files of a round together


def _length(t: Trajectory) -> tuple:
    return (t.steps, t.tokens, len(t.output or ""), t.task_id, t.epoch)


def select(trajectories: Sequence[Trajectory], failures: int, successes: int) -> list[Trajectory]:
    """The rollouts to show, failures first, by the rule in the module docstring."""
    by_signal: dict[str, list[Trajectory]] = {}
    for t in sorted((t for t in trajectories if t.score < 1.0), key=_length):
        by_signal.setdefault(t.failure_signal, []).append(t)
    queues = [q for _, q in sorted(by_signal.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    chosen: list[Trajectory] = []
    tasks: set[str] = set()
    while len(chosen) < failures and any(queues):
        for q in queues:
            while q and q[0].task_id in tasks:
                q.pop(0)
            if q and len(chosen) < failures:
                t = q.pop(0)
                chosen.append(t)
                tasks.add(t.task_id)
    ok = [t for t in sorted((t for t in trajectories if t.score >= 1.0), key=_length)]
    for t in ok:
        if successes <= 0:
            break
        if t.task_id not in tasks:
            chosen.append(t)
            tasks.add(t.task_id)
            successes -= 1
    return chosen


def file_name(index: int, t: Trajectory) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", t.task_id)[:60]
    kind = "ok" if t.score >= 1.0 else f"fail-{t.failure_signal}"
    return f"{index:02d}-{kind}-{safe}.md"


def _clip(text: Any, limit: int | None) -> str:
    text = text if isinstance(text, str) else repr(text)
    if limit is None or len(text) <= limit:
        return text
    half = max(10, (limit - 40) // 2)
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v not in (None, [], ()))


def _content(message: Any) -> tuple[str, Any]:
    if isinstance(message, dict):
        return str(message.get("role", "?")), message.get("content", "")
    return "?", message


def _render(t: Trajectory, task_input: str, split: str, clip: int | None) -> str:
    verdict = "success" if t.score >= 1.0 else f"failure: {t.failure_signal}"
    lines = [f"# {split} task {t.task_id} - {verdict} (score {t.score:.2f})", "",
             f"epoch {t.epoch}, episode seed {t.seed}", "", "## Input", "", _clip(task_input, clip), "",
             "## Output", "", _clip(t.output if t.output is not None else "(none)", clip), "",
             "## Scorer feedback", "", _clip(t.feedback or "(none)", clip), "", "## Process signals", "",
             f"steps {t.steps}, tool errors {t.tool_errors}, loop {'yes' if t.loop else 'no'}, tokens {t.tokens} "
             f"(prompt {t.prompt_tokens}, completion {t.completion_tokens}), seconds {t.seconds:g}, "
             f"error {t.error or '-'}", "", f"## Model calls ({len(t.messages)})"]
    for i, call in enumerate(t.messages, 1):
        call = call if isinstance(call, dict) else {"request": call}
        cached = " (cached)" if call.get("cached") else ""
        lines += ["", f"### call {i}: {_params_text(call.get('params') or {})}{cached}"]
        for message in call.get("request") or []:
            role, content = _content(message)
            lines += [f"[{role}]", _clip(content, clip)]
        for j, reply in enumerate(call.get("replies") or [], 1):
            lines += [f"[reply {j}]", _clip(reply, clip)]
    lines += ["", f"## Tool calls ({len(t.tool_calls)})"]
    for call in t.tool_calls:
        args = call.get("args") or []
        kwargs = call.get("kwargs") or {}
        shown = ", ".join([*(str(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        outcome = f"error: {call['error']}" if call.get("error") else f"-> {call.get('result')!r}"
        lines.append(f"- {call.get('name')}({_clip(shown, clip)}) {_clip(outcome, clip)}")
    if t.log.strip():
        lines += ["", "## Log (what the harness printed, tail)", "", _clip(t.log.strip(), clip)]
    return "\n".join(lines) + "\n"


def render(t: Trajectory, task_input: str, split: str = "dev", limit: int = ViewLimits.file_bytes) -> str:
    """The whole record of one rollout in at most `limit` bytes (UTF-8)."""
    for clip in _CLIP_STEPS:
        text = _render(t, task_input, split, clip)
        if len(text.encode()) <= limit:
            return text
    note = "\n[... cut at the file's size bound ...]\n"
    return text.encode()[:max(0, limit - len(note))].decode("utf-8", errors="ignore") + note


def summary_line(t: Trajectory) -> str:
    """One line about a rollout, for an index and for a probe's step record."""
    what = "ok" if t.score >= 1.0 else t.failure_signal
    return (f"score {t.score:.2f} ({what}), {t.steps} steps, {t.tokens} tokens, output "
            f"{_clip((t.output or '').strip().replace(chr(10), ' '), 60)!r}")
