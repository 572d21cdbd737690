"""The dashboard's HTTP surface: reads are open, approvals need the token, other host names are refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from evolve_fixture import build_real_run_ledger
from ratchet.cli.ui import report, ui
from ratchet.ui.app import UISettings, create_app
from ui_fixture import build_demo_ledger, copy_demo  # noqa: F401 - the synthetic builder, to swap back

LEDGER_BUILDER = build_real_run_ledger  # a real short evolve run (session-cached); build_demo_ledger also passes
TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = LEDGER_BUILDER(tmp_path_factory.mktemp("ui-api") / "ledger.sqlite")
    yield d
    d.ledger.close()


@pytest.fixture
def fresh(demo, tmp_path):
    d = copy_demo(demo, tmp_path / "copy.sqlite")
    yield d
    d.ledger.close()


def client(demo, token=TOKEN) -> TestClient:
    return TestClient(create_app(demo.ledger, UISettings(token=token)), base_url="http://127.0.0.1:8765")


def test_page_assets_and_reads(demo):
    c = client(demo)
    page = c.get("/")
    assert page.status_code == 200 and 'src="static/chart.umd.min.js"' in page.text and '"mode":"live"' in page.text
    assert c.get("/static/chart.umd.min.js").text.startswith("/*!\n * Chart.js v4")
    runs = c.get("/api/runs").json()
    assert {r["id"] for r in runs} >= {demo.run_id}
    assert c.get(f"/api/run/{demo.run_id}").json()["run"]["id"] == demo.run_id
    assert c.get("/api/run/latest").json()["run"]["id"] == runs[0]["id"]
    assert c.get(f"/api/candidate/{demo.waiting}").json()["candidate"]["status"] == "awaiting_approval"
    assert c.get("/api/run/nope").status_code == 404 and c.get("/api/candidate/nope").status_code == 404
    traj = c.get("/api/trajectories", params={"run": demo.run_id, "signal": "ok", "limit": 5}).json()
    assert len(traj["items"]) == 5 and traj["total"] == traj["facets"]["signal"]["ok"]
    assert c.get("/api/approvals").json()[0]["id"] == demo.waiting
    assert c.get("/api/meta").json() == {"mode": "live", "writable": True, "pending": 1, "flywheel": False}
    assert c.get("/api/flywheel").json() is None


def test_approval_needs_the_token(fresh):
    c = client(fresh)
    url = f"/api/candidate/{fresh.waiting}/approve"
    assert c.post(url).status_code == 401
    assert c.post(url, headers={"X-Ratchet-Token": "wrong"}).status_code == 401
    assert fresh.ledger.candidate(fresh.waiting)["status"] == "awaiting_approval"
    ok = c.post(url, headers={"X-Ratchet-Token": TOKEN})
    assert ok.status_code == 200 and ok.json() == {"candidate": fresh.waiting, "decision": "approved", "by": "ui"}
    assert fresh.ledger.candidate(fresh.waiting)["status"] == "approved"
    again = c.post(f"/api/candidate/{fresh.waiting}/reject", headers={"X-Ratchet-Token": TOKEN})
    assert again.status_code == 409 and "approved" in again.json()["detail"]
    assert c.post(f"/api/candidate/{fresh.waiting}/delete", headers={"X-Ratchet-Token": TOKEN}).status_code == 404


def test_read_only_dashboard_refuses_decisions(fresh):
    c = client(fresh, token=None)
    assert c.get("/api/meta").json()["writable"] is False
    assert c.post(f"/api/candidate/{fresh.waiting}/approve", headers={"X-Ratchet-Token": TOKEN}).status_code == 403
    assert fresh.ledger.candidate(fresh.waiting)["status"] == "awaiting_approval"


def test_other_host_names_are_refused_on_loopback(demo):
    c = client(demo)
    assert c.get("/api/runs", headers={"host": "evil.example:8765"}).status_code == 400
    assert c.get("/api/runs", headers={"host": "localhost:8765"}).status_code == 200


def test_report_command_writes_one_file(demo, tmp_path):
    out = tmp_path / "r" / "report.html"
    result = CliRunner().invoke(_app(), ["report", demo.run_id, "-o", str(out), "--ledger", demo.url])
    assert result.exit_code == 0, result.output
    assert out.exists() and "ratchet report: " + demo.run_id in out.read_text()
    bad = CliRunner().invoke(_app(), ["report", "nope", "-o", str(out), "--ledger", demo.url])
    assert bad.exit_code == 2 and "no single run" in bad.output
    missing = CliRunner().invoke(_app(), ["report", "-o", str(out), "--ledger", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no ledger at" in missing.output
    no_project = CliRunner().invoke(_app(), ["ui", "--project", str(tmp_path)], env={"RATCHET_LEDGER": ""})
    assert no_project.exit_code == 2 and "ratchet.toml" in no_project.output


def _app():
    import typer

    app = typer.Typer()
    app.command("ui")(ui)
    app.command("report")(report)
    return app
