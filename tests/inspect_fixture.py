"""An Inspect AI task defined by the tests (a dataset file written to the project dir, Inspect's own `match()`
scorer), and a ratchet project whose suite is that task."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import PROJECT_TOML, make_project_dir

TASKS_PY = '''
from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample, json_dataset
from inspect_ai.scorer import choice, includes, match


@task
def arithmetic():
    return Task(dataset=json_dataset("arith.jsonl"), scorer=match())


@task
def capitals():
    samples = [Sample(id="fr", input="Which is the capital of France?", choices=["Berlin", "Paris", "Rome"], target="B"),
               Sample(id="it", input="Which is the capital of Italy?", choices=["Rome", "Madrid"], target="A")]
    return Task(dataset=MemoryDataset(samples), scorer=choice())


@task
def greeting(word: str = "hello"):
    return Task(dataset=[Sample(input="Say a greeting.", target=word), Sample(input="Greet me.", target=word)],
                scorer=includes())
'''

# the scripted model: right when the temperature is low, one off otherwise (the knob the search proposer finds)
REPLIES_PY = '''
import re


def reply(messages, params):
    text = messages[-1]["content"]
    m = re.search(r"(-?\\d+)\\s*([+\\-*])\\s*(-?\\d+)", text)
    if not m:
        return "I do not know."
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return str(value if params.temperature <= 0.3 else value + 1)
'''


def write_dataset(root: Path, n_tasks: int) -> None:
    """A JSONL dataset Inspect reads with its json_dataset (input/target/id fields); every 5th sample has no id."""
    lines = []
    for i in range(n_tasks):
        row = {"input": f"Calculate {i} + {2 * i + 1}.", "target": str(3 * i + 1)}
        if i % 5:
            row["id"] = f"q{i}"
        lines.append(json.dumps(row))
    (root / "arith.jsonl").write_text("\n".join(lines) + "\n")


def inspect_toml(task: str = "tasks.py@arithmetic", inspect_logs: str | None = None) -> str:
    toml = PROJECT_TOML.replace('kind = "jsonl"\npath = "tasks.jsonl"\nmatch = "numeric"', f'kind = "inspect"\ntask = "{task}"')
    toml = toml.replace('name = "arith-fake"', 'name = "arith-fake"\nscript = "replies.py"\ncache = false')
    if inspect_logs:
        toml = toml.replace("[eval]\n", f'[eval]\ninspect_logs = "{inspect_logs}"\n')
    assert 'kind = "inspect"' in toml and "replies.py" in toml
    return toml


def make_inspect_project(root: Path, n_tasks: int = 24, task: str = "tasks.py@arithmetic",
                         inspect_logs: str | None = None, toml: str | None = None) -> Path:
    make_project_dir(root, n_tasks=2, toml=toml or inspect_toml(task, inspect_logs))
    (root / "tasks.jsonl").unlink()  # the jsonl suite's file: this project's tasks are the Inspect task's
    (root / "tasks.py").write_text(TASKS_PY)
    (root / "replies.py").write_text(REPLIES_PY)
    write_dataset(root, n_tasks)
    return root
