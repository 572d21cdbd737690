"""The AI judge (rubric; constitution: critique then revise) through any ChatModel, and STaR hints."""

import asyncio

import pytest

from ratchet.flywheel.config import JudgeConfig
from ratchet.flywheel.generate import hint_messages, rationalize
from ratchet.flywheel.verify import Judge, parse_score, verifier_identity
from ratchet.models.scripted import ScriptedModel
from ratchet.types import Score, Task, Trajectory


def test_parse_score_takes_the_last_grade():
    assert parse_score("Good.\nScore: 7") == 0.7
    assert parse_score("Score: 3/10 at first... Score = 10") == 1.0
    assert parse_score("no grade here") is None


def test_rubric_judge_grades_through_a_chat_model():
    seen = []

    def reply(messages, params):
        seen.append(messages)
        return "Clear and right.\nScore: 9"

    judge = Judge(ScriptedModel(reply, name="judge-m"), JudgeConfig(kind="rubric", text="Correct and brief."), "Correct and brief.")
    v = asyncio.run(judge.judge(Task("t", "Calculate 2 + 2."), "4"))
    assert v.score == 0.9 and v.revision is None
    assert "Rubric:\nCorrect and brief." in seen[0][-1]["content"] and seen[0][-1]["content"].count("4") >= 1
    assert verifier_identity("suite", "abcdef0123456789", judge).startswith("suite@abcdef012345+judge:rubric:judge-m@")


def test_constitution_judge_critiques_then_revises_then_grades():
    script = iter(["It is rude.", "The answer is 4.", "Follows the principles. Score: 8"])
    model = ScriptedModel(lambda messages, params: next(script))
    judge = Judge(model, JudgeConfig(kind="constitution", text="Be polite."), "Be polite.")
    v = asyncio.run(judge.judge(Task("t", "Calculate 2 + 2."), "4, obviously, idiot"))
    assert (v.critique, v.revision, v.score) == ("It is rude.", "The answer is 4.", 0.8)
    revise_request = model.calls[1][0]
    assert revise_request[-2] == {"role": "assistant", "content": "It is rude."}
    assert all(p.temperature == 0.0 for _m, p in model.calls)  # reproducible


def test_hint_goes_into_the_last_user_message_only():
    req = [{"role": "system", "content": "s"}, {"role": "user", "content": "Calculate 2 + 2."}]
    hinted = hint_messages(req, "4")
    assert "correct answer is 4" in hinted[-1]["content"] and req[-1]["content"] == "Calculate 2 + 2."


class OneSuite:
    name = "one"

    def tasks(self):
        return [Task("t", "Calculate 2 + 2.")]

    async def score(self, task, answer):
        return Score(float(answer.strip() == "4"))

    def gold(self, task_id):
        return "4"

    def fingerprint(self):
        return "f"


def test_star_rationalization_keeps_the_plain_prompt_and_refuses_eval_splits():
    model = ScriptedModel(lambda messages, params: "4" if "Hint" in messages[-1]["content"] else "5")
    req = [{"role": "user", "content": "Calculate 2 + 2."}]
    failed = Trajectory(task_id="t", epoch=0, seed=1, messages=[{"request": req, "params": {"temperature": 0.7},
                                                                  "replies": ["5"]}], output="5", score=0.0)
    task = OneSuite().tasks()[0]
    out = asyncio.run(rationalize(model, OneSuite(), [(task, failed)], 0.7, 0, lambda _id: "train"))
    assert out[0].score == 1.0 and out[0].messages[0]["request"] == req and out[0].messages[0]["replies"] == ["4"]
    with pytest.raises(ValueError, match="train tasks only"):
        asyncio.run(rationalize(model, OneSuite(), [(task, failed)], 0.7, 0, lambda _id: "holdout"))
