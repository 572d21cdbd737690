"""The evaluator: concurrent episodes, scored and written as they finish, resumable, paired by seed."""

import asyncio
import hashlib

import pytest

from ratchet.evaluate import EvalInterrupted, Evaluator, episode_seed
from ratchet.ledger import Ledger
from ratchet.types import Score, Task


class SumSuite:
    """'Calculate a + b.' tasks; the gold answers stay in here."""

    name = "sums"

    def __init__(self, n=10):
        self._tasks = [Task(f"s{i}", f"Calculate {i} + {i + 1}.") for i in range(n)]
        self._gold = {f"s{i}": str(2 * i + 1) for i in range(n)}

    def tasks(self):
        return self._tasks

    async def score(self, task, answer):
        ok = (answer or "").strip() == self._gold[task.id]
        return Score(1.0 if ok else 0.0, "correct" if ok else f"expected a number, got {answer!r}")

    def gold(self, task_id):
        return self._gold[task_id]

    def fingerprint(self):
        return hashlib.sha256(repr(sorted(self._gold.items())).encode()).hexdigest()[:16]


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    yield lg
    lg.close()


HARNESS = "def solve(task, ctx):\n    return ctx.llm(task.input)\n"


def test_scores_and_clustered_se(harness_factory, services, ledger):
    suite = SumSuite()
    ev = Evaluator(suite, services, ledger, concurrency=8)
    res = asyncio.run(ev.evaluate(harness_factory(HARNESS), suite.tasks(), "dev", epochs=2, seed=0))
    assert res.n_tasks == 10 and res.n_rollouts == 20
    assert res.mean == 1.0 and res.se == 0.0
    assert ledger.eval(res.eval_id)["status"] == "done"


def test_wrong_answers_score_zero_with_feedback(harness_factory, services, ledger):
    suite = SumSuite(4)
    h = harness_factory("def solve(task, ctx):\n    return 'no idea'\n")
    res = asyncio.run(Evaluator(suite, services, ledger).evaluate(h, suite.tasks(), "dev"))
    assert res.mean == 0.0 and all("expected" in t.feedback for t in res.trajectories)
    assert {t.failure_signal for t in res.trajectories} == {"wrong_answer"}


def test_interrupted_evaluation_resumes_without_rerunning(harness_factory, services, ledger):
    suite = SumSuite(10)
    h = harness_factory(HARNESS)
    ev = Evaluator(suite, services, ledger, concurrency=2)
    started = {"n": 0}

    def stop_after_four():
        started["n"] += 1
        return started["n"] > 4

    with pytest.raises(EvalInterrupted):
        asyncio.run(ev.evaluate(h, suite.tasks(), "dev", should_stop=stop_after_four))
    first_calls = services.model.calls
    assert 0 < first_calls < 10
    res = asyncio.run(ev.evaluate(h, suite.tasks(), "dev"))
    assert res.n_rollouts == 10 and res.reused == first_calls
    assert services.model.calls == 10  # finished rollouts were not run again


def test_same_seed_means_same_episode_seeds():
    assert episode_seed(0, "t", 1) == episode_seed(0, "t", 1)
    assert episode_seed(0, "t", 1) != episode_seed(0, "t", 2) != episode_seed(1, "t", 1)


def test_slice_then_full_reuses_the_slice(harness_factory, services, ledger):
    suite = SumSuite(10)
    h = harness_factory(HARNESS)
    ev = Evaluator(suite, services, ledger)
    asyncio.run(ev.evaluate(h, suite.tasks()[:4], "dev"))
    res = asyncio.run(ev.evaluate(h, suite.tasks(), "dev"))
    assert res.reused == 4 and services.model.calls == 10
