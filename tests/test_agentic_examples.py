"""The two agentic examples end to end on the real embedded model, through `ratchet eval` as a user runs it:
examples/program_aided (the model writes a program, the python skill runs it) and examples/humaneval_agentic
(the python skill runs the docstring's examples on the model's function; a failure goes back for a revision).

A few dev tasks each, on a copy of the example: what is checked is that the runs finish and that the recorded
trajectories hold the steps (skill calls, and the revision that read the failure), not the accuracy.
"""

import json
import shutil
from pathlib import Path

import pytest

from ratchet.ledger.store import Ledger
from test_e2e_real_model import ratchet

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def copy_example(name: str, dest: Path, toml_edits: dict[str, str] | None = None) -> Path:
    root = dest / name
    shutil.copytree(EXAMPLES / name, root, ignore=shutil.ignore_patterns(".ratchet", "__pycache__", "memory.md"))
    toml = (root / "ratchet.toml").read_text()
    for old, new in (toml_edits or {}).items():
        assert old in toml, f"{name}/ratchet.toml no longer has {old!r}; update this test's edit"
        toml = toml.replace(old, new)
    (root / "ratchet.toml").write_text(toml)
    return root


def evaluate(root: Path, limit: int = 3):
    res = ratchet("eval", str(root), "--limit", str(limit), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    payload = json.loads((root / ".ratchet" / "eval-dev.json").read_text())
    rollouts = Ledger(f"sqlite:///{root / '.ratchet' / 'ledger.sqlite'}").rollouts(payload["eval_id"])
    assert payload["n_rollouts"] == limit and len(rollouts) == limit, payload
    return rollouts


def python_calls(traj):
    return [c for c in traj.tool_calls if c["name"] == "python"]


def test_program_aided_runs_the_models_programs_in_the_sandbox(tmp_path):
    root = copy_example("program_aided", tmp_path, {"size = 150": "size = 30"})
    for traj in evaluate(root):
        assert traj.error is None, traj.error
        calls = python_calls(traj)
        assert calls and traj.messages, "a model call, then its program run by the python skill"
        program = calls[0]["args"][0]
        assert program.strip() and program.strip() in traj.messages[0]["replies"][0]  # the reply's code block
        assert set(calls[0]["result"]) >= {"stdout", "stderr", "returncode"}


def test_humaneval_agentic_revises_from_the_failed_docstring_examples(tmp_path):
    root = copy_example("humaneval_agentic", tmp_path)
    rollouts = evaluate(root)
    revised = 0
    for traj in rollouts:
        assert traj.error is None, traj.error
        calls = python_calls(traj)
        assert calls, "every solution's examples run in the sandbox"
        script = calls[0]["args"][0]
        assert "EXAMPLES = " in script and "def check(candidate)" not in script  # the docstring's, not the hidden tests
        report = calls[0]["result"]["stdout"].strip().splitlines()
        assert report and report[-1].startswith("RESULT "), report
        if len(traj.messages) >= 2:  # a second call comes only after the first solution failed its examples
            failure = "\n".join(report[:-1])  # what the model is shown: the report without its RESULT line
            assert failure and failure in traj.messages[1]["request"][-1]["content"], traj.messages[1]["request"]
            revised += 1
    assert revised >= 1, "with attempts = 2 at least one of the tasks should fail its examples and be revised"
