"""`ratchet init --suite` (a project for a suite, a plain seed harness, sized by the plan math) and `ratchet plan`
through the CLI on a scripted model (the real-model run of both is in test_e2e_plan.py)."""

import json
import re

import pytest
from typer.testing import CliRunner

from ratchet.cli import app
from ratchet.config import ConfigError, load_project
from ratchet.harness.loader import load_harness
from ratchet.power import assumed_noise, tasks_needed
from ratchet.scaffold import FRACTIONS, design_size, parse_spec
from ratchet.suites import build_suite, tasks_for_split

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.mark.parametrize("spec, message", [
    ("foo", "unknown suite kind 'foo'"),
    ("reasoning_gym", "name the dataset"),
    ("jsonl", "name the file"),
    ("humaneval:x", "humaneval takes no name"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)
    assert parse_spec("reasoning-gym:aiw").kind == "reasoning_gym"


def test_reasoning_gym_size_comes_from_the_plan_math(tmp_path):
    size, n = design_size("aiw", 0.15)
    assert n == tasks_needed(0.15, 2, assumed_noise(0.5), 0.05) == 67
    res = invoke("init", tmp_path / "p", "--suite", "reasoning_gym:aiw")
    assert res.exit_code == 0, res.output
    assert f"size {size}" in res.output and "67 tasks each" in res.output
    cfg = load_project(tmp_path / "p")
    assert cfg.suite.dataset == "aiw" and cfg.suite.size == size and cfg.loop.epochs == cfg.eval.epochs == 2
    suite = build_suite(cfg.suite, cfg.root)
    counts = {s: len(tasks_for_split(suite, s, FRACTIONS)) for s in ("dev", "holdout", "test")}
    assert min(counts.values()) == n, counts  # the smallest size that gives every confirming split n tasks
    harness = load_harness(cfg.harness_dir)
    values = harness.params.values()
    assert values["demos"] == 0 and values["samples"] == 1 and values["format_retries"] == 0
    assert values["extract"] == "raw" and values["instruction"] == "plain"
    code = harness.files["harness.py"]
    assert "task.input" in code and "skill" not in code and "aiw" not in code  # nothing task-specific
    assert {f"prompts/instruction_{c}.md" for c in harness.params.knobs["instruction"].choices} <= set(harness.files)
    assert invoke("init", tmp_path / "p", "--suite", "humaneval").exit_code == 2  # not empty
    res = invoke("init", tmp_path / "q", "--suite", "reasoning_gym:aiww")
    assert res.exit_code == 2 and "did you mean aiw" in res.output
    assert invoke("init", tmp_path / "r", "--suite", "reasoning_gym:aiw", "--effect", "0.9").exit_code == 2


def test_humaneval_gets_code_prompts(tmp_path):
    res = invoke("init", tmp_path / "h", "--suite", "humaneval")
    assert res.exit_code == 0, res.output
    assert "164 tasks" in res.output
    harness = load_harness(tmp_path / "h" / "harness")
    assert "Python" in harness.files["prompts/instruction_plain.md"]
    assert "prompts/instruction_marker.md" not in harness.files
    assert harness.params.knobs["extract"].choices == ("raw",)
    assert load_project(tmp_path / "h").suite.kind == "humaneval"


SCRIPT = '''import re


def reply(messages, params):
    a, b = map(int, re.findall(r"\\d+", messages[-1]["content"])[:2])
    return f"The sum is {a + b}." if (params.seed or 0) % 3 else "I do not know."
'''


def jsonl_project(tmp_path, n=48):
    data = tmp_path / "data" / "sums.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps({"id": f"s{i}", "input": f"What is {i} + {i + 3}?", "answer": 2 * i + 3}) + "\n"
                            for i in range(n)))
    res = invoke("init", tmp_path / "p", "--suite", f"jsonl:{data}")
    assert res.exit_code == 0, res.output
    assert "dev, holdout and test get about" in res.output
    root = tmp_path / "p"
    toml = (root / "ratchet.toml").read_text()
    assert 'path = "../data/sums.jsonl"' in toml and 'match = "numeric"' in toml
    (root / "model.py").write_text(SCRIPT)
    toml = toml.replace('backend = "local"        # local | openai | scripted', 'backend = "scripted"\nscript = "model.py"')
    (root / "ratchet.toml").write_text(toml)
    return root


def test_plan_from_the_seed_scores(tmp_path):
    root = jsonl_project(tmp_path)
    res = invoke("plan", root)
    assert res.exit_code == 0, res.output
    assert re.search(r"seed on dev: \d+\.\d% ± \d+\.\d on \d+ tasks x 2 epochs \(0 of \d+ rollouts reused", res.output)
    assert "(epoch pairs)" in res.output and "detects (80% power)" in res.output
    assert "warning: the holdout split" in res.output  # a dozen tasks cannot confirm 0.15
    plan = json.loads((root / ".ratchet" / "plan.json").read_text())
    assert [s["split"] for s in plan["splits"]] == ["dev", "holdout", "test"] and plan["effect"] == 0.15
    assert plan["noise"]["source"] == "epoch pairs" and 0 < plan["noise"]["mean"] < 1
    again = invoke("plan", root, "--effect", "0.5")
    assert again.exit_code == 0 and re.search(r"\((\d+) of \1 rollouts reused", again.output), again.output
    assert "gain of interest 0.5 (--effect)" in again.output
    assert invoke("plan", root, "--effect", "-1").exit_code == 2
    assert invoke("plan", root, "--limit", "1").exit_code == 2
