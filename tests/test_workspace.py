"""The proposer workspace: what it holds, the selection rule for trajectories, its size bounds, the history read
through Decision, and what it never holds (protected files, holdout figures, gold answers)."""

from conftest import SEED_PARAMS
from ratchet.evolve.arena import GOLD_WITHHELD, redact_gold
from ratchet.harness.params import parse_params
from ratchet.ledger import Ledger
from ratchet.loop.decision import DecisionStats
from ratchet.loop.record import Decision, HoldoutRecord
from ratchet.loop.trajectory_view import ViewLimits, render, select
from ratchet.loop.workspace import WorkspaceInputs, history_entries, write_workspace
from ratchet.types import Trajectory

FILES = {"harness.py": "def solve(task, ctx):\n    return ctx.llm(task.input)\n", "params.toml": SEED_PARAMS,
         "scorers/score.py": "GOLD = 1\n", "data/tasks.jsonl": "{}\n", "ratchet.toml": "[project]\n"}


def _traj(task, score=0.0, steps=1, tokens=10, epoch=0, **kw) -> Trajectory:
    call = {"request": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": f"question {task}"}],
            "params": {"temperature": 0.9, "top_p": 1.0, "max_tokens": 64, "seed": 7}, "replies": ["41"]}
    kw = {"output": "41", "feedback": "wrong", **kw}
    return Trajectory(task_id=task, epoch=epoch, seed=3, messages=[call], score=score, steps=steps, tokens=tokens, **kw)


def test_selection_is_round_robin_over_signals_shortest_first_one_per_task():
    trajs = ([_traj(f"w{i}", steps=i + 1) for i in range(5)] + [_traj("w0", epoch=1, steps=9)]
             + [_traj(f"f{i}", steps=3 - i, output="") for i in range(2)]
             + [_traj("c0", error="crash: boom")] + [_traj(f"ok{i}", score=1.0, steps=3 - i) for i in range(3)])
    chosen = select(trajs, failures=5, successes=2)
    # wrong_answer (5 rollouts) first, then format (2), crash (1); shortest first within each; w0 once only
    assert [t.task_id for t in chosen] == ["w0", "f1", "c0", "w1", "f0", "ok2", "ok1"]


def test_workspace_holds_the_parent_its_trajectories_history_and_brief(tmp_path):
    big = _traj("big", tool_calls=[{"name": "python", "args": ["x" * 50_000], "result": "y" * 50_000}],
                log="z" * 50_000)
    trajs = [(big, "a long task " * 2000)] + [(_traj(f"t{i}", steps=2 + i), f"input {i}") for i in range(12)]
    limits = ViewLimits(failures=8, successes=2, file_bytes=3000, total_bytes=4500)
    w = WorkspaceInputs("run", 3, FILES, parse_params(SEED_PARAMS), trajs, lessons=["Round 1: lower the temperature"],
                        failure_summary={"wrong_answer": 13}, parent_score=0.25, budget={"rollouts": [40, 200]},
                        agent_limits=(24, 1000), can_probe=True)
    ws = write_workspace(tmp_path / "r003", w, limits)
    names = sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file())
    assert {"BRIEF.md", "history.md", "lessons.md", "harness/harness.py", "harness/params.toml",
            "trajectories/INDEX.md"} <= set(names)
    assert not any(n.startswith(("harness/scorers", "harness/data", "harness/ratchet")) for n in names)  # protected
    shown = [ws / n for n in names if n.startswith("trajectories/0")]
    assert all(p.stat().st_size <= 3000 for p in shown) and sum(p.stat().st_size for p in shown) <= 4500
    index = (ws / "trajectories" / "INDEX.md").read_text()
    assert "round-robin across signals" in index and "left out for space" in index
    text = (ws / "trajectories" / shown[0].name).read_text()
    assert "temperature=0.9" in text and "[system]" in text and "characters cut" in text
    brief = (ws / "BRIEF.md").read_text()
    assert "skills/NAME.py" in brief and "`[skills]`" in brief and "rollouts 40/200" in brief and "24 steps" in brief
    assert "PROPOSAL.md" in brief and "RATIONALE:" in brief
    assert "lower the temperature" in (ws / "lessons.md").read_text()
    # written again (a resumed round): replaced whole, nothing stale left
    (ws / "stale.txt").write_text("x")
    write_workspace(tmp_path / "r003", w, limits)
    assert not (ws / "stale.txt").exists()


def test_one_render_respects_its_bound_and_keeps_every_section():
    t = _traj("x", tool_calls=[{"name": "calc", "args": ["1+1"], "error": "ValueError('no')"}], log="printed\n")
    text = render(t, "What is 1+1?", limit=100_000)
    for part in ("## Input", "## Output", "## Scorer feedback", "## Process signals", "## Model calls (1)",
                 "## Tool calls (1)", "error: ValueError", "## Log"):
        assert part in text
    assert len(render(t, "q" * 100_000, limit=2000).encode()) <= 2000


def _stats(diff: float, p: float) -> DecisionStats:
    return DecisionStats(n_tasks=8, mean_parent=0.2, mean_cand=0.2 + diff, mean_diff=diff, ci_low=diff - 0.1,
                         ci_high=diff + 0.1, p_value=p, alpha=0.05, accepted=p < 0.05, reason="paired test")


def test_history_reads_decisions_and_shows_holdout_only_as_its_verdict(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}")
    run = ledger.create_run("evolve", "p", {})
    hold = HoldoutRecord(confirmed=False, holdout_diff=-0.0123, noisy_diff=-0.0456, ci_low=-0.2, ci_high=0.1,
                         p_value=0.61, budget_left=19, reason="not confirmed: holdout 0.3123 vs 0.3246",
                         mean_parent=0.3246, mean_cand=0.3123)
    ledger.add_candidate(id=f"{run}-r001", run_id=run, round=1, parent_id="seed", proposer="llm", summary="cot prompt",
                         hypothesis="fewer wrong answers", status="rejected", diff="--- a/x\n+++ b/x\n",
                         decision=Decision("rejected", hold.reason, dev=_stats(0.25, 0.01), holdout=hold).to_json())
    ledger.add_candidate(id=f"{run}-r002", run_id=run, round=2, parent_id="seed", proposer="search", summary="t=0.1",
                         status="rejected", decision=Decision("rejected", "futile", slice=_stats(-0.3, 0.02)).to_json())
    ledger.add_candidate(id=f"{run}-r003", run_id=run, round=3, parent_id="seed", proposer="agent", summary="later",
                         status="proposed", decision={})
    entries = history_entries(ledger, run, before_round=3)
    assert [e["round"] for e in entries] == [1, 2]
    w = WorkspaceInputs(run, 3, FILES, parse_params(SEED_PARAMS), None, history=entries, failures_prompt="seed-0: crash")
    ws = write_workspace(tmp_path / "r003", w)
    history = (ws / "history.md").read_text()
    assert "effect on dev: +0.250 [+0.150, +0.350], p=0.01" in history and "holdout: not confirmed" in history
    assert "stopped early" in history and "- decision: futile" in history
    for holdout_figure in ("0.3123", "0.3246", "0.0123", "0.0456", "0.61"):
        assert holdout_figure not in history
    assert (ws / "failures.md").read_text().startswith("# Dev failures") and not (ws / "trajectories").exists()


def test_gold_answers_are_cut_from_feedback():
    feedback = "wrong: '42' (found by rule last_number) does not numeric-match the answer '41'; expected 41"
    cut = redact_gold(feedback, "41")
    assert "41" not in cut and "'42'" in cut and cut.count(GOLD_WITHHELD) == 2
