"""The flywheel loop end to end with in-process models and a fake trainer: promotion, rejection, registry,
provenance, accumulation, planted contamination, resume and the stop file. (The real model and real
training are in test_flywheel_e2e.py.)"""

import asyncio
import json
import re

import pytest

from conftest import PROJECT_TOML, fake_project, make_project_dir
from ratchet.flywheel import registry
from ratchet.flywheel.engine import Flywheel
from ratchet.flywheel.train import TRAIN_CONFIG_FILE, TrainResult
from ratchet.ledger.flywheel_store import FlywheelStore
from ratchet.suites.base import split_of
from ratchet.types import Completion

FLYWHEEL = """
[flywheel]
generations = 2
samples_per_task = 4
eval_epochs = 2
per_task_cap = 2

[flywheel.train]
max_steps = 1
"""
TOML = PROJECT_TOML.replace("train = 0.2\ndev = 0.4\nholdout = 0.3", "train = 0.4\ndev = 0.3\nholdout = 0.2") + FLYWHEEL
FRACTIONS = {"train": 0.4, "dev": 0.3, "holdout": 0.2, "test": 0.1}


class ProbModel:
    """Right with probability p, decided by the call's seed: parent and candidate share seeds, so runs pair."""

    def __init__(self, name: str, p: float):
        self.name, self.p = name, p

    async def chat(self, messages, params):
        a, b = map(int, re.search(r"(\d+) \+ (\d+)", messages[-1]["content"]).groups())
        u = ((params.seed or 0) * 2654435761 % 2**32) / 2**32
        reply = str(a + b if u < self.p else a + b + 1)
        return Completion(texts=[reply] * params.n, prompt_tokens=5, completion_tokens=1)

    async def aclose(self):
        pass


class FakeTrainer:
    def __init__(self):
        self.calls = []

    def __call__(self, base_dir, sft, pairs, cfg, out, log=None, should_stop=None):
        self.calls.append({"base": str(base_dir), "sft": [e.id for e in sft], "pairs": len(pairs)})
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / TRAIN_CONFIG_FILE).write_text(json.dumps({"metrics": {"n_sft": len(sft)}, "seconds": 0.1}))
        return TrainResult(path=out, method=cfg.method, metrics={"n_sft": len(sft)}, seconds=0.1)


def plant(root, n_copies=4):
    """Append train-split tasks that are verbatim copies of holdout tasks (planted contamination)."""
    lines = [json.loads(x) for x in (root / "tasks.jsonl").read_text().splitlines()]
    holdout = [x for x in lines if split_of(x["id"], FRACTIONS) == "holdout"][:n_copies]
    copies, k = [], 0
    for h in holdout:
        while split_of(f"copy{k}", FRACTIONS) != "train":
            k += 1
        copies.append({"id": f"copy{k}", "input": h["input"], "answer": h["answer"]})
        k += 1
    (root / "tasks.jsonl").write_text("\n".join(json.dumps(x) for x in lines + copies) + "\n")
    return {c["id"] for c in copies}


@pytest.fixture
def setup(tmp_path):
    root = make_project_dir(tmp_path / "proj", n_tasks=40, toml=TOML)
    planted = plant(root)
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    (base_dir / "config.json").write_text("{}")  # the base "weights" the fake trainer starts from
    toml = (root / "ratchet.toml").read_text().replace('backend = "scripted"\nname = "arith-fake"',
                                                      f'backend = "local"\nname = "{base_dir}"')
    (root / "ratchet.toml").write_text(toml)
    return root, planted, str(base_dir)


def make_engine(root, base, trainer):
    proj = fake_project(root, model=ProbModel(base, 0.5))
    factory = lambda name: ProbModel(name, 0.95)  # every trained model is much better; it stays so
    return proj, Flywheel(proj, train_fn=trainer, model_factory=factory)


def run(engine, **kw):
    return asyncio.run(engine.run(**kw))


@pytest.mark.slow  # ~200 sandboxed episodes
def test_two_generations_promote_reject_provenance_and_resume(setup):
    root, planted, base = setup
    trainer = FakeTrainer()
    proj, engine = make_engine(root, base, trainer)
    summary = run(engine)
    g1, g2 = engine.model_name(1), engine.model_name(2)
    assert summary.status == "finished" and summary.current_model == g1
    store = FlywheelStore(proj.ledger)
    assert [store.model(n)["status"] for n in (g1, g2)] == ["promoted", "rejected"]
    assert [m["name"] for m in registry.lineage(store, g2)] == [g2, g1, base]
    assert trainer.calls[0]["base"] == base and trainer.calls[1]["base"].endswith(g1)  # g2 trained from g1

    gens = store.generations(summary.run_id)
    c1, c2 = gens[0]["counts"], gens[1]["counts"]
    assert c1["rollouts"] == 4 * len(proj.tasks("train"))
    assert gens[0]["decision"]["promoted"] and gens[0]["decision"]["holdout"]["confirmed"]
    assert not gens[1]["decision"]["promoted"] and gens[1]["decision"]["holdout"] is None  # dev said no
    assert c2["train_set"]["sft_old"] > 0  # earlier data is accumulated, not replaced

    # planted holdout copies: caught, dropped, counted; nothing else is
    hits = c1["contamination_hits"] + c2["contamination_hits"]
    assert hits and {h["task_id"] for h in hits} <= planted
    assert all(h["hit_split"] == "holdout" for h in hits)
    kept = store.examples(summary.run_id, status="kept")
    assert kept and not {r["task_id"] for r in kept} & planted
    assert all(r["split"] == "train" for r in store.examples(summary.run_id))
    assert set(trainer.calls[0]["sft"]) <= {r["id"] for r in kept}

    assert summary.final_holdout["final_mean"] > summary.final_holdout["base_mean"]
    assert len(proj.ledger.lessons(summary.run_id)) == 2
    assert (summary.card_path.read_text()).count("| 1 |") == 1

    # resume: everything decided is reused; nothing is trained again
    proj2, engine2 = make_engine(root, base, trainer)
    again = run(engine2, resume=True)
    assert again.run_id == summary.run_id and again.current_model == g1 and len(trainer.calls) == 2


def test_stop_file_stops_before_work(setup):
    root, _planted, base = setup
    (root / ".ratchet").mkdir(exist_ok=True)
    (root / ".ratchet" / "STOP").write_text("")
    trainer = FakeTrainer()
    proj, engine = make_engine(root, base, trainer)
    summary = run(engine)
    assert summary.status == "stopped" and "stop file" in summary.reason and not trainer.calls
    assert proj.ledger.run(summary.run_id)["status"] == "stopped"


def test_rollouts_that_crashed_are_named_not_counted_as_wrong_answers():
    from ratchet.flywheel.generate import failed_rollouts
    from ratchet.types import Trajectory

    crash = "crash: the harness process exited with code 1; RuntimeError: can't start new thread"
    trajs = [Trajectory(task_id=f"t{i}", epoch=0, seed=i, score=0.0, error=crash if i < 3 else None) for i in range(5)]
    assert failed_rollouts(trajs) == f"3 of 5 rollouts ended in an error, not an answer (3x: {crash})"
    assert failed_rollouts(trajs[3:]) is None
