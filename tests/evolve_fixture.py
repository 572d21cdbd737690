"""A ledger from a REAL short evolve run, for the dashboard tests.

The fake arithmetic model (conftest.ArithmeticModel), the real loop engine, real git commits and the
real SQLite ledger: three rounds with the approval gate off (the search proposer finds the
temperature knob, then tries more), then the run is resumed with `approve="always"` and stopped at the
gate, so one candidate is left "awaiting_approval" exactly as a person would find it.

The run takes a while on two cores, so it runs once per test session; every call copies the master
SQLite file to the caller's path, and tests that write (approvals) get their own copy.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import sqlite3
import tempfile
from pathlib import Path

from conftest import fake_project, make_project_dir
from ratchet.config import load_project
from ratchet.evolve.run import EvolveOptions, EvolveOutcome, evolve
from ratchet.ledger import Ledger
from ratchet.project import Project
from ui_fixture import DemoLedger

N_TASKS = 24  # 8 dev and 9 holdout tasks: enough for the paired test (p = 0.004), quick to score
ROUNDS = 3  # decided rounds before the gated one
MAX_GATED_ROUNDS = 6  # rounds the gated phase may spend on duplicates before one reaches the gate
GATE_TIMEOUT_S = 120.0

_master: DemoLedger | None = None


class RealRunError(RuntimeError):
    """The real run did not produce the ledger the tests need; the message says what was missing."""


def _quiet(_: str) -> None:
    pass


def run_project(project: Project, opts: EvolveOptions) -> EvolveOutcome:
    """One evolve call on its own event loop, closing the project's model and ledger afterwards."""
    try:
        return asyncio.run(evolve(project, opts, say=_quiet))
    finally:
        asyncio.run(project.aclose())


async def stop_at_the_gate(project: Project, rounds: int) -> str:
    """Resume the run with the approval gate on; write the stop file once a candidate waits, as a person
    who walks away from the terminal would. Returns the waiting candidate's id."""
    stop_file = project.root / project.cfg.guard.stop_file
    run = asyncio.create_task(evolve(project, EvolveOptions(rounds=rounds, approve="always", resume=True), say=_quiet))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GATE_TIMEOUT_S
    waiting: list[dict] = []
    while not run.done() and loop.time() < deadline:
        waiting = project.ledger.candidates_with_status("awaiting_approval")
        if waiting:
            stop_file.parent.mkdir(parents=True, exist_ok=True)
            stop_file.write_text("left waiting for approval by the test fixture\n")
            break
        await asyncio.sleep(0.1)
    else:
        run.cancel()
    outcome = await asyncio.gather(run, return_exceptions=True)
    stop_file.unlink(missing_ok=True)
    if not waiting:
        raise RealRunError(f"no candidate reached the approval gate within {rounds - ROUNDS} rounds or "
                           f"{GATE_TIMEOUT_S:.0f} s (outcome: {outcome[0]!r})")
    return waiting[0]["id"]


def _run_once(workdir: Path) -> DemoLedger:
    root = make_project_dir(workdir / "project", n_tasks=N_TASKS)
    if not load_project(root).ledger_url.startswith("sqlite:///"):
        raise RealRunError("the real-run fixture copies a SQLite ledger; unset RATCHET_LEDGER to run these tests")
    first = run_project(fake_project(root), EvolveOptions(rounds=ROUNDS, approve="never"))
    if first.status != "finished" or len(first.rounds) != ROUNDS:
        raise RealRunError(f"the first {ROUNDS} rounds did not finish: {first.status} ({first.reason})")
    project = fake_project(root)
    try:
        waiting = asyncio.run(stop_at_the_gate(project, ROUNDS + MAX_GATED_ROUNDS))
    finally:
        asyncio.run(project.aclose())
    url = project.cfg.ledger_url
    lg = Ledger(url)
    candidates = {f"round{c['round']}": c["id"] for c in lg.candidates(first.run_id)}
    return DemoLedger(lg, url, first.run_id, candidates, waiting)


def master_ledger() -> DemoLedger:
    """The session's one real run (made on first use, removed at exit). Do not write to its ledger."""
    global _master
    if _master is None:
        workdir = Path(tempfile.mkdtemp(prefix="ratchet-real-run-"))
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        _master = _run_once(workdir)
        atexit.register(_master.ledger.close)
    return _master


def build_real_run_ledger(path: Path | str) -> DemoLedger:
    """A private copy of the real run's ledger at `path` (a SQLite file): .ledger, .url, .run_id, .waiting."""
    if isinstance(path, str) and "://" in path:
        raise ValueError("build_real_run_ledger writes a SQLite file; give a file path, not a database URL")
    master = master_ledger()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(master.url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(path)
    try:
        src.backup(dst)  # consistent even with the WAL file beside it
    finally:
        src.close()
        dst.close()
    url = f"sqlite:///{path}"
    return DemoLedger(Ledger(url), url, master.run_id, dict(master.candidates), master.waiting)
