"""Fault injection for the flywheel: SIGKILL a flywheel run (a real subprocess) at random points >= 30
times, resume it each time, and check that it ends exactly as an uninterrupted run with the same seeds.

The subprocess drives the flywheel engine with deterministic stand-ins (test_flywheel_engine's seeded
ProbModel, and a trainer that keeps the real trainer's contract: the model dir appears whole or not at
all), so the kills land in generation, verification, filtering, the dataset and registry writes,
evaluation and the decision - not in hours of real training. `ratchet flywheel` itself loads real
weights and trains, which does not fit 30 kills in CI.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import PROJECT_TOML, make_project_dir
from test_crash_evolve import (
    cli_env,
    extend_reference,
    kill_and_resume,
    leftover_processes,
    reference_run,
    where_kills_landed,
)

MIN_KILLS = 30
GENERATIONS = 2
TESTS = str(Path(__file__).resolve().parent)

FLYWHEEL = """
[flywheel]
generations = 2
samples_per_task = 2
task_limit = 8
eval_limit = 12
eval_epochs = 1
per_task_cap = 2

[flywheel.train]
max_steps = 1
"""

DRIVER = """
import asyncio, json, shutil, sys
from pathlib import Path
sys.path.insert(0, TESTS)
from conftest import fake_project
from test_flywheel_engine import ProbModel
from ratchet.flywheel.engine import Flywheel
from ratchet.flywheel.train import TRAIN_CONFIG_FILE, TrainResult

def train(base_dir, sft, pairs, cfg, out, log=None, should_stop=None):
    tmp = out.with_name(out.name + ".partial")  # as train_model: build aside, then one rename
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps({"base": str(base_dir), "sft": sorted(e.id for e in sft)}))
    (tmp / TRAIN_CONFIG_FILE).write_text(json.dumps({"metrics": {"n_sft": len(sft)}, "seconds": 0.1}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return TrainResult(path=out, method=cfg.method, metrics={"n_sft": len(sft)}, seconds=0.1)

root, base, generations, resume = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
proj = fake_project(root, model=ProbModel(base, 0.5))
engine = Flywheel(proj, train_fn=train, model_factory=lambda name: ProbModel(name, 0.95),
                  on_event=lambda m: print(m, flush=True))
print("flywheel ready", flush=True)

async def go():
    try:
        return await engine.run(generations=generations, resume=resume)
    finally:
        await engine.aclose()
        await proj.aclose()

summary = asyncio.run(go())
print("flywheel", summary.status, summary.reason, flush=True)
""".replace("TESTS", repr(TESTS))


def flywheel_project(root: Path) -> tuple[Path, str]:
    """A flywheel project whose base model is `base` next to it (shared: it names the model in eval ids)."""
    toml = PROJECT_TOML.replace("train = 0.2\ndev = 0.4\nholdout = 0.3", "train = 0.4\ndev = 0.3\nholdout = 0.2") + FLYWHEEL
    make_project_dir(root, n_tasks=40, toml=toml)
    base = root.parent / "base"
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text("{}")
    text = (root / "ratchet.toml").read_text().replace('backend = "scripted"\nname = "arith-fake"',
                                                      f'backend = "local"\nname = "{base}"')
    (root / "ratchet.toml").write_text(text)
    (root / "driver.py").write_text(DRIVER)
    return root, str(base)


def flywheel_argv(root: Path, base: str) -> Callable[[int, bool], list[str]]:
    def argv(generations: int, resume: bool) -> list[str]:
        return [sys.executable, str(root / "driver.py"), str(root), base, str(generations), "resume" if resume else "new"]

    return argv


def flywheel_record(root: Path) -> dict:
    """What must match between two flywheel runs, with run ids and model names taken out."""
    from ratchet.ledger import Ledger
    from ratchet.ledger.flywheel_store import FlywheelStore

    ledger = Ledger(f"sqlite:///{root / '.ratchet' / 'ledger.sqlite'}")
    try:
        (run,) = ledger.runs("flywheel")
        rid = run["id"]
        suffix = rid.rsplit("-", 1)[-1]

        def norm(value):
            return json.loads(json.dumps(value, default=str).replace(rid, "RUN").replace(suffix, "RUNID")
                              .replace(str(root), "ROOT"))

        store = FlywheelStore(ledger)
        # decision["rollouts"] counts the rollouts run in the session that decided (a resumed one reuses some);
        # eval and example ids hash the run id, so examples are compared by what they hold
        gens = [{**{k: g[k] for k in ("generation", "status", "model", "candidate_model", "counts")},
                 "decision": {k: v for k, v in g["decision"].items() if k not in ("rollouts", "eval_ids")}}
                for g in store.generations(rid)]
        examples = sorted((e["generation"], e["kind"], e["task_id"], e["status"], str(e["reason"]),
                           json.dumps(e["data"]["example"]["prompt"]), e["data"]["example"]["reply"],
                           str(e["data"]["example"].get("rejected"))) for e in store.examples(rid))
        example_ids = [e["id"] for e in store.examples(rid)]
        models = sorted((m["name"], m["status"], m["parent"]) for m in store.models() if m["name"].endswith(suffix))
        lessons = [(les["round"], les["text"]) for les in ledger.lessons(rid)]
        summary = run["summary"] or {}
        trained = [g["candidate_model"] for g in store.generations(rid) if g["candidate_model"]]
        return {"run_id": rid, "status": run["status"], "trained": trained, "example_ids": example_ids,
                "generations": norm(gens), "examples": norm(examples),
                "models": norm(models), "lessons": norm(lessons), "current_model": norm(summary.get("current_model")),
                "final_holdout": norm(summary.get("final_holdout"))}
    finally:
        ledger.close()


def assert_flywheel_consistent(root: Path, rec: dict, generations: int) -> None:
    assert rec["status"] == "finished"
    assert [g["generation"] for g in rec["generations"]] == list(range(1, generations + 1)), "a generation was lost or repeated"
    assert all(g["status"] in ("promoted", "rejected", "skipped") for g in rec["generations"])
    assert len(rec["example_ids"]) == len(set(rec["example_ids"])), "an example was recorded twice"
    from ratchet.flywheel import registry

    assert not list(root.rglob("*.partial")), "a half-trained model dir was left behind"
    for name in rec["trained"]:  # every trained model's dir is whole
        path = registry.registry_model_dir(root, name)
        assert path is not None and json.loads((path / "config.json").read_text())["sft"], f"{name} is not whole"


@pytest.mark.slow
def test_flywheel_survives_30_sigkills_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed_dir, killed_base = flywheel_project(tmp_path / "killed")
    ref_dir, ref_base = flywheel_project(tmp_path / "ref")
    ref_env = cli_env(tmp_path / "tmp-ref")
    ref_s = reference_run(flywheel_argv(ref_dir, ref_base), GENERATIONS, ref_env)
    started = time.monotonic()
    log = kill_and_resume(flywheel_argv(killed_dir, killed_base), GENERATIONS, tmp_path, cli_env(tmp_path / "tmp-killed"),
                          tmp_path, min_kills=MIN_KILLS, seed=17, ready_marker="flywheel ready",
                          max_after_ready_s=max(1.0, 2 * ref_s / MIN_KILLS), nothing_to_resume="no earlier flywheel run")
    killed_s = time.monotonic() - started
    assert leftover_processes(str(tmp_path / "tmp-killed")) == []
    if log.rounds > GENERATIONS:
        extend_reference(flywheel_argv(ref_dir, ref_base), log.rounds, ref_env)
    killed, reference = flywheel_record(killed_dir), flywheel_record(ref_dir)
    for rec, root in ((killed, killed_dir), (reference, ref_dir)):
        assert_flywheel_consistent(root, rec, log.rounds)
    for key in ("generations", "examples", "models", "lessons", "current_model", "final_holdout"):
        assert killed[key] == reference[key], f"{key} differs from the uninterrupted run"
    landed = where_kills_landed(log, r"^generation (\d+)", offset=-1)
    print(f"\nflywheel: {log.kills} SIGKILLs survived over {log.sessions} sessions in {killed_s:.0f}s (uninterrupted: "
          f"{ref_s:.0f}s); {log.rounds} generations identical to the uninterrupted run; kills by generations "
          f"finished at the time: {landed}")
