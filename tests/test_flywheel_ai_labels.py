"""RLAIF and CAI as docs/flywheel.md says: the judge's pairwise preference (both orders; a tie or an inconsistent
verdict gives no pair) becomes a pair with an AI label; a constitution revision is re-scored by the checker
and kept (with its pair) only if it passes; judge-vs-checker agreement, and a planted lenient judge flagged."""

import asyncio
import json
import re
from pathlib import Path

import pytest

from conftest import PROJECT_TOML, fake_project, make_project_dir
from ratchet.config import ConfigError
from ratchet.flywheel.card import card_markdown
from ratchet.flywheel.engine import Flywheel
from ratchet.flywheel.rlaif import Preference, parse_preference
from ratchet.types import Completion, Trajectory

SPLITS = ("train = 0.2\ndev = 0.4\nholdout = 0.3", "train = 0.4\ndev = 0.3\nholdout = 0.2")


def judge_table(kind="rubric", **extra) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n[flywheel]\ngenerations = 1\n\n[flywheel.judge]\n" + "\n".join(
        [f'kind = "{kind}"', 'text = "The answer must be the correct sum."', 'model = "judge"', *lines]) + "\n"


def right_sum(text: str) -> int:
    a, b = map(int, re.search(r"Calculate (\d+) \+ (\d+)", text).groups())
    return a + b


class JudgeModel:
    """A scripted judge. Grades: "honest" (10 when the reply is the right sum), "lenient" (10 to anything).
    Pairwise: "honest" prefers the right sum, "first" always says A (position bias), "tie" always ties.
    Revision (constitution): `revise(task text, reply)` gives the revised reply."""

    def __init__(self, grade="honest", pairwise="honest", revise=None):
        self.name, self.grade, self.pairwise, self.revise = "judge", grade, pairwise, revise
        self.asked: list[str] = []

    async def chat(self, messages, params):
        text = messages[-1]["content"]
        if "Response A:" in text:
            self.asked.append("pairwise")
            a, b = re.search(r"Response A:\n(.*?)\n\nResponse B:\n(.*?)\n\nCriteria:", text, re.S).groups()
            best = right_sum(text)
            reply = {"first": "Preferred: A", "tie": "Preferred: tie"}.get(self.pairwise) or (
                "Preferred: A" if a.strip() == str(best) else "Preferred: B" if b.strip() == str(best) else "Preferred: tie")
        elif "Rewrite the response" in text:
            self.asked.append("revise")
            original = re.search(r"Response:\n(.*?)\n\nCritique", messages[1]["content"], re.S).group(1)
            reply = self.revise(messages[1]["content"], original)
        elif "Critique the response" in text:
            self.asked.append("critique")
            reply = "It may be wrong."
        else:
            self.asked.append("grade")
            reply_text = re.search(r"Response:\n(.*?)\n\nRubric:", text, re.S).group(1)
            ok = self.grade == "lenient" or reply_text.split()[-1:] == [str(right_sum(text))]
            reply = "Score: 10" if ok else "Score: 1"
        return Completion(texts=[reply] * params.n, prompt_tokens=5, completion_tokens=3)

    async def aclose(self):
        pass


def make_engine(tmp_path: Path, judge: JudgeModel, table: str, unchecked: bool = False):
    root = make_project_dir(tmp_path / "p", n_tasks=20, toml=PROJECT_TOML.replace(*SPLITS) + table)
    if unchecked:  # tasks without a checker: the jsonl suite still needs an answer, but no one may trust it
        lines = [json.loads(x) for x in (root / "tasks.jsonl").read_text().splitlines()]
        (root / "tasks.jsonl").write_text("\n".join(json.dumps({**x, "metadata": {"checker": False}}) for x in lines) + "\n")
    proj = fake_project(root)
    engine = Flywheel(proj, model_factory=lambda name: judge if name == "judge" else proj.model)
    engine.run_id = proj.ledger.create_run("flywheel", proj.cfg.project.name, {})
    return proj, engine


def rollouts(engine, replies: dict[int, list[str]], n_tasks: int = 3) -> list[Trajectory]:
    """Rollouts of the first train tasks: epoch e replies replies[e] (a function of the right sum), scored like the
    numeric checker (the last word is the answer)."""
    out = []
    for task in engine.tasks["train"][:n_tasks]:
        best = right_sum(task.input)
        for epoch, make in replies.items():
            reply = make.format(right=best, wrong=best + 1)
            request = [{"role": "user", "content": task.input}]
            score = float(reply.split()[-1:] == [str(best)])
            out.append(Trajectory(task_id=task.id, epoch=epoch, seed=10 * epoch, output=reply, score=score,
                                  messages=[{"request": request, "params": {"seed": 10 * epoch}, "replies": [reply]}]))
    return out


def run_stages(engine, trajs):
    """The verify and filter stages of `Flywheel.generation` on planted rollouts (no episodes run)."""
    async def go():
        rollouts_, star = await engine.verify(trajs, engine.cfg.model.name, 1)
        judged = await engine.judge_pairs(rollouts_, engine.cfg.model.name)
        return rollouts_, engine.filter(1, engine.cfg.model.name, "e", rollouts_, star, judged)
    return asyncio.run(go())


def pairs_by_label(engine, label):
    rows = engine.store.examples(engine.run_id)
    return [r for r in rows if r["kind"] == "pair" and r["data"]["example"]["provenance"]["label"] == label]


def test_preference_needs_the_same_reply_to_win_in_both_orders():
    assert parse_preference("A is longer.\nPreferred: B") == "B" and parse_preference("Preferred: **tie**") == "tie"
    assert parse_preference("I like A") is None
    assert Preference("A", "B").outcome == "first" and Preference("B", "A").outcome == "second"
    assert Preference("A", "A").outcome == "inconsistent" and Preference("A", "tie").outcome == "inconsistent"
    assert Preference("tie", "tie").outcome == "tie" and Preference(None, "A").outcome == "unparsed"


def test_tasks_without_a_checker_need_a_judge(tmp_path):
    root = make_project_dir(tmp_path / "p", n_tasks=20, toml=PROJECT_TOML.replace(*SPLITS))
    lines = [json.loads(x) for x in (root / "tasks.jsonl").read_text().splitlines()]
    (root / "tasks.jsonl").write_text("\n".join(json.dumps({**x, "metadata": {"checker": False}}) for x in lines) + "\n")
    proj = fake_project(root)
    with pytest.raises(ConfigError, match=r"no checker.*\[flywheel.judge\]"):
        Flywheel(proj, model_factory=lambda name: proj.model)


def test_rlaif_pairs_on_tasks_without_a_checker_with_lineage(tmp_path):
    judge = JudgeModel()
    proj, engine = make_engine(tmp_path, judge, judge_table(), unchecked=True)
    rollouts_, data = run_stages(engine, rollouts(engine, {0: "{wrong}", 1: "{right}"}))
    assert data.counts["rlaif"] == {"compared": 3, "pairs": 3, "first": 0, "second": 3, "tie": 0, "inconsistent": 0,
                                    "unparsed": 0}
    assert judge.asked.count("pairwise") == 6  # both orders of each comparison
    pairs = pairs_by_label(engine, "ai_pairwise")
    assert len(pairs) == 3 and all(r["status"] == "kept" for r in pairs)
    ex = pairs[0]["data"]["example"]
    assert ex["reply"] == str(int(ex["reply"])) and int(ex["rejected"]) == int(ex["reply"]) + 1  # the right sum chosen
    prov = ex["provenance"]
    assert prov["epoch"] == 1 and prov["rejected_epoch"] == 0 and "+judge:rubric:judge@" in prov["verifier"]
    assert ex["judge"]["pairwise"] == {"ab": "B", "ba": "A", "outcome": "second"}
    assert not pairs_by_label(engine, "outcome")  # no checker, so no checker pairs
    sft = [r["data"]["example"]["provenance"]["label"] for r in engine.store.examples(engine.run_id) if r["kind"] == "sft"]
    assert sft and set(sft) == {"ai_grade"}  # the judge's grade decided these
    assert data.filter_pairs["kept_ai_pairwise"] == 3
    asyncio.run(proj.aclose())


@pytest.mark.parametrize("bias, outcome", [("first", "inconsistent"), ("tie", "tie")])
def test_a_position_biased_or_tied_judge_gives_no_pair(tmp_path, bias, outcome):
    proj, engine = make_engine(tmp_path, JudgeModel(pairwise=bias), judge_table(), unchecked=True)
    _r, data = run_stages(engine, rollouts(engine, {0: "{wrong}", 1: "{right}"}))
    assert data.counts["rlaif"]["pairs"] == 0 and data.counts["rlaif"][outcome] == 3
    assert not pairs_by_label(engine, "ai_pairwise")
    asyncio.run(proj.aclose())


def test_pairwise_on_checked_tasks_orders_only_verified_good_replies(tmp_path):
    judge = JudgeModel(pairwise="first")
    proj, engine = make_engine(tmp_path, judge, judge_table(pairwise=True, audit_failed=0))
    _r, data = run_stages(engine, rollouts(engine, {0: "{right}", 1: "{wrong}", 2: "The sum is {right}"}))
    assert data.counts["rlaif"]["compared"] == 3  # epoch 0 vs 2 (both right); the wrong one is the checker's pair
    assert data.counts["rlaif"]["inconsistent"] == 3 and not pairs_by_label(engine, "ai_pairwise")  # "A" both times
    assert len(pairs_by_label(engine, "outcome")) == 3
    asyncio.run(proj.aclose())


def test_a_revision_the_checker_fails_is_dropped_and_one_it_passes_is_kept_with_its_pair(tmp_path):
    def revise(prompt, original):  # the first task: a wrong revision; the others: the right sum alone
        best = right_sum(prompt)
        return str(best + 5) if best == first_best else str(best)

    judge = JudgeModel(revise=revise)
    proj, engine = make_engine(tmp_path, judge, judge_table("constitution", min_score=0.5))
    first_best = right_sum(engine.tasks["train"][0].input)
    trajs = rollouts(engine, {0: "{right}", 1: "The answer is {right}"}, n_tasks=2)
    for t in trajs:  # the checker passes both phrasings
        t.score = 1.0
    verdicts, data = run_stages(engine, trajs)
    by_task = {}
    for t, v in verdicts:
        by_task.setdefault(t.task_id, []).append(v.judge)
    bad_task, good_task = (engine.tasks["train"][i].id for i in (0, 1))
    assert all(j.revision_passed is False and j.revision_score == 0.0 for j in by_task[bad_task])
    assert all(j.revision_passed is True for j in by_task[good_task])

    rows = engine.store.examples(engine.run_id)
    revisions = [r for r in rows if r["data"]["example"]["provenance"]["label"] == "ai_revision"]
    dropped = [r for r in revisions if r["status"] == "dropped"]
    kept = [r for r in revisions if r["status"] == "kept"]
    assert {r["task_id"] for r in dropped} == {bad_task} and {r["reason"] for r in dropped} == {"revision_failed_check"}
    assert {r["task_id"] for r in kept} == {good_task}
    pair = kept[0]["data"]["example"]
    best = right_sum(engine.tasks["train"][1].input)
    assert pair["reply"] == str(best) and pair["rejected"] == f"The answer is {best}"  # revision chosen over original
    assert pair["provenance"]["score"] == 1.0 and pair["provenance"]["rejected_epoch"] == pair["provenance"]["epoch"]
    sft = {(r["task_id"], r["data"]["example"]["reply"]) for r in rows if r["kind"] == "sft" and r["status"] == "kept"}
    assert (bad_task, str(first_best + 5)) not in sft and (bad_task, f"The answer is {first_best}") in sft  # original kept
    assert (good_task, str(best)) in sft
    # the first task's two revisions fail; the second task's epoch-0 revision equals its reply, so it makes no pair
    assert data.filter_pairs["revision_failed_check"] == 2 and data.filter_pairs["kept_ai_revision"] == 1
    assert judge.asked.count("grade") == 4 + 2  # each revision, and the two originals whose revision failed
    asyncio.run(proj.aclose())


@pytest.mark.parametrize("grade, lenient", [("lenient", True), ("honest", False)])
def test_judge_checker_agreement_flags_a_planted_lenient_judge(tmp_path, grade, lenient):
    judge = JudgeModel(grade=grade)
    proj, engine = make_engine(tmp_path, judge, judge_table(audit_failed=8))
    _r, data = run_stages(engine, rollouts(engine, {0: "{right}", 1: "{wrong}", 2: "{wrong}"}, n_tasks=4))
    a = data.counts["judge_agreement"]
    assert (a["n"], a["checker_failed"]) == (12, 8) and a["lenient"] is lenient
    assert a["rate"] == (4 / 12 if lenient else 1.0) and a["judge_passed_failed"] == (8 if lenient else 0)
    events = proj.ledger.events(engine.run_id, kind="flywheel_lenient_judge")
    assert bool(events) is lenient
    card = card_markdown("r", [{"generation": 1, "model": "m", "status": "filtered", "counts": data.counts}])
    assert ("LENIENT" in card) is lenient and ("lenient judge" in card) is lenient
    asyncio.run(proj.aclose())


def test_no_audit_by_default_where_the_checker_gates_everything(tmp_path):
    judge = JudgeModel(grade="lenient")
    proj, engine = make_engine(tmp_path, judge, judge_table())
    _r, data = run_stages(engine, rollouts(engine, {0: "{right}", 1: "{wrong}"}))
    assert judge.asked == ["grade"] * 3  # only the checker-passed rollouts, as before
    assert data.counts["judge_agreement"]["checker_failed"] == 0 and not data.counts["judge_agreement"]["lenient"]
    asyncio.run(proj.aclose())
