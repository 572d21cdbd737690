"""RLAIF: the AI judge compares two replies to the same prompt, and its preference becomes a preference pair.

Which tasks: those without a checker (a suite with `has_checker = False`, or a task whose metadata says
`"checker": false`) always; every task when `[flywheel.judge] pairwise = true`. Which replies: two distinct
replies of the same task to the identical request (the last single-reply model call of two rollouts, as
for checker pairs). Where a checker exists, both must be verified-good: right against wrong is the
checker's call (filter.pair_candidates), and the judge only orders replies the checker cannot tell apart.
Without a checker, any two rollouts that did not crash (the judge's own low grade does not exclude one).

Position bias: the judge sees the pair in both orders, greedy and with the same seed. Only a consistent
verdict (A first, then B once swapped, or the reverse) gives a pair; a tie, an unparsed reply or an
inconsistent one (the same position won twice) gives none, and is counted. A pair's provenance has
label = "ai_pairwise" and the judge's identity as its verifier, so it is never mistaken for a checked one.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratchet.flywheel.datasets import PAIR, Example, Provenance
from ratchet.flywheel.filter import ProvenanceFor, call_seed, distinct_replies, request_key, single_reply_calls
from ratchet.flywheel.tool_turns import call_tools
from ratchet.types import Task, Trajectory

if TYPE_CHECKING:
    from ratchet.flywheel.verify import Judge, Verdict

_PREFERRED = re.compile(r"preferred\s*(?:response)?\s*[:=]\s*[*\"'(\[]*\s*(A|B|tie)\b", re.IGNORECASE)
Side = tuple[Trajectory, int, dict[str, Any]]  # a rollout, the index of its last single-reply call, that call


def has_checker(suite: Any, task: Task) -> bool:
    """Whether the suite's scorer verifies this task (a suite or a task may say it does not)."""
    return bool(getattr(suite, "has_checker", True)) and task.metadata.get("checker", True) is not False


def pairwise_messages(task_input: str, first: str, second: str, criteria: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You compare two responses fairly. The order they are shown in means nothing."},
        {"role": "user", "content": f"Task:\n{task_input}\n\nResponse A:\n{first}\n\nResponse B:\n{second}\n\n"
                                    f"Criteria:\n{criteria}\n\nWhich response meets the criteria better? Explain "
                                    "briefly, then end with a line 'Preferred: A', 'Preferred: B' or 'Preferred: tie'."},
    ]


def parse_preference(text: str) -> str | None:
    """The last "Preferred: A|B|tie" in a judge reply ("A", "B" or "tie"), or None."""
    found = _PREFERRED.findall(text or "")
    if not found:
        return None
    last = found[-1]
    return "tie" if last.lower() == "tie" else last.upper()


@dataclass(frozen=True)
class Preference:
    ab: str | None  # the judge's answer with the first reply shown as A
    ba: str | None  # its answer with the order swapped (the first reply shown as B)

    @property
    def outcome(self) -> str:
        """first | second | tie | unparsed | inconsistent (the same position won both times, or one tie)."""
        if self.ab is None or self.ba is None:
            return "unparsed"
        if (self.ab, self.ba) == ("A", "B"):
            return "first"
        if (self.ab, self.ba) == ("B", "A"):
            return "second"
        return "tie" if self.ab == self.ba == "tie" else "inconsistent"

    def to_json(self) -> dict[str, Any]:
        return {"ab": self.ab, "ba": self.ba, "outcome": self.outcome}


async def prefer(judge: Judge, task: Task, first: str, second: str, seed: int) -> Preference:
    """Ask the judge which of two replies is better, in both orders."""
    ab = await judge.ask(pairwise_messages(task.input, first, second, judge.text), seed)
    ba = await judge.ask(pairwise_messages(task.input, second, first, judge.text), seed)
    return Preference(parse_preference(ab), parse_preference(ba))


def eligible_for(unchecked: frozenset[str]) -> Callable[[Trajectory, Verdict], bool]:
    """Which rollouts a pairwise comparison may use (see the module docstring)."""
    def eligible(traj: Trajectory, verdict: Verdict) -> bool:
        if traj.task_id in unchecked:
            return set(verdict.reasons) <= {"judge_low", "judge_unparsed"}
        return verdict.good
    return eligible


def couples(rollouts: Sequence[tuple[Trajectory, Verdict]], eligible: Callable[[Trajectory, Verdict], bool],
            max_per_task: int) -> list[tuple[Side, Side]]:
    """Disjoint couples of distinct replies to the same request (epoch order: 0 vs 1, 2 vs 3, ...), per task capped."""
    groups: dict[tuple[str, str], list[Side]] = defaultdict(list)
    for traj, verdict in rollouts:
        calls = single_reply_calls(traj)
        if calls and eligible(traj, verdict):
            i, call = calls[-1]
            groups[(traj.task_id, request_key(call["request"]))].append((traj, i, call))
    out: list[tuple[Side, Side]] = []
    per_task: Counter[str] = Counter()
    for key in sorted(groups):
        sides = distinct_replies(groups[key])
        for a, b in zip(sides[0::2], sides[1::2]):
            if per_task[key[0]] >= max_per_task:
                break
            out.append((a, b))
            per_task[key[0]] += 1
    return out


@dataclass
class Judged:
    """One pairwise comparison: the two sides as shown first (A) and second (B), and the judge's verdicts."""

    first: Side
    second: Side
    preference: Preference


def rlaif_pairs(judged: Sequence[Judged], provenance_for: ProvenanceFor) -> tuple[list[Example], dict[str, int]]:
    """The pairs the judge's consistent preferences give, and the counts of every outcome (for the data card)."""
    counts: Counter[str] = Counter({"compared": len(judged)})
    out = []
    for j in judged:
        outcome = j.preference.outcome
        counts[outcome] += 1
        if outcome not in ("first", "second"):
            continue
        (ct, ci, cc), (rt, _ri, rc) = (j.first, j.second) if outcome == "first" else (j.second, j.first)
        prov = provenance_for(ct, ci, call_seed(cc, ct.seed))
        prov = Provenance(**{**prov.to_json(), "rejected_score": rt.score, "rejected_seed": call_seed(rc, rt.seed),
                             "rejected_epoch": rt.epoch, "label": "ai_pairwise"})
        out.append(Example(kind=PAIR, prompt=list(cc["request"]), reply=cc["replies"][0], rejected=rc["replies"][0],
                           provenance=prov, judge={"pairwise": j.preference.to_json(), "judge": prov.verifier},
                           tools=call_tools(cc)))
    counts["pairs"] = len(out)
    return out, {k: counts.get(k, 0) for k in ("compared", "pairs", "first", "second", "tie", "inconsistent", "unparsed")}
