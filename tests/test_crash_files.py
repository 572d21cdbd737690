"""What a crash leaves on disk: a writer SIGKILLed at random moments (or hitting a full disk) leaves
the ledger consistent with every row whole, memory.md either the old or the new document, and
worktree checkouts either complete or absent."""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratchet.ledger import Ledger
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.memory import Lesson, render_memory_md, write_memory_md

KILLS = 10
SRC = str(Path(__file__).resolve().parents[1] / "src")


def kill_at_random(code: str, cwd: Path, rng: random.Random, low: float, high: float) -> None:
    """Start `python -c code`, wait until it prints "ready" (imports done: it writes from then on in a
    loop), let it write for a random while, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env={**os.environ, "PYTHONPATH": SRC},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()[-2000:]
    time.sleep(rng.uniform(low, high))
    assert proc.poll() is None, f"the writer died by itself: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def lesson(i: int, size: int) -> Lesson:
    return Lesson(run_id="run", round=i, candidate=f"c{i}", change_summary="x" * size, hypothesis="h", effect=0.1,
                  ci_low=0.0, ci_high=0.2, decision="rejected", next_step="n", signals={"wrong_answer": 1},
                  created_at="2026-01-01T00:00:00+00:00")


MEMORY_WRITER = """
import itertools
from ratchet.loop.memory import Lesson, write_memory_md
print("ready", flush=True)
for n in itertools.count(1):  # ever longer documents, so a torn write would show
    lessons = [Lesson(run_id="run", round=i, candidate=f"c{i}", change_summary="x" * 20000, hypothesis="h",
                      effect=0.1, ci_low=0.0, ci_high=0.2, decision="rejected", next_step="n",
                      signals={"wrong_answer": 1}, created_at="2026-01-01T00:00:00+00:00") for i in range(1, n % 40 + 2)]
    write_memory_md("memory.md", lessons)
"""


def test_memory_md_is_always_a_whole_document_after_a_kill(tmp_path: Path) -> None:
    rng = random.Random(3)
    whole = {render_memory_md([lesson(i, 20000) for i in range(1, n + 1)]) for n in range(1, 42)}
    write_memory_md(tmp_path / "memory.md", [lesson(1, 20000)])
    for _ in range(KILLS):
        kill_at_random(MEMORY_WRITER, tmp_path, rng, 0.05, 0.6)
        assert (tmp_path / "memory.md").read_text() in whole, "memory.md was left half-written"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "memory.md"]
    assert all(name.startswith(".memory.md.") for name in leftovers)  # only the killed writer's temp files


def test_a_full_disk_leaves_the_old_memory_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "memory.md"
    write_memory_md(path, [lesson(1, 10)])
    before = path.read_text()
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text: str) -> int:
            self.f.write(text[: len(text) // 2])  # half of it fits, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError, match="No space left"):
        write_memory_md(path, [lesson(i, 5000) for i in range(1, 10)])
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["memory.md"], "the temp file must be removed"


LEDGER_WRITER = """
import itertools, sys
from ratchet.ledger import Ledger
from ratchet.types import Trajectory
lg = Ledger(sys.argv[1])
lg.open_eval("ev", run_id=None, candidate_id=None, harness="h", model="m", suite="s", suite_fingerprint="f",
             split="dev", epochs=1, seed=0, n_tasks=10**9)
print("ready", flush=True)
for i in itertools.count():
    lg.add_rollout("ev", Trajectory(task_id=f"t{i}", epoch=0, seed=i, output=str(i) * 50, score=1.0,
                                    log="y" * (1000 + 37 * (i % 500)), messages=[{"i": i, "pad": "z" * (i % 300)}]))
"""


def test_ledger_rows_are_whole_after_kills(tmp_path: Path) -> None:
    rng = random.Random(5)
    db = tmp_path / "ledger.sqlite"
    url = f"sqlite:///{db}"
    code = LEDGER_WRITER.replace("sys.argv[1]", repr(url))
    for _ in range(KILLS):
        kill_at_random(code, tmp_path, rng, 0.05, 0.6)  # several sessions: the writer resumes at t0 each time
    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchall() == [("ok",)]
    lg = Ledger(url)
    trajs = lg.rollouts("ev")
    assert trajs, "the writer never wrote a row"
    for t in trajs:
        i = int(t.task_id[1:])
        assert t.output == str(i) * 50 and len(t.log) == 1000 + 37 * (i % 500) and t.messages == [{"i": i, "pad": "z" * (i % 300)}]
    ids = sorted(int(t.task_id[1:]) for t in trajs)
    assert ids == list(range(len(ids))), "rows are added in order, so a kill loses only the unfinished one"


WORKTREE_WRITER = """
import itertools, sys
from ratchet.loop.gitrepo import CandidateRepo
repo = CandidateRepo(sys.argv[1], "run1")
commits = sys.argv[2].split(",")
print("ready", flush=True)
for i in itertools.count():
    repo.worktree(commits[i % len(commits)], fresh=True)
"""


def test_worktrees_are_complete_or_absent_after_kills(tmp_path: Path) -> None:
    harness = tmp_path / "harness"
    harness.mkdir()
    for n in range(40):
        (harness / f"file{n}.txt").write_text(f"{n}\n" * 2000)
    repo = CandidateRepo(harness, "run1")
    seed = repo.ensure_repo()
    commits = [seed] + [repo.commit_candidate(seed, {f"file{n}.txt": f"v{v}\n" * 3000 for n in range(40)}, f"v{v}", number=v)
                        for v in range(1, 4)]
    expected = {c: repo.read_files(c) for c in commits}
    code = WORKTREE_WRITER.replace("sys.argv[1]", repr(str(harness))).replace("sys.argv[2]", repr(",".join(commits)))
    rng = random.Random(11)
    for _ in range(KILLS):
        kill_at_random(code, tmp_path, rng, 0.05, 0.6)
        for dest in repo.worktrees_dir.iterdir():
            if dest.name in expected:  # a finished checkout: every file, whole
                files = {p.relative_to(dest).as_posix(): p.read_text() for p in dest.rglob("*") if p.is_file()}
                assert files == expected[dest.name], f"checkout {dest.name[:12]} is incomplete"
    for c in commits:  # and the next use rebuilds or reuses them correctly
        dest = repo.worktree(c)
        assert {p.name for p in dest.iterdir()} == set(expected[c])
