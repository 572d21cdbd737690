"""`ratchet research REPO`: the command only; the work is in ratchet.research.run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from ratchet.cli.common import STOPPED, check_loop_options, fail, fixable, project_arg, stop_exit_code, stop_policy_help
from ratchet.console import console, table


@stop_policy_help
def research(
    project: Path = project_arg("Project directory holding ratchet.toml with a \\[research] table."),
    rounds: int | None = typer.Option(None, help="Rounds to run (default: \\[loop] rounds). With --resume: the new total."),
    proposer: str | None = typer.Option(None, help="search | llm | mix | agent | command (default: \\[loop] proposer)."),
    approve: str | None = typer.Option(None, help="never | risky | always: which candidates wait for `ratchet approve`."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest research run of this project."),
    run: str | None = typer.Option(None, help="Continue this run id instead of the latest."),
) -> None:
    """Improve a repository's metric: run its command on paired seeds, keep a change only when it wins
    on dev seeds and on fresh held-out seeds, revert and remember the rest.

    Each round proposes one change (search over params.toml knobs, an LLM edit of the editable files,
    or a mix), runs parent and candidate with the same seeds under the per-trial time budget, decides
    with a one-sided paired test and confirms on holdout seeds. A stop file (\\[guard] stop_file) or
    Ctrl-C stops cleanly; `--resume` continues without rerunning finished trials. Exit status 1: the
    unmodified repo fails its own command, so there is nothing to improve on.
    """
    from ratchet.research.config import load_research
    from ratchet.research.report import final_rows
    from ratchet.research.run import BaselineFailed, ResearchOptions, results_path
    from ratchet.research.run import research as run_research

    check_loop_options(proposer, approve)
    with fixable():
        proj = load_research(project)
    opts = ResearchOptions(rounds=rounds, proposer=proposer, approve=approve, resume=resume or bool(run), run_id=run)
    again = f"finished trials are in the ledger. Continue with: ratchet research {project} --resume"
    try:
        with fixable(then=again):
            outcome = asyncio.run(run_research(proj, opts, say=lambda m: console.print(m, highlight=False, markup=False)))
    except BaselineFailed as e:
        fail(str(e), code=1)
    except KeyboardInterrupt:
        fail(f"interrupted; {again}", STOPPED)
    if outcome.status == "stopped":
        console.print(f"stopped: {outcome.reason}. Continue with: ratchet research {project} --resume")
        raise typer.Exit(stop_exit_code(outcome.status, outcome.by_budget))
    spec = proj.spec
    console.print(f"finished: {outcome.reason}")
    console.print(table(f"run {outcome.run_id}: {spec.metric} ({'lower' if spec.direction == 'minimize' else 'higher'} "
                        "is better)", ["version", "candidate", "commit", "dev (round seeds)", "holdout (fresh seeds)", "seeds"],
                        final_rows(spec, outcome.table)))
    c = outcome.comparison
    if c:
        console.print(f"best vs seed on the same {c['n_seeds']} fresh holdout seeds: {spec.metric} delta {c['delta']:+.4g} "
                      f"[{c['ci_low']:+.4g}, {c['ci_high']:+.4g}], p={c['p_value']:.3g} "
                      f"({'significant' if c['significant'] else 'not significant'} at alpha={proj.cfg.loop.alpha:g})")
    else:
        console.print("no change was kept: the repo is as it was.")
    for line in report_sentences(proj.cfg.ledger_url, outcome.run_id):  # the rounds' confirmations vs the closing seeds
        console.print(line, highlight=False, markup=False)
    u = outcome.usage
    console.print(f"cost: {u.get('trials', 0)} trials ({u.get('failed_trials', 0)} failed), {u.get('trial_cpu_s', 0):.0f} "
                  f"CPU-s and {u.get('trial_wall_s', 0):.0f} s in trials, {u.get('wall_s', 0):.0f} s wall in all; "
                  f"results: {results_path(proj, outcome.run_id)}")


def report_sentences(ledger_url: str, run_id: str) -> list[str]:
    """The closing report's sentences (`loop.reconcile`) as the run summary stores them."""
    from ratchet.ledger import Ledger
    from ratchet.loop.reconcile import Report

    ledger = Ledger(ledger_url)
    try:
        report = Report.from_json((ledger.run(run_id)["summary"] or {}).get("report"))
    finally:
        ledger.close()
    return report.sentences if report else []
