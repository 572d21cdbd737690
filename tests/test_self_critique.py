"""Self-criticism and project memory, without a loop: the critique's figures are the loop's, recall ranks by
BM25 with outcome and recency, and a project's lessons are those of its memory.md across runs."""

import asyncio
import math
from types import SimpleNamespace

from ratchet.evolve import memory_skill
from ratchet.ledger import Ledger
from ratchet.loop.bm25 import bm25_scores, tokenize
from ratchet.loop.critique import parse_critique
from ratchet.loop.decision import DecisionStats
from ratchet.loop.lesson import round_lesson
from ratchet.loop.memory import Lesson, claim_memory, lesson_text, memory_answer, project_lessons, recall
from ratchet.loop.record import Decision, HoldoutRecord
from ratchet.models.metered import MeteredModel
from ratchet.models.scripted import ScriptedModel

STATS = DecisionStats(n_tasks=20, mean_parent=0.3, mean_cand=0.35, mean_diff=0.05, ci_low=-0.04, ci_high=0.14,
                      p_value=0.21, alpha=0.05, accepted=False, reason="not significant", ci_level=0.9)
ROW = {"id": "run-r002", "round": 2, "status": "rejected", "summary": "temperature 0.9 -> 0.2",
       "rationale": "wrong answers look like sampling noise", "hypothesis": "wrong_answer failures drop",
       "decision": Decision("rejected", "not significant", dev=STATS).to_json()}
FAILURES = "wrong_answer: 'Calculate 3 + 7.' answered 11, expected 10"


def lesson_of(model):
    return asyncio.run(round_lesson("run", 2, ROW, FAILURES, {"wrong_answer": 6}, model, seed=0))


def test_the_model_writes_why_and_next_and_the_loop_writes_the_figures():
    answers = []

    def reply(messages, params):
        answers.append(messages)
        return "WHY: the gain is inside the noise of 20 tasks, so the prediction was not confirmed.\nNEXT: add a self-check step."

    meter = MeteredModel(ScriptedModel(reply, name="critic-model"))
    lesson, refused = lesson_of(meter)
    assert refused == [] and lesson.critic == "critic-model"
    assert lesson.why.startswith("the gain is inside the noise") and lesson.next_step == "add a self-check step."
    assert lesson.measured == "dev: paired diff +0.050, 90% CI [-0.040, +0.140], p=0.2100, 20 tasks; " \
                              "holdout: not consulted (dev did not accept)"
    text = lesson_text(lesson)
    assert "Measured: dev: paired diff +0.050" in text and "Why (critic-model): the gain" in text
    assert "Hypothesis (the prediction): wrong_answer failures drop" in answers[0][1]["content"]
    assert "expected 10" not in answers[0][1]["content"]  # the critic sees failure counts, never task data
    tokens, _ = meter.take()
    assert tokens > 0  # what the engine charges to the budget after the critique


def test_an_unusable_or_inventive_critique_falls_back_to_the_template():
    replies = iter(["I think it went fine.", "WHY: it lost 0.31 on dev.\nNEXT: retry."])
    lesson, refused = lesson_of(ScriptedModel(lambda m, p: next(replies)))
    assert lesson.why == "" and lesson.critic == "" and lesson.next_step.startswith("Inconclusive (effect +0.050")
    assert "no NEXT" in refused[0] and "cites '0.31', which the loop did not measure" in refused[1]
    assert lesson.measured.startswith("dev: paired diff +0.050")  # the figures stay, whatever the model said
    assert lesson_of(None)[0].next_step == lesson.next_step  # no proposer model: the template, as before


def test_parse_critique_accepts_the_given_figures_only():
    given = "Measured by the loop: dev: paired diff +0.050, 90% CI [-0.040, +0.140], p=0.2100"
    assert parse_critique("**WHY:** a +0.050 gain at p=0.2100 is noise\nNEXT: more epochs", given)[0].startswith("a +0.050")
    for bad in ("WHY: 95% sure\nNEXT: x", "NEXT: only"):
        try:
            parse_critique(bad, given)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_holdout_confirmation_is_a_yes_or_no_never_its_means():
    hold = HoldoutRecord(confirmed=True, holdout_diff=0.4, noisy_diff=0.41, ci_low=0.2, ci_high=0.6, p_value=0.001,
                         budget_left=9, reason="confirmed", mean_parent=0.2, mean_cand=0.6)
    row = dict(ROW, status="accepted", decision=Decision("accepted", "ok", dev=STATS, holdout=hold).to_json())
    lesson, _ = asyncio.run(round_lesson("run", 2, row, "", {}, None, seed=0))
    assert lesson.measured.endswith("holdout: confirmed") and "0.6" not in lesson.measured and "0.4" not in lesson.measured


def _lesson(run, r, summary, failures, decision="rejected", created="2025-01-01T00:00:00+00:00", signals=None):
    return Lesson(run_id=run, round=r, candidate=f"{run}-r{r}", change_summary=summary, hypothesis="h", effect=0.0,
                  ci_low=-0.1, ci_high=0.1, decision=decision, next_step="n", signals=signals or {"wrong_answer": 3},
                  created_at=created, failures=failures)


def test_bm25_keeps_a_positive_idf_with_two_documents():
    docs = [tokenize("format failure: the reply has no Answer: marker"), tokenize("calculator skill for arithmetic")]
    scores = bm25_scores(docs, tokenize("calculator arithmetic wrong"))
    assert scores[1] > 0 == scores[0]  # FTS5's classic idf would give the shared-by-half word 0


def test_recall_ranks_the_lesson_about_the_same_failure_first():
    lessons = [_lesson("a", 1, "temperature 0.9 -> 0.2", "wrong_answer: 'Calculate 3 + 7.' answered 11",
                       created="2025-01-01T00:00:01+00:00"),
               _lesson("a", 2, "instruction plain -> marker", "format: the reply has no Answer: line",
                       created="2025-01-01T00:00:02+00:00"),
               _lesson("a", 3, "skill calculator off -> on", "wrong_answer: 'Calculate 12 * 4.' answered 46",
                       decision="accepted", created="2025-01-01T00:00:03+00:00")]
    now = "wrong_answer: 'Calculate 8 + 9.' answered 18, expected 17"
    ranked = recall(lessons, {"wrong_answer": 5}, k=3, query=now)
    assert [les.round for les in ranked] == [3, 1, 2]  # same failure, kept first; then the older one; format last
    assert [les.round for les in recall(lessons, {"format": 5}, k=1, query="the reply has no Answer: line")] == [2]
    assert "skill calculator off -> on" in memory_answer(lessons, "Calculate 2 * 21", k=1)
    assert "answered 46" not in memory_answer(lessons, "Calculate 2 * 21", k=3)  # failure text is matched, never shown
    assert not math.isnan(ranked[0].ci_low)


def test_project_lessons_span_runs_of_one_memory_and_not_of_another(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    runs = {name: ledger.create_run("evolve", "same-name", {}) for name in ("first", "second", "elsewhere")}
    here, there = tmp_path / "p" / "memory.md", tmp_path / "q" / "memory.md"
    for name, path in (("first", here), ("elsewhere", there)):
        claim_memory(ledger, runs[name], path)
        ledger.add_lesson(runs[name], 1, None, "t", _lesson(runs[name], 1, f"{name} change", "").to_json())
    got = project_lessons(ledger, runs["second"], here)
    assert [les.change_summary for les in got] == ["first change"]  # the other directory's memory stays apart
    # `ratchet eval` serves a memory-enabled harness the same lessons (the latest run's project memory)
    services = SimpleNamespace(recall=None, memory_version=None)
    project = SimpleNamespace(ledger=ledger, root=here.parent, services=services,
                              cfg=SimpleNamespace(project=SimpleNamespace(name="same-name")))
    harness = SimpleNamespace(params=SimpleNamespace(skills_enabled=["memory"]))
    assert memory_skill.offer_latest(project, harness).startswith("memory skill: the lessons")
    assert "first change" in services.recall("anything") and "elsewhere" not in services.recall("elsewhere change")
    ledger.close()
