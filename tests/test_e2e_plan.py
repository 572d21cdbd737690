"""`ratchet init --suite` and `ratchet plan` end to end on the real embedded model, through the CLI.

Small on purpose: a reasoning-gym dataset no example uses, sized for a large effect, six dev tasks."""

import json
import re

import pytest

from test_e2e_real_model import ratchet

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_init_suite_then_plan_on_the_real_model(tmp_path):
    root = tmp_path / "aiw"
    res = ratchet("init", str(root), "--suite", "reasoning_gym:aiw", "--effect", "0.45")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"size \d+: the smallest suite whose dev, holdout and test splits hold \d+ tasks each", res.stdout)
    params = root / "harness" / "params.toml"
    params.write_text(params.read_text().replace("value = 128", "value = 24"))  # short replies: a quick test
    plan = ratchet("plan", str(root), "--limit", "6")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "seed on dev:" in plan.stdout and "on 6 tasks x 2 epochs (0 of 12 rollouts reused" in plan.stdout
    assert "detects (80% power)" in plan.stdout and "(epoch pairs)" in plan.stdout
    payload = json.loads((root / ".ratchet" / "plan.json").read_text())
    assert [s["split"] for s in payload["splits"]] == ["dev", "holdout", "test"]
    assert all(s["n"] > 0 for s in payload["splits"]) and payload["noise"]["n_tasks"] == 6
    again = ratchet("plan", str(root), "--limit", "6", "--effect", "0.3")
    assert again.returncode == 0 and "(12 of 12 rollouts reused" in again.stdout, again.stdout + again.stderr
