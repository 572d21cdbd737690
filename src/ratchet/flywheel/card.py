"""The data card: per generation, what was sampled, verified, filtered (and why), trained on, and decided.

Built from ledger rows only (no model, no suite), so `ratchet data stats` works on any past run.
Pure functions: rows in, table rows or markdown out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CARD_COLUMNS = ["gen", "model", "rollouts", "verified", "tasks solved", "candidates", "kept", "contamination",
                "duplicates", "length", "capped", "train set (fresh+old)", "dev current→cand", "holdout current→cand",
                "decision"]


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
        ])
    return rows


def card_markdown(run_id: str, generations: Sequence[dict[str, Any]]) -> str:
    lines = [f"# Data card — flywheel run {run_id}", "",
             "Rollouts are K samples per train task; *verified* passed the scorer (and judge) and the process "
             "checks; *candidates* are the SFT examples and preference pairs built from them; each dropped "
             "candidate is counted under the first check it failed (contamination, duplicates, length, per-task cap).",
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
        reason = (g.get("decision") or {}).get("reason")
        if reason:
            lines.append(f"- generation {g['generation']} decision: {reason}")
    return "\n".join(lines) + "\n"


def card_transposed(generations: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The card with one column per generation: fits a terminal however many checks there are."""
    rows = card_rows(generations)
    columns = ["", *[f"generation {r[0]}" for r in rows]]
    return columns, [[label, *[r[i] for r in rows]] for i, label in enumerate(CARD_COLUMNS) if i > 0]
