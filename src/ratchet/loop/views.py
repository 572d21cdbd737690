"""Plain views of the ledger for the terminal: the run history table and one candidate's story."""

from __future__ import annotations

from typing import Any

from ratchet.ledger import Ledger
from ratchet.stats import format_p


def _fmt(x: Any, spec: str = "+.3f") -> str:
    return "-" if x is None else format(x, spec)


def _p(x: float | None) -> str:
    return "-" if x is None else format_p(x)


def log_rows(ledger: Ledger, run_id: str) -> list[list[str]]:
    rows = []
    for c in ledger.candidates(run_id):
        d = c["decision"] or {}
        dev = d.get("dev") or d.get("slice")
        hold = d.get("holdout")
        dev_txt = f"{_fmt(dev['mean_diff'])} [{_fmt(dev['ci_low'])}, {_fmt(dev['ci_high'])}]" if dev else "-"
        hold_txt = "-" if not hold else (f"{_fmt(hold.get('mean_cand'), '.3f')} vs {_fmt(hold.get('mean_parent'), '.3f')} "
                                         + ("confirmed" if hold["confirmed"] else "not confirmed"))
        rows.append([str(c["round"]), c["id"].rsplit("-", 1)[-1], (c["parent_id"] or "-").rsplit("-", 1)[-1],
                     c["proposer"], c["summary"][:48], dev_txt, hold_txt, c["status"]])
    return rows


LOG_COLUMNS = ["round", "candidate", "parent", "proposer", "change", "dev delta [CI]", "holdout", "decision"]


def show_text(ledger: Ledger, cand_id: str) -> str:
    c = ledger.candidate(cand_id)
    if c is None:
        raise ValueError(f"no candidate {cand_id!r}; `ratchet log PROJECT` lists them")
    d = c["decision"] or {}
    lines = [f"candidate {c['id']}  (round {c['round']}, parent {c['parent_id']}, proposer {c['proposer']})",
             f"commit     {c['commit'] or '-'}", f"status     {c['status']}", "",
             f"change     {c['summary']}", f"rationale  {c['rationale']}", f"hypothesis {c['hypothesis']}", ""]
    for key, title in (("slice", "first slice of dev"), ("dev", "dev (paired)")):
        s = d.get(key)
        if s:
            lines.append(f"{title}: parent {_fmt(s['mean_parent'], '.3f')} -> candidate {_fmt(s['mean_cand'], '.3f')}, "
                         f"diff {_fmt(s['mean_diff'])} CI [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}], "
                         f"p={_p(s['p_value'])}, n={s['n_tasks']} tasks")
    if (h := d.get("holdout")):
        lines.append(f"holdout: parent {_fmt(h.get('mean_parent'), '.3f')} -> candidate {_fmt(h.get('mean_cand'), '.3f')}, "
                     f"p={_p(h.get('p_value'))}; {h['reason']}")
    if d.get("reason"):
        lines.append(f"decision: {d.get('final', c['status'])} - {d['reason']}")
    for key in ("guard", "risky"):
        if d.get(key):
            lines.append(f"{key}: " + "; ".join(d[key]))
    lesson = next((les for les in ledger.lessons(c["run_id"]) if les["candidate_id"] == c["id"]), None)
    if lesson:
        lines += ["", f"lesson: {lesson['text']}"]
    if c["diff"]:
        lines += ["", c["diff"]]
    return "\n".join(lines)
