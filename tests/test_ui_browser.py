"""The dashboard in headless Chromium: charts draw, diffs show, the approval button unblocks a waiting
loop, the page follows a running loop, and the static report opens offline with the same figures.

Screenshots of every page go to test-artifacts/; with RATCHET_UPDATE_DOCS=1 the run and candidate
pages are also written to docs/ui-run.png and docs/ui-candidate.png.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from ratchet.ledger import Ledger
from ratchet.ui.app import UISettings, create_app
from ratchet.ui.report import write_report
from ui_fixture import AGENT_STEPS, ServedApp, build_demo_ledger, copy_demo, write_flywheel_rows

pytestmark = pytest.mark.slow  # starts Chromium: ~30 s on two cores

LEDGER_BUILDER = build_demo_ledger  # swap for a ledger from a real short evolve run
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "browser-test-token"
VIEWPORT = {"width": 1400, "height": 900}

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = LEDGER_BUILDER(tmp_path_factory.mktemp("ui-browser") / "ledger.sqlite")
    yield d
    d.ledger.close()


@pytest.fixture(scope="module")
def server(demo):
    with ServedApp(create_app(demo.ledger, UISettings(token=TOKEN, poll_ms=400))) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_page(pg, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector("body[data-page=ready]", timeout=20000)


def shoot(pg, name: str, docs: str | None = None) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("RATCHET_UPDATE_DOCS") == "1":
        shutil.copyfile(path, ROOT / "docs" / docs)
    return path


CHART_DATA = """() => Object.fromEntries(Object.entries(window.ratchetCharts).map(([name, c]) =>
  [name, {labels: c.data.labels || [], datasets: c.data.datasets.map(d => ({label: d.label, data: d.data}))}]))"""

CANVAS_INK = """(id) => { const c = document.getElementById(id); const px = c.getContext('2d')
  .getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n; }"""


def figures(pg) -> dict:
    """What the run page shows: chart data, the headline numbers, the candidates table."""
    return {"charts": pg.evaluate(CHART_DATA), "stats": pg.inner_text(".stats"), "candidates": pg.inner_text("table.cands")}


def test_run_page_draws_its_charts(server, demo, page):
    open_page(page, server.url + f"#/run/{demo.run_id}")
    charts = page.evaluate(CHART_DATA)
    assert {"score", "effect", "cost"} <= set(charts)
    labels = [d["label"] for d in charts["score"]["datasets"]]
    assert "dev: kept" in labels and "holdout: kept" in labels and "dev: accepted" in labels and "dev: rejected" in labels
    bands = [d for d in charts["score"]["datasets"] if d["label"].endswith("95% lo")]
    assert len(bands) == 2  # dev and holdout confidence bands
    for canvas in ("score-chart", "effect-chart", "cost-chart"):
        assert page.evaluate(CANVAS_INK, canvas) > 2000, f"{canvas} is blank"
    assert page.locator(".tree .node").count() == len(demo.ledger.candidates(demo.run_id)) + 1
    shoot(page, "ui-run", docs="ui-run.png")


def test_candidate_page_shows_the_highlighted_diff(server, demo, page):
    cand = next(c for c in demo.ledger.candidates(demo.run_id) if c["status"] == "accepted" and c["diff"])
    open_page(page, server.url + f"#/candidate/{cand['id']}")
    added = [line[1:] for line in cand["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert page.locator("#diff tr.d-add").count() == len(added)
    assert added[-1].strip() in page.inner_text("#diff")
    assert page.locator("#diff tr.d-add td.code").first.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert page.evaluate(CANVAS_INK, "per-task-chart") > 500
    text = page.inner_text("main")
    assert cand["hypothesis"] in text and cand["rationale"] in text
    lesson = next(x for x in demo.ledger.lessons(demo.run_id) if x["candidate_id"] == cand["id"])
    assert lesson["text"][:60] in text
    assert "p" in [th.strip() for th in page.locator("table.dstats th").all_inner_texts()]  # decision statistics
    shoot(page, "ui-candidate", docs="ui-candidate.png")


def test_candidate_page_shows_the_agent_steps(server, demo, page):
    open_page(page, server.url + f"#/candidate/{demo.candidates['calculator']}")
    rows = page.locator("table.agent-steps tbody tr")
    assert rows.count() == len(AGENT_STEPS)
    text = page.inner_text("table.agent-steps")
    assert "run_episode" in text and "task_id=arith-dev-003" in text and "ERROR no JSON action" in text
    assert "6 steps · 1 errors · 5,120 tokens · 1 probe episodes" in page.inner_text("main")


def test_other_pages_render(server, demo, page):
    open_page(page, server.url)
    assert demo.run_id in page.inner_text("table.runs")
    shoot(page, "ui-runs")
    open_page(page, server.url + f"#/trajectories?run={demo.run_id}")
    total = int(page.inner_text("#traj-count").split()[0])
    page.select_option("#filter-signal", "wrong_answer")
    page.wait_for_function(f"document.querySelector('#traj-count') && !document.querySelector('#traj-count').innerText.startsWith('{total} ')")
    filtered = int(page.inner_text("#traj-count").split()[0])
    assert 0 < filtered < total and page.locator("details.traj .b-wrong_answer").count() == min(filtered, 50)
    page.locator("details.traj summary").first.click()
    assert "expected" in page.inner_text("details.traj[open]")  # the verifier's feedback
    shoot(page, "ui-trajectories")
    open_page(page, server.url + "#/memory")
    n_all = page.locator("article.lesson").count()
    page.fill("#lesson-search", "calculator")
    assert 0 < page.locator("article.lesson").count() < n_all
    shoot(page, "ui-memory")
    open_page(page, server.url + "#/approvals")
    assert page.locator(".queue-item").count() == 1
    shoot(page, "ui-approvals")
    open_page(page, server.url + f"#/candidate/{demo.waiting}")
    shoot(page, "ui-candidate-waiting")


def wait_for_decision(url: str, cand: str, seen: dict, timeout: float = 30.0) -> None:
    """What a waiting loop does: poll the ledger (its own connection) until the candidate leaves the gate."""
    lg = Ledger(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = lg.candidate(cand)["status"]
        if status != "awaiting_approval":
            seen["status"] = status
            break
        time.sleep(0.1)
    lg.close()


def test_approve_button_unblocks_a_waiting_loop(demo, browser, tmp_path):
    mine = copy_demo(demo, tmp_path / "approve.sqlite")
    seen: dict = {}
    waiter = threading.Thread(target=wait_for_decision, args=(mine.url, mine.waiting, seen))
    waiter.start()
    with ServedApp(create_app(mine.ledger, UISettings(token=TOKEN, poll_ms=400))) as srv:
        ctx = browser.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        open_page(pg, srv.url + f"#/candidate/{mine.waiting}")  # no token: the click is refused
        pg.click(f"#approve-{mine.waiting}")
        pg.wait_for_selector(".approval-msg.err")
        assert "token" in pg.inner_text(".approval-msg") and mine.ledger.candidate(mine.waiting)["status"] == "awaiting_approval"
        open_page(pg, srv.url + f"?token={TOKEN}#/candidate/{mine.waiting}")
        assert "token=" not in pg.url  # the token leaves the address bar (and the history)
        pg.click(f"#approve-{mine.waiting}")
        waiter.join(timeout=30)
        assert seen.get("status") == "approved"
        pg.wait_for_function("document.querySelector('h1 .badge').innerText.includes('approved')")
        ctx.close()
    events = mine.ledger.events(mine.run_id, "approval")
    assert [e["data"] for e in events] == [{"candidate": mine.waiting, "decision": "approved", "by": "ui"}]
    mine.ledger.close()


def test_run_page_follows_a_running_loop(demo, browser, tmp_path):
    mine = copy_demo(demo, tmp_path / "live.sqlite")
    with ServedApp(create_app(mine.ledger, UISettings(token=TOKEN, poll_ms=300))) as srv:
        ctx = browser.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        open_page(pg, srv.url + f"#/run/{mine.run_id}")
        before = len(pg.evaluate(CHART_DATA)["cost"]["datasets"][0]["data"])
        best = mine.ledger.run(mine.run_id)["summary"]["best_candidate"]
        mine.ledger.add_candidate(id="c999-live", run_id=mine.run_id, round=99, parent_id=best, proposer="llm",
                                  summary="a change that lands while the page is open", status="rejected",
                                  decision={"final": "rejected", "dev": {"mean_diff": -0.01, "ci_low": -0.1, "ci_high": 0.08}},
                                  cost={"rollouts": 32, "tokens": 100, "seconds": 3})
        pg.wait_for_function("document.querySelector('table.cands').innerText.includes('c999-live')", timeout=10000)
        assert len(pg.evaluate(CHART_DATA)["cost"]["datasets"][0]["data"]) == before + 1
        ctx.close()
    mine.ledger.close()


def test_report_opens_offline_with_the_same_figures(server, demo, browser, page, tmp_path):
    open_page(page, server.url + f"#/run/{demo.run_id}")
    live = figures(page)
    report = write_report(demo.ledger, demo.run_id, tmp_path / "report.html")
    ctx = browser.new_context(viewport=VIEWPORT, offline=True)
    requested: list[str] = []

    def only_the_file(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    ctx.route("**/*", only_the_file)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    open_page(pg, report.as_uri())
    offline = figures(pg)
    assert {"score", "effect", "cost"} <= set(offline["charts"]) and offline["charts"] == live["charts"]
    assert offline["stats"] == live["stats"] and offline["candidates"] == live["candidates"]
    shoot(pg, "report-run")
    cand = next(c for c in demo.ledger.candidates(demo.run_id) if c["status"] == "accepted")
    open_page(pg, report.as_uri() + f"#/candidate/{cand['id']}")
    assert pg.locator("#diff tr.d-add").count() > 0
    shoot(pg, "report-candidate")
    open_page(pg, report.as_uri() + "#/trajectories")
    assert int(pg.inner_text("#traj-count").split()[0]) > 0
    ctx.close()
    assert not requested, f"the report asked the network for {requested}"
    assert not errors, errors
    json.dumps(offline)  # what was compared is plain data


def test_flywheel_page_when_the_ledger_has_flywheel_rows(demo, browser, tmp_path):
    mine = copy_demo(demo, tmp_path / "fw.sqlite")
    with ServedApp(create_app(mine.ledger, UISettings(token=TOKEN))) as srv:
        ctx = browser.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        open_page(pg, srv.url)
        assert pg.locator("#nav a", has_text="flywheel").count() == 0  # offered only with data
        write_flywheel_rows(mine.ledger)
        open_page(pg, srv.url + "#/flywheel")
        assert pg.locator("#nav a", has_text="flywheel").count() == 1
        charts = pg.evaluate(CHART_DATA)
        series = {d["label"]: d["data"] for d in charts["generations"]["datasets"]}
        assert series["decision.dev.mean_cand"] == [0.38, 0.44, 0.47]
        assert sum(sum(d["data"]) for d in charts["examples"]["datasets"]) == 50 + 60 + 70
        assert "dropped: duplicate" in [d["label"] for d in charts["examples"]["datasets"]]
        # smollm2-135m (not registered) -> ft1 -> ft2 -> ft3
        assert pg.locator(".tree li li li li .node").inner_text().startswith("smollm2-135m-ft3")
        shoot(pg, "ui-flywheel")
        ctx.close()
    mine.ledger.close()


def test_run_page_reconciles_the_confirmations_with_the_final_figures(demo, browser, tmp_path):
    from ui_fixture import write_closing_report

    mine = copy_demo(demo, tmp_path / "reconciled.sqlite")
    stored = write_closing_report(mine.ledger, mine.run_id)
    with ServedApp(create_app(mine.ledger, UISettings(token=TOKEN))) as srv:
        ctx = browser.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        open_page(pg, srv.url + f"#/run/{mine.run_id}")
        assert pg.inner_text("ul.reconcile").split("\n") == stored["sentences"]  # the words, as stored
        assert pg.locator("table.reconciled tbody tr").count() == 3
        hold = stored["rows"][1]
        cards = pg.inner_text(".stats")  # the cards show the paired figures with the seed they were measured with
        assert f"{hold['seed_mean']:.3f} → {hold['best_mean']:.3f}" in cards and "the closing seed" in cards
        assert "unseal #1's seed" in cards and f"p = {hold['p_value']:.4f}" in cards
        shoot(pg, "ui-run-reconciled")
        ctx.close()
        assert not errors, errors
    mine.ledger.close()
