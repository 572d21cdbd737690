"""A population round (`[loop] population = K`): K candidates from one parent, evaluated at once, at most one kept.

    propose K (r003, r003b, r003c...) -> parent's dev once -> the K dev comparisons concurrently
    -> Holm's step-down correction over their K p-values -> holdout for the survivors, best dev gain first
    -> the first one holdout confirms is kept; every other candidate of the round is rejected

Why a correction at all: K comparisons at alpha each keep a no-effect change with probability up to
K * alpha per round, so the phantom-acceptance bound of a round would grow with K. Holm's step-down keeps
the family-wise error at alpha (the chance that any of the K no-effect changes passes dev) like
Bonferroni does, and is uniformly more powerful: Bonferroni tests every p against alpha / K, Holm tests
the smallest against alpha / K, the next against alpha / (K - 1), ..., so it passes everything Bonferroni
passes and sometimes more, under any dependence between the K tests (they share the parent's scores).

The proposer is pure in its state (proposers/base.py): to draw K different proposals it is shown each
earlier sibling as a pending, unscored proposal, then restored, and told the outcomes once the round is
decided. The round is resumable at every step: siblings are recorded as they are proposed; the dev
decision of the whole family is one write (`population/<r>`), made before any holdout is drawn; each
candidate's final status is written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ratchet.loop import archive as arch
from ratchet.loop.arena import ArenaFailure
from ratchet.loop.compare import Outcome, Side, compare_dev, confirm_on_holdout, mean_of
from ratchet.loop.proposers.base import Proposal
from ratchet.loop.record import FINAL, TO_EVALUATE, CandidateStatus, Decision
from ratchet.stats import format_p

if TYPE_CHECKING:
    from ratchet.loop.engine import LoopEngine, RoundResult


def member_suffix(k: int) -> str:
    """The k-th candidate of a round: r003, r003b, r003c, ... (k = 0 is named as in a one-candidate round)."""
    return "" if k == 0 else chr(ord("a") + k)


def holm(p_values: Sequence[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm's step-down procedure: which hypotheses are rejected (the candidate passes) with the family-wise
    error at `alpha`, and the threshold each p was held to. Sorted ascending, the i-th smallest p passes when
    it and every smaller one are below alpha / (m - i); the first that is not stops the procedure."""
    m = len(p_values)
    passed, thresholds = [False] * m, [alpha / m] * m
    going = True
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        thresholds[i] = alpha / (m - rank)
        going = going and p_values[i] < thresholds[i]
        passed[i] = going
    return passed, thresholds


async def run_population_round(engine: LoopEngine, r: int, parent: arch.Member) -> RoundResult:
    ids = [f"{engine.run_id}-r{r:03d}{member_suffix(k)}" for k in range(engine.loop.population)]
    await _propose_all(engine, r, parent, ids)
    for cid in ids:
        if engine.ledger.candidate(cid)["status"] == CandidateStatus.AWAITING_APPROVAL:
            await engine._await_approval(cid)
    if any(engine.ledger.candidate(cid)["status"] in TO_EVALUATE for cid in ids):
        await _decide(engine, r, parent, ids)
    rows = [engine.ledger.candidate(cid) for cid in ids]
    lead = _lead(rows)
    result = await engine._remember(r, lead["id"], parent, siblings=[row for row in rows if row is not lead])
    result.members = [_member_result(r, row) for row in rows]
    return result


async def _propose_all(engine: LoopEngine, r: int, parent: arch.Member, ids: list[str]) -> None:
    """Each sibling proposed against the same parent. A proposer pure in its state (the protocol) is shown the
    earlier siblings as pending, unscored proposals, so that it proposes something else, and is restored after;
    one whose proposing moves its own state (a counter) already differs, and keeps its state as it is."""
    snapshot = engine.proposer.state_dict()
    advances_itself = False
    for k, cid in enumerate(ids):
        if engine.ledger.candidate(cid) is None:
            before = engine.proposer.state_dict()
            row = await engine._propose(r, cid, parent, k)
            if row["status"] != CandidateStatus.FAILED:  # a failed proposal may count itself (mix): not a sign
                advances_itself = advances_itself or engine.proposer.state_dict() != before
        saved = engine.ledger.get_state(engine.run_id, engine.proposal_key(r, cid))
        if saved is not None and not advances_itself:
            engine.proposer.observe(Proposal.from_json(saved), False, None)
    if not advances_itself:
        engine.proposer.load_state_dict(snapshot)  # the outcomes are observed once the round is decided


async def _decide(engine: LoopEngine, r: int, parent: arch.Member, ids: list[str]) -> None:
    seed = engine.eval_seed(r)
    key = f"population/{r}"
    plan = engine.ledger.get_state(engine.run_id, key)
    if plan is None:
        plan = await _dev_plan(engine, r, parent, ids, seed)
        engine.ledger.set_state(engine.run_id, key, plan)  # the family's dev decision, before any holdout is drawn
    winner: str | None = plan.get("mean_kept")  # decision_rule = "mean": the largest gain, no holdout
    if winner is not None and engine.ledger.candidate(winner)["status"] not in FINAL:
        engine._finish(winner, CandidateStatus.ACCEPTED, Decision.from_json(plan["decisions"][winner]),
                       plan["scores"][winner])
    for cid in plan["order"]:  # the dev survivors, best dev gain first, until holdout confirms one
        row = engine.ledger.candidate(cid)
        if row["status"] == CandidateStatus.ACCEPTED:
            winner = cid
        if winner is not None or row["status"] in FINAL:
            continue
        out = Outcome(CandidateStatus.EVALUATING, Decision.from_json(plan["decisions"][cid]), plan["scores"][cid])
        out = await confirm_on_holdout(_score_fn(engine, parent, cid, row["commit"], seed), engine.holdout_units,
                                       engine.loop, engine.holdout, out)
        engine.ledger.set_state(engine.run_id, "holdout", {"round": r, "state": engine.holdout.to_json()})
        engine._finish(cid, out.status, out.decision, out.candidate_dev)
        winner = cid if out.status == CandidateStatus.ACCEPTED else None
    for cid in ids:  # the rest of the family, from the plan (again after a kill: each is written once)
        row = engine.ledger.candidate(cid)
        if row["status"] in FINAL or cid not in plan["decisions"]:
            continue
        decision = Decision.from_json(plan["decisions"][cid])
        status = CandidateStatus(plan["status"][cid])
        if status in (CandidateStatus.EVALUATING, CandidateStatus.ACCEPTED):  # dev passed; another one was kept
            kept = winner.rsplit("-", 1)[-1] if winner else "another candidate"
            status, decision.final = CandidateStatus.REJECTED, "rejected"
            decision.reason = f"dev passed, but {kept} was kept: at most one candidate per round"
        engine._finish(cid, status, decision, plan["scores"][cid])


async def _dev_plan(engine: LoopEngine, r: int, parent: arch.Member, ids: list[str], seed: int) -> dict[str, Any]:
    """Every open sibling's dev comparison, run at once, then Holm's correction over the family."""
    rows = {cid: engine.ledger.candidate(cid) for cid in ids}
    todo = [cid for cid in ids if rows[cid]["status"] in TO_EVALUATE]
    for cid in todo:
        engine.ledger.update_candidate(cid, status=CandidateStatus.EVALUATING)
    await engine.scores(parent.commit, "dev", engine.dev_units, None, seed)  # once, before the siblings share it

    async def one(cid: str) -> Outcome:
        known = Decision(risky=Decision.from_json(rows[cid].get("decision")).risky, seed=seed)
        out = await compare_dev(_score_fn(engine, parent, cid, rows[cid]["commit"], seed), engine.dev_units, engine.loop,
                                seed=seed, decision=known)
        if out.decision.dev is not None:
            out.decision.parent_eval = engine.eval_ids.get((parent.commit, "dev", seed))
            out.decision.cand_eval = engine.eval_ids.get((rows[cid]["commit"], "dev", seed))
        return out

    # every evaluation ends before an error is raised: a sandbox cancelled while it starts hangs asyncio (3.11)
    results = await asyncio.gather(*(one(cid) for cid in todo), return_exceptions=True)
    outcomes: dict[str, Outcome] = {}
    for cid, res in zip(todo, results):
        if isinstance(res, ArenaFailure):  # a recorded failure, never a score; not one of the family's tests
            engine._finish(cid, CandidateStatus.FAILED, Decision("failed", str(res), failure=res.details), {})
        elif isinstance(res, BaseException):
            raise res
        else:
            outcomes[cid] = res
    return _plan(engine, outcomes)


def _plan(engine: LoopEngine, outcomes: dict[str, Outcome]) -> dict[str, Any]:
    loop = engine.loop
    mean_kept = None
    if loop.decision_rule == "mean":  # the contrast rule: the largest mean gain, no test, no holdout
        kept = [c for c, o in outcomes.items() if o.status == CandidateStatus.ACCEPTED]
        mean_kept = max(kept, key=lambda c: outcomes[c].decision.dev.mean_diff, default=None)
        order: list[str] = []
    else:
        # stopped early on the first slice: p = 1, still one of the family (its test was begun, then cut short)
        p = {c: o.decision.dev.p_value if o.decision.dev else 1.0 for c, o in outcomes.items()}
        passed, thresholds = holm(list(p.values()), loop.alpha)
        for (c, o), ok, threshold in zip(outcomes.items(), passed, thresholds):
            if o.status == CandidateStatus.EVALUATING and not ok:
                o.status, o.decision.dev.accepted, o.decision.final = CandidateStatus.REJECTED, False, "rejected"
                o.decision.reason = o.decision.dev.reason = (
                    f"rejected: p={format_p(p[c])} < alpha={loop.alpha:g} alone, but not below Holm's "
                    f"{threshold:.4g} for {len(outcomes)} candidates this round; "
                    f"{o.decision.dev.reason.removeprefix('accepted: ')}")
        order = sorted((c for c, o in outcomes.items() if o.status == CandidateStatus.EVALUATING),
                       key=lambda c: -outcomes[c].decision.dev.mean_diff)
    return {"order": order, "mean_kept": mean_kept, "decisions": {c: o.decision.to_json() for c, o in outcomes.items()},
            "status": {c: o.status.value for c, o in outcomes.items()},
            "scores": {c: o.candidate_dev for c, o in outcomes.items()}}


def _score_fn(engine: LoopEngine, parent: arch.Member, cid: str, commit: str, seed: int):
    async def score(side: Side, split: str, units) -> dict[str, list[float]]:
        member_commit, member_id = (parent.commit, None) if side == "parent" else (commit, cid)
        return await engine.scores(member_commit, split, list(units), member_id, seed)

    return score


def _lead(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate the round's lesson is about: the kept one, else the largest dev gain, else the first."""
    kept = [row for row in rows if row["status"] == CandidateStatus.ACCEPTED]
    if kept:
        return kept[0]
    effects = [(Decision.from_json(row["decision"]).effect, -i, row) for i, row in enumerate(rows)]
    measured = [e for e in effects if e[0] is not None]
    return max(measured, key=lambda e: (e[0], e[1]))[2] if measured else rows[0]


def tried_text(rows: Sequence[dict[str, Any]]) -> str:
    """The other candidates of a round, for its lesson: `r003b set x = 1 (rejected, +0.012)`."""
    parts = []
    for row in rows:
        effect = Decision.from_json(row["decision"]).effect
        figure = f", {effect:+.3f}" if effect is not None else ""
        parts.append(f"{row['id'].rsplit('-', 1)[-1]} {row['summary'][:80]} ({row['status']}{figure})")
    return "; ".join(parts)


def _member_result(r: int, row: dict[str, Any]) -> RoundResult:
    from ratchet.loop.engine import RoundResult

    return RoundResult(r, row["id"], CandidateStatus(row["status"]), row["summary"])


__all__ = ["holm", "member_suffix", "mean_of", "run_population_round", "tried_text"]
