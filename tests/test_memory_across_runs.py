"""Memory across runs, end to end on the fake model and a scripted proposer model (the real loop, ledger,
sandbox and git): run 1's llm proposer makes a change and its model critiques the decision (tokens charged
to the run); run 2 of the same project recalls that lesson for the same failures, and the harness's
`memory` skill returns it inside an episode."""

import asyncio
import json

import pytest

from conftest import SEED_PARAMS, fake_project, make_project_dir
from ratchet.evolve import run as evolve_run
from ratchet.evolve.run import EvolveOptions, evolve
from ratchet.ledger import Ledger
from ratchet.loop.proposers.base import ProposalError

TOML = """
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
train = 0.1
dev = 0.5
holdout = 0.3
test = 0.1

[eval]
concurrency = 16
max_steps = 4
timeout_s = 20

[loop]
proposer = "llm"
rounds = 1
epochs = 1

[loop.proposer_model]
backend = "scripted"
name = "critic"
script = "proposer_model.py"
cache = false

[guard]
approve = "never"
"""

# The proposer's model: a valid llm-proposer answer (temperature 0.9 -> 0.2), or a critique when asked for one;
# every call's tokens (as the scripted backend counts them: words) are logged to check the budget's count.
PROPOSER_MODEL = '''
import json, pathlib

LOG = pathlib.Path(__file__).with_name("proposer_calls.jsonl")
PROPOSAL = """RATIONALE: the wrong answers are all one too high, which looks like sampling noise at temperature 0.9.
HYPOTHESIS: wrong_answer failures drop and the dev mean rises.

params.toml
<<<<<<< SEARCH
value = 0.9
=======
value = 0.2
>>>>>>> REPLACE
"""
CRITIQUE = "WHY: lowering the temperature removed the off-by-one sampling errors, as predicted.\\nNEXT: keep it low."

def reply(messages, params):
    critique = "You review one experiment" in messages[0]["content"]
    text = CRITIQUE if critique else PROPOSAL
    words = sum(len(m["content"].split()) for m in messages) + len(text.split())
    with LOG.open("a") as f:
        f.write(json.dumps({"kind": "critique" if critique else "proposal", "tokens": words}) + "\\n")
    return text
'''

HARNESS = ("def solve(task, ctx):\n"
           "    ctx.skill('memory', task.input)  # what earlier rounds and runs learnt about tasks like this one\n"
           "    return ctx.llm(task.input)\n")
PARAMS = SEED_PARAMS + '\n[skills]\nlibrary = ["memory"]\nenabled = ["memory"]\n'


class Recorder:
    """Run 2's proposer: keeps what it was shown, then gives up (the round ends without an evaluation)."""

    name = "recorder"

    def __init__(self):
        self.contexts = []

    async def propose(self, ctx):
        self.contexts.append(ctx)
        raise ProposalError("recorder: only looking")

    def observe(self, proposal, accepted, score):
        pass

    def switch_strategy(self):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def run_once(root, monkeypatch=None, proposer=None):
    if proposer is not None:
        monkeypatch.setattr(evolve_run, "build_proposer", lambda *a, **k: proposer)
    proj = fake_project(root)
    try:
        return asyncio.run(evolve(proj, EvolveOptions(rounds=1), say=lambda m: None))
    finally:
        asyncio.run(proj.aclose())


def memory_results(ledger, run_id, first_only=False):
    """What the memory skill returned in the run's episodes (of its first evaluation: the seed on dev)."""
    evals = ledger.evals(run_id)[:1] if first_only else ledger.evals(run_id)
    return [call["result"] for ev in evals for t in ledger.rollouts(ev["id"])
            for call in t.tool_calls if call["name"] == "memory"]


@pytest.mark.slow
def test_a_lesson_of_run_1_is_recalled_in_run_2_and_served_by_the_memory_skill(tmp_path, monkeypatch):
    root = make_project_dir(tmp_path / "p", n_tasks=24, toml=TOML, harness=HARNESS, params=PARAMS)
    (root / "proposer_model.py").write_text(PROPOSER_MODEL)
    first = run_once(root)
    assert first.status == "finished"
    ledger = Ledger(f"sqlite:///{root / '.ratchet' / 'ledger.sqlite'}")
    (lesson,) = ledger.lessons(first.run_id)
    data = lesson["data"]
    assert data["critic"] == "scripted:proposer_model.py" and data["why"].startswith("lowering the temperature")
    assert data["measured"].startswith("dev: paired diff +") and "Why (scripted:proposer_model.py)" in lesson["text"]
    calls = [json.loads(line) for line in (root / "proposer_calls.jsonl").read_text().splitlines()]
    assert [c["kind"] for c in calls] == ["proposal", "critique"]
    usage = ledger.get_state(first.run_id, "usage")
    assert usage["proposer_tokens"] == sum(c["tokens"] for c in calls)  # the critique is charged to the budget
    assert set(memory_results(ledger, first.run_id, first_only=True)) == {""}  # nothing learnt before run 1's round

    recorder = Recorder()
    second = run_once(root, monkeypatch, recorder)
    assert second.run_id != first.run_id
    (ctx,) = recorder.contexts
    assert ctx.failure_summary.get("wrong_answer")  # the same failures as run 1's seed
    assert ctx.lessons and ctx.lessons[0] == lesson["text"]  # run 1's lesson, recalled first
    served = memory_results(ledger, second.run_id, first_only=True)
    assert served and all(r.startswith(lesson["text"]) for r in served)  # inside the sandboxed episodes of run 2
    assert "answered" not in served[0]  # the failure text it was matched on is never returned
    memory = (root / "memory.md").read_text()
    assert "2 lessons" in memory and first.run_id in memory and second.run_id in memory
    ledger.close()
