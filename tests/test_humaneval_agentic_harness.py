"""examples/humaneval_agentic's harness on a scripted model, through the real sandbox: the docstring's examples
are read from task.input, run by the python skill, and a failure goes back to the model for a revision.
(tests/test_agentic_examples.py runs it on the real model, slowly.)"""

import asyncio
import importlib.util
import re
import shutil
from pathlib import Path

from ratchet.harness.budget import EpisodeLimits
from ratchet.harness.loader import load_harness
from ratchet.harness.runtime import EpisodeServices, run_episode
from ratchet.models.scripted import ScriptedModel
from ratchet.sandbox import Sandbox, SandboxLimits
from ratchet.types import Task

HARNESS = Path(__file__).resolve().parents[1] / "examples" / "humaneval_agentic" / "harness"
PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    """\n'
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
RIGHT = "Fixed:\n```python\ndef add(a, b):\n    return a + b\n```"


def harness_module():
    spec = importlib.util.spec_from_file_location("humaneval_agentic_harness", HARNESS / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def episode(tmp_path, replies, **knobs):
    root = tmp_path / "harness"
    shutil.copytree(HARNESS, root, ignore=shutil.ignore_patterns("__pycache__"))
    params = (root / "params.toml").read_text()
    for name, (old, new) in knobs.items():  # the knob's value line, within its own table
        params, n = re.subn(rf"(\[{name}\]\n(?:(?!\[)[^\n]*\n)*?value = ){old}\n", rf"\g<1>{new}\n", params, count=1)
        assert n == 1, f"params.toml has no [{name}] with value = {old}"
    (root / "params.toml").write_text(params)
    model = ScriptedModel(replies)
    services = EpisodeServices(model=model, sandbox=Sandbox(SandboxLimits(wall_s=30)),
                               limits=EpisodeLimits(max_steps=16, max_tokens=20000, timeout_s=60))
    task = Task("HumanEval/x", PROMPT, {"entry_point": "add"})
    return asyncio.run(run_episode(load_harness(root), task, services, seed=0)), model


def test_examples_come_from_the_docstring_in_each_style():
    h = harness_module()
    assert h.examples_of(PROMPT, "add") == [("add(2, 3)", "5"), ("add(-1, 1)", "0")]
    checks = 'def f(x):\n    """Double.\n    >>> f(2) == 4\n    >>> f(1) [2]\n    """\n'
    assert h.examples_of(checks, "f") == [("f(2)", "4")]  # `== y` with no output is a check; a bare call is not
    arrows = ('def g(n):\n    """g(n) = n + 1 is the rule.\n    For example:\n    g(1) ➞ 2\n    g(a) => 3\n'
              '    * g(2) == 3\n    """\n')
    assert h.examples_of(arrows, "g") == [("g(1)", "2"), ("g(2)", "3")]  # after the heading; no free names
    assert h.examples_of('def k():\n    """Nothing to check."""\n', "k") == []


def test_a_failed_example_goes_back_to_the_model_and_the_revision_is_returned(tmp_path):
    t, model = episode(tmp_path, [WRONG, RIGHT])
    assert t.error is None and "return a + b" in t.output and "return a - b" not in t.output
    reports = [c["result"]["stdout"] for c in t.tool_calls]
    assert len(reports) == 2 and "0 of 2 examples passed" in reports[0] and "RESULT 2 2" in reports[1]
    revision = t.messages[1]["request"][-1]["content"]
    assert "add(2, 3)\n  expected: 5\n  got: -1" in revision and "I ran the examples" in revision
    assert t.messages[1]["request"][-2] == {"role": "assistant", "content": WRONG}
    assert t.tool_errors == 0  # a failing example is the solution's failure, not the tool's


def test_the_same_code_again_is_not_rerun_and_ends_the_attempts(tmp_path):
    t, _ = episode(tmp_path, [WRONG], attempts=(2, 4))
    assert len(t.messages) == 2 and len(t.tool_calls) == 1  # the repeat would only repeat the conversation
    assert "return a - b" in t.output


def test_run_examples_off_is_one_model_call(tmp_path):
    t, _ = episode(tmp_path, [WRONG], run_examples=("true", "false"))
    assert len(t.messages) == 1 and t.tool_calls == [] and "return a - b" in t.output
