"""A reflective proposer: shows a chat model the harness, its failures, recalled lessons and earlier
attempts, and asks for a rationale, a falsifiable hypothesis and search/replace edits.

Answers are parsed and checked here (edits apply, Python compiles, params.toml validates, no protected
path) so that a malformed answer is retried with the error shown, rather than spending an evaluation.
"""

from __future__ import annotations

import re
from typing import Any

from ratchet.harness.params import HarnessParams
from ratchet.loop.edits import FORMAT_HELP, EditError, apply_edits, changed_files, parse_edits
from ratchet.loop.guard import params_problems, protected_violations, syntax_problems
from ratchet.loop.proposers.base import ModelProposerState, Proposal, ProposalContext, ProposalError
from ratchet.loop.proposers.search import derive_seed
from ratchet.loop.skills_check import skill_problems
from ratchet.models.base import ChatModel
from ratchet.types import Message, SamplingParams

SYSTEM_PROMPT = f"""\
You improve an AI agent's harness: the code and text around a fixed language model. The harness is a
directory: harness.py (the program, `solve(task, ctx)`), params.toml (declared knobs: change only
`value =` lines, inside their ranges, unless a knob's doc says how to extend its choices, e.g. a new
instruction variant: a new prompts/ file and its name added to the choices; and the [skills] `library`
and `enabled` lists), prompts/ (prompt texts), skills/ (tools: a new skill is a file skills/NAME.py with
a top-level `def run(...)`, called in harness.py as ctx.skill("NAME", ...) once NAME is in both [skills]
lists), rules.md (rules the agent follows). Scorers, suite data and ratchet.toml are off limits.

Study the failures, then make ONE focused change that should fix the most common one. Answer exactly:

RATIONALE: why this change, citing the failures
HYPOTHESIS: a falsifiable prediction, e.g. "format failures drop and the dev score rises"

{FORMAT_HELP}"""

_FILE_ORDER = ("harness.py", "params.toml", "rules.md", "prompts/", "skills/")
_LABEL = re.compile(r"^[#*\s>-]*(RATIONALE|HYPOTHESIS)[*\s]*:[*\s]*", re.IGNORECASE | re.MULTILINE)
_BLOCK_START = re.compile(r"^\s*(<{5,9}\s*SEARCH|```|--- )", re.MULTILINE)


def _priority(path: str) -> tuple[int, str]:
    for i, prefix in enumerate(_FILE_ORDER):
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return i, path
    return len(_FILE_ORDER), path


def _clip(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters of {what} not shown]"


def render_files(files: dict[str, str], budget: int, per_file: int) -> str:
    """The harness files, most important first, each clipped, within a total character budget."""
    shown, hidden, left = [], [], budget
    for path in sorted(files, key=_priority):
        text = files[path]
        if left < 200:
            hidden.append(path)
            continue
        limit = min(per_file, left)
        body = text if len(text) <= limit else (
            text[:limit] + f"\n[... {len(text) - limit} more characters not shown; do not edit the hidden part]")
        shown.append(f"### {path}\n```\n{body}\n```")
        left -= min(len(text), limit)
    if hidden:
        shown.append("(not shown for space: " + ", ".join(hidden) + ")")
    return "\n\n".join(shown)


def _render_history(history: list[dict[str, Any]], limit: int) -> str:
    lines = []
    for h in history[-limit:]:
        effect = h.get("effect")
        if isinstance(effect, (int, float)):
            effect_text = f", effect {effect:+.3f}"
        else:
            effect_text = f", effect {effect}" if effect else ""
        lines.append(f"- round {h.get('round', '?')} ({h.get('proposer', '?')}): {h.get('summary', '')} "
                     f"-> {h.get('decision', '?')}{effect_text}")
    return "\n".join(lines)


def _render_knobs(params: HarnessParams) -> str:
    lines = []
    for k in params.knobs.values():
        domain = f"[{k.low}, {k.high}]" if k.low is not None else (f"one of {list(k.choices)}" if k.choices else k.type)
        lines.append(f"- {k.name} = {k.value!r} ({domain}){' — ' + k.doc if k.doc else ''}")
    if params.skills_library:
        lines.append(f"- skills enabled: {params.skills_enabled} of library {params.skills_library}")
    return "\n".join(lines)


def build_messages(ctx: ProposalContext, file_budget: int = 12000, per_file: int = 5000,
                   bold: bool = False, system_prompt: str = SYSTEM_PROMPT) -> list[Message]:
    parts = ["## Harness files", render_files(ctx.files, file_budget, per_file)]
    knobs = _render_knobs(ctx.params)
    if knobs:
        parts += ["## Knobs (params.toml)", knobs]
    if ctx.failure_summary:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(ctx.failure_summary.items(), key=lambda kv: -kv[1]))
        parts += ["## Failure counts on dev", counts]
    if ctx.failures_prompt.strip():
        parts += ["## Failures", _clip(ctx.failures_prompt.strip(), 4000, "the failure report")]
    if ctx.lessons:
        lessons = "\n".join(f"- {_clip(lesson, 400, 'the lesson')}" for lesson in ctx.lessons[:8])
        parts += ["## Lessons from earlier rounds", lessons]
    if ctx.history:
        parts += ["## Earlier attempts (do not repeat a rejected one)", _render_history(ctx.history, 10)]
    if bold:
        parts.append("The recent attempts were all rejected. Propose a substantially different kind of change "
                     "from those listed above.")
    parts.append("Now answer with RATIONALE:, HYPOTHESIS: and edit blocks.")
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": "\n\n".join(parts)}]


def _labelled(text: str) -> dict[str, str]:
    """RATIONALE and HYPOTHESIS texts: each runs to the next label, a blank line or the first edit block."""
    found = {}
    matches = list(_LABEL.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end():end]
        block = _BLOCK_START.search(body)
        if block:
            body = body[:block.start()].rstrip()
            lines = body.split("\n")
            if len(lines) > 1 and " " not in lines[-1].strip():  # the edit's path line, not prose
                body = "\n".join(lines[:-1])
        if m.group(1).upper() == "HYPOTHESIS" or i + 1 == len(matches):
            body = re.split(r"\n\s*\n", body.strip(), maxsplit=1)[0]
        found.setdefault(m.group(1).upper(), body.strip()[:2000])
    return found


def parse_answer(answer: str, files: dict[str, str]) -> tuple[str, str, dict[str, str | None]]:
    """(rationale, hypothesis, changes) from a model's answer; ValueError saying what is wrong."""
    labels = _labelled(answer)
    missing = [k for k in ("RATIONALE", "HYPOTHESIS") if not labels.get(k)]
    if missing:
        raise ValueError(f"the answer has no {' and no '.join(missing)} line; start lines with "
                         "'RATIONALE:' and 'HYPOTHESIS:'")
    changes = changed_files(files, apply_edits(files, parse_edits(answer)))
    if not changes:
        raise ValueError("the edits change nothing; the REPLACE text must differ from the SEARCH text")
    problems = protected_violations(changes) + syntax_problems(changes) + params_problems(changes)
    if "harness.py" in files:  # a research repo's skills/ dir is not a skill library
        problems += skill_problems({p: t for p, t in {**files, **changes}.items() if t is not None}, changes)
    if problems:
        raise ValueError("; ".join(problems))
    return labels["RATIONALE"], labels["HYPOTHESIS"], changes


class LLMProposer(ModelProposerState):
    name = "llm"

    def __init__(self, model: ChatModel, max_retries: int = 2, temperature: float = 0.7, max_tokens: int = 1024,
                 file_budget: int = 12000, system_prompt: str = SYSTEM_PROMPT):
        self.model = model
        self.system_prompt = system_prompt  # research passes its own: the artifact is a repo, not a harness
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.file_budget = file_budget
        self.proposed = self.accepted = 0  # observed proposals and how many were kept
        self.bold_left = 0  # proposals still to push for a different kind of change

    async def propose(self, ctx: ProposalContext) -> Proposal:
        bold = self.bold_left > 0  # consumed in observe(): propose() never changes the state
        messages = build_messages(ctx, self.file_budget, bold=bold, system_prompt=self.system_prompt)
        temperature = min(self.temperature + (0.3 if bold else 0.0), 1.5)
        attempts: list[dict[str, Any]] = []
        for attempt in range(self.max_retries + 1):
            params = SamplingParams(temperature=temperature, max_tokens=self.max_tokens,
                                    seed=derive_seed(ctx.seed, ctx.round, attempt))
            completion = await self.model.chat(messages, params)
            answer = completion.text
            try:
                rationale, hypothesis, changes = parse_answer(answer, ctx.files)
                if ctx.probe is not None and (bad := await ctx.probe.check_skills({**ctx.files, **changes}, changes)):
                    raise ValueError("; ".join(bad))  # a new skill that does not import in the sandbox
            except (EditError, ValueError) as e:  # with its tokens: what the failed attempt cost (ratchet log, show)
                attempts.append({"answer": answer[:2000], "error": str(e),
                                 "tokens": completion.prompt_tokens + completion.completion_tokens})
                messages = messages + [
                    {"role": "assistant", "content": _clip(answer, 4000, "your answer")},
                    {"role": "user", "content": f"That answer could not be used: {e}\nReply again: RATIONALE:, "
                                                "HYPOTHESIS:, then edit blocks in exactly the format described."},
                ]
                continue
            return Proposal(edits=changes, rationale=rationale, hypothesis=hypothesis, proposer=self.name,
                            meta={"attempts": attempt + 1, "model": getattr(self.model, "name", "?"),
                                  "errors": [a["error"] for a in attempts], "bold": bold})
        raise ProposalError(f"{self.name}: no usable proposal after {len(attempts)} attempts; "
                            f"last error: {attempts[-1]['error']}", attempts)
