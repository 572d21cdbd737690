"""Shared fixtures: a tiny in-process chat model and harness builders for loop-mechanics tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratchet.harness.budget import EpisodeLimits
from ratchet.harness.loader import load_harness
from ratchet.harness.runtime import EpisodeServices
from ratchet.sandbox import Sandbox, SandboxLimits
from ratchet.types import Completion

PARAMS = """[temperature]
type = "float"
range = [0.0, 1.0]
value = 0.0

[skills]
library = ["calculator", "python", "memory"]
enabled = ["calculator", "python", "memory"]
"""


class ArithmeticModel:
    """Answers 'Calculate A op B.' correctly when temperature <= 0.3, wrongly otherwise: a knob with an effect."""

    name = "arith-fake"

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, messages, params):
        self.calls += 1
        text = messages[-1]["content"]
        m = re.search(r"(-?\d+)\s*([+\-*])\s*(-?\d+)", text)
        if not m:
            reply = "I do not know."
        else:
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            value = {"+": a + b, "-": a - b, "*": a * b}[op]
            reply = str(value if params.temperature <= 0.3 else value + 1)
        return Completion(texts=[reply] * params.n, prompt_tokens=len(text.split()), completion_tokens=1)

    async def aclose(self) -> None:
        pass


def write_harness(root: Path, code: str, params: str = PARAMS, **extra: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "harness.py").write_text(code)
    (root / "params.toml").write_text(params)
    for rel, text in extra.items():
        path = root / rel.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def services():
    return EpisodeServices(model=ArithmeticModel(), sandbox=Sandbox(SandboxLimits(wall_s=30)),
                           limits=EpisodeLimits(max_steps=6, max_tokens=500, timeout_s=10, loop_repeats=3))


@pytest.fixture
def harness_factory(tmp_path):
    counter = {"n": 0}

    def make(code: str, params: str = PARAMS, **extra: str):
        counter["n"] += 1
        return load_harness(write_harness(tmp_path / f"h{counter['n']}", code, params, **extra))

    return make


PROJECT_TOML = """
[project]
name = "fake-arith"
harness = "harness"

[model]
backend = "scripted"
name = "arith-fake"

[suite]
kind = "jsonl"
path = "tasks.jsonl"
match = "numeric"

[suite.splits]
train = 0.2
dev = 0.4
holdout = 0.3
test = 0.1

[eval]
concurrency = 16
max_steps = 4
timeout_s = 20

[loop]
proposer = "search"
rounds = 4
epochs = 1
alpha = 0.05

[guard]
approve = "never"
"""

SEED_HARNESS = "def solve(task, ctx):\n    return ctx.llm(task.input)\n"
SEED_PARAMS = """[temperature]
type = "float"
range = [0.0, 1.0]
value = 0.9

[style]
type = "choice"
choices = ["plain", "terse"]
value = "plain"
"""


def make_project_dir(root: Path, n_tasks: int = 60, toml: str = PROJECT_TOML, harness: str = SEED_HARNESS,
                     params: str = SEED_PARAMS) -> Path:
    import json

    root.mkdir(parents=True, exist_ok=True)
    (root / "ratchet.toml").write_text(toml)
    lines = [json.dumps({"id": f"q{i}", "input": f"Calculate {i} + {2 * i + 1}.", "answer": 3 * i + 1}) for i in range(n_tasks)]
    (root / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    write_harness(root / "harness", harness, params)
    return root


def fake_project(root: Path, model=None):
    """Open a project the way `open_project` does, but with an in-process fake model."""
    from ratchet.config import load_project
    from ratchet.evaluate import Evaluator
    from ratchet.ledger import Ledger
    from ratchet.project import Project, make_services
    from ratchet.suites import build_suite

    cfg = load_project(root)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(cfg.ledger_url)
    suite = build_suite(cfg.suite, cfg.root)
    model = model or ArithmeticModel()
    services = make_services(cfg, model)
    return Project(cfg, suite, model, ledger, services, Evaluator(suite, services, ledger, cfg.eval.concurrency))
