"""Self-criticism: after a decision, the proposer's model says why the measurement differs from its prediction.

The loop writes what was predicted (the hypothesis) and what was measured (`measured_facts`: dev diff with
its interval, p, tasks, holdout confirmation, all read from the Decision) into the lesson itself; the model
is shown them and writes only two things: WHY the figures differ from (or match) the prediction, and what to
try NEXT. An answer without both, or one that cites a figure the loop did not give it, is refused and asked
again once; then the template (memory.draft_next_step) stands in. Holdout means never reach the model (the
proposer side sees only whether holdout confirmed), and neither do task inputs or gold answers: the model
sees the failure counts, not the failures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ratchet.loop.record import CandidateStatus, Decision
from ratchet.models.base import ChatModel, ModelError
from ratchet.stats import format_p
from ratchet.types import Message, SamplingParams

SYSTEM_PROMPT = """\
You review one experiment of a loop that improves an AI agent's harness (its prompts, skills, rules,
sampling parameters). You are given the change, its hypothesis (what its author predicted) and what the
loop measured. The measured figures are facts: do not restate, round or change them, and cite no number
that is not given. Answer exactly two lines:

WHY: in one or two sentences, why the measurement differs from the prediction (or why it matches)
NEXT: the one change to try next, concrete enough to make"""

_LABEL = re.compile(r"^[#*\s>-]*(WHY|NEXT)[*\s]*:[*\s]*(.*)$", re.IGNORECASE | re.MULTILINE)
_FIGURE = re.compile(r"[-+]?\d*\.\d+|\d+(?:\.\d+)?\s*%")  # decimals and percentages: what a model could invent
MAX_CHARS = 500  # of each of WHY and NEXT


@dataclass
class Critique:
    why: str
    next_step: str
    critic: str  # the model's name
    attempts: int
    errors: list[str]  # why earlier answers (or all of them, when `why` is empty) were refused

    @property
    def usable(self) -> bool:
        return bool(self.why and self.next_step)


def measured_facts(status: CandidateStatus, decision: Decision) -> str:
    """What the loop measured, in words and its own figures (empty when nothing was evaluated)."""
    stats = decision.stats
    if stats is None:
        return ""
    where = "first slice of dev (stopped early)" if decision.stopped_early else "dev"
    level = f"{stats.ci_level:.0%}" if stats.ci_level is not None else ""
    parts = [f"{where}: paired diff {stats.mean_diff:+.3f}, {level} CI [{stats.ci_low:+.3f}, {stats.ci_high:+.3f}], "
             f"p={format_p(stats.p_value)}, {stats.n_tasks} tasks"]
    if decision.holdout is not None:
        parts.append("holdout: " + ("confirmed" if decision.holdout.confirmed else "not confirmed"))
    elif status != CandidateStatus.ACCEPTED:
        parts.append("holdout: not consulted (dev did not accept)")
    return "; ".join(parts)


def build_messages(row: Mapping[str, Any], status: CandidateStatus, measured: str,
                   signals: Mapping[str, int]) -> list[Message]:
    failing = ", ".join(f"{k}: {v}" for k, v in sorted(signals.items(), key=lambda kv: -kv[1]) if k != "ok") or "none"
    user = "\n".join([
        f"Change: {(row.get('summary') or '').strip()}",
        f"Rationale: {(row.get('rationale') or '').strip()[:1500]}",
        f"Hypothesis (the prediction): {(row.get('hypothesis') or '').strip()[:800]}",
        f"Failure counts on dev before the change: {failing}",
        f"Measured by the loop: {measured}",
        f"Decision: {status.value}",
        "",
        "Answer with WHY: and NEXT: lines.",
    ])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _figures(text: str) -> list[str]:
    return [f.lstrip("+-").replace(" ", "") for f in _FIGURE.findall(text)]


def parse_critique(answer: str, given: str) -> tuple[str, str]:
    """(why, next) from an answer; ValueError saying what is wrong. `given`: the text the model was shown,
    whose figures (the loop's, and those of the change itself) are the only ones it may cite."""
    found: dict[str, str] = {}
    for m in _LABEL.finditer(answer):
        found.setdefault(m.group(1).upper(), m.group(2).strip())
    missing = [k for k in ("WHY", "NEXT") if not found.get(k)]
    if missing:
        raise ValueError(f"the answer has no {' and no '.join(missing)} line; write 'WHY: ...' and 'NEXT: ...'")
    known = set(_figures(given))
    invented = [f for k in ("WHY", "NEXT") for f in _figures(found[k]) if f not in known]
    if invented:
        raise ValueError(f"the answer cites {invented[0]!r}, which the loop did not measure; cite only the given "
                         "figures, or none")
    return found["WHY"][:MAX_CHARS], found["NEXT"][:MAX_CHARS]


async def write_critique(model: ChatModel, row: Mapping[str, Any], status: CandidateStatus, decision: Decision,
                         signals: Mapping[str, int], seed: int, retries: int = 1) -> Critique | None:
    """The model's WHY and NEXT for a decided round (empty, with the errors, when no answer was usable);
    None when nothing was measured."""
    measured = measured_facts(status, decision)
    if not measured:
        return None
    messages = build_messages(row, status, measured, signals)
    errors: list[str] = []
    for attempt in range(retries + 1):
        params = SamplingParams(temperature=0.3, max_tokens=256, seed=seed + attempt)
        try:
            answer = (await model.chat(messages, params)).text
        except ModelError as e:  # the lesson is still written, from the template; the run goes on
            errors.append(f"{type(e).__name__}: {e}")
            break
        try:
            why, next_step = parse_critique(answer, messages[1]["content"])
        except ValueError as e:
            errors.append(str(e))
            messages = messages + [{"role": "assistant", "content": answer[:2000]},
                                   {"role": "user", "content": f"That answer could not be used: {e}. Reply again "
                                                               "with exactly a WHY: line and a NEXT: line."}]
            continue
        return Critique(why, next_step, getattr(model, "name", "model"), attempt + 1, errors)
    return Critique("", "", getattr(model, "name", "model"), len(errors), errors)
