"""The data card: per generation, what was sampled, verified, filtered (and why), trained on, and decided.

Built from ledger rows only (no model, no suite), so `ratchet data stats` works on any past run.
Pure functions: rows in, table rows or markdown out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CARD_COLUMNS = ["gen", "model", "rollouts", "verified", "tasks solved", "candidates", "kept", "contamination",
                "duplicates", "length", "capped", "train set (fresh+old)", "dev current→cand", "holdout current→cand",
                "decision", "verified: outcome / +process", "process findings", "AI pairs kept", "judge vs checker"]


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _arrow(means: dict[str, float], split: str) -> str:
    a, b = means.get(f"{split}_current"), means.get(f"{split}_candidate")
    return "-" if a is None or b is None else f"{_pct(a)}→{_pct(b)}"


def card_rows(generations: Sequence[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for g in generations:
        c = g.get("counts") or {}
        f = {**(c.get("filter_sft") or {})}
        for k, v in (c.get("filter_pairs") or {}).items():
            f[k] = f.get(k, 0) + v
        d = g.get("decision") or {}
        ts = c.get("train_set") or {}
        status = g.get("status", "")
        rows.append([
            g["generation"], g.get("model", ""), c.get("rollouts", 0), c.get("verified_good", 0),
            f"{c.get('tasks_solved', 0)}/{c.get('tasks', 0)}", f.get("candidates", 0), f.get("kept", 0),
            f.get("contamination", 0), f.get("duplicate", 0) + f.get("near_duplicate", 0),
            f.get("too_short", 0) + f.get("too_long", 0), f.get("per_task_cap", 0),
            f"{ts.get('sft_fresh', 0)}+{ts.get('sft_old', 0)} sft, {ts.get('pairs_fresh', 0)}+{ts.get('pairs_old', 0)} pairs"
            if ts else "-",
            _arrow(d.get("means") or {}, "dev"), _arrow(d.get("means") or {}, "holdout"),
            f"{status}: {g.get('candidate_model') or ''}".strip(": "),
            _process(c), _findings(c), _ai_pairs(f, c), _agreement(c.get("judge_agreement")),
        ])
    return rows


def _process(c: dict[str, Any]) -> str:
    """Rollouts each filter mode keeps (both are counted whichever ran); the mode that ran is starred."""
    if "verified_outcome" not in c:  # a generation recorded before the process checks
        return "-"
    mode = c.get("filter_mode", "outcome")
    return (f"{c['verified_outcome']}{'*' if mode == 'outcome' else ''} / "
            f"{c['verified_outcome_process']}{'*' if mode == 'outcome+process' else ''}")


def _findings(c: dict[str, Any]) -> str:
    found = c.get("process_findings") or {}
    return ", ".join(f"{k} {n}" for k, n in found.items()) or "-"


def _ai_pairs(f: dict[str, Any], c: dict[str, Any]) -> str:
    rlaif = c.get("rlaif") or {}
    parts = []
    if rlaif.get("compared"):
        parts.append(f"rlaif {f.get('kept_ai_pairwise', 0)} ({rlaif['compared']} compared: {rlaif.get('tie', 0)} tie, "
                     f"{rlaif.get('inconsistent', 0)} inconsistent, {rlaif.get('unparsed', 0)} unparsed)")
    failed, low = f.get("revision_failed_check", 0), f.get("revision_judge_low", 0)
    if f.get("kept_ai_revision") or failed or low:
        parts.append(f"revision {f.get('kept_ai_revision', 0)} ({failed} failed the checker, {low} judged low)")
    return "; ".join(parts) or "-"


def _agreement(a: dict[str, Any] | None) -> str:
    if not a or not a.get("n"):
        return "-"
    text = f"{100 * a['rate']:.0f}% of {a['n']}"
    if a.get("checker_failed"):
        text += f"; passes {a['judge_passed_failed']}/{a['checker_failed']} wrong"
    return text + (" ⚠ LENIENT" if a.get("lenient") else "")


def card_markdown(run_id: str, generations: Sequence[dict[str, Any]]) -> str:
    lines = [f"# Data card — flywheel run {run_id}", "",
             "Rollouts are K samples per train task; *verified* passed the scorer (and judge) and the process "
             "checks; *candidates* are the SFT examples and preference pairs built from them; each dropped "
             "candidate is counted under the first check it failed (contamination, duplicates, length, per-task cap). "
             "*verified: outcome / +process* counts the rollouts each filter mode keeps (* the mode that ran); "
             "*process findings* counts rollouts per finding kind; *AI pairs kept* are the judge's pairwise "
             "preferences (RLAIF) and constitution revisions (CAI); *judge vs checker* is their agreement on "
             "rollouts graded by both, and how many checker-failed replies the judge passed.",
             "", "| " + " | ".join(CARD_COLUMNS) + " |", "|" + "---|" * len(CARD_COLUMNS)]
    for row in card_rows(generations):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    lines.append("")
    for g in generations:
        c = g.get("counts") or {}
        hits = c.get("contamination_hits") or []
        if hits:
            lines.append(f"- generation {g['generation']}: {len(hits)} contaminated candidates dropped; eval tasks hit: "
                         + ", ".join(sorted({h['hit_task'] for h in hits if h.get('hit_task')})[:20]))
        agreement = c.get("judge_agreement") or {}
        if agreement.get("lenient"):
            lines.append(f"- generation {g['generation']}: **lenient judge**: it passed {agreement['judge_passed_failed']} "
                         f"of {agreement['checker_failed']} replies the checker failed (more than "
                         f"{100 * agreement['lenient_rate_max']:.0f}%); do not trust its grades where there is no checker")
        reason = (g.get("decision") or {}).get("reason")
        if reason:
            lines.append(f"- generation {g['generation']} decision: {reason}")
    return "\n".join(lines) + "\n"


def card_transposed(generations: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The card with one column per generation: fits a terminal however many checks there are."""
    rows = card_rows(generations)
    columns = ["", *[f"generation {r[0]}" for r in rows]]
    return columns, [[label, *[r[i] for r in rows]] for i, label in enumerate(CARD_COLUMNS) if i > 0]
