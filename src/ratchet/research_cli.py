"""`ratchet research REPO`: the command only; the work is in ratchet.research.run.

Register in cli.py with:
    from ratchet.research_cli import research as research_command
    app.command("research")(research_command)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ratchet.config import ConfigError
from ratchet.console import console, err_console, table


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def research(
    project: Path = typer.Argument(..., help="Project directory holding ratchet.toml with a [research] table.",
                                   exists=True, file_okay=False),
    rounds: Optional[int] = typer.Option(None, help="Rounds to run (default: [loop] rounds). With --resume: the new total."),
    proposer: Optional[str] = typer.Option(None, help="search | llm | mix (default: [loop] proposer)."),
    approve: Optional[str] = typer.Option(None, help="never | risky | always: which candidates wait for `ratchet approve`."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest research run of this project."),
    run: Optional[str] = typer.Option(None, help="Continue this run id instead of the latest."),
) -> None:
    """Improve a repository's metric: run its command on paired seeds, keep a change only when it wins
    on dev seeds and on fresh held-out seeds, revert and remember the rest.

    Each round proposes one change (search over params.toml knobs, an LLM edit of the editable files,
    or a mix), runs parent and candidate with the same seeds under the per-trial time budget, decides
    with a one-sided paired test and confirms on holdout seeds. A stop file ([guard] stop_file) or
    Ctrl-C stops cleanly; `--resume` continues without rerunning finished trials.
    """
    from ratchet.research.config import load_research
    from ratchet.research.report import final_rows
    from ratchet.research.run import BaselineFailed, ResearchOptions, research as run_research, results_path

    if proposer and proposer not in ("search", "llm", "mix"):
        _fail(f"unknown proposer {proposer!r}; use search, llm or mix")
    if approve and approve not in ("never", "risky", "always"):
        _fail(f"unknown approval mode {approve!r}; use never, risky or always")
    try:
        proj = load_research(project)
    except ConfigError as e:
        _fail(str(e))
    opts = ResearchOptions(rounds=rounds, proposer=proposer, approve=approve, resume=resume or bool(run), run_id=run)
    try:
        outcome = asyncio.run(run_research(proj, opts, say=lambda m: console.print(m, highlight=False, markup=False)))
    except (ValueError, ConfigError) as e:
        _fail(str(e))
    except BaselineFailed as e:
        _fail(str(e), code=1)
    except KeyboardInterrupt:
        _fail(f"interrupted; finished trials are in the ledger. Continue with: ratchet research {project} --resume", 130)
    if outcome.status == "stopped":
        console.print(f"stopped: {outcome.reason}. Continue with: ratchet research {project} --resume")
        raise typer.Exit(0)
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
    u = outcome.usage
    console.print(f"cost: {u.get('trials', 0)} trials ({u.get('failed_trials', 0)} failed), {u.get('trial_cpu_s', 0):.0f} "
                  f"CPU-s and {u.get('trial_wall_s', 0):.0f} s in trials, {u.get('wall_s', 0):.0f} s wall in all; "
                  f"results: {results_path(proj, outcome.run_id)}")
