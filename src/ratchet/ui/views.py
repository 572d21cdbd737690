"""Pure shaping of ledger rows into what the pages draw: score series, cost series, lineage, decisions.

Nothing here reads the ledger; `queries` does the reading and hands rows in, so these functions are
easy to test and the live page and the static report shape data the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ratchet.loop.reconcile import Report
from ratchet.loop.record import CandidateStatus, Decision
from ratchet.types import jsonable

Z95 = 1.959964  # two-sided 95% normal quantile, for bands around an evaluation mean

KEPT = {CandidateStatus.ACCEPTED}
DROPPED = {CandidateStatus.REJECTED, CandidateStatus.GUARD_REJECTED, CandidateStatus.DUPLICATE, CandidateStatus.FAILED}

clean = jsonable  # the old name of ratchet.types.jsonable (the one definition), kept for callers of views.clean


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def eval_point(result: Mapping[str, Any] | None) -> dict[str, float | None] | None:
    """Mean with a 95% band from an eval result ({mean, se} or {mean, ci_low, ci_high}); scores live in [0, 1]."""
    if not result:
        return None
    mean = _num(result.get("mean"))
    if mean is None:
        return None
    lo, hi = _num(result.get("ci_low")), _num(result.get("ci_high"))
    se = _num(result.get("se"))
    if (lo is None or hi is None) and se is not None:
        lo, hi = mean - Z95 * se, mean + Z95 * se
    if lo is not None and hi is not None:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return {"mean": mean, "lo": lo, "hi": hi, "se": se, "n": result.get("n_tasks")}


def outcome(cand: Mapping[str, Any]) -> str:
    """accepted | rejected | pending | the raw status: how a marker on the score chart is drawn."""
    final = Decision.read(cand.get("decision")).final
    status = cand.get("status") or ""
    if final == CandidateStatus.ACCEPTED or status in KEPT:
        return CandidateStatus.ACCEPTED.value
    if final == CandidateStatus.REJECTED or status in DROPPED:
        return (CandidateStatus.GUARD_REJECTED if status == CandidateStatus.GUARD_REJECTED else CandidateStatus.REJECTED).value
    return "pending"


def decision_parts(decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """The decision JSON with every optional part present (None when missing), per-task diffs sorted."""
    d = Decision.read(decision)
    rows = sorted(((str(t), _num(v)) for t, v in d.per_task.items()), key=lambda tv: (tv[1] is None, tv[1] or 0.0))
    return {
        "dev": d.dev.to_json() if d.dev else None, "slice": d.slice.to_json() if d.slice else None,
        "holdout": d.holdout.to_json() if d.holdout else None,
        "final": d.final, "reason": d.reason,
        "guard": list(d.guard or []), "risky": d.risky,
        "parent_eval": d.parent_eval, "cand_eval": d.cand_eval,
        "per_task": [{"task": t, "diff": v} for t, v in rows],
    }


def score_series(
    candidates: list[Mapping[str, Any]],
    evals: Mapping[str, Mapping[str, Any]],
    holdout_evals: Mapping[str | None, Mapping[str, Any]],
    summary: Mapping[str, Any],
) -> dict[str, list[dict[str, Any]]]:
    """Per-round points for the score chart.

    `evals` maps eval id -> result; `holdout_evals` maps candidate id (None: the seed) -> holdout result.
    cand_* are every evaluated candidate (a marker each); best_* is the kept lineage after each round,
    starting from the seed at round 0, which is what "the score over rounds" means for a ratchet.
    """
    ordered = sorted(candidates, key=lambda c: c["round"])
    seed_dev = _seed_dev(ordered, evals, summary)
    seed_hold = eval_point(holdout_evals.get(None)) or _bare(summary.get("seed_holdout"))
    cand_dev, cand_hold, best_dev, best_hold = [], [], [], []
    cur_dev, cur_hold = seed_dev, seed_hold
    if cur_dev:
        best_dev.append({"round": 0, **cur_dev, "candidate": None})
    if cur_hold:
        best_hold.append({"round": 0, **cur_hold, "candidate": None})
    for c in ordered:
        d = Decision.read(c.get("decision"))
        dev = eval_point(evals.get(d.cand_eval)) or _bare(d.dev.mean_cand if d.dev else None)
        hold = eval_point(holdout_evals.get(c["id"])) or _bare(d.holdout.mean_cand if d.holdout else None)
        mark = {"round": c["round"], "candidate": c["id"], "outcome": outcome(c), "summary": c.get("summary") or ""}
        if dev:
            cand_dev.append({**mark, **dev})
        if hold:
            cand_hold.append({**mark, **hold})
        if mark["outcome"] == CandidateStatus.ACCEPTED:
            cur_dev = dev or cur_dev
            cur_hold = hold or cur_hold
        if cur_dev:
            best_dev.append({"round": c["round"], **cur_dev, "candidate": c["id"]})
        if cur_hold:
            best_hold.append({"round": c["round"], **cur_hold, "candidate": c["id"]})
    return {"cand_dev": cand_dev, "cand_holdout": cand_hold, "best_dev": best_dev, "best_holdout": best_hold}


def _bare(mean: Any) -> dict[str, float | None] | None:
    m = _num(mean)
    return None if m is None else {"mean": m, "lo": None, "hi": None, "se": None, "n": None}


def _seed_dev(ordered: list[Mapping[str, Any]], evals: Mapping[str, Mapping[str, Any]],
              summary: Mapping[str, Any]) -> dict[str, float | None] | None:
    ids = {c["id"] for c in ordered}
    for c in ordered:  # the first candidate proposed against the seed carries the seed's evaluation
        if c.get("parent_id") not in ids:
            d = Decision.read(c.get("decision"))
            point = eval_point(evals.get(d.parent_eval)) or _bare(d.dev.mean_parent if d.dev else None)
            if point:
                return point
    return _bare(summary.get("seed_dev"))


def closing_report(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's reconciled report (`loop.reconcile`, stored in the summary by the closing table and the unseal),
    read through its type and shaped for the page: each side's 95% interval worked out, values in the direction
    the run reports (a minimised research metric reads as itself). None when the run has none yet."""
    report = Report.from_json(summary.get("report"))
    if report is None:
        return None
    k = report.sign

    def pair(lo: float | None, hi: float | None) -> list[float | None]:
        return [None, None] if lo is None or hi is None else sorted([k * lo, k * hi])

    rows = [{"split": r.split, "seed": {"mean": k * r.seed_mean, "ci": pair(*r.interval("seed"))},
             "best": {"mean": k * r.best_mean, "ci": pair(*r.interval("best"))},
             "diff": k * r.diff, "ci": pair(r.ci_low, r.ci_high), "ci_level": r.ci_level, "p_value": r.p_value,
             "significant": r.significant, "n_tasks": r.n_tasks, "epochs": r.epochs, "measured_with": r.measured_with,
             "eval_seed": r.eval_seed, "detectable": r.detectable} for r in report.rows]
    current = summary.get("best_commit")
    return jsonable({"rows": rows, "sentences": report.sentences, "alpha": report.alpha, "unit": report.unit,
                     "same_harness": report.same_harness,
                     "stale": bool(current and report.best_commit and current != report.best_commit)})


def cost_series(candidates: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Cumulative rollouts, tokens and seconds after each round (from each candidate's cost)."""
    rows, total = [], {"rollouts": 0.0, "tokens": 0.0, "seconds": 0.0}
    for c in sorted(candidates, key=lambda c: c["round"]):
        cost = c.get("cost") or {}
        step = {k: _num(cost.get(k)) or 0.0 for k in total}
        for k in total:
            total[k] += step[k]
        rows.append({"round": c["round"], **step, **{f"cum_{k}": v for k, v in total.items()}})
    return rows


def budget_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """[{name, used, max, fraction}] from summary.budget = {name: [used, max|null]}."""
    out = []
    for name, pair in (summary.get("budget") or {}).items():
        if not isinstance(pair, (list, tuple)) or not pair:
            continue
        used = _num(pair[0])
        cap = _num(pair[1]) if len(pair) > 1 else None
        frac = used / cap if used is not None and cap else None
        out.append({"name": str(name), "used": used, "max": cap, "fraction": frac})
    return out


def lineage(candidates: list[Mapping[str, Any]], best: str | None) -> list[dict[str, Any]]:
    """A forest of candidates by parent_id. Parents that are not candidates (the seed, a commit) become
    root nodes; nodes on the path to the best candidate are flagged so the page can trace it."""
    by_id = {c["id"]: c for c in candidates}
    on_path: set[str] = set()
    node = best
    while node in by_id and node not in on_path:
        on_path.add(node)
        node = by_id[node].get("parent_id")
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for c in sorted(candidates, key=lambda c: c["round"]):
        parent = c.get("parent_id") if c.get("parent_id") in by_id else ("root:" + str(c.get("parent_id") or "seed"))
        children.setdefault(parent, []).append(c)

    def build(c: Mapping[str, Any], depth: int) -> dict[str, Any]:
        kids = children.get(c["id"], []) if depth < 200 else []
        return {"id": c["id"], "round": c["round"], "status": c.get("status"), "outcome": outcome(c),
                "summary": c.get("summary") or "", "best_path": c["id"] in on_path,
                "children": [build(k, depth + 1) for k in kids]}

    roots = [key for key in children if isinstance(key, str) and key.startswith("root:")]
    return [{"id": None, "label": key.removeprefix("root:"), "round": 0, "status": "seed", "outcome": "seed",
             "summary": "seed harness", "best_path": True,
             "children": [build(c, 1) for c in children[key]]} for key in roots]


def signal_counts(signals: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in signals:
        counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def truncate(value: Any, limit: int) -> Any:
    """Cut long strings inside a JSON value (trajectories can hold whole programs) and say so."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"\n… [{len(value) - limit} more characters]"
    if isinstance(value, Mapping):
        return {k: truncate(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [truncate(v, limit) for v in value]
    return value
