"""Dashboard data: what the pages draw is what the ledger says (series, lineage, filters, approvals, report)."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from pg import pg_url  # noqa: F401 - the fixture
from ratchet.ledger.approval import ApprovalError, record_approval
from ratchet.ui import queries, views
from ratchet.ui.flywheel import flywheel_detail, flywheel_present
from ratchet.ui.report import ReportError, build_report, report_data
from ui_fixture import build_demo_ledger, copy_demo, write_flywheel_rows

LEDGER_BUILDER = build_demo_ledger  # swap for a ledger from a real short evolve run


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = LEDGER_BUILDER(tmp_path_factory.mktemp("ui") / "ledger.sqlite")
    yield d
    d.ledger.close()


@pytest.fixture
def fresh(demo, tmp_path):
    d = copy_demo(demo, tmp_path / "copy.sqlite")
    yield d
    d.ledger.close()


def test_run_detail_series_follow_the_kept_lineage(demo):
    detail = queries.run_detail(demo.ledger, demo.run_id)
    summary = demo.ledger.run(demo.run_id)["summary"]
    best_dev = detail["series"]["best_dev"]
    assert best_dev[0]["round"] == 0 and best_dev[0]["mean"] == pytest.approx(summary["seed_dev"])
    assert best_dev[-1]["mean"] == pytest.approx(summary["best_dev"])
    assert detail["series"]["best_holdout"][-1]["mean"] == pytest.approx(summary["best_holdout"])
    for point in best_dev:  # a 95% band around every kept score, inside [0, 1]
        assert 0.0 <= point["lo"] <= point["mean"] <= point["hi"] <= 1.0
    statuses = {c["id"]: c["status"] for c in demo.ledger.candidates(demo.run_id)}
    for mark in detail["series"]["cand_dev"]:
        assert mark["outcome"] == ("accepted" if statuses[mark["candidate"]] == "accepted" else "rejected")
    # the kept score only moves at accepted rounds
    moves = [b["round"] for a, b in zip(best_dev, best_dev[1:]) if b["mean"] != a["mean"]]
    assert all(statuses[c["id"]] == "accepted" for c in demo.ledger.candidates(demo.run_id) if c["round"] in moves)
    assert detail["unseals"] >= 1 and detail["pending"] == [demo.waiting]
    assert detail["cost"][-1]["cum_rollouts"] == sum((c["cost"] or {}).get("rollouts", 0)
                                                     for c in demo.ledger.candidates(demo.run_id))


def test_lineage_marks_the_path_to_the_best(demo):
    detail = queries.run_detail(demo.ledger, demo.run_id)
    best = demo.ledger.run(demo.run_id)["summary"]["best_candidate"]
    on_path, seen = set(), []

    def walk(node):
        seen.append(node["id"])
        if node["best_path"] and node["id"]:
            on_path.add(node["id"])
        for kid in node["children"]:
            walk(kid)

    for root in detail["lineage"]:
        walk(root)
    assert sorted(i for i in seen if i) == sorted(c["id"] for c in demo.ledger.candidates(demo.run_id))
    expected, node = set(), best
    by_id = {c["id"]: c for c in demo.ledger.candidates(demo.run_id)}
    while node in by_id:
        expected.add(node)
        node = by_id[node]["parent_id"]
    assert on_path == expected and best in on_path


def test_candidate_detail_has_the_agent_steps(demo):
    from ui_fixture import AGENT_STEPS

    work = queries.candidate_detail(demo.ledger, demo.candidates["calculator"])["agent_work"]
    assert work["steps"] == AGENT_STEPS and work["errors"] == 1 and work["tokens"] == 5120 and work["episodes"] == 1
    assert queries.candidate_detail(demo.ledger, demo.candidates["temperature"])["agent_work"] is None  # search keeps none


def test_candidate_detail_has_decision_lesson_and_signals(demo):
    evaluated = [c for c in demo.ledger.candidates(demo.run_id) if (c["decision"] or {}).get("cand_eval")]
    cand = evaluated[0]
    detail = queries.candidate_detail(demo.ledger, cand["id"][:6])  # a unique prefix works, as in git
    assert detail["candidate"]["id"] == cand["id"] and detail["candidate"]["diff"] == cand["diff"]
    diffs = [r["diff"] for r in detail["decision"]["per_task"]]
    assert diffs == sorted(diffs) and len(diffs) == len(cand["decision"]["per_task"])
    assert detail["lesson"] and detail["lesson"]["round"] == cand["round"]
    n_rollouts = demo.ledger.eval(cand["decision"]["cand_eval"])["n_tasks"] * demo.ledger.eval(cand["decision"]["cand_eval"])["epochs"]
    assert sum(detail["signals"]["candidate"].values()) == n_rollouts
    assert queries.candidate_detail(demo.ledger, "no-such-candidate") is None


def test_trajectory_filters_agree_with_their_facets(demo):
    everything = queries.find_trajectories(demo.ledger, run_id=demo.run_id, limit=500)
    assert everything["total"] == sum(everything["facets"]["signal"].values()) == demo.ledger.rollout_count(demo.run_id)
    for signal, n in everything["facets"]["signal"].items():
        got = queries.find_trajectories(demo.ledger, run_id=demo.run_id, signal=signal, limit=500)
        assert got["total"] == n and {t["signal"] for t in got["items"]} == {signal}
    cand = next(c for c in demo.ledger.candidates(demo.run_id) if (c["decision"] or {}).get("cand_eval"))
    mine = queries.find_trajectories(demo.ledger, run_id=demo.run_id, candidate=cand["id"], split="dev", limit=500)
    assert mine["total"] > 0 and {t["eval_id"] for t in mine["items"]} == {cand["decision"]["cand_eval"]}
    first = mine["items"][0]["data"]
    assert first["messages"][0]["request"][-1]["role"] == "user"
    page2 = queries.find_trajectories(demo.ledger, run_id=demo.run_id, limit=10, offset=10)
    assert [t["id"] for t in page2["items"]] == [t["id"] for t in everything["items"][10:20]]


def test_lessons_newest_first_and_approval_queue(demo):
    lessons = queries.list_lessons(demo.ledger, demo.run_id)
    assert [x["round"] for x in lessons] == sorted((x["round"] for x in lessons), reverse=True)
    assert [c["id"] for c in queries.approval_queue(demo.ledger)] == [demo.waiting]


def test_approval_is_recorded_once_with_its_event(fresh):
    rec = record_approval(fresh.ledger, fresh.waiting, "approve", by="cli")
    assert rec.decision == "approved" and fresh.ledger.candidate(fresh.waiting)["status"] == "approved"
    events = fresh.ledger.events(fresh.run_id, "approval")
    assert [e["data"] for e in events] == [{"candidate": fresh.waiting, "decision": "approved", "by": "cli"}]
    with pytest.raises(ApprovalError, match="not 'awaiting_approval'"):
        record_approval(fresh.ledger, fresh.waiting, "reject", by="ui")
    with pytest.raises(ApprovalError, match="unknown action"):
        record_approval(fresh.ledger, fresh.waiting, "maybe", by="ui")
    with pytest.raises(ApprovalError, match="no candidate"):
        record_approval(fresh.ledger, "nope", "approve", by="ui")
    assert len(fresh.ledger.events(fresh.run_id, "approval")) == 1


def test_views_are_json_safe_and_bands_clip():
    assert views.clean({"a": [math.nan, 1.0, math.inf]}) == {"a": [None, 1.0, None]}
    point = views.eval_point({"mean": 0.95, "se": 0.1})
    assert point["hi"] == 1.0 and point["lo"] == pytest.approx(0.95 - views.Z95 * 0.1)
    assert views.eval_point({"mean": None}) is None
    assert views.budget_rows({"budget": {"tokens": [10, None], "rounds": [3, 4]}}) == [
        {"name": "tokens", "used": 10.0, "max": None, "fraction": None},
        {"name": "rounds", "used": 3.0, "max": 4.0, "fraction": 0.75}]


def test_score_series_from_plain_rows():
    cands = [
        {"id": "a", "round": 1, "parent_id": None, "status": "rejected", "decision": {"dev": {"mean_parent": 0.4, "mean_cand": 0.3}}},
        {"id": "b", "round": 2, "parent_id": None, "status": "accepted", "decision": {"cand_eval": "e2", "final": "accepted"}},
        {"id": "c", "round": 3, "parent_id": "b", "status": "guard_rejected", "decision": {}},
    ]
    s = views.score_series(cands, {"e2": {"mean": 0.6, "se": 0.05}}, {}, {"seed_holdout": 0.35})
    assert [(p["round"], p["mean"]) for p in s["best_dev"]] == [(0, 0.4), (1, 0.4), (2, 0.6), (3, 0.6)]
    assert [p["outcome"] for p in s["cand_dev"]] == ["rejected", "accepted"]
    assert s["best_holdout"][0] == {"round": 0, "mean": 0.35, "lo": None, "hi": None, "se": None, "n": None, "candidate": None}


def test_flywheel_data_only_with_rows(fresh):
    assert flywheel_detail(fresh.ledger) is None and not flywheel_present(fresh.ledger)
    run_id = write_flywheel_rows(fresh.ledger)
    fw = flywheel_detail(fresh.ledger)
    assert flywheel_present(fresh.ledger)
    assert fw["metrics"]["labels"] == ["gen 1", "gen 2", "gen 3"]
    assert fw["metrics"]["series"]["decision.dev.mean_cand"] == [0.38, 0.44, 0.47]
    assert fw["examples"]["by_generation"][0] == {"generation": "gen 1",
                                                  "counts": {"dropped: duplicate": 9, "dropped: wrong_answer": 8, "kept": 33}}
    assert fw["model_tree"][0]["id"] == "smollm2-135m"  # the unregistered base the first model came from
    assert [n["id"] for n in fw["model_tree"][0]["children"]] == ["smollm2-135m-ft1"]
    assert report_data(fresh.ledger, run_id)["flywheel"]["counts"]["fw_generations"] == 3


def test_flywheel_reflection_reads_unknown_columns(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    md = sa.MetaData()
    gens = sa.Table("fw_generations", md, sa.Column("gen", sa.Integer, primary_key=True), sa.Column("accuracy", sa.Float))
    models = sa.Table("models", md, sa.Column("id", sa.String, primary_key=True), sa.Column("parent_id", sa.String))
    md.create_all(engine)
    with engine.begin() as c:
        c.execute(sa.insert(gens), [{"gen": 0, "accuracy": 0.3}, {"gen": 1, "accuracy": 0.42}])
        c.execute(sa.insert(models), [{"id": "a", "parent_id": None}, {"id": "b", "parent_id": "a"}])
    fw = flywheel_detail(SimpleNamespace(engine=engine))
    assert fw["metrics"] == {"labels": ["gen 0", "gen 1"], "series": {"accuracy": [0.3, 0.42]}}
    assert fw["model_tree"] == [{"id": "a", "status": None, "children": [{"id": "b", "status": None, "children": []}]}]
    assert fw["examples"]["by_generation"] == []
    engine.dispose()


def test_report_is_self_contained_and_escapes_ledger_text(fresh):
    evil = "</script><script>window.pwned=1</script>"
    fresh.ledger.update_candidate(fresh.waiting, summary=evil)
    html = build_report(fresh.ledger, fresh.run_id[:10])
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)  # nothing loaded from elsewhere
    assert "static/" not in html and evil not in html
    boot = re.search(r'<script id="ratchet-boot" type="application/json">(.*?)</script>', html, re.S).group(1)
    data = json.loads(boot)["data"]
    assert data["candidate"][fresh.waiting]["candidate"]["summary"] == evil
    assert set(data["candidate"]) == {c["id"] for c in fresh.ledger.candidates(fresh.run_id)}
    assert data["run"][fresh.run_id] == queries.run_detail(fresh.ledger, fresh.run_id)
    with pytest.raises(ReportError, match="no single run"):
        report_data(fresh.ledger, "nope")


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in ("created_at", "updated_at")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


@pytest.mark.slow  # starts a throwaway PostgreSQL server
def test_postgresql_ledger_reads_the_same(pg_url, demo):  # noqa: F811
    pg = build_demo_ledger(pg_url)
    try:
        assert _without_times(queries.run_detail(pg.ledger, pg.run_id)) == _without_times(queries.run_detail(demo.ledger, demo.run_id))
        for cid in demo.candidates.values():
            assert _without_times(queries.candidate_detail(pg.ledger, cid)) == _without_times(queries.candidate_detail(demo.ledger, cid))
        for kwargs in ({}, {"signal": "format"}, {"split": "holdout"}, {"candidate": demo.candidates["calculator"]}):
            a = queries.find_trajectories(pg.ledger, run_id=pg.run_id, limit=500, **kwargs)
            b = queries.find_trajectories(demo.ledger, run_id=demo.run_id, limit=500, **kwargs)
            assert a["total"] == b["total"] and a["facets"] == b["facets"]
            assert sorted((t["eval_id"], t["task_id"], t["epoch"]) for t in a["items"]) == \
                sorted((t["eval_id"], t["task_id"], t["epoch"]) for t in b["items"])
        assert record_approval(pg.ledger, pg.waiting, "reject", by="ui").decision == "rejected"
        assert flywheel_detail(pg.ledger) is None and not flywheel_present(pg.ledger)
        assert report_data(pg.ledger, "latest")["meta"]["run"] == pg.run_id
    finally:
        pg.ledger.close()


def test_run_detail_reads_the_reconciled_report_from_the_summary(fresh):
    from ui_fixture import write_closing_report

    assert queries.run_detail(fresh.ledger, fresh.run_id)["report"] is None  # a run without one: nothing guessed
    stored = write_closing_report(fresh.ledger, fresh.run_id)
    report = queries.run_detail(fresh.ledger, fresh.run_id)["report"]
    assert [r["split"] for r in report["rows"]] == ["dev", "holdout", "test"] and not report["stale"]
    assert report["sentences"] == stored["sentences"] and "closing holdout" in report["sentences"][0]
    assert "disagree" in report["sentences"][0] and "sealed test" in report["sentences"][1]
    hold = report["rows"][1]
    assert hold["measured_with"] == "the closing seed" and hold["n_tasks"] == 19 and hold["epochs"] == 2
    assert hold["seed"]["ci"][0] < hold["seed"]["mean"] < hold["seed"]["ci"][1] and hold["ci"][0] <= hold["diff"]
    assert hold["p_value"] == stored["rows"][1]["p_value"] and 0 < hold["detectable"] < 1
    json.dumps(report)  # plain JSON for the page
