"""A realistic evolve ledger for the dashboard tests, written only through Ledger's public methods.

Seven rounds on a 16-task arithmetic dev split (2 epochs) with paired scores: two accepted and
holdout-confirmed changes, a rejection, an early stop, a guard rejection, a duplicate, and a risky
change waiting for approval. Decisions come from the real decision rule and holdout mechanism, and
lessons from the real memory module, so every number on the pages is one the loop would write.
Swap this for a ledger from a real short evolve run by changing LEDGER_BUILDER in the tests.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.ledger import Ledger
from ratchet.loop.decision import decide_dev, decide_slice
from ratchet.loop.holdout import Thresholdout
from ratchet.loop.memory import Lesson, draft_next_step, lesson_text
from ratchet.loop.record import proposal_state_key
from ratchet.types import Trajectory

EPOCHS = 2
SYSTEM = "You are a careful calculator. Answer with the number only."


@dataclass
class DemoLedger:
    ledger: Ledger
    url: str
    run_id: str
    candidates: dict[str, str] = field(default_factory=dict)  # role -> candidate id
    waiting: str = ""  # the candidate at the approval gate


def _tasks(split: str, n: int) -> list[tuple[str, str, int]]:
    rng = random.Random(split)
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(2, 99)
        op = rng.choice("+-*")
        out.append((f"arith-{split}-{i:03d}", f"Calculate {a} {op} {b}.", {"+": a + b, "-": a - b, "*": a * b}[op]))
    return out


def _u(task: str, epoch: int) -> float:
    """The same (task, epoch) draws the same number for every harness: paired evaluation."""
    return int(hashlib.sha256(f"{task}:{epoch}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _trajectory(task: tuple[str, str, int], epoch: int, skill: float, jitter: str, temperature: float) -> Trajectory:
    tid, question, answer = task
    noise = (_u(tid + jitter, epoch) - 0.5) * 0.3 if jitter else 0.0
    solved = _u(tid, epoch) + noise < skill
    uses_tool = "*" in question
    wrong = answer + (1 if _u(tid, epoch + 7) < 0.5 else -10)
    output = str(answer) if solved else ("" if _u(tid, epoch + 3) < 0.15 else str(wrong))
    calls = [{"request": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
              "params": {"temperature": temperature, "max_tokens": 64}, "replies": [output or "I think the answer is"],
              "cached": epoch == 1 and temperature == 0.0}]
    tools = [{"skill": "calculator", "input": question.split("Calculate ")[1].rstrip("."), "output": str(answer)}] if uses_tool and solved else []
    feedback = "correct" if solved else ("no number in the output (format)" if not output else f"expected {answer}, got {output}")
    return Trajectory(task_id=tid, epoch=epoch, seed=int(_u(tid, epoch) * 1e6), messages=calls, tool_calls=tools,
                      output=output, score=1.0 if solved else 0.0, feedback=feedback, steps=1 + len(tools),
                      tokens=40 + len(question), seconds=0.2 + _u(tid, epoch) / 2)


def _evaluate(lg: Ledger, run_id: str, cand: str | None, harness: str, split: str, tasks, skill: float,
              jitter: str = "", temperature: float = 0.0) -> tuple[str, dict[str, list[float]]]:
    eval_id = f"ev-{hashlib.sha256(f'{harness}|{split}'.encode()).hexdigest()[:20]}"
    lg.open_eval(eval_id, run_id=run_id, candidate_id=cand, harness=harness, model="smollm2-135m-instruct",
                 suite="reasoning_gym:basic_arithmetic", suite_fingerprint="f" * 16, split=split, epochs=EPOCHS,
                 seed=0, n_tasks=len(tasks))
    scores: dict[str, list[float]] = {}
    tokens = 0
    for task in tasks:
        for epoch in range(EPOCHS):
            t = _trajectory(task, epoch, skill, jitter, temperature)
            lg.add_rollout(eval_id, t)
            scores.setdefault(t.task_id, []).append(t.score)
            tokens += t.tokens
    means = [sum(v) / len(v) for v in scores.values()]
    mean = sum(means) / len(means)
    se = (sum((m - mean) ** 2 for m in means) / (len(means) - 1) / len(means)) ** 0.5
    lg.finish_eval(eval_id, {"eval_id": eval_id, "split": split, "epochs": EPOCHS, "n_tasks": len(tasks),
                             "n_rollouts": len(tasks) * EPOCHS, "mean": mean, "se": se, "seconds": 9.5,
                             "tokens": tokens, "reused": 0})
    return eval_id, scores


def _diff(path: str, old: list[str], new: list[str], start: int = 1) -> str:
    body = [f"-{x}" for x in old] + [f"+{x}" for x in new]
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -{start},{len(old) + 1} +{start},{len(new) + 1} @@\n {'[temperature]' if path.endswith('.toml') else '# System'}\n"
            + "\n".join(body) + "\n")


# role, proposer, summary, hypothesis, diff, skill on dev, fate ("eval" | "guard" | "duplicate" | "wait")
ROUNDS = [
    ("temperature", "search", "temperature 0.7 -> 0.0", "Greedy decoding removes sampling slips on exact answers.",
     _diff("params.toml", ['value = 0.7'], ['value = 0.0']), 0.70, "eval"),
    ("show_work", "llm", "ask the model to show its work before the answer",
     "Writing intermediate steps helps multi-digit multiplication.",
     _diff("prompts/system.md", [SYSTEM], ["You are a careful calculator.", "Show your work, then give the number on the last line."]), 0.74, "eval"),
    ("calculator", "agent", "route every multiplication through the calculator skill",
     "Most remaining failures are wrong products; the calculator is exact.",
     _diff("prompts/system.md", [SYSTEM], [SYSTEM, "For any multiplication, call the calculator skill and copy its result."]), 0.86, "eval"),
    ("short_tokens", "search", "max_tokens 64 -> 8", "Fewer tokens cut cost without hurting short numeric answers.",
     _diff("params.toml", ['value = 64'], ['value = 8'], start=9), 0.40, "eval"),
    ("edit_scorer", "llm", "relax the scorer's number matching",
     "Answers like '391.0' are marked wrong.", _diff("suite/scorer.py", ["return out == gold"], ["return gold in out"]), 0.0, "guard"),
    ("repeat_temperature", "search", "temperature 0.7 -> 0.0", "Same as round 1.", "", 0.0, "duplicate"),
    ("new_program", "llm", "rewrite the agent program to retry once on an empty answer",
     "Empty outputs (format failures) become answers on the second try.",
     _diff("harness.py", ["    return await ctx.ask(task.input)"],
           ["    reply = await ctx.ask(task.input)", "    if not reply.strip():", "        reply = await ctx.ask(task.input + ' Answer with a number.')", "    return reply"], start=12),
     0.0, "wait"),
]

AGENT_STEPS = [
    {"step": 1, "tokens": 900, "tool": "read", "args": {"path": "BRIEF.md"}, "result": "BRIEF.md (lines 1-40 of 40):"},
    {"step": 2, "tokens": 1100, "tool": "read", "args": {"path": "trajectories/01-fail-wrong_answer-arith-dev-003.md"},
     "result": "trajectories/01-fail-wrong_answer-arith-dev-003.md (lines 1-60 of 60):"},
    {"step": 3, "tokens": 400, "error": "no JSON action in the reply. Reply with exactly one JSON object"},
    {"step": 4, "tokens": 1000, "tool": "edit", "args": {"path": "harness/prompts/system.md", "search": SYSTEM,
                                                          "replace": "... (120 chars)"}, "result": "saved harness/prompts/system.md"},
    {"step": 5, "tokens": 800, "tool": "run_episode", "args": {"task_id": "arith-dev-003"}, "result": "score 1.00 (ok)"},
    {"step": 6, "tokens": 920, "tool": "finish", "args": {"rationale": "wrong products", "hypothesis": "the calculator is exact"},
     "result": "finished: prompts/system.md"},
]


def build_demo_ledger(path: Path | str) -> DemoLedger:
    """Write the demo run into a new ledger: a SQLite file path, or a database URL (PostgreSQL)."""
    url = path if isinstance(path, str) and "://" in path else f"sqlite:///{path}"
    lg = Ledger(url)
    lg.create_run("eval", "arith", {"split": "dev"}, run_id="eval-20250101-090000-aaaaaa")
    run_id = lg.create_run("evolve", "arith", {"loop": {"rounds": 10, "alpha": 0.05}}, run_id="evolve-20250101-100000-d3m0ed")
    dev, hold = _tasks("dev", 16), _tasks("holdout", 24)
    seed_dev_eval, seed_dev = _evaluate(lg, run_id, None, "seed", "dev", dev, 0.45, temperature=0.7)
    _, seed_hold = _evaluate(lg, run_id, None, "seed", "holdout", hold, 0.45, temperature=0.7)
    mech = Thresholdout(budget=4, seed=0)
    demo = DemoLedger(lg, url, run_id)
    best, best_eval, best_dev, best_hold = None, seed_dev_eval, seed_dev, seed_hold
    totals = {"rollouts": 32 + 48, "tokens": 0, "seconds": 30.0}
    for rnd, (role, proposer, summary, hypothesis, diff, skill, fate) in enumerate(ROUNDS, start=1):
        cid = f"c{rnd:03d}-{hashlib.sha256(role.encode()).hexdigest()[:8]}"
        demo.candidates[role] = cid
        lg.add_candidate(id=cid, run_id=run_id, round=rnd, parent_id=best, commit=hashlib.sha1(cid.encode()).hexdigest(),
                         proposer=proposer, summary=summary, rationale=f"Failure analysis of the parent: {hypothesis}",
                         hypothesis=hypothesis, diff=diff, fingerprint=hashlib.sha256(diff.encode()).hexdigest()[:16],
                         status="proposed", decision={}, cost={})
        if proposer == "agent":  # the agent proposer's tool steps, as the engine stores a finished proposal's meta
            lg.set_state(run_id, proposal_state_key(run_id, rnd, cid), {"meta": {"steps": AGENT_STEPS, "tokens": 5120, "episodes": 1}})
        if fate == "guard":
            lg.update_candidate(cid, status="guard_rejected", decision={"final": "rejected", "reason": "guard: protected path",
                                "guard": ["suite/scorer.py is protected ([guard] protected_paths)"], "risky": []})
            lg.add_event("guard_reject", {"candidate": cid, "paths": ["suite/scorer.py"]}, run_id=run_id)
            continue
        if fate == "duplicate":
            lg.update_candidate(cid, status="duplicate", decision={"final": "rejected", "reason": f"same change as {demo.candidates['temperature']}"})
            continue
        if fate == "wait":
            demo.waiting = cid
            lg.update_candidate(cid, status="awaiting_approval", decision={"risky": ["edits the agent program harness.py"]})
            lg.add_event("approval_requested", {"candidate": cid}, run_id=run_id)
            continue
        cand_eval, cand_dev = _evaluate(lg, run_id, cid, cid, "dev", dev, skill, jitter=role if role == "show_work" else "")
        per_task = {t: sum(cand_dev[t]) / EPOCHS - sum(best_dev[t]) / EPOCHS for t in cand_dev}
        sl = decide_slice({t: best_dev[t] for t in list(best_dev)[:8]}, {t: cand_dev[t] for t in list(cand_dev)[:8]})
        stats = sl or decide_dev(best_dev, cand_dev)
        decision = {"dev": stats.to_json() if not sl else None, "slice": sl.to_json() if sl else None, "holdout": None,
                    "per_task": per_task, "parent_eval": best_eval, "cand_eval": cand_eval, "guard": [], "risky": []}
        accepted = stats.accepted
        if accepted:
            _, cand_hold = _evaluate(lg, run_id, cid, cid, "holdout", hold, skill)
            ho = mech.confirm(stats.mean_diff, best_hold, cand_hold)
            decision["holdout"] = {**ho.to_json(), "mean_parent": _mean(best_hold), "mean_cand": _mean(cand_hold)}
            accepted = ho.confirmed
        decision.update(final="accepted" if accepted else "rejected", reason=(decision["holdout"] or {}).get("reason") or stats.reason)
        cost = {"rollouts": 32 + (48 if decision["holdout"] else 0), "tokens": 2400 + 90 * rnd, "seconds": 11.0 + rnd}
        lg.update_candidate(cid, status="accepted" if accepted else "rejected", decision=decision, cost=cost)
        lesson = Lesson(run_id=run_id, round=rnd, candidate=cid, change_summary=summary, hypothesis=hypothesis,
                        effect=stats.mean_diff, ci_low=stats.ci_low, ci_high=stats.ci_high,
                        decision="confirmed" if accepted else ("stopped_early" if sl else "rejected"),
                        next_step=draft_next_step(stats, {"wrong_answer": 9, "format": 2}), signals={"wrong_answer": 9, "format": 2})
        lg.add_lesson(run_id, rnd, cid, lesson_text(lesson), lesson.to_json())
        for k in totals:
            totals[k] += cost[k]
        if accepted:
            best, best_eval, best_dev = cid, cand_eval, cand_dev
            best_hold = cand_hold
    lg.add_event("unseal", {"split": "test", "by": "cli", "reason": "final report"}, run_id=run_id)
    lg.add_event("strategy_switch", {"from": "search", "to": "llm", "round": 2}, run_id=run_id)
    lg.update_run(run_id, summary={
        "round": len(ROUNDS), "best_candidate": best, "seed_dev": _mean(seed_dev), "best_dev": _mean(best_dev),
        "seed_holdout": _mean(seed_hold), "best_holdout": _mean(best_hold), "rollouts": int(totals["rollouts"]),
        "tokens": int(totals["tokens"]), "unseals": 1, "test": {"seed": 0.44, "best": 0.81},
        "budget": {"rounds": [len(ROUNDS), 10], "rollouts": [int(totals["rollouts"]), 600], "tokens": [int(totals["tokens"]), None],
                   "wall_s": [int(totals["seconds"]), 3600]}})
    return demo


def copy_demo(demo: DemoLedger, path: Path) -> DemoLedger:
    """An independent copy of a SQLite demo ledger, for tests that write (approvals, live updates)."""
    import dataclasses
    import sqlite3

    if not demo.url.startswith("sqlite:///"):
        raise ValueError(f"copy_demo copies SQLite ledgers only, not {demo.url.split(':')[0]}")
    src = sqlite3.connect(demo.url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(path)
    src.backup(dst)
    src.close()
    dst.close()
    url = f"sqlite:///{path}"
    return dataclasses.replace(demo, ledger=Ledger(url), url=url, candidates=dict(demo.candidates))


def write_flywheel_rows(lg: Ledger, run_id: str | None = None) -> str:
    """A three-generation flywheel run through the flywheel store's public methods; returns its run id."""
    from ratchet.ledger.flywheel_store import FlywheelStore

    fw = FlywheelStore(lg)
    run_id = run_id or lg.create_run("flywheel", "arith", {"flywheel": {"generations": 3}})
    accuracy = [0.31, 0.38, 0.44, 0.47]
    fw.register_model(name="smollm2-135m-ft1", project="arith", parent="smollm2-135m", path=".ratchet/models/ft1",
                      status="promoted", run_id=run_id, generation=1, metrics={"dev": accuracy[1]})
    for g in (2, 3):
        fw.register_model(name=f"smollm2-135m-ft{g}", project="arith", parent=f"smollm2-135m-ft{g - 1}",
                          path=f".ratchet/models/ft{g}", status="promoted" if g == 2 else "rejected", run_id=run_id,
                          generation=g, metrics={"dev": accuracy[g]})
    for g in (1, 2, 3):
        fw.open_generation(run_id, g, "smollm2-135m" if g == 1 else f"smollm2-135m-ft{g - 1}")
        rows = []
        for i in range(40 + 10 * g):
            dropped = i % 3 == 0
            rows.append({"id": f"ex-{g}-{i:03d}", "kind": "sft", "task_id": f"arith-train-{i:03d}", "split": "train",
                         "model": "smollm2-135m", "status": "dropped" if dropped else "kept",
                         "reason": ("wrong_answer" if i % 2 else "duplicate") if dropped else None,
                         "score": 0.0 if dropped else 1.0, "data": {"prompt": f"Calculate {i} + {g}.", "completion": str(i + g)}})
        fw.add_examples(run_id, g, rows)
        fw.update_generation(run_id, g, status="promoted" if g < 3 else "rejected", counts={"rollouts": 60 + 10 * g},
                             candidate_model=f"smollm2-135m-ft{g}",
                             decision={"dev": {"mean_parent": accuracy[g - 1], "mean_cand": accuracy[g], "p_value": 0.01},
                                       "final": "accepted" if g < 3 else "rejected"})
    return run_id


def _mean(scores: dict[str, list[float]]) -> float:
    means = [sum(v) / len(v) for v in scores.values()]
    return sum(means) / len(means)


class ServedApp:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread (for browser tests)."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> ServedApp:
        import time

        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def write_closing_report(lg: Ledger, run_id: str) -> dict:
    """Put a reconciled closing report (`loop.reconcile`) into the run's summary, as the closing table and an unseal
    would: the lineage's real confirmations, against a small holdout and test split that barely move (the issue's
    "holdout +0.167 confirmed" above "holdout 0.192 -> 0.200" case). Returns the stored report."""
    from ratchet.loop.reconcile import lineage_confirmations, reconcile, split_row

    def scores(n: int, solved: int, epochs: int = 2) -> dict[str, list[float]]:
        return {f"t{i:02d}": [1.0 if i < solved else 0.0, 1.0 if i < solved or i % 7 == 0 else 0.0][:epochs]
                for i in range(n)}

    summary = dict(lg.run(run_id)["summary"] or {})
    rows = [split_row("dev", scores(16, 7), scores(16, 13), alpha=0.05, measured_with="round 3's seed", eval_seed=3),
            split_row("holdout", scores(19, 3), scores(19, 4), alpha=0.05, measured_with="the closing seed", eval_seed=0),
            split_row("test", scores(17, 2), scores(17, 2), alpha=0.05, measured_with="unseal #1's seed", eval_seed=0)]
    report = reconcile(rows, lineage_confirmations(lg.candidates(run_id), summary.get("best_candidate")), 0.05,
                       best_commit=summary.get("best_commit") or "").to_json()
    lg.update_run(run_id, summary={**summary, "report": report})
    return report
