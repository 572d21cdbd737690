"""The harness tier's commands: evolve, log, show, approve, reject, adopt, test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from ratchet.cli.common import (
    CandidateArg,
    ProjectArg,
    RunOption,
    candidate_id,
    check_loop_options,
    fail,
    fixable,
    loop_run_id,
    open_full,
    open_record,
    run_id_for,
    stop_exit_code,
    stop_policy_help,
)
from ratchet.console import console, table


def print_report(title: str, stored: dict | None) -> bool:
    """The reconciled report of seed vs best (`loop.reconcile`) as the run summary stores it: a table of the
    splits, then what the columns mean and the sentences. False when the summary holds none."""
    from ratchet.loop.reconcile import Report
    from ratchet.loop.views import REPORT_COLUMNS, report_notes, report_rows

    report = Report.from_json(stored)
    if report is None:
        return False
    if rows := report_rows(report):  # none when the best is the seed (a research run that kept nothing)
        console.print(table(title, REPORT_COLUMNS, rows))
    for line in report_notes(report):
        console.print(line, highlight=False, markup=False)
    return True


@stop_policy_help
def evolve(
    project: Path = ProjectArg,
    rounds: int | None = typer.Option(None, help="Rounds to run (default: \\[loop] rounds). With --resume: the new total."),
    proposer: str | None = typer.Option(None, help="search | llm | mix | agent | command (default: \\[loop] proposer)."),
    approve: str | None = typer.Option(None, help="never | risky | always: which candidates wait for `ratchet approve`."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the latest evolve run of this project after a stop, crash or kill."),
    run: str | None = typer.Option(None, help="Continue this run id instead of the latest."),
) -> None:
    """Improve the harness round by round; keep a change only on paired evidence confirmed on holdout.

    Each round: select a parent, analyse its dev failures, propose a change (search over params.toml
    knobs, an LLM patch, or a mix), guard it, evaluate it paired against its parent, decide, and write
    a lesson to the ledger and memory.md. A stop file (\\[guard] stop_file) or Ctrl-C stops cleanly after
    the current step; `--resume` continues.
    """
    from ratchet.evolve.run import EvolveOptions
    from ratchet.evolve.run import evolve as run_evolve
    from ratchet.loop.control import StopControl  # noqa: F401  (import check before the model loads)

    check_loop_options(proposer, approve)
    proj = open_full(project)
    opts = EvolveOptions(rounds=rounds, proposer=proposer, approve=approve, resume=resume or bool(run), run_id=run,
                         handle_sigint=True)

    async def go():
        try:
            return await run_evolve(proj, opts, say=lambda m: console.print(m, highlight=False, markup=False))
        finally:
            await proj.aclose()

    with fixable(then=f"the run is in the ledger; continue it with: ratchet evolve {project} --resume"):
        outcome = asyncio.run(go())
    if outcome.status == "stopped":
        console.print(f"stopped: {outcome.reason}. Continue with: ratchet evolve {project} --resume")
        raise typer.Exit(stop_exit_code(outcome.status, outcome.by_budget))
    console.print(f"finished: {outcome.reason}")
    if outcome.table:
        console.print(table(f"run {outcome.run_id}: seed vs best", ["harness", "candidate", "commit"],
                            [[r["harness"], r["candidate"], r["commit"]] for r in outcome.table]))
        record = open_record(project)  # the report as the summary stores it: what `ratchet log` and the UI show
        try:
            print_report(f"run {outcome.run_id}: seed vs best, paired on each split",
                         (record.ledger.run(outcome.run_id)["summary"] or {}).get("report"))
        finally:
            record.ledger.close()
    console.print(f"the test split is sealed; `ratchet test {project} --unseal` scores seed and best on it (recorded)")



def log_(project: Path = ProjectArg, run: str | None = typer.Option(None, help="Run id (default: the latest evolve or "
                                                                              "research run)."),
         runs: bool = typer.Option(False, "--runs", help="List the runs instead.")) -> None:
    """The history of a run as a table: round, candidate, parent, proposer (one that failed is named with its
    tokens, and why under the table), change, dev delta with CI, holdout, decision.

    Then the closing report: seed vs best on dev, holdout and (once unsealed) test, each with intervals, the
    paired test and the seed it was measured with, and a sentence wherever a round's confirmation and a final
    figure disagree."""
    from ratchet.loop.views import LOG_COLUMNS, failure_notes, log_rows

    proj = open_record(project)
    if runs:
        console.print(table("runs", ["run", "kind", "status", "rounds", "best dev", "unseals"],
                            [[r["id"], r["kind"], r["status"], (r["summary"] or {}).get("round", "-"),
                              (r["summary"] or {}).get("best_dev", "-"), (r["summary"] or {}).get("unseals", 0)]
                             for r in proj.ledger.runs()]))
        return
    run_id = loop_run_id(proj, run)
    record = proj.ledger.run(run_id)
    if record is None:
        fail(f"no run {run_id!r} in the ledger; `ratchet log PROJECT --runs` lists the runs")
    summary = record["summary"] or {}
    console.print(table(f"run {run_id} ({record['status']})", LOG_COLUMNS, log_rows(proj.ledger, run_id)))
    for line in failure_notes(proj.ledger, run_id):  # which proposer failed, why, what it cost
        console.print(line, highlight=False, markup=False)
    if record["kind"] == "evolve":  # a research run's seeds have no sealed split
        unseals = proj.ledger.events(run_id, "unseal")
        test = summary.get("test")
        last = f"; last: seed {test['seed']:.3f}, best {test['best']:.3f}" if test else ""
        console.print(f"sealed test: unsealed {len(unseals)} time(s)" + last)
    print_report(f"run {run_id}: seed vs best, paired on each split", summary.get("report"))


def show(project: Path = ProjectArg, candidate: str = CandidateArg, run: str | None = RunOption) -> None:
    """One candidate: its diff, rationale, hypothesis, decision figures, the proposers that failed in its round
    (why, attempts, tokens) and its lesson."""
    from ratchet.loop.views import show_text

    proj = open_record(project)
    with fixable():
        console.print(show_text(proj.ledger, candidate_id(proj, candidate, run)), highlight=False, markup=False)


def _decide(project: Path, candidate: str, action: str, run: str | None) -> None:
    from ratchet.ledger.approval import record_approval

    proj = open_record(project)
    cand = candidate_id(proj, candidate, run)
    with fixable():  # an ApprovalError (not waiting, unknown) names why
        rec = record_approval(proj.ledger, cand, action, by="cli")
    console.print(f"{rec.candidate}: {rec.decision}")


def approve_(project: Path = ProjectArg, candidate: str = CandidateArg, run: str | None = RunOption) -> None:
    """Let a waiting (risky) candidate be evaluated."""
    _decide(project, candidate, "approve", run)


def reject_(project: Path = ProjectArg, candidate: str = CandidateArg, run: str | None = RunOption) -> None:
    """Refuse a waiting candidate; the loop records it and moves on."""
    _decide(project, candidate, "reject", run)


def adopt(project: Path = ProjectArg, candidate: str = typer.Argument("best", help="Candidate id, or 'best' of the latest run."),
          run: str | None = typer.Option(None, help="Run id (default: the latest evolve run).")) -> None:
    """Bring a candidate's harness onto your branch (the only command that touches it)."""
    from ratchet.evolve.adopt import adopt as do_adopt

    proj = open_record(project)
    if candidate == "best":
        run_id, commit = run_id_for(proj, run), None
    else:
        row = proj.ledger.candidate(candidate_id(proj, candidate, run))
        if row is None or not row["commit"]:
            fail(f"no candidate {candidate!r} with a commit; `ratchet log PROJECT` lists them")
        run_id, commit = row["run_id"], row["commit"]
    with fixable():
        done = do_adopt(proj, run_id, commit, label=candidate)
    console.print(f"adopted {done.commit[:10]} onto your branch as {done.result[:10]}")


def test_(project: Path = ProjectArg,
          unseal: bool = typer.Option(False, "--unseal", help="Really score the sealed test split (recorded)."),
          run: str | None = typer.Option(None, help="Run id (default: the latest evolve run)."),
          unfinished: bool = typer.Option(False, "--unfinished", help="Unseal a run that has not finished (still "
                                          "running, or ended by a crash) all the same.")) -> None:
    """Score the seed and the best harness of a run on the sealed test split. Every unseal is recorded.

    Both are scored on the same test tasks with the same seed; the paired test joins the run's closing report
    (dev, holdout, test with intervals), which is printed with what it says about the rounds' confirmations."""
    from ratchet.evolve.sealed import unseal as do_unseal

    record = open_record(project)  # the refusals read the ledger only: no model is loaded to say no
    run_id = run_id_for(record, run)
    previous = len(record.ledger.events(run_id, "unseal"))
    if not unseal:
        fail(f"the test split is sealed (unsealed {previous} time(s) so far for {run_id}); pass --unseal to score it")
    status = (record.ledger.run(run_id) or {}).get("status")
    if status == "running" and not unfinished:  # a look at the sealed split is spent on a best that may still move
        fail(f"run {run_id} has not finished (status running: still in progress, or it ended on an error); finish it "
             f"with `ratchet evolve {project} --resume`, or pass --unfinished to unseal its best so far (recorded)")
    proj = open_full(project)

    async def go():
        try:
            return await do_unseal(proj, run_id)
        finally:
            await proj.aclose()

    with fixable():
        rec = asyncio.run(go())
    console.print(f"seed {rec['seed']['commit']}, best {rec['best']['commit']}; test: {rec['n_tasks']} tasks")
    print_report(f"{run_id}: seed vs best (test unseal #{rec['unseal_number']}), paired on each split", rec["report"])
