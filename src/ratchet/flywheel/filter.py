"""From verified rollouts to training examples: keep the good, drop the rest, and count why.

Order of the checks (an example is dropped for the first one it fails, and counted under that reason):
  contamination -> length -> exact duplicate -> near duplicate -> per-task cap.
Contamination comes first so that its count is complete: every example that contains an eval item is
counted as a contamination hit, even if it would also have been a duplicate. Verification (score,
judge, process signals) happens before candidates exist; `rollout_counts` reports it. Two verification
drops are recorded as candidates so that they can be audited: with filter = "outcome+process", the SFT
examples of a right answer with a process finding ("process:<kind>", `process_drops`), and a constitution
revision the checker failed or the judge graded low (`revision_pairs`).
Pure functions: no I/O, no model calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet.flywheel.contamination import ContaminationIndex
from ratchet.flywheel.datasets import PAIR, SFT, Example, Provenance
from ratchet.flywheel.near_dup import MinHashNearDups, NearDups
from ratchet.flywheel.near_dup import jaccard as jaccard  # re-exported: the filter's similarity
from ratchet.flywheel.tool_turns import call_tools
from ratchet.flywheel.verify import PROCESS_PREFIX, Verdict
from ratchet.types import Trajectory

FILTER_REASONS = ("contamination", "too_short", "too_long", "duplicate", "near_duplicate", "per_task_cap")


@dataclass
class Dropped:
    example: Example
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FilterResult:
    kept: list[Example]
    dropped: list[Dropped]

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(d.reason for d in self.dropped)
        labels = Counter(e.provenance.label for e in self.kept if e.provenance.label != "outcome")
        return {"candidates": len(self.kept) + len(self.dropped), "kept": len(self.kept),
                **{r: c.get(r, 0) for r in FILTER_REASONS}, **{r: n for r, n in sorted(c.items()) if r not in FILTER_REASONS},
                **{f"kept_{label}": n for label, n in sorted(labels.items())}}

    def contamination_hits(self) -> list[dict[str, Any]]:
        return [{"example": d.example.id, "task_id": d.example.provenance.task_id, **d.detail}
                for d in self.dropped if d.reason == "contamination"]


def request_key(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def single_reply_calls(traj: Trajectory) -> list[tuple[int, dict[str, Any]]]:
    """Model calls that produced exactly one reply: only those are (prompt, reply) pairs the model can learn.

    A call with n > 1 samples is a search step of the harness; which sample was used is not recorded.
    """
    return [(i, call) for i, call in enumerate(traj.messages) if len(call.get("replies") or []) == 1]


def call_seed(call: dict[str, Any], fallback: int) -> int:
    seed = (call.get("params") or {}).get("seed")
    return int(seed) if seed is not None else fallback


ProvenanceFor = Callable[[Trajectory, int, int], Provenance]  # (rollout, call index, call seed) -> provenance


def sft_candidates(rollouts: Sequence[tuple[Trajectory, Verdict]], provenance_for: ProvenanceFor) -> list[Example]:
    """One SFT example per single-reply model call of every verified-good rollout.

    A multi-step rollout gives one example per turn: the call's request (the conversation so far, earlier tool
    calls and results included, in the OpenAI shape) and its reply with the tool calls it made, so the last
    call's example holds the whole conversation and each earlier one teaches a tool call.
    In constitution mode the judge's revision replaces the reply of the rollout's last call.
    """
    return [ex for traj, verdict in rollouts if verdict.good for ex in _sft_examples(traj, verdict, provenance_for)]


def _sft_examples(traj: Trajectory, verdict: Verdict, provenance_for: ProvenanceFor) -> list[Example]:
    out = []
    calls = single_reply_calls(traj)
    for pos, (i, call) in enumerate(calls):
        reply, tool_calls = call["replies"][0], list(call.get("tool_calls") or [])
        revision = verdict.judge.usable_revision if verdict.judge else None
        if pos == len(calls) - 1 and revision:
            reply, tool_calls = revision, []  # the judge revised the final answer: an answer, not a tool call
        out.append(Example(kind=SFT, prompt=list(call["request"]), reply=reply,
                           provenance=provenance_for(traj, i, call_seed(call, traj.seed)),
                           signals=verdict.signals, judge=verdict.judge.to_json() if verdict.judge else None,
                           tool_calls=tool_calls, tools=call_tools(call)))
    return out


def process_drops(rollouts: Sequence[tuple[Trajectory, Verdict]], provenance_for: ProvenanceFor) -> list[Dropped]:
    """The SFT examples a right answer would have given, dropped as "process:<first finding kind>".

    Only rollouts that the outcome check passed and only a process reason failed (filter = "outcome+process")."""
    out = []
    for traj, verdict in rollouts:
        if verdict.good or not verdict.good_by_outcome:
            continue
        reason = next(r for r in verdict.reasons if r.startswith(PROCESS_PREFIX))
        detail = {"findings": verdict.process.to_json()}
        out += [Dropped(ex, reason, detail) for ex in _sft_examples(traj, verdict, provenance_for)]
    return out


def revision_pairs(rollouts: Sequence[tuple[Trajectory, Verdict]], provenance_for: ProvenanceFor,
                   judge_min: float) -> tuple[list[Example], list[Dropped]]:
    """Constitutional AI pairs: the judge's revision chosen over the reply of the rollout's last call.

    A revision the suite's checker failed is dropped ("revision_failed_check"), one the judge itself graded
    below its min_score too ("revision_judge_low"); a revision equal to the reply (after normalisation) makes
    no pair. Where there is no checker (revision_passed is None) the judge's grade is the only gate."""
    kept: list[Example] = []
    dropped: list[Dropped] = []
    for traj, verdict in rollouts:
        jv, calls = verdict.judge, single_reply_calls(traj)
        if jv is None or not jv.revision or not calls or set(verdict.reasons) - _ANSWER_REASONS:
            continue
        i, call = calls[-1]
        original = call["replies"][0]
        if normalize(jv.revision) == normalize(original):
            continue
        prov = provenance_for(traj, i, call_seed(call, traj.seed))
        score = jv.revision_score if jv.revision_score is not None else traj.score
        prov = Provenance(**{**prov.to_json(), "score": score, "rejected_score": traj.score,
                             "rejected_seed": prov.seed, "rejected_epoch": traj.epoch, "label": "ai_revision"})
        ex = Example(kind=PAIR, prompt=list(call["request"]), reply=jv.revision, rejected=original, provenance=prov,
                     judge=jv.to_json(), tools=call_tools(call))
        if jv.revision_passed is False:
            dropped.append(Dropped(ex, "revision_failed_check", {"revision_score": jv.revision_score}))
        elif jv.score is None or jv.score < judge_min:
            dropped.append(Dropped(ex, "revision_judge_low", {"judge_score": jv.score}))
        else:
            kept.append(ex)
    return kept, dropped


# reasons that say only that the answer was judged wrong, not that the episode broke: such a rollout may be the
# rejected side of a pair (a crash says nothing about which reply is better)
_ANSWER_REASONS = frozenset({"low_score", "judge_low"})


def pair_candidates(rollouts: Sequence[tuple[Trajectory, Verdict]], provenance_for: ProvenanceFor,
                    max_pairs_per_task: int, unchecked: frozenset[str] = frozenset()) -> list[Example]:
    """Preference pairs: the last call of a verified-good rollout vs the last call of a verified-bad rollout
    of the same task whose request was identical (DPO needs the same prompt on both sides).

    A rollout is "bad" only for its answer (low score or low judge grade), not for a crash: a crash
    says nothing about which reply is better. Tasks in `unchecked` (no checker) get no such pairs: there is no
    verified-wrong side, only the judge's opinion, and that makes RLAIF pairs (rlaif.py) instead.
    """
    good: dict[str, list[tuple[Trajectory, int, dict]]] = defaultdict(list)
    bad: dict[str, list[tuple[Trajectory, int, dict]]] = defaultdict(list)
    for traj, verdict in rollouts:
        calls = single_reply_calls(traj)
        if not calls or traj.task_id in unchecked:
            continue
        i, call = calls[-1]
        key = f"{traj.task_id}\0{request_key(call['request'])}"
        if verdict.good:
            good[key].append((traj, i, call))
        elif set(verdict.reasons) <= _ANSWER_REASONS:
            bad[key].append((traj, i, call))
    out: list[Example] = []
    per_task: Counter[str] = Counter()
    for key in sorted(good):
        chosen = distinct_replies(good[key])
        rejected = distinct_replies(bad.get(key, []))
        for (gt, gi, gc), (bt, _bi, bc) in zip(chosen, rejected):
            if per_task[gt.task_id] >= max_pairs_per_task:
                break
            prov = provenance_for(gt, gi, call_seed(gc, gt.seed))
            prov = Provenance(**{**prov.to_json(), "rejected_score": bt.score, "rejected_seed": call_seed(bc, bt.seed),
                                 "rejected_epoch": bt.epoch})
            out.append(Example(kind=PAIR, prompt=list(gc["request"]), reply=gc["replies"][0],
                               rejected=bc["replies"][0], provenance=prov, tools=call_tools(gc)))
            per_task[gt.task_id] += 1
    return out


def distinct_replies(items: list[tuple[Trajectory, int, dict]]) -> list[tuple[Trajectory, int, dict]]:
    seen, out = set(), []
    for item in sorted(items, key=lambda x: x[0].epoch):
        norm = normalize(item[2]["replies"][0])
        if norm not in seen:
            seen.add(norm)
            out.append(item)
    return out


_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Text as compared for exact duplicates: case, spacing and trailing punctuation do not count."""
    return _SPACE.sub(" ", text.strip().lower()).rstrip(" .!")


def filter_examples(candidates: Sequence[Example], index: ContaminationIndex | None, *, min_chars: int, max_chars: int,
                    near_dup_threshold: float, per_task_cap: int, prefer_short: bool = False,
                    near_dups: Callable[[float], NearDups] = MinHashNearDups,
                    dropped_before: Sequence[Dropped] = ()) -> FilterResult:
    """Apply the checks in the documented order; SFT and pair examples are capped separately per task.

    prefer_short: within a task, consider shorter replies first, so the cap keeps the most concise verified
    replies (they end on their answer and are less likely to be cut off by max_tokens).
    near_dups: the near-duplicate index of a group (`near_dup.py`): MinHash-LSH, or ExactNearDups, the O(n^2) scan.
    dropped_before: candidates verification already dropped (process_drops, revision_pairs), recorded and counted.
    """
    kept: list[Example] = []
    dropped: list[Dropped] = list(dropped_before)
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (kind, task, request) -> normalized texts
    by_group: dict[tuple[str, str, str], NearDups] = {}
    per_task: Counter[tuple[str, str]] = Counter()
    def order(e: Example) -> tuple:
        size = len(e.target) if prefer_short else 0
        return (e.provenance.task_id, size, e.provenance.epoch, e.provenance.call_index)

    for ex in sorted(candidates, key=order):
        hits = index.check(ex.text) if index is not None else []
        if hits:
            dropped.append(Dropped(ex, "contamination", {"hits": [h.to_json() for h in hits[:5]], "n_hits": len(hits)}))
            continue
        if len(ex.target.strip()) < min_chars:  # a reply that only calls a tool is as long as its calls
            dropped.append(Dropped(ex, "too_short"))
            continue
        if len(ex.target) > max_chars or (ex.rejected is not None and len(ex.rejected) > max_chars):
            dropped.append(Dropped(ex, "too_long"))
            continue
        group = (ex.kind, ex.provenance.task_id, request_key(ex.prompt))
        text = normalize(ex.target) + ("\0" + normalize(ex.rejected) if ex.rejected is not None else "")
        if text in seen[group]:
            dropped.append(Dropped(ex, "duplicate"))
            continue
        if group not in by_group:
            by_group[group] = near_dups(near_dup_threshold)
        near_index = by_group[group]
        near = near_index.find(text)
        if near is not None:
            dropped.append(Dropped(ex, "near_duplicate", {"similar_to": near[:200]}))
            continue
        seen[group].add(text)
        near_index.add(text)
        if per_task[(ex.kind, ex.provenance.task_id)] >= per_task_cap:
            dropped.append(Dropped(ex, "per_task_cap"))
            continue
        per_task[(ex.kind, ex.provenance.task_id)] += 1
        kept.append(ex)
    return FilterResult(kept, dropped)


def rollout_counts(rollouts: Sequence[tuple[Trajectory, Verdict]]) -> dict[str, Any]:
    """How many rollouts were verified good, and why the others were not (a rollout may have several reasons)."""
    c: Counter[str] = Counter()
    for _traj, verdict in rollouts:
        c["rollouts"] += 1
        c["verified_good"] += verdict.good
        for r in verdict.reasons:
            c[f"not_good:{r}"] += 1
    c["tasks"] = len({t.task_id for t, _ in rollouts})
    c["tasks_solved"] = len({t.task_id for t, v in rollouts if v.good})
    # both filter modes, whichever ran, so the data card can show what process verification removes
    c["verified_outcome"] = sum(v.good_by_outcome for _t, v in rollouts)
    c["verified_outcome_process"] = sum(v.good_by_outcome_and_process for _t, v in rollouts)
    findings: Counter[str] = Counter(kind for _t, v in rollouts for kind in v.process.kinds)
    return {**c, "process_findings": dict(sorted(findings.items()))}


def ledger_rows(result: FilterResult) -> list[dict[str, Any]]:
    """Rows for the fw_examples table: every candidate, kept or dropped with its reason and detail."""
    rows = []
    for e in result.kept:
        rows.append(_row(e, "kept", None, {}))
    for d in result.dropped:
        rows.append(_row(d.example, "dropped", d.reason, d.detail))
    return rows


def _row(e: Example, status: str, reason: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    p = e.provenance
    return {"id": e.id, "kind": e.kind, "task_id": p.task_id, "split": p.split, "model": p.model, "status": status,
            "reason": reason, "score": p.score, "data": {"example": e.to_json(), "detail": detail}}


def hit_summary(result: FilterResult) -> list[dict[str, Any]]:
    """One line per contaminated candidate: which train task, which eval task and split it contained."""
    out = []
    for h in result.contamination_hits():
        first = (h.get("hits") or [{}])[0]
        out.append({"example": h["example"], "task_id": h["task_id"], "hit_task": first.get("task_id"),
                    "hit_split": first.get("split"), "part": first.get("part"), "n_hits": h.get("n_hits")})
    return out


def grpo_prompts(trajs: Sequence[Trajectory], index: ContaminationIndex | None) -> list[tuple[list[dict[str, str]], str]]:
    """One (request messages, task id) per train task for GRPO: the last single-reply call of its first rollout.

    GRPO scores a completion of that prompt as the task's answer, so it suits single-call harnesses.
    Prompts that contain an eval item are left out, like contaminated examples.
    """
    out, seen = [], set()
    for traj in sorted(trajs, key=lambda t: (t.task_id, t.epoch)):
        calls = single_reply_calls(traj)
        if traj.task_id in seen or not calls:
            continue
        request = list(calls[-1][1]["request"])
        if index is not None and index.check("\n".join(m.get("content", "") for m in request)):
            continue
        seen.add(traj.task_id)
        out.append((request, traj.task_id))
    return out
