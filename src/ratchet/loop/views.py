"""Plain views of the ledger for the terminal: the run history table and one candidate's story."""

from __future__ import annotations

from typing import Any

from ratchet.ledger import Ledger
from ratchet.loop.record import Decision
from ratchet.stats import format_p


def _fmt(x: Any, spec: str = "+.3f") -> str:
    return "-" if x is None else format(x, spec)


def _p(x: float | None) -> str:
    return "-" if x is None else format_p(x)


def log_rows(ledger: Ledger, run_id: str) -> list[list[str]]:
    rows = []
    for c in ledger.candidates(run_id):
        d = Decision.from_json(c["decision"])
        dev, hold = d.stats, d.holdout
        dev_txt = f"{_fmt(dev.mean_diff)} [{_fmt(dev.ci_low)}, {_fmt(dev.ci_high)}]" if dev else "-"
        hold_txt = "-" if not hold else (f"{_fmt(hold.mean_cand, '.3f')} vs {_fmt(hold.mean_parent, '.3f')} "
                                         + ("confirmed" if hold.confirmed else "not confirmed"))
        rows.append([str(c["round"]), c["id"].rsplit("-", 1)[-1], (c["parent_id"] or "-").rsplit("-", 1)[-1],
                     c["proposer"], c["summary"][:48], dev_txt, hold_txt, c["status"]])
    return rows


LOG_COLUMNS = ["round", "candidate", "parent", "proposer", "change", "dev delta [CI]", "holdout", "decision"]


def show_text(ledger: Ledger, cand_id: str) -> str:
    c = ledger.candidate(cand_id)
    if c is None:
        raise ValueError(f"no candidate {cand_id!r}; `ratchet log PROJECT` lists them")
    d = Decision.from_json(c["decision"])
    lines = [f"candidate {c['id']}  (round {c['round']}, parent {c['parent_id']}, proposer {c['proposer']})",
             f"commit     {c['commit'] or '-'}", f"status     {c['status']}", "",
             f"change     {c['summary']}", f"rationale  {c['rationale']}", f"hypothesis {c['hypothesis']}", ""]
    for s, title in ((d.slice, "first slice of dev"), (d.dev, "dev (paired)")):
        if s:
            lines.append(f"{title}: parent {_fmt(s.mean_parent, '.3f')} -> candidate {_fmt(s.mean_cand, '.3f')}, "
                         f"diff {_fmt(s.mean_diff)} CI [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}], "
                         f"p={_p(s.p_value)}, n={s.n_tasks} tasks")
    if (h := d.holdout):
        lines.append(f"holdout: parent {_fmt(h.mean_parent, '.3f')} -> candidate {_fmt(h.mean_cand, '.3f')}, "
                     f"p={_p(h.p_value)}; {h.reason}")
    if d.reason:
        lines.append(f"decision: {d.final or c['status']} - {d.reason}")
    for key, reasons in (("guard", d.guard), ("risky", d.risky)):
        if reasons:
            lines.append(f"{key}: " + "; ".join(reasons))
    lesson = next((les for les in ledger.lessons(c["run_id"]) if les["candidate_id"] == c["id"]), None)
    if lesson:
        lines += ["", f"lesson: {lesson['text']}"]
    if c["diff"]:
        lines += ["", c["diff"]]
    return "\n".join(lines)
