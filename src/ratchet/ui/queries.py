"""Read-only queries over the ledger for the dashboard and the report.

Each function reads rows (through `Ledger` where it has a method, through its engine and the schema
where the page needs a join or a filter that `Ledger` does not offer) and hands them to `views` for
shaping. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from ratchet.ledger import Ledger, decode_json, row_dict
from ratchet.ledger import schema as s
from ratchet.loop.proposer_trouble import proposer_failures
from ratchet.loop.record import CandidateStatus, Decision
from ratchet.loop.work_view import agent_work, proposal_meta
from ratchet.types import jsonable
from ratchet.ui import views

TEXT_LIMIT = 6000  # characters per string of a trajectory sent to a browser


def resolve_run(ledger: Ledger, spec: str) -> dict[str, Any] | None:
    """A run by id, unique id prefix, or 'latest' (the newest run of any kind)."""
    runs = ledger.runs()
    if spec == "latest":
        return runs[0] if runs else None
    exact = [r for r in runs if r["id"] == spec]
    matches = exact or [r for r in runs if r["id"].startswith(spec)]
    return matches[0] if len(matches) == 1 else None


def list_runs(ledger: Ledger) -> list[dict[str, Any]]:
    out = []
    for r in ledger.runs():
        summary = r.get("summary") or {}
        out.append({"id": r["id"], "kind": r["kind"], "project": r["project"], "status": r["status"],
                    "created_at": r["created_at"], "updated_at": r["updated_at"],
                    "round": summary.get("round"), "best_candidate": summary.get("best_candidate"),
                    "seed_dev": summary.get("seed_dev"), "best_dev": summary.get("best_dev"),
                    "seed_holdout": summary.get("seed_holdout"), "best_holdout": summary.get("best_holdout"),
                    "budget": views.budget_rows(summary)})
    return jsonable(out)


def _evals_by_id(ledger: Ledger, ids: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    with ledger.engine.connect() as c:
        rows = c.execute(sa.select(s.evals).where(s.evals.c.id.in_(wanted))).mappings()
        return {r["id"]: row_dict(r) for r in rows}


def _holdout_evals(ledger: Ledger, run_id: str, cand_ids: list[str]) -> dict[str | None, dict[str, Any]]:
    """Holdout eval results by candidate id; None holds the seed's (a holdout eval of the run with no candidate)."""
    q = (sa.select(s.evals).where(s.evals.c.split == "holdout")
         .where(sa.or_(s.evals.c.candidate_id.in_(cand_ids) if cand_ids else sa.false(),
                       sa.and_(s.evals.c.run_id == run_id, s.evals.c.candidate_id.is_(None))))
         .order_by(s.evals.c.created_at))
    out: dict[str | None, dict[str, Any]] = {}
    with ledger.engine.connect() as c:
        for r in map(row_dict, c.execute(q).mappings()):
            out.setdefault(r["candidate_id"], r.get("result") or {})
    return out


def _eval_summary(e: Mapping[str, Any]) -> dict[str, Any]:
    result = e.get("result") or {}
    # the result's count, not the row's: a dev slice and the full dev evaluation share one eval id, and the
    # row keeps the n_tasks of whichever opened it first (the slice)
    return {"id": e["id"], "split": e["split"], "candidate_id": e.get("candidate_id"), "status": e["status"],
            "n_tasks": result.get("n_tasks") or e["n_tasks"], "epochs": e["epochs"], "seed": e["seed"], "model": e["model"],
            "mean": result.get("mean"), "se": result.get("se"), "tokens": result.get("tokens"),
            "seconds": result.get("seconds"), "created_at": e["created_at"]}


def run_eval_ids(ledger: Ledger, run_id: str, candidates: list[Mapping[str, Any]]) -> set[str]:
    """Every evaluation a run used: its own, plus reused ones its decisions point at (eval ids are content
    hashes, so an identical harness reuses an earlier run's evaluation)."""
    ids = {e["id"] for e in ledger.evals(run_id)}
    for c in candidates:
        d = Decision.read(c.get("decision"))
        ids.update(i for i in (d.parent_eval, d.cand_eval) if i)
    cand_ids = [c["id"] for c in candidates]
    if cand_ids:
        with ledger.engine.connect() as conn:
            ids.update(r[0] for r in conn.execute(sa.select(s.evals.c.id).where(s.evals.c.candidate_id.in_(cand_ids))))
    return ids


def _own_eval_costs(ledger: Ledger, cand_ids: list[str]) -> dict[str, dict[str, float]]:
    """Rollouts, tokens and seconds of each candidate's own evaluations (dev slice, dev, holdout), summed."""
    out: dict[str, dict[str, float]] = {}
    if not cand_ids:
        return out
    q = sa.select(s.evals.c.candidate_id, s.evals.c.result).where(s.evals.c.candidate_id.in_(cand_ids))
    with ledger.engine.connect() as c:
        for cand_id, result in c.execute(q):
            r = decode_json(result) or {}
            total = out.setdefault(cand_id, {"rollouts": 0, "tokens": 0, "seconds": 0.0})
            total["rollouts"] += r.get("n_rollouts") or 0
            total["tokens"] += r.get("tokens") or 0
            total["seconds"] += r.get("seconds") or 0.0
    return out


def _with_eval_cost(ledger: Ledger, cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill each candidate's cost from its evaluations where the row does not record it: the evolve
    engine stores only {"dev_mean"} in candidates.cost, the rollouts and tokens live on its eval rows."""
    derived = _own_eval_costs(ledger, [c["id"] for c in cands])
    return [{**c, "cost": {**derived.get(c["id"], {}), **(c.get("cost") or {})}} for c in cands]


def _candidate_row(c: Mapping[str, Any]) -> dict[str, Any]:
    d = Decision.read(c.get("decision"))
    dev, hold = d.stats, d.holdout  # a stopped-early candidate has only the slice
    return {"id": c["id"], "round": c["round"], "parent_id": c.get("parent_id"), "status": c["status"],
            "outcome": views.outcome(c), "proposer": c["proposer"], "summary": c.get("summary") or "",
            "dev_diff": dev.mean_diff if dev else None, "dev_ci": [dev.ci_low, dev.ci_high] if dev else [None, None],
            "dev_ci_level": dev.ci_level if dev else None, "dev_p": dev.p_value if dev else None,
            "holdout_diff": hold.holdout_diff if hold else None,
            "holdout_ci": [hold.ci_low, hold.ci_high] if hold else [None, None],
            "holdout_confirmed": hold.confirmed if hold else None, "reason": d.reason or (dev and dev.reason) or "",
            "cost": c.get("cost") or {}, "updated_at": c["updated_at"]}


def _proposer_failures(ledger: Ledger, c: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Which proposer failed in the candidate's round before another answered (or with none answering), why, at what cost."""
    return [f.to_json() for f in proposer_failures(ledger, c)]


def run_detail(ledger: Ledger, run_id: str) -> dict[str, Any] | None:
    run = ledger.run(run_id)
    if run is None:
        return None
    summary = run.get("summary") or {}
    cands = _with_eval_cost(ledger, ledger.candidates(run_id))
    cand_ids = [c["id"] for c in cands]
    refs = [i for d in map(Decision.read, (c.get("decision") for c in cands)) for i in (d.parent_eval, d.cand_eval)]
    evals = {k: v.get("result") or {} for k, v in _evals_by_id(ledger, refs).items()}
    events = ledger.events(run_id)
    own_evals = [_eval_summary(e) for e in ledger.evals(run_id)]
    return jsonable({
        "run": {k: run[k] for k in ("id", "kind", "project", "status", "created_at", "updated_at", "summary", "config")},
        "series": views.score_series(cands, evals, _holdout_evals(ledger, run_id, cand_ids), summary),
        "cost": views.cost_series(cands),
        "budget": views.budget_rows(summary),
        "unseals": max(int(summary.get("unseals") or 0), sum(e["kind"] == "unseal" for e in events)),
        "test": summary.get("test"),
        "report": views.closing_report(summary),
        "lineage": views.lineage(cands, summary.get("best_candidate")),
        "candidates": [{**_candidate_row(c), "proposer_failures": _proposer_failures(ledger, c)} for c in cands],
        "pending": [c["id"] for c in cands if c["status"] == CandidateStatus.AWAITING_APPROVAL],
        "evals": own_evals,
        "rollouts": ledger.rollout_count(run_id),
        "events": [{"kind": e["kind"], "data": e["data"], "created_at": e["created_at"]} for e in events[-100:]],
    })


def _signals_for_eval(ledger: Ledger, eval_id: str | None) -> dict[str, int]:
    if not eval_id:
        return {}
    with ledger.engine.connect() as c:
        rows = c.execute(sa.select(s.rollouts.c.signal, sa.func.count()).where(s.rollouts.c.eval_id == eval_id)
                         .group_by(s.rollouts.c.signal))
        return dict(sorted(((r[0], int(r[1])) for r in rows), key=lambda kv: -kv[1]))


def candidate_detail(ledger: Ledger, cand_id: str) -> dict[str, Any] | None:
    cand = ledger.candidate(cand_id)
    if cand is None:
        return None
    cand = _with_eval_cost(ledger, [cand])[0]
    siblings = ledger.candidates(cand["run_id"])
    parent = next((c for c in siblings if c["id"] == cand.get("parent_id")), None)
    d = Decision.read(cand.get("decision"))
    evals = _evals_by_id(ledger, [d.parent_eval, d.cand_eval])
    lesson = next((x for x in ledger.lessons(cand["run_id"])
                   if x["candidate_id"] == cand["id"] or (x["candidate_id"] is None and x["round"] == cand["round"])), None)
    events = ledger.events(cand["run_id"])
    run = ledger.run(cand["run_id"]) or {}
    return jsonable({
        "candidate": {k: cand.get(k) for k in ("id", "run_id", "round", "parent_id", "commit", "proposer", "summary",
                                               "rationale", "hypothesis", "diff", "fingerprint", "status", "cost",
                                               "created_at", "updated_at")},
        "outcome": views.outcome(cand),
        "proposer_failures": _proposer_failures(ledger, cand),
        "agent_work": agent_work(proposal_meta(ledger, cand), d.attempts),
        "run": {"id": run.get("id"), "kind": run.get("kind"), "status": run.get("status")},
        "parent": {"id": parent["id"], "round": parent["round"], "status": parent["status"]} if parent else None,
        "children": [{"id": c["id"], "round": c["round"], "status": c["status"]}
                     for c in siblings if c.get("parent_id") == cand["id"]],
        "decision": views.decision_parts(cand.get("decision")),
        "evals": {k: _eval_summary(evals[i]) for k, i in (("parent_eval", d.parent_eval), ("cand_eval", d.cand_eval))
                  if i in evals},
        "signals": {"parent": _signals_for_eval(ledger, d.parent_eval), "candidate": _signals_for_eval(ledger, d.cand_eval)},
        "lesson": {"text": lesson["text"], "data": lesson["data"], "round": lesson["round"]} if lesson else None,
        "events": [{"kind": e["kind"], "data": e["data"], "created_at": e["created_at"]} for e in events
                   if isinstance(e.get("data"), dict) and e["data"].get("candidate") == cand["id"]],
    })


def find_trajectories(ledger: Ledger, run_id: str | None = None, candidate: str | None = None,
                      split: str | None = None, signal: str | None = None, limit: int = 50, offset: int = 0,
                      text_limit: int = TEXT_LIMIT) -> dict[str, Any]:
    """Rollouts with their trajectories, filtered; facets count splits and signals under the run/candidate filter."""
    eval_ids: set[str] | None = None
    owner: dict[str, str] = {}  # eval id -> the candidate it evaluated, for the list
    if run_id:
        cands = ledger.candidates(run_id)
        eval_ids = run_eval_ids(ledger, run_id, cands)
        for c in cands:
            ce = Decision.read(c.get("decision")).cand_eval
            if ce:
                owner[ce] = c["id"]
    if candidate:
        cand = ledger.candidate(candidate)
        if cand is None:
            return {"total": 0, "items": [], "facets": {"split": {}, "signal": {}}, "error": f"no candidate {candidate}"}
        ce = Decision.read(cand.get("decision")).cand_eval
        with ledger.engine.connect() as c:
            ids = {r[0] for r in c.execute(sa.select(s.evals.c.id).where(s.evals.c.candidate_id == cand["id"]))}
        ids.update([ce] if ce else [])
        eval_ids = ids if eval_ids is None else eval_ids & ids
        owner.update({i: cand["id"] for i in ids})
    base = sa.select(s.rollouts, s.evals.c.split, s.evals.c.candidate_id).join(s.evals, s.evals.c.id == s.rollouts.c.eval_id)
    if eval_ids is not None:
        base = base.where(s.rollouts.c.eval_id.in_(sorted(eval_ids)))
    facet_base = base.subquery()
    filtered = base
    if split:
        filtered = filtered.where(s.evals.c.split == split)
    if signal:
        filtered = filtered.where(s.rollouts.c.signal == signal)
    with ledger.engine.connect() as c:
        total = int(c.execute(sa.select(sa.func.count()).select_from(filtered.subquery())).scalar_one())
        rows = c.execute(filtered.order_by(s.evals.c.created_at, s.rollouts.c.eval_id, s.rollouts.c.task_id, s.rollouts.c.epoch)
                         .limit(max(1, min(limit, 500))).offset(max(0, offset))).mappings().all()
        facets = {name: {str(r[0]): int(r[1]) for r in c.execute(
            sa.select(facet_base.c[name], sa.func.count()).group_by(facet_base.c[name]))}
            for name in ("split", "signal")}
    items = [{"id": r["id"], "eval_id": r["eval_id"], "split": r["split"], "task_id": r["task_id"], "epoch": r["epoch"],
              "score": r["score"], "signal": r["signal"],
              "candidate": owner.get(r["eval_id"]) or r["candidate_id"],
              "data": views.truncate(decode_json(r["data"]), text_limit)} for r in rows]
    return jsonable({"total": total, "offset": offset, "limit": limit, "items": items, "facets": facets})


def list_lessons(ledger: Ledger, run_id: str | None = None) -> list[dict[str, Any]]:
    return jsonable([{"run_id": x["run_id"], "round": x["round"], "candidate_id": x["candidate_id"],
                         "text": x["text"], "data": decode_json(x["data"]), "created_at": x["created_at"]}
                        for x in reversed(ledger.lessons(run_id))])


def approval_queue(ledger: Ledger) -> list[dict[str, Any]]:
    out = []
    for c in ledger.candidates_with_status(CandidateStatus.AWAITING_APPROVAL):
        out.append({"id": c["id"], "run_id": c["run_id"], "round": c["round"], "proposer": c["proposer"],
                    "summary": c.get("summary") or "", "rationale": c.get("rationale") or "",
                    "risky": Decision.read(c.get("decision")).risky, "diff_lines": len((c.get("diff") or "").splitlines()),
                    "created_at": c["created_at"]})
    return jsonable(out)
