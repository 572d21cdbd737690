"""The demo pool behind ctx.demos, over a real evolve run on the fake model: built from the seed's verified
train successes, recorded with its provenance, fixed across a resume, and never drawn from dev, holdout or test."""

import asyncio

from conftest import fake_project, make_project_dir
from ratchet.evaluate import EvalResult
from ratchet.evolve import demos
from ratchet.evolve.run import EvolveOptions, evolve
from ratchet.ledger import Ledger
from ratchet.suites.base import split_of
from ratchet.types import Trajectory

HARNESS = """\
def solve(task, ctx):
    messages = ctx.demo_messages(ctx.params["demos"])
    messages.append({"role": "user", "content": ctx.prompt("question", question=task.input)})
    return ctx.llm(messages)
"""
PARAMS = """[demos]
type = "int"
range = [0, 3]
value = 0
"""


def _run(root, **opts):
    proj = fake_project(root)
    try:
        return asyncio.run(evolve(proj, EvolveOptions(**opts), say=lambda m: None)), proj
    finally:
        asyncio.run(proj.aclose())


def test_the_pool_comes_from_train_only_and_is_recorded(tmp_path):
    root = make_project_dir(tmp_path / "p", n_tasks=40, harness=HARNESS, params=PARAMS)
    (root / "harness" / "prompts").mkdir()
    (root / "harness" / "prompts" / "question.md").write_text("{question}")
    outcome, proj = _run(root, rounds=1)
    outcome, proj = _run(root, rounds=2, resume=True)
    assert outcome.status == "finished"
    ledger = Ledger(proj.cfg.ledger_url)
    cfg = proj.cfg
    split = {t.id: split_of(t.id, cfg.suite.splits.model_dump(), cfg.suite.split_salt) for t in proj.suite.tasks()}
    inputs = {t.id: t.input for t in proj.suite.tasks()}

    pool = demos.run_pool(ledger, outcome.run_id)
    assert pool is not None and pool.version and 0 < len(pool.demos) <= demos.POOL_SIZE
    seed_commit = outcome.table[0]["commit"]  # the run's seed, 10 characters
    for d in pool.demos:
        assert split[d["task_id"]] == "train" and d["split"] == "train"
        assert d["input"] == inputs[d["task_id"]]
        assert d["commit"].startswith(seed_commit) and ledger.eval(d["eval_id"])["split"] == "train"
    events = ledger.events(outcome.run_id, "demo_pool")
    assert len(events) == 1, "the resumed run reuses the run's pool instead of building another"
    assert [p["task_id"] for p in events[0]["data"]["provenance"]] == [d["task_id"] for d in pool.demos]

    # over every rollout of the run: a demonstration shown to an episode is a pool entry, never a dev/holdout/test task
    pool_inputs = {d["input"] for d in pool.demos}
    shown = 0
    for ev in ledger.evals(outcome.run_id):
        for traj in ledger.rollouts(ev["id"]):
            for call in traj.messages:
                users = [m["content"] for m in call["request"] if m["role"] == "user"]
                assert users[-1] == inputs[traj.task_id]  # the question itself comes last
                for text in users[:-1]:
                    shown += 1
                    assert text in pool_inputs
                    assert not any(text == inputs[t] for t, s in split.items() if s != "train")
    assert shown > 0, "the search tried demos > 0, so some episode must have been shown demonstrations"
    with_pool = [ev for ev in ledger.evals(outcome.run_id) if "+demos-" in ev["harness"]]
    assert with_pool and all(pool.version in ev["harness"] for ev in with_pool)


def _rollout(task_id, reply, score):
    return Trajectory(task_id=task_id, epoch=0, seed=0, messages=[{"replies": [reply]}], output=reply, score=score)


def test_the_pool_puts_the_shortest_verified_replies_first():
    replies = {"t1": ("So the answer is 7 and then 9 and then 7.", 1.0), "t2": ("8", 0.0), "t3": ("3 + 4 = 7.", 1.0),
               "t4": ("x" * (demos.MAX_REPLY_CHARS + 1), 1.0), "t5": ("2 + 2 = 4.", 1.0), "t6": ("It is 5.", 1.0)}
    result = EvalResult("e1", "train", 1, {t: [s] for t, (_, s) in replies.items()},
                        [_rollout(t, r, s) for t, (r, s) in replies.items()])
    pool = demos.pool_from_result(result, {t: f"q {t}" for t in replies}, "c0ffee", size=3)
    # shortest first, task order on ties; the wrong and the over-long replies never enter
    assert [d["task_id"] for d in pool.demos] == ["t6", "t3", "t5"]
    assert pool.tried == 6 and pool.version
