"""Fault injection: SIGKILL `ratchet evolve` (a real subprocess) at random points >= 30 times, resume it
with `--resume` each time, and check that the result is exactly that of an uninterrupted run.

The project is tiny and the model scripted (deterministic), so two runs with the same seeds must make
the same proposals, measure the same scores and take the same decisions. Checked after the kills:
every round recorded once (no gap, no duplicate), ledger rows and git refs agree, every finished
evaluation holds exactly its rollouts, memory.md is whole, and candidates, commit trees, decisions,
lessons and the closing table equal the reference run's.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import PROJECT_TOML, make_project_dir
from ratchet.ledger import Ledger
from ratchet.loop.gitrepo import CandidateRepo

MIN_KILLS = 30
ROUNDS = 3
N_TASKS = 16

SCRIPTED_MODEL = '''
import re

def reply(messages, params):
    """Right when temperature <= 0.3, off by one otherwise: a knob the search can find."""
    m = re.search(r"(-?\\d+)\\s*([+\\-*])\\s*(-?\\d+)", messages[-1]["content"])
    if not m:
        return "I do not know."
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return str(value if params.temperature <= 0.3 else value + 1)
'''


def scripted_project(root: Path, n_tasks: int = N_TASKS, toml: str = PROJECT_TOML) -> Path:
    """The conftest project (jsonl arithmetic, search proposer) on the scripted backend."""
    toml = toml.replace('name = "arith-fake"', 'name = "arith-fake"\nscript = "model.py"')
    make_project_dir(root, n_tasks=n_tasks, toml=toml)
    (root / "model.py").write_text(SCRIPTED_MODEL)
    return root


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a `ratchet` subprocess: its own TMPDIR (to find what it leaves), wide plain output."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env.update(TMPDIR=str(tmp), COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1", **extra)
    return env


def ratchet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ratchet.cli", *args]


# -- the kill loop ---------------------------------------------------------------------------------


@dataclass
class KillLog:
    kills: int = 0
    sessions: int = 0
    rounds: int = 0  # the run's final round budget (raised when it finished before enough kills landed)
    fresh_starts: int = 0  # kills that landed before the run existed, so the next start had nothing to resume
    landed_after: list[str] = field(default_factory=list)  # the last line printed before each kill


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:100] if lines else "(nothing printed yet)"


def _session(argv: list[str], cwd: Path, env: dict[str, str], out_path: Path, kill_at: tuple[str, float] | None,
             ready_marker: str, timeout_s: float) -> tuple[int | None, str]:
    """Run once; with kill_at = ("launch" | "ready", delay) SIGKILL it that long after launch or after the
    ready marker is printed. Returns (exit code or None when killed, output)."""
    with out_path.open("w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    started = time.monotonic()
    ready_at = None
    while proc.poll() is None:
        now = time.monotonic()
        if now - started > timeout_s:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{argv} ran past {timeout_s}s:\n{out_path.read_text()[-3000:]}")
        if kill_at is not None:
            mode, delay = kill_at
            if ready_at is None and mode == "ready" and ready_marker in out_path.read_text(errors="replace"):
                ready_at = now
            base = started if mode == "launch" else ready_at
            if base is not None and now - base >= delay:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                text = out_path.read_text(errors="replace")
                return (None, text) if proc.returncode == -signal.SIGKILL else (proc.returncode, text)
        time.sleep(0.01)
    return proc.returncode, out_path.read_text(errors="replace")


def kill_and_resume(argv_for: Callable[[int, bool], list[str]], rounds: int, cwd: Path, env: dict[str, str],
                    work: Path, *, min_kills: int, seed: int, ready_marker: str, max_after_ready_s: float = 2.0,
                    session_timeout_s: float = 300.0, nothing_to_resume: str = "nothing to resume") -> KillLog:
    """Run `argv_for(rounds, resume)`; SIGKILL it at random points and restart it with resume=True until
    `min_kills` kills have landed on a live process, then let it finish (raising the round budget when
    it finished too early). A quarter of the kills land at a random moment after launch (imports,
    opening the ledger, the seed commit), the rest within `max_after_ready_s` of the loop starting
    (mid-round: proposals, commits, rollouts, decisions, lessons)."""
    rng = random.Random(seed)
    log = KillLog(rounds=rounds)
    startup_s = 2.0
    resume = False
    while True:
        if log.kills < min_kills:
            kill_at = (("launch", rng.uniform(0.05, startup_s)) if rng.random() < 0.25
                       else ("ready", rng.uniform(0.0, max_after_ready_s)))
        else:
            kill_at = None
        t0 = time.monotonic()
        code, text = _session(argv_for(log.rounds, resume), cwd, env, work / f"session-{log.sessions:03d}.log",
                              kill_at, ready_marker, session_timeout_s)
        log.sessions += 1
        if ready_marker in text and log.sessions == 1:
            startup_s = max(0.5, time.monotonic() - t0)
        if code is None:
            log.kills += 1
            log.landed_after.append(_last_line(text))
            resume = True
            continue
        if code != 0 and nothing_to_resume in text:  # killed before the run was written: start it afresh
            log.fresh_starts += 1
            resume = False
            continue
        assert code == 0, f"session {log.sessions} exited with {code} after {log.kills} kills:\n{text[-4000:]}"
        if log.kills >= min_kills:
            return log
        log.rounds += 1  # finished before enough kills landed: one more round to kill in
        resume = True


def evolve_argv(project: Path) -> Callable[[int, bool], list[str]]:
    def argv(rounds: int, resume: bool) -> list[str]:
        return ratchet_argv("evolve", str(project), "--rounds", str(rounds), *(["--resume"] if resume else []))

    return argv


# -- what a finished run looks like ------------------------------------------------------------------


def _tree(repo_dir: Path, commit: str | None) -> str | None:
    if not commit:
        return None
    out = subprocess.run(["git", "rev-parse", f"{commit}^{{tree}}"], cwd=repo_dir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run_record(project: Path, ledger_url: str | None = None, run_id: str | None = None) -> dict:
    """Everything that must match between two runs, with run ids, commit shas and times taken out."""
    ledger = Ledger(ledger_url or f"sqlite:///{project / '.ratchet' / 'ledger.sqlite'}")
    try:
        (run,) = [r for r in ledger.runs("evolve") if run_id in (None, r["id"])]
        rid = run["id"]

        def norm(value):
            return json.loads(json.dumps(value).replace(rid, "RUN"))

        harness = project / "harness"
        cands = ledger.candidates(rid)
        rounds = [{
            "round": c["round"], "parent": norm(c["parent_id"]), "status": c["status"], "proposer": c["proposer"],
            "summary": c["summary"], "rationale": c["rationale"], "hypothesis": c["hypothesis"], "diff": c["diff"],
            "tree": _tree(harness, c["commit"]), "decision": norm(c["decision"]), "dev_mean": c["cost"].get("dev_mean"),
        } for c in cands]
        lessons = [(les["round"], norm(les["text"])) for les in ledger.lessons(rid)]
        evals = {}
        for ev in ledger.evals(rid):
            scores = sorted((t.task_id, t.epoch, t.score, t.output) for t in ledger.rollouts(ev["id"]))
            evals[ev["id"]] = {"status": ev["status"], "split": ev["split"], "n_tasks": ev["n_tasks"], "rollouts": scores}
        summary = run["summary"]
        table = [{k: v for k, v in row.items() if k != "commit"} for row in summary.get("table", [])]
        memory = re.sub(r"(?m)^\*[^,]+, run [^;]+;", "*TIME, run RUN;", (project / "memory.md").read_text())
        return {
            "run_id": rid, "status": run["status"], "rounds": rounds, "lessons": lessons, "evals": evals,
            "best_tree": _tree(harness, summary["best_commit"]), "table": norm(table),
            "seed_dev": summary["seed_dev"], "best_dev": summary["best_dev"], "memory": memory.replace(rid, "RUN"),
            "candidate_commits": {c["round"]: c["commit"] for c in cands if c["commit"]},
            "best_commit": summary["best_commit"],
        }
    finally:
        ledger.close()


def assert_consistent(project: Path, rec: dict, rounds: int, epochs: int = 1) -> None:
    """Within one run: each round once, ledger and git refs agree, finished evaluations are whole."""
    assert rec["status"] == "finished"
    assert [r["round"] for r in rec["rounds"]] == list(range(1, rounds + 1)), "a round was lost or duplicated"
    assert [r for r, _ in rec["lessons"]] == list(range(1, rounds + 1)), "a lesson was lost or duplicated"
    assert all(r["status"] in {"accepted", "rejected", "guard_rejected", "duplicate", "failed"} for r in rec["rounds"])
    repo = CandidateRepo(project / "harness", rec["run_id"], state_dir=project / ".ratchet")
    refs = repo.refs()
    expected = {f"cand/{n}": sha for n, sha in rec["candidate_commits"].items()}
    expected.update(best=rec["best_commit"], branch=rec["best_commit"])
    assert repo.verify_refs(expected) == []
    assert set(refs) == set(expected) | {"seed"}, f"refs the ledger does not know: {set(refs) - set(expected)}"
    for ev in rec["evals"].values():
        keys = [(task, epoch) for task, epoch, _, _ in ev["rollouts"]]
        assert len(keys) == len(set(keys)), "a rollout was recorded twice"
        if ev["status"] == "done":  # a row first opened for dev's first slice grows to all of dev
            assert len(keys) >= ev["n_tasks"] * epochs
    git_dir = project / "harness" / ".git"
    assert not list(git_dir.rglob("*.lock")), "a git lock file was left behind"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project / "harness", capture_output=True, text=True)
    assert status.stdout == "", f"the user's working tree was touched:\n{status.stdout}"
    assert "value = 0.9" in (project / "harness" / "params.toml").read_text()
    memory = rec["memory"]
    assert memory.startswith("# Memory") and f"{rounds} lessons" in memory


def assert_same_run(killed: dict, reference: dict) -> None:
    for key in ("rounds", "lessons", "evals", "best_tree", "table", "seed_dev", "best_dev", "memory"):
        assert killed[key] == reference[key], f"{key} differs from the uninterrupted run"


def leftover_processes(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmd:
                found.append(cmd.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def reference_run(argv_for: Callable[[int, bool], list[str]], rounds: int, env: dict[str, str]) -> float:
    """The uninterrupted run; returns its wall time (the kill loop spreads its kills over about that)."""
    started = time.monotonic()
    ref = subprocess.run(argv_for(rounds, False), env=env, capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    return time.monotonic() - started


def extend_reference(argv_for: Callable[[int, bool], list[str]], rounds: int, env: dict[str, str]) -> None:
    """Raise a finished reference run's budget to `rounds`, as the kill loop did when it finished early."""
    ref = subprocess.run(argv_for(rounds, True), env=env, capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]


@pytest.mark.slow
def test_evolve_survives_30_sigkills_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed_dir = scripted_project(tmp_path / "killed")
    reference_dir = scripted_project(tmp_path / "reference")
    ref_env = cli_env(tmp_path / "tmp-ref")
    ref_s = reference_run(evolve_argv(reference_dir), ROUNDS, ref_env)
    started = time.monotonic()
    # kills up to twice the run's time / the number of kills after each restart: spread over the whole run
    log = kill_and_resume(evolve_argv(killed_dir), ROUNDS, tmp_path, cli_env(tmp_path / "tmp-killed"), tmp_path,
                          min_kills=MIN_KILLS, seed=7, ready_marker="run evolve-",
                          max_after_ready_s=max(1.0, 2 * ref_s / MIN_KILLS))
    killed_s = time.monotonic() - started
    assert leftover_processes(str(tmp_path)) == [], "a killed session left processes running"
    assert not list((tmp_path / "tmp-killed").glob("ratchet-sb-*")), "killed sessions' sandbox dirs were not swept"
    if log.rounds > ROUNDS:
        extend_reference(evolve_argv(reference_dir), log.rounds, ref_env)

    killed, reference = run_record(killed_dir), run_record(reference_dir)
    assert_consistent(killed_dir, killed, log.rounds)
    assert_consistent(reference_dir, reference, log.rounds)
    assert_same_run(killed, reference)
    assert any(r["status"] == "accepted" for r in killed["rounds"]), "the run should keep a change (sanity)"
    print(f"\nevolve: {log.kills} SIGKILLs survived over {log.sessions} sessions ({log.fresh_starts} before the run "
          f"existed) in {killed_s:.0f}s (uninterrupted: {ref_s:.0f}s); {log.rounds} rounds identical to the "
          f"uninterrupted run; kills by rounds finished at the time: {where_kills_landed(log)}")


def where_kills_landed(log: KillLog, pattern: str = r"^round\s+(\d+)|resuming after round (\d+)", offset: int = 0) -> dict[int, int]:
    """How many kills landed with 0, 1, 2... rounds finished, read off the last line printed before each
    (`pattern` captures a round number; `offset` turns it into rounds finished)."""
    counts: dict[int, int] = {}
    for line in log.landed_after:
        m = re.search(pattern, line)
        done = int(next(g for g in m.groups() if g)) + offset if m else 0
        counts[done] = counts.get(done, 0) + 1
    return dict(sorted(counts.items()))


# -- the kill switch: Ctrl-C --------------------------------------------------------------------------


def _interrupt_when(argv: list[str], env: dict[str, str], ready: Callable[[str], bool], out_path: Path,
                    timeout_s: float = 300) -> tuple[int, str]:
    """Run `argv`, send SIGINT once `ready(output so far)` holds, return (exit code, output)."""
    with out_path.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while not ready(out_path.read_text(errors="replace")):
        assert proc.poll() is None, f"ended before it could be interrupted:\n{out_path.read_text()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("Ctrl-C did not stop it within 120 s") from None
    return proc.returncode, " ".join(out_path.read_text(errors="replace").split())


@pytest.mark.slow
def test_ctrl_c_stops_evolve_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    root = scripted_project(tmp_path / "p")
    env = cli_env(tmp_path / "tmp")
    code, out = _interrupt_when(evolve_argv(root)(3, False), env, lambda text: "round   1" in text, tmp_path / "out.log")
    assert code == 130 and "stopped: interrupted (Ctrl-C)" in out and "--resume" in out and "Traceback" not in out, out[-2000:]
    done = subprocess.run(evolve_argv(root)(3, True), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    rec = run_record(root)
    assert_consistent(root, rec, 3)
    ledger = Ledger(f"sqlite:///{root / '.ratchet' / 'ledger.sqlite'}")
    assert [e["data"]["reason"] for e in ledger.events(rec["run_id"], "stop")] == ["interrupted (Ctrl-C)"]
    ledger.close()


def test_ctrl_c_stops_eval_and_keeps_the_finished_rollouts(tmp_path: Path) -> None:
    import json
    import sqlite3

    root = scripted_project(tmp_path / "p")
    rows = [json.dumps({"id": f"q{i}", "input": f"Calculate {i} + {2 * i + 1}.", "answer": 3 * i + 1}) for i in range(80)]
    (root / "tasks.jsonl").write_text("\n".join(rows) + "\n")
    db = root / ".ratchet" / "ledger.sqlite"

    def some_rollouts(_text: str) -> bool:
        try:
            with sqlite3.connect(db) as c:
                return c.execute("select count(*) from rollouts").fetchone()[0] >= 5
        except sqlite3.Error:
            return False

    env = cli_env(tmp_path / "tmp")
    code, out = _interrupt_when(ratchet_argv("eval", str(root)), env, some_rollouts, tmp_path / "out.log")
    assert code == 130 and "rollouts recorded; run the same command again to finish" in out and "Traceback" not in out, out
    with sqlite3.connect(db) as c:
        kept = c.execute("select count(*) from rollouts").fetchone()[0]
    assert kept >= 5
    done = subprocess.run(ratchet_argv("eval", str(root)), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    result = json.loads((root / ".ratchet" / "eval-dev.json").read_text())
    assert result["reused"] == kept and result["n_rollouts"] > kept  # nothing lost, nothing run twice
