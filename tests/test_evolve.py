"""The evolve loop end to end on a fake model: it keeps a real improvement, moves the best ref,
writes lessons and memory.md, stops on a stop file and resumes without losing or repeating a round."""

import asyncio
import subprocess

from conftest import fake_project, make_project_dir
from ratchet.evolve.run import EvolveOptions, evolve


def run_evolve(root, **opts):
    proj = fake_project(root)
    try:
        return asyncio.run(evolve(proj, EvolveOptions(**opts), say=lambda m: None)), proj
    finally:
        asyncio.run(proj.aclose())


def test_search_loop_finds_the_temperature_knob(tmp_path):
    root = make_project_dir(tmp_path / "p")
    outcome, proj = run_evolve(root, rounds=6)
    assert outcome.status == "finished" and len(outcome.rounds) == 6
    seed, best = outcome.table
    assert seed["dev"] == 0.0 and best["dev"] == 1.0 and best["holdout"] == 1.0
    ledger = type(proj.ledger)(proj.cfg.ledger_url)
    accepted = ledger.candidates(outcome.run_id, status="accepted")
    assert accepted, "a change that fixes every task must be accepted"
    d = accepted[0]["decision"]
    assert d["dev"]["p_value"] < 0.05 and d["holdout"]["confirmed"]
    assert len(ledger.lessons(outcome.run_id)) == 6
    assert "Round" in (root / "memory.md").read_text()
    # git: best ref points at the accepted commit; the user's branch is untouched
    best_ref = subprocess.run(["git", "rev-parse", f"refs/ratchet/{outcome.run_id}/best"], cwd=root / "harness",
                              capture_output=True, text=True).stdout.strip()
    assert best_ref == accepted[-1]["commit"] or best_ref in {c["commit"] for c in accepted}
    assert "value = 0.9" in (root / "harness" / "params.toml").read_text()


def test_stop_file_then_resume_finishes_without_repeating(tmp_path):
    root = make_project_dir(tmp_path / "p")
    (root / ".ratchet").mkdir(exist_ok=True)
    outcome, proj = run_evolve(root, rounds=2)
    assert outcome.status == "finished"
    (root / ".ratchet" / "STOP").write_text("stop")
    outcome2, _ = run_evolve(root, rounds=4, resume=True)
    assert outcome2.status == "stopped" and outcome2.rounds == []
    (root / ".ratchet" / "STOP").unlink()
    outcome3, proj = run_evolve(root, rounds=4, resume=True)
    assert outcome3.status == "finished" and [r.round for r in outcome3.rounds] == [3, 4]
    from ratchet.ledger import Ledger

    ledger = Ledger(proj.cfg.ledger_url)
    assert [c["round"] for c in ledger.candidates(outcome.run_id)] == [1, 2, 3, 4]
    assert [les["round"] for les in ledger.lessons(outcome.run_id)] == [1, 2, 3, 4]


def test_log_shows_what_changed_and_show_takes_the_short_name(tmp_path):
    from typer.testing import CliRunner

    from ratchet.cli import app

    root = make_project_dir(tmp_path / "p")
    outcome, _ = run_evolve(root, rounds=2)
    runner = CliRunner()
    from ratchet.config import load_project
    from ratchet.ledger import Ledger
    from ratchet.loop.views import LOG_COLUMNS, log_rows

    change = log_rows(Ledger(load_project(root).ledger_url), outcome.run_id)[0][LOG_COLUMNS.index("change")]
    assert change.startswith("temperature ") and " -> " in change  # what changed, not boilerplate
    assert runner.invoke(app, ["log", str(root)]).exit_code == 0
    for name in ("r001", "1", f"{outcome.run_id}-r001"):
        shown = runner.invoke(app, ["show", str(root), name])
        assert shown.exit_code == 0 and f"candidate {outcome.run_id}-r001" in shown.output, name
        assert "change     temperature" in shown.output
    missing = runner.invoke(app, ["show", str(root), "r099"])
    assert missing.exit_code != 0 and "no candidate 'r099'" in missing.output


def test_the_summary_holds_the_reconciled_report_and_the_unseal_adds_test(tmp_path):
    from typer.testing import CliRunner

    from ratchet.cli import app
    from ratchet.evolve.sealed import unseal
    from ratchet.ledger import Ledger
    from ratchet.loop.reconcile import Report

    root = make_project_dir(tmp_path / "p", n_tasks=40)
    outcome, proj = run_evolve(root, rounds=1)
    ledger = Ledger(proj.cfg.ledger_url)
    summary = ledger.run(outcome.run_id)["summary"]
    report = Report.from_json(summary["report"])
    dev, hold = report.row("dev"), report.row("holdout")
    assert [r.split for r in report.rows] == ["dev", "holdout"] and not report.same_harness
    assert dev.measured_with == "round 1's seed" and hold.measured_with == "the closing seed"
    assert dev.eval_seed == proj.cfg.eval.seed + 1 and hold.eval_seed == proj.cfg.eval.seed  # [loop] seed 0
    assert dev.diff == 1.0 and dev.significant and hold.best_mean == 1.0 and hold.seed_mean == 0.0
    assert dev.n_tasks == len(proj.tasks("dev")) and hold.n_tasks == len(proj.tasks("holdout"))
    assert all(dev.eval_ids.values()) and all(hold.eval_ids.values())  # each figure names its evaluations
    assert [c.round for c in report.confirmations] == [1] and report.best_commit == summary["best_commit"]
    assert "agree: the gain holds on fresh seeds" in report.sentences[0]  # dev agrees: no sentence for it
    assert report.sentences[-1].startswith("The test split is sealed")
    assert [r["dev"] for r in summary["table"]] == [dev.seed_mean, dev.best_mean]  # one set of numbers

    proj = fake_project(root)
    try:
        record = asyncio.run(unseal(proj, outcome.run_id))
    finally:
        asyncio.run(proj.aclose())
    after = Report.from_json(ledger.run(outcome.run_id)["summary"]["report"])
    test = after.row("test")
    assert test.measured_with == "unseal #1's seed" and test.n_tasks == record["n_tasks"] and test.best_mean == 1.0
    assert record["paired"]["p_value"] == test.p_value and "is sealed" not in " ".join(after.sentences)
    assert after.row("holdout") == hold  # the unseal adds test; the closing figures stay as measured
    log = CliRunner().invoke(app, ["log", str(root)])
    assert log.exit_code == 0 and "seed vs best, paired on each split" in log.output
    assert "unseal #1's seed" in log.output and after.sentences[-1][:40] in " ".join(log.output.split())


def test_the_unseal_refuses_a_run_that_has_not_finished(tmp_path):
    from typer.testing import CliRunner

    from executor_fixture import scripted_project
    from ratchet.cli import app
    from ratchet.ledger import Ledger

    root = scripted_project(tmp_path / "p", n_tasks=40)
    outcome, proj = run_evolve(root, rounds=1)
    Ledger(proj.cfg.ledger_url).update_run(outcome.run_id, status="running")  # as a crash or a live run leaves it
    refused = CliRunner().invoke(app, ["test", str(root), "--unseal"])
    assert refused.exit_code != 0 and "has not finished" in refused.output and "--resume" in refused.output
    assert not Ledger(proj.cfg.ledger_url).events(outcome.run_id, "unseal")  # nothing was spent
    forced = CliRunner().invoke(app, ["test", str(root), "--unseal", "--unfinished"])
    assert forced.exit_code == 0, forced.output
    assert len(Ledger(proj.cfg.ledger_url).events(outcome.run_id, "unseal")) == 1


class _Killed(BaseException):
    """A crash the loop does not catch (as a SIGKILL would not be caught)."""


def test_a_crash_right_after_a_lesson_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """The lesson marks a round complete, so everything the next round depends on (the proposer's
    observation of the outcome) must be saved before it: a crash just after it loses nothing."""
    from ratchet.ledger import Ledger

    reference, proj = run_evolve(make_project_dir(tmp_path / "ref"), rounds=4)
    ref_rows = Ledger(proj.cfg.ledger_url).candidates(reference.run_id)

    add_lesson = Ledger.add_lesson

    def add_then_crash(self, run_id, r, *args, **kwargs):
        add_lesson(self, run_id, r, *args, **kwargs)
        if r == 2:
            raise _Killed

    root = make_project_dir(tmp_path / "crashed")
    monkeypatch.setattr(Ledger, "add_lesson", add_then_crash)
    try:
        run_evolve(root, rounds=4)
        raise AssertionError("the planted crash did not happen")
    except _Killed:
        pass
    monkeypatch.setattr(Ledger, "add_lesson", add_lesson)
    resumed, proj = run_evolve(root, rounds=4, resume=True)
    assert [r.round for r in resumed.rounds] == [3, 4]
    rows = Ledger(proj.cfg.ledger_url).candidates(resumed.run_id)
    assert [(c["round"], c["rationale"], c["status"]) for c in rows] == \
        [(c["round"], c["rationale"], c["status"]) for c in ref_rows]


def test_a_resume_moves_a_branch_left_behind_the_best_ref(tmp_path):
    """Before the ref move was one transaction, a kill between the best ref's update and the branch's left
    the branch on the old best, and a resume that checked only the best ref never moved it."""
    from ratchet.ledger import Ledger
    from ratchet.loop.gitrepo import CandidateRepo

    root = make_project_dir(tmp_path / "p")
    outcome, proj = run_evolve(root, rounds=3)
    repo = CandidateRepo(root / "harness", outcome.run_id, state_dir=root / ".ratchet")
    best, seed = repo.best(), repo.seed()
    assert best != seed, "the fake loop keeps a change by round 3"
    subprocess.run(["git", "update-ref", repo.branch_ref, seed], cwd=root / "harness", check=True)
    assert not repo.best_is(best)
    run_evolve(root, rounds=4, resume=True)
    rows = Ledger(proj.cfg.ledger_url).candidates(outcome.run_id, status="accepted")
    assert repo.best_is(repo.best()) and repo.best() in {c["commit"] for c in rows}
