from dataclasses import dataclass

import pytest

from ratchet.loop.analysis import analyse_failures
from ratchet.loop.decision import decide_dev
from ratchet.loop.memory import Lesson, draft_next_step, lesson_text, recall, render_memory_md, write_memory_md
from ratchet.types import Trajectory


def _traj(task, epoch=0, score=0.0, **kw):
    return Trajectory(task_id=task, epoch=epoch, seed=epoch, score=score, **kw)


def test_analysis_groups_by_signal_with_diverse_examples():
    trajs = [
        _traj("a", 0, output="5", feedback="expected 7"),
        _traj("a", 1, output="6", feedback="expected 7"),
        _traj("b", 0, output="1", feedback="expected 2"),
        _traj("c", 0, output="", feedback=""),
        _traj("d", 0, loop=True, output="x"),
        _traj("e", 0, error="Timeout after 120s", steps=8),
        _traj("f", 0, score=1.0, output="ok"),
    ]
    inputs = {t: f"question {t}" for t in "abcdef"}
    report = analyse_failures(trajs, inputs, max_examples=2)
    assert report.total == 7 and report.failed == 6
    assert report.summary() == {"wrong_answer": 3, "format": 1, "loop": 1, "timeout": 1}
    wrong = report.groups[0]
    assert wrong.signal == "wrong_answer" and wrong.tasks == 2
    assert {ex.task_id for ex in wrong.examples} == {"a", "b"}  # two tasks, not two epochs of one
    prompt = report.to_prompt()
    assert "6 of 7 dev rollouts failed" in prompt
    assert "question e" in prompt and "Timeout after 120s" in prompt and "expected 2" in prompt
    assert "question f" not in prompt


def test_analysis_clips_long_text_and_handles_no_failures():
    long = "x" * 5000
    report = analyse_failures([_traj("a", output=long)], {"a": long}, max_examples=1)
    assert len(report.to_prompt()) < 1200
    clean = analyse_failures([_traj("a", score=1.0)], {}, max_examples=3)
    assert clean.summary() == {} and "no failures" in clean.to_prompt()


def test_analysis_refuses_non_dev_trajectories():
    @dataclass
    class SplitTrajectory(Trajectory):
        split: str = "dev"

    ok = SplitTrajectory(task_id="a", epoch=0, seed=0, split="dev")
    leak = SplitTrajectory(task_id="b", epoch=0, seed=0, split="holdout")
    assert analyse_failures([ok], {}, max_examples=1).failed == 1
    with pytest.raises(ValueError, match="holdout"):
        analyse_failures([ok, leak], {}, max_examples=1)


def _lesson(round_, decision, signals, created_at):
    return Lesson(
        run_id="r1", round=round_, candidate=f"c{round_}", change_summary=f"change {round_}.",
        hypothesis=f"hypothesis {round_}.", effect=0.05 * round_, ci_low=-0.02, ci_high=0.1,
        decision=decision, next_step=f"next {round_}.", signals=signals, created_at=created_at,
    )


LESSONS = [
    _lesson(1, "rejected", {"format": 5}, "2025-01-01T00:00:01+00:00"),
    _lesson(2, "confirmed", {"format": 3, "wrong_answer": 4}, "2025-01-01T00:00:02+00:00"),
    _lesson(3, "rejected", {"loop": 2}, "2025-01-01T00:00:03+00:00"),
    _lesson(4, "rejected", {"format": 1, "wrong_answer": 1}, "2025-01-01T00:00:04+00:00"),
]


def test_recall_ranks_by_overlap_then_kept_then_recent():
    ranked = recall(LESSONS, {"format": 6, "wrong_answer": 2}, k=3)
    assert [les.round for les in ranked] == [2, 4, 1]  # full overlap: kept first, then newer; partial next
    assert [les.round for les in recall(LESSONS, {"loop": 9}, k=2)] == [3, 2]  # no overlap: kept, then newest
    assert recall(LESSONS, {}, k=0) == []


def test_memory_md_is_newest_first_and_written_atomically(tmp_path):
    text = render_memory_md(LESSONS)
    positions = [text.index(f"## Round {r} ") for r in (4, 3, 2, 1)]
    assert positions == sorted(positions)
    assert "[-0.020, +0.100]" in text
    path = tmp_path / "run" / "memory.md"
    write_memory_md(path, LESSONS)
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["memory.md"]  # no temp file left behind
    line = lesson_text(LESSONS[1])
    assert "Round 2 (confirmed)" in line and "+0.100" in line and "next 2." in line


def test_draft_next_step_follows_the_decision():
    parent = {f"t{i}": [0.0, 0.0] for i in range(30)}
    better = {f"t{i}": [1.0, 1.0] for i in range(30)}
    kept = draft_next_step(decide_dev(parent, better), {"format": 7, "loop": 2})
    assert kept.startswith("Kept") and "format (7)" in kept
    hurt = draft_next_step(decide_dev(better, parent), {"loop": 2})
    assert hurt.startswith("It hurt") and "loop (2)" in hurt


def test_a_dev_gain_that_holdout_did_not_confirm_is_not_called_kept():
    from ratchet.loop.decision import decide_dev
    from ratchet.loop.memory import draft_next_step

    parent = {f"t{i}": [0.0] for i in range(30)}
    cand = {f"t{i}": [1.0 if i < 12 else 0.0] for i in range(30)}
    stats = decide_dev(parent, cand)
    assert stats.accepted
    assert draft_next_step(stats, {}).startswith("Kept") and draft_next_step(stats, {}, kept=True).startswith("Kept")
    text = draft_next_step(stats, {"format": 3}, kept=False)
    assert "holdout did not confirm" in text and "Kept" not in text and "format (3)" in text
