"""Budgets that add up: each [guard] budget stops a real loop at the right place, nothing recorded is
lost, and `--resume` continues without counting anything twice.

The loop is the real one (engine, driver, sandboxed episodes, git, SQLite ledger) over a fake
arithmetic model whose calls are counted here, so "spent" can be checked against what really ran.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import PROJECT_TOML, ArithmeticModel, fake_project, make_project_dir
from ratchet.evolve.run import EvolveOptions, evolve


class CountingModel(ArithmeticModel):
    """The fake model, with a running count of the tokens of every call it answered."""

    totals = {"calls": 0, "prompt": 0, "completion": 0}

    async def chat(self, messages, params):
        completion = await super().chat(messages, params)
        self.totals["calls"] += 1
        self.totals["prompt"] += completion.prompt_tokens
        self.totals["completion"] += completion.completion_tokens
        return completion


def _project_dir(tmp_path: Path, guard: str = "") -> Path:
    toml = PROJECT_TOML.replace('[guard]\napprove = "never"\n', f'[guard]\napprove = "never"\n{guard}\n')
    return make_project_dir(tmp_path / "p", n_tasks=40, toml=toml)


def _set_guard(root: Path, old: str, new: str) -> None:
    path = root / "ratchet.toml"
    path.write_text(path.read_text().replace(old, new))


def _run(root: Path, model: ArithmeticModel, **opts):
    project = fake_project(root, model)
    try:
        outcome = asyncio.run(evolve(project, EvolveOptions(**opts), say=lambda _: None))
        run = project.ledger.run(outcome.run_id)
        recorded = [t for e in project.ledger.evals(outcome.run_id) for t in project.ledger.rollouts(e["id"])]
        events = project.ledger.events(outcome.run_id)
        usage = project.ledger.get_state(outcome.run_id, "usage")
        return outcome, run, recorded, events, usage
    finally:
        asyncio.run(project.aclose())


def test_rollout_budget_stops_between_evaluations_and_resume_counts_each_rollout_once(tmp_path):
    # dev has ~16 tasks: the seed's evaluation and round 1's parent evaluation pass 20, the next one may not start
    root = _project_dir(tmp_path, guard="max_rollouts = 20")
    first, run, recorded, events, usage = _run(root, ArithmeticModel(), rounds=2)
    assert first.status == "stopped" and "rollout budget reached" in first.reason
    assert first.by_budget  # the CLI exits 0 on it (stop_exit_code), 130 on a stop file or Ctrl-C
    stop = [e["data"] for e in events if e["kind"] == "budget_stop"]
    assert stop and stop[0]["inside_round"] == 1  # inside round 1, between its evaluations
    assert run["status"] == "stopped"
    assert usage["rollouts"] == len(recorded) >= 20  # every recorded rollout counted, none twice

    _set_guard(root, "max_rollouts = 20", "")
    second, run, recorded, events, usage = _run(root, ArithmeticModel(), rounds=2, resume=True)
    assert second.status == "finished" and second.run_id == first.run_id
    assert [r.round for r in second.rounds] == [1, 2]  # round 1 continued where it stopped
    assert usage["rollouts"] == len(recorded)  # reused rollouts (the seed's, round 1's parent) not re-added
    assert run["summary"]["usage"]["rollouts"] == len(recorded)


def test_token_budget_counts_proposer_calls_and_survives_a_resume(tmp_path):
    # proposer = "llm" on the fake model: its replies are no usable edit, so every round is a failed proposal
    # that still spent proposer tokens
    CountingModel.totals = {"calls": 0, "prompt": 0, "completion": 0}
    root = _project_dir(tmp_path)  # no [loop] proposer_model: the proposer talks to the project's model
    _set_guard(root, 'proposer = "search"', 'proposer = "llm"')
    first, _run_row, recorded, _events, usage = _run(root, CountingModel(), rounds=1)
    assert first.status == "finished"
    spent_by_model = CountingModel.totals["prompt"] + CountingModel.totals["completion"]
    rollout_tokens = sum(t.tokens for t in recorded)
    assert usage["proposer_tokens"] > 0 and usage["tokens"] == rollout_tokens + usage["proposer_tokens"]
    assert usage["tokens"] == spent_by_model  # what the model answered, exactly: nothing missed, nothing twice

    budget = usage["tokens"] + 1  # round 2's proposal crosses it; round 3 must not start
    _set_guard(root, 'approve = "never"', f'approve = "never"\nmax_tokens = {budget}')
    second, run, recorded, events, usage = _run(root, CountingModel(), rounds=5, resume=True)
    assert second.status == "finished" and "token budget reached" in second.reason
    assert [r.round for r in second.rounds] == [2]
    assert usage["tokens"] == CountingModel.totals["prompt"] + CountingModel.totals["completion"]
    assert usage["tokens"] >= budget and run["summary"]["usage"]["tokens"] == usage["tokens"]
    assert any(e["kind"] == "budget_stop" and "token budget" in e["data"]["reason"] for e in events)


def test_money_budget_prices_prompt_and_completion_tokens_apart(tmp_path):
    # $1 per prompt token, $10 per completion token: the seed's evaluation alone costs more than $150
    root = _project_dir(tmp_path, guard="max_cost_usd = 150.0")
    _set_guard(root, 'name = "arith-fake"\n', 'name = "arith-fake"\nusd_per_mtok_prompt = 1000000.0\n'
                                              'usd_per_mtok_completion = 10000000.0\n')
    outcome, run, recorded, events, usage = _run(root, ArithmeticModel(), rounds=3)
    expected = sum(t.prompt_tokens * 1.0 + t.completion_tokens * 10.0 for t in recorded)
    assert abs(usage["cost_usd"] - expected) < 1e-6 and expected >= 150
    assert "money budget reached" in outcome.reason and outcome.rounds == []  # stopped before round 1 began
    assert run["summary"]["budget"]["cost_usd"][0] >= 150


def test_wall_time_budget_stops_cleanly_and_resume_keeps_the_clock(tmp_path):
    root = _project_dir(tmp_path, guard="max_wall_s = 0.5")  # the seed's evaluation alone takes longer
    first, _run_row, recorded, events, usage = _run(root, ArithmeticModel(), rounds=2)
    assert "wall-time budget reached" in first.reason and first.rounds == []
    assert any(e["kind"] == "budget_stop" for e in events)
    before = usage["wall_s"]
    _set_guard(root, "max_wall_s = 0.5", "")
    second, _run_row, recorded2, _events, usage = _run(root, ArithmeticModel(), rounds=1, resume=True)
    assert second.status == "finished" and [r.round for r in second.rounds] == [1]
    assert usage["wall_s"] > before  # the clock went on from where it was
    assert usage["rollouts"] == len(recorded2)  # the seed's rollouts were reused, not re-run or re-counted
    assert {(t.task_id, t.epoch, t.seed) for t in recorded} <= {(t.task_id, t.epoch, t.seed) for t in recorded2}
