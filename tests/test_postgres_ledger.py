"""The team ledger on a real PostgreSQL server (a throwaway one, see pg.py): two loops writing to one
ledger at the same moment corrupt nothing, and a loop killed mid-write resumes on it.

tests/test_ledger.py runs the ledger's own test suite on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from pg import pg_url  # noqa: F401  (fixture)
from ratchet.ledger import Ledger
from ratchet.ledger import schema as s
from test_crash_evolve import (
    assert_consistent,
    cli_env,
    evolve_argv,
    kill_and_resume,
    ratchet_argv,
    run_record,
    scripted_project,
)

ROUNDS = 3
SAME_IN_EVERY_RUN = ("rounds", "lessons", "best_tree", "table", "seed_dev", "best_dev", "memory")


def evals_are_whole(url: str) -> int:
    """Every evaluation holds each (task, epoch) once, and a finished one all of them; returns how many."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            dupes = c.execute(sa.select(s.rollouts.c.eval_id).group_by(
                s.rollouts.c.eval_id, s.rollouts.c.task_id, s.rollouts.c.epoch).having(sa.func.count() > 1)).all()
            assert dupes == [], "a rollout was recorded twice"
            counts = dict(c.execute(sa.select(s.rollouts.c.eval_id, sa.func.count()).group_by(s.rollouts.c.eval_id)).all())
            evals = c.execute(sa.select(s.evals)).mappings().all()
    finally:
        engine.dispose()
    for ev in evals:
        if ev["status"] == "done":
            assert counts.get(ev["id"], 0) >= ev["n_tasks"] * ev["epochs"], f"eval {ev['id']} is done but incomplete"
    return len(evals)


@pytest.mark.slow
def test_two_loops_writing_one_postgres_ledger_at_once_corrupt_nothing(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    a, b, solo = (scripted_project(tmp_path / n) for n in ("a", "b", "solo"))
    env = cli_env(tmp_path / "tmp", RATCHET_LEDGER=pg_url)
    # both start on an empty database at once: creating the tables, the seed evaluation (the same
    # eval id in both) and every later write race each other
    procs = [subprocess.Popen(ratchet_argv("evolve", str(p), "--rounds", str(ROUNDS)), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in (a, b)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    ref = subprocess.run(ratchet_argv("evolve", str(solo), "--rounds", str(ROUNDS)), env=cli_env(tmp_path / "tmp"),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stdout[-2000:]

    ledger = Ledger(pg_url)
    runs = {r["id"]: r for r in ledger.runs("evolve")}
    ledger.close()
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs.values())
    reference = run_record(solo)
    for project, out in zip((a, b), outs):
        run_id = next(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("run evolve-"))
        rec = run_record(project, pg_url, run_id)
        assert [r["round"] for r in rec["rounds"]] == list(range(1, ROUNDS + 1))
        for key in SAME_IN_EVERY_RUN:  # each loop got exactly what it would have got alone
            assert rec[key] == reference[key], f"{key} differs from the run alone"
    assert evals_are_whole(pg_url) >= 3


@pytest.mark.slow
def test_a_loop_killed_mid_write_resumes_on_postgres(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    killed, ref = scripted_project(tmp_path / "killed"), scripted_project(tmp_path / "ref")
    env = cli_env(tmp_path / "tmp", RATCHET_LEDGER=pg_url)
    started = time.monotonic()
    log = kill_and_resume(evolve_argv(killed), ROUNDS, tmp_path, env, tmp_path, min_kills=8, seed=13,
                          ready_marker="run evolve-")
    res = subprocess.run(evolve_argv(ref)(log.rounds, False), env=cli_env(tmp_path / "tmp-ref"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:]
    rec, reference = run_record(killed, pg_url), run_record(ref)
    assert_consistent(killed, rec, rounds=log.rounds)
    for key in (*SAME_IN_EVERY_RUN, "evals"):
        assert rec[key] == reference[key], f"{key} differs from the uninterrupted run"
    assert evals_are_whole(pg_url) >= 3
    print(f"\npostgres: {log.kills} SIGKILLs survived in {time.monotonic() - started:.0f}s")
