"""Plain views of the ledger for the terminal: the run history table, one candidate's story, and the closing
report of seed vs best (`loop.reconcile`) as a table and its sentences."""

from __future__ import annotations

from typing import Any

from ratchet.ledger import Ledger
from ratchet.loop.proposer_trouble import ProposerFailure, proposer_failures, round_notices
from ratchet.loop.reconcile import Report, SplitRow
from ratchet.loop.record import CandidateStatus, Decision
from ratchet.loop.work_view import proposal_meta, work_lines
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
        proposer, change = _proposer_cells(ledger, c)
        rows.append([str(c["round"]), c["id"].rsplit("-", 1)[-1], (c["parent_id"] or "-").rsplit("-", 1)[-1],
                     proposer, change, dev_txt, hold_txt, c["status"]])
    return rows


def _proposer_cells(ledger: Ledger, c: dict[str, Any]) -> tuple[str, str]:
    """The proposer and change cells: a proposer that failed is named with its cost ("search (llm failed,
    812 tok)", "llm (failed, 85 tok)"); why is in `failure_notes`, under the table."""
    failures = proposer_failures(ledger, c)
    if not failures:
        return c["proposer"], c["summary"][:48]
    if not c["commit"] and c["status"] == CandidateStatus.FAILED:
        return f"{c['proposer']} (failed{_tok(sum(f.tokens or 0 for f in failures), failures)})", c["summary"][:48]
    failed = ", ".join(f"{f.proposer} failed{_tok(f.tokens, [f])}" for f in failures)
    return f"{c['proposer']} ({failed})", c["summary"][:48]


def _tok(tokens: int | None, failures: list[ProposerFailure]) -> str:
    return "" if tokens is None or all(f.tokens is None for f in failures) else f", {tokens:,} tok"


def failure_notes(ledger: Ledger, run_id: str) -> list[str]:
    """One line per proposer that failed in a round of the run: which, why, at what cost (under `ratchet log`'s table)."""
    return [f"round {c['round']} ({c['id'].rsplit('-', 1)[-1]}): {f.line()}"
            for c in ledger.candidates(run_id) for f in proposer_failures(ledger, c)]


REPORT_COLUMNS = ["split", "seed [95% CI]", "best [95% CI]", "best - seed [CI]", "p", "n", "measured with (seed)"]


def report_rows(report: Report) -> list[list[str]]:
    """One line per split of the closing report: each side with its interval, the paired test, what it was measured on."""
    def side(row: SplitRow, which: str) -> str:
        mean = row.seed_mean if which == "seed" else row.best_mean
        lo, hi = row.interval(which)
        if lo is None:
            return f"{report.sign * mean:.3f}"
        lo, hi = sorted((report.sign * lo, report.sign * hi))
        return f"{report.sign * mean:.3f} [{lo:.3f}, {hi:.3f}]"

    rows = []
    for r in report.rows:
        lo, hi = sorted((report.sign * r.ci_low, report.sign * r.ci_high))
        seed = f"{r.measured_with} ({r.eval_seed})" if r.eval_seed is not None else r.measured_with
        rows.append([r.split, side(r, "seed"), side(r, "best"), f"{report.sign * r.diff:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                     f"{r.ci_level:.0%}", _p(r.p_value) + (" *" if r.significant else ""),
                     f"{r.n_tasks} {report.unit} x {r.epochs}", seed])
    return rows


def report_notes(report: Report) -> list[str]:
    """What the report's columns mean, then its sentences (agreement or disagreement, and what it means)."""
    legend = (f"p: one-sided paired test of best > seed on the same {report.unit} and seeds (* below alpha = "
              f"{report.alpha:g}); each side's interval is 95% from its SE clustered by task, the difference's is a "
              "bootstrap interval over tasks; measured with: the evaluation seed each split's figures share.")
    return [legend, *report.sentences]


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
    if failures := proposer_failures(ledger, c):  # a proposer that failed first (mix), or the round's only one
        lines += ["", "proposer failures:", *(f"  {f.line()}" for f in failures)]
    lines += [f"notice: {n.get('message') or n.get('kind')}" for n in round_notices(ledger, c)]  # e.g. a benched proposer
    if work := work_lines(proposal_meta(ledger, c), d.attempts):  # the agent's tool steps, the command's run
        lines += ["", *work]
    lesson = next((les for les in ledger.lessons(c["run_id"]) if les["candidate_id"] == c["id"]), None)
    if lesson:
        lines += ["", f"lesson: {lesson['text']}"]
    if c["diff"]:
        lines += ["", c["diff"]]
    return "\n".join(lines)
