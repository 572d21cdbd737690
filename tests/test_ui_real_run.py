"""The dashboard in headless Chromium over ledgers that a REAL evolve loop wrote (fake model, real engine,
git and ledger): the run page draws the run's scores, a candidate page shows its diff, every page
renders, and the Approve button unblocks a loop that is waiting at the approval gate in another thread.

Screenshots of each page go to test-artifacts/real-*.png.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import fake_project, make_project_dir
from evolve_fixture import N_TASKS, build_real_run_ledger, run_project
from ratchet.config import load_project
from ratchet.evolve.run import EvolveOptions, EvolveOutcome
from ratchet.ledger import Ledger
from ratchet.ui import queries
from ratchet.ui.app import UISettings, create_app
from test_ui_browser import CANVAS_INK, CHART_DATA, VIEWPORT, browser, open_page, page, shoot  # noqa: F401 - fixtures
from ui_fixture import ServedApp

pytestmark = pytest.mark.slow  # a real evolve run (~20 s) plus Chromium

TOKEN = "real-run-token"
LOOP_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    d = build_real_run_ledger(tmp_path_factory.mktemp("ui-real") / "ledger.sqlite")
    yield d
    d.ledger.close()


@pytest.fixture(scope="module")
def server(real):
    with ServedApp(create_app(real.ledger, UISettings(token=TOKEN, poll_ms=400))) as srv:
        yield srv


def _points(charts: dict, label: str) -> list[tuple[float, float]]:
    ds = next((d for d in charts["score"]["datasets"] if d["label"] == label), None)
    return [(p["x"], p["y"]) for p in ds["data"]] if ds else []


def test_run_page_draws_the_real_run(server, real, page):
    cands = real.ledger.candidates(real.run_id)
    summary = real.ledger.run(real.run_id)["summary"]
    accepted = [c["round"] for c in cands if c["status"] == "accepted"]
    rejected = [c["round"] for c in cands if c["status"] == "rejected"]
    assert accepted and rejected, f"the real run should keep one change and drop another: {[c['status'] for c in cands]}"
    open_page(page, server.url + f"#/run/{real.run_id}")
    charts = page.evaluate(CHART_DATA)
    kept = _points(charts, "dev: kept")
    assert kept[0] == (0, summary["seed_dev"]) and kept[-1][1] == summary["best_dev"]
    assert _points(charts, "holdout: kept")[-1][1] == summary["best_holdout"]
    assert [x for x, _ in _points(charts, "dev: accepted")] == accepted
    assert [x for x, _ in _points(charts, "dev: rejected")] == rejected
    for canvas in ("score-chart", "effect-chart", "cost-chart"):
        assert page.evaluate(CANVAS_INK, canvas) > 2000, f"{canvas} is blank"
    # the engine keeps rollouts and tokens on eval rows, not on the candidate: the cost chart sums them
    own = [e["result"]["n_rollouts"] for e in real.ledger.evals(real.run_id) if e["candidate_id"]]
    cum = [p["y"] for p in charts["cost"]["datasets"][0]["data"]]
    assert cum[-1] == sum(own) > 0
    assert page.locator(".tree .node").count() == len(cands) + 1
    # a candidate's dev slice and full dev evaluation share an eval id: the table shows the full count
    shown = {e["id"]: e["n_tasks"] for e in queries.run_detail(real.ledger, real.run_id)["evals"]}
    assert shown == {e["id"]: e["result"]["n_tasks"] for e in real.ledger.evals(real.run_id)}
    assert page.locator(f'.banner a[href="#/candidate/{real.waiting}"]').count() == 1  # the candidate left at the gate
    names = page.locator("table.cands a.mono").all_inner_texts()
    assert len(set(names)) == len(cands), f"candidate links must tell candidates apart: {names}"
    shoot(page, "real-run")


def test_candidate_page_shows_the_real_diff(server, real, page):
    cand = next(c for c in real.ledger.candidates(real.run_id) if c["status"] == "accepted")
    open_page(page, server.url + f"#/candidate/{cand['id']}")
    added = [line[1:] for line in cand["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    removed = [line[1:] for line in cand["diff"].splitlines() if line.startswith("-") and not line.startswith("---")]
    assert added and page.locator("#diff tr.d-add").count() == len(added)
    assert page.locator("#diff tr.d-del").count() == len(removed)
    diff_text = page.inner_text("#diff")
    assert all(line.strip() in diff_text for line in added + removed)
    assert page.evaluate(CANVAS_INK, "per-task-chart") > 500
    text = page.inner_text("main")
    assert cand["hypothesis"] in text and cand["decision"]["reason"] in text
    assert "p" in [th.strip() for th in page.locator("table.dstats th").all_inner_texts()]
    shoot(page, "real-candidate")


def test_every_page_renders_the_real_run(server, real, page):
    open_page(page, server.url)
    assert real.run_id in page.inner_text("table.runs")
    shoot(page, "real-runs")
    open_page(page, server.url + f"#/trajectories?run={real.run_id}")
    assert int(page.inner_text("#traj-count").split()[0]) == real.ledger.rollout_count(real.run_id)
    page.locator("details.traj summary").first.click()
    shoot(page, "real-trajectories")
    open_page(page, server.url + "#/memory")
    assert page.locator("article.lesson").count() == len(real.ledger.lessons(real.run_id))
    shoot(page, "real-memory")
    open_page(page, server.url + f"?token={TOKEN}#/approvals")
    assert page.locator(".queue-item").count() == 1
    assert page.locator(f'.queue-item [data-candidate="{real.waiting}"]').count() == 1
    shoot(page, "real-approvals")
    open_page(page, server.url + f"#/candidate/{real.waiting}")
    assert page.locator(f"#approve-{real.waiting}").is_visible()
    assert "+" in page.inner_text("#diff")
    shoot(page, "real-candidate-waiting")


class LoopThread(threading.Thread):
    """A real evolve loop on its own event loop, as `ratchet evolve` runs beside `ratchet ui`."""

    def __init__(self, root: Path, opts: EvolveOptions) -> None:
        super().__init__(daemon=True)
        self.root, self.opts = root, opts
        self.outcome: EvolveOutcome | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = run_project(fake_project(self.root), self.opts)
        except BaseException as e:  # handed to the test, which reports it
            self.error = e


def _wait_for_gate(lg: Ledger, loop: LoopThread) -> dict:
    deadline = time.time() + LOOP_TIMEOUT_S
    while time.time() < deadline and loop.is_alive():
        waiting = lg.candidates_with_status("awaiting_approval")
        if waiting:
            return waiting[0]
        time.sleep(0.1)
    raise AssertionError(f"no candidate reached the approval gate (loop alive: {loop.is_alive()}, error: {loop.error!r})")


def _own_evals(lg: Ledger, run_id: str, cand_id: str) -> list[dict]:
    return [e for e in lg.evals(run_id) if e["candidate_id"] == cand_id]


def test_approve_button_unblocks_a_real_waiting_loop(browser, tmp_path):  # noqa: F811
    root = make_project_dir(tmp_path / "project", n_tasks=N_TASKS)
    cfg = load_project(root)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    lg = Ledger(cfg.ledger_url)  # the dashboard's own connection, as `ratchet ui` opens it
    loop = LoopThread(root, EvolveOptions(rounds=1, approve="always"))
    loop.start()
    try:
        cand = _wait_for_gate(lg, loop)
        time.sleep(1.5)  # several of the loop's polls: it must still be held at the gate
        assert loop.is_alive() and lg.candidate(cand["id"])["status"] == "awaiting_approval"
        assert _own_evals(lg, cand["run_id"], cand["id"]) == []  # not evaluated before a person decides
        with ServedApp(create_app(lg, UISettings(token=TOKEN, poll_ms=400))) as srv:
            ctx = browser.new_context(viewport=VIEWPORT)
            pg = ctx.new_page()
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            open_page(pg, srv.url + f"?token={TOKEN}#/approvals")
            assert pg.locator(f'.queue-item [data-candidate="{cand["id"]}"]').count() == 1
            shoot(pg, "real-approval-before")
            pg.click(f"#approve-{cand['id']}")
            loop.join(timeout=LOOP_TIMEOUT_S)
            assert not loop.is_alive(), "the loop is still waiting after the Approve click"
            assert loop.error is None, f"the loop failed after approval: {loop.error!r}"
            open_page(pg, srv.url + f"#/candidate/{cand['id']}")
            row = lg.candidate(cand["id"])
            pg.wait_for_function(f"document.querySelector('h1 .badge').innerText.includes('{row['status']}')")
            shoot(pg, "real-approval-after")
            ctx.close()
            assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        if loop.is_alive():  # a failed assertion must not leave the loop polling forever
            (root / cfg.guard.stop_file).write_text("test ended\n")
            loop.join(timeout=30)
    outcome = loop.outcome
    assert outcome.status == "finished" and [r.candidate_id for r in outcome.rounds] == [cand["id"]]
    assert row["status"] in ("accepted", "rejected") and outcome.rounds[0].status == row["status"]
    assert row["decision"]["final"] == row["status"] and (row["decision"].get("dev") or row["decision"].get("slice"))
    assert _own_evals(lg, cand["run_id"], cand["id"]), "the approved candidate was never evaluated"
    events = lg.events(cand["run_id"], "approval")
    assert [e["data"] for e in events] == [{"candidate": cand["id"], "decision": "approved", "by": "ui"}]
    assert lg.lessons(cand["run_id"])[0]["candidate_id"] == cand["id"]
    lg.close()


def test_the_real_runs_closing_report_reaches_the_run_page(server, real, page):
    summary = real.ledger.run(real.run_id)["summary"]
    report = queries.run_detail(real.ledger, real.run_id)["report"]
    assert report is not None, "the closing table of a finished evolve run stores its reconciled report"
    assert [r["split"] for r in report["rows"]] == ["dev", "holdout"] and report["sentences"] == summary["report"]["sentences"]
    open_page(page, server.url + f"#/run/{real.run_id}")
    assert page.inner_text("ul.reconcile").split("\n") == report["sentences"]
    assert "the closing seed" in page.inner_text("table.reconciled")
