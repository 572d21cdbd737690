"""What every command shares: one way to fail, one handler for errors the user can fix, the project
argument and its look-ups, the option checks, and one exit-code policy for runs that stop.

Exit codes (docs/cli.md):
    0    the command did its work; a loop reached its end (all its rounds or generations, or a [guard] budget)
    1    research only: the baseline fails its own command (nothing to improve on)
    2    an error the message names and the user can fix (project files, an option, the endpoint, the disk,
         a locked ledger); never a traceback, and what was recorded is kept
    130  stopped early by the stop file or Ctrl-C; `--resume` (or the same command, for eval) continues
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape

from ratchet.console import err_console

FIX = 2  # an error with a message saying what to fix
STOPPED = 130  # stopped early by the stop file or Ctrl-C; resumable

# The sentence each stopping command ends its --help with ("\[" keeps rich from reading a markup tag).
STOP_EXIT_HELP = ("Exit status: 0 when the run reaches its end (all its rounds or generations, or a \\[guard] budget); "
                  "130 when the stop file or Ctrl-C stops it early (--resume continues); 2 for an error the message says "
                  "how to fix.")


def stop_policy_help(command):
    """Append the exit-code policy to a stopping command's --help (its docstring)."""
    command.__doc__ = f"{command.__doc__.rstrip()}\n\n    {STOP_EXIT_HELP}\n"
    return command


def project_arg(help: str = "Project directory (holding ratchet.toml).") -> typer.models.ArgumentInfo:
    return typer.Argument(..., help=help, exists=True, file_okay=False)


ProjectArg = project_arg()


def print_error(message: str) -> None:
    """`error: message` on stderr, the message as text: "[eval] max_steps" or "ratchet[ui]" is not markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def fail(message: str, code: int = FIX) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    print_error(message)
    raise typer.Exit(code)


def fixable_error(e: BaseException) -> tuple[str, bool] | None:
    """(message, resumable) for an error the user can fix, else None (a bug: let its traceback show).
    `resumable`: the work can go on once the cause is gone (disk, lock, endpoint, project files), as
    opposed to a request the command refused (a ValueError: a run id that does not exist, tampering)."""
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from ratchet.config import ConfigError
    from ratchet.ledger import LedgerError
    from ratchet.loop.engine import TamperError
    from ratchet.loop.gitrepo import GitError
    from ratchet.models.base import ModelError

    if isinstance(e, (ConfigError, LedgerError, ModelError, GitError)):
        return str(e), True
    if isinstance(e, (OperationalError, sqlite3.OperationalError)):
        why = getattr(e, "orig", None) or e
        return (f"the ledger could not be written ({why}); free disk space, or stop the program that holds a lock "
                "on it, then run the same command again: what was recorded is kept"), True
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({e}); free space, then run the same command again: what was recorded is kept", True
    if isinstance(e, TamperError) or (isinstance(e, ValueError) and str(e)):
        return str(e), False
    return None


@contextmanager
def fixable(then: str = "") -> Iterator[None]:
    """Run the block; an error the user can fix exits 2 with its message (plus `then`, what to run once it
    is fixed, for errors after which the work can go on); any other error propagates."""
    try:
        yield
    except Exception as e:
        found = fixable_error(e)
        if found is None:
            raise
        message, resumable = found
        fail(f"{message}\n{then}" if then and resumable else message)


def stop_exit_code(status: str, by_budget: bool) -> int:
    """The one exit-code policy for loops (evolve, research, flywheel): 0 when the run reached its end -
    it finished, or a [guard] budget ended it - and 130 when the stop file or Ctrl-C stopped it early."""
    if status == "finished" or by_budget:
        return 0
    return STOPPED


def check_choice(value: str | None, allowed: tuple[str, ...], what: str) -> None:
    if value and value not in allowed:
        fail(f"unknown {what} {value!r}; use {', '.join(allowed[:-1])} or {allowed[-1]}")


def check_loop_options(proposer: str | None, approve: str | None) -> None:
    """The options evolve and research share."""
    check_choice(proposer, ("search", "llm", "mix", "agent", "command"), "proposer")  # loop.proposers.KINDS
    check_choice(approve, ("never", "risky", "always"), "approval mode")


@contextmanager
def ctrl_c_flag() -> Iterator[list[bool]]:
    """A flag the first Ctrl-C sets (the evaluator then starts no new episode and stops cleanly once those
    in flight end: cancelling them mid-start can hang asyncio); a second Ctrl-C interrupts at once."""
    flag: list[bool] = []

    def handler(signum, frame):  # noqa: ARG001
        if flag:
            raise KeyboardInterrupt
        flag.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# -- the project and what is in its ledger -------------------------------------------------------------


def open_full(project: Path, **kw):
    """The project with its model, suite and evaluator."""
    from ratchet.project import open_project

    with fixable():
        return open_project(project, **kw)


def open_record(project: Path):
    """Config and ledger only: reading the record should not load a model."""
    from ratchet.project import open_project_ledger

    with fixable():
        return open_project_ledger(project)


def latest_run_id(ledger, project_name: str, run: str | None, kind: str = "evolve") -> str:
    """`run` when given, else the id of the project's latest run of `kind`."""
    if run:
        return run
    latest = ledger.latest_run(kind, project_name)
    if latest is None:
        fail(f"no {kind} run of this project in the ledger yet; start one with `ratchet {kind} PROJECT`")
    return latest["id"]


def run_id_for(proj, run: str | None, kind: str = "evolve") -> str:
    return latest_run_id(proj.ledger, proj.cfg.project.name, run, kind)


CandidateArg = typer.Argument(..., help="Candidate id, a unique prefix of one, or its short name in `ratchet log` (r003: "
                              "round 3 of the latest run, or of --run; r003b: its second candidate with [loop] population).")
RunOption = typer.Option(None, "--run", help="Run id for a short candidate name (default: the latest evolve run).")


def candidate_id(proj, candidate: str, run: str | None) -> str:
    """A full candidate id from what a user typed: an id, a unique prefix, or `rNNN` of a run."""
    if (row := proj.ledger.candidate(candidate)) is not None:
        return row["id"]
    short = re.fullmatch(r"r?(\d+)([b-z]?)", candidate)  # r003, or r003b: a population round's second candidate
    if short:
        run_id = loop_run_id(proj, run)
        full = f"{run_id}-r{int(short.group(1)):03d}{short.group(2)}"
        if proj.ledger.candidate(full) is not None:
            return full
    fail(f"no candidate {candidate!r}; `ratchet log PROJECT` lists them")


def loop_run_id(proj, run: str | None) -> str:
    """`run` when given, else the project's latest evolve or research run."""
    return run or run_id_for(proj, None, latest_loop_kind(proj))


def latest_loop_kind(proj) -> str:
    """The kind of the project's most recent loop run, for short candidate names."""
    runs = [r for k in ("evolve", "research") if (r := proj.ledger.latest_run(k, proj.cfg.project.name))]
    if not runs:
        fail("no run of this project in the ledger yet; start one with `ratchet evolve PROJECT`")
    return max(runs, key=lambda r: r["created_at"])["kind"]
