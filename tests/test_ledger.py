"""The ledger: transactional rows, resume-friendly uniqueness, redaction of secrets.

Every test that takes `ledger` runs on SQLite and on PostgreSQL (a throwaway server, see pg.py)."""

import pytest

from pg import create_database, pg_admin_url
from ratchet.ledger import Ledger, redact
from ratchet.types import Trajectory


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'l.sqlite'}" if request.param == "sqlite" else create_database(pg_admin_url())
    lg = Ledger(url)
    yield lg
    lg.close()


def test_runs_and_state(ledger):
    run = ledger.create_run("evolve", "proj", {"a": 1})
    assert ledger.run(run)["status"] == "running"
    ledger.update_run(run, status="finished", summary={"best": 0.5})
    assert ledger.run(run)["summary"] == {"best": 0.5}
    ledger.set_state(run, "proposer", {"trials": [1, 2]})
    ledger.set_state(run, "proposer", {"trials": [1, 2, 3]})
    assert ledger.get_state(run, "proposer") == {"trials": [1, 2, 3]}
    assert ledger.get_state(run, "missing", 7) == 7


def test_rollouts_are_written_once(ledger):
    ledger.open_eval("ev1", run_id=None, candidate_id=None, harness="h", model="m", suite="s",
                     suite_fingerprint="f", split="dev", epochs=1, seed=0, n_tasks=1)
    t = Trajectory(task_id="t1", epoch=0, seed=5, output="4", score=1.0)
    assert ledger.add_rollout("ev1", t) is True
    assert ledger.add_rollout("ev1", t) is False  # a resumed evaluation does not duplicate
    assert [r.output for r in ledger.rollouts("ev1")] == ["4"]
    assert ledger.rollout_count() == 1


def test_candidates_lessons_events(ledger):
    run = ledger.create_run("evolve", "proj", {})
    ledger.add_candidate(id="c-0001", run_id=run, round=1, parent_id=None, commit="abc", proposer="search",
                         summary="temperature 0.7 -> 0.1", status="proposed")
    ledger.update_candidate("c-0001", status="accepted", decision={"p": 0.01})
    assert ledger.candidate("c-00")["decision"] == {"p": 0.01}  # unique prefix
    assert [c["id"] for c in ledger.candidates(run, status="accepted")] == ["c-0001"]
    ledger.add_lesson(run, 1, "c-0001", "lower temperature helped", {"effect": 0.2})
    ledger.add_lesson(run, 1, "c-0001", "written twice after a crash", {})
    assert len(ledger.lessons(run)) == 1
    ledger.add_event("unseal", {"split": "test"}, run_id=run)
    assert ledger.events(run, "unseal")[0]["data"] == {"split": "test"}


def test_secrets_are_redacted(ledger, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "s3cr3t-value-123")
    assert redact({"x": ["call with s3cr3t-value-123"]}) == {"x": ["call with [REDACTED]"]}
    assert "[REDACTED]" in redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz")
    assert "sk-" not in redact("key sk-abcdefghijklmnopqrstuvwx")
    run = ledger.create_run("eval", "p", {"api_key": "s3cr3t-value-123"})
    assert "s3cr3t" not in str(ledger.run(run)["config"])


def test_unusable_ledger_path_gives_clear_error(tmp_path):
    from ratchet.ledger import LedgerError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((LedgerError, OSError)):
        Ledger(f"sqlite:///{blocker / 'sub' / 'l.sqlite'}")
