"""End to end on the real embedded model (SmolLM2-135M-Instruct from PyPI), through the CLI as a user runs it.

Small on purpose: a dozen dev tasks, one round. These are the tests that prove the commands work with
the real model rather than a scripted one; CI runs them (marker `e2e`).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def ratchet(*args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps tables to the terminal width
    return subprocess.run([sys.executable, "-m", "ratchet.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "arith"
    res = ratchet("init", str(root))
    assert res.returncode == 0, res.stderr
    toml = (root / "ratchet.toml").read_text()
    toml = toml.replace("size = 200", "size = 60").replace("rounds = 8", "rounds = 1")
    toml = toml.replace("max_steps = 6", "max_steps = 4\nlimit = 12")
    (root / "ratchet.toml").write_text(toml)
    params = (root / "harness" / "params.toml").read_text().replace("value = 48", "value = 24")
    (root / "harness" / "params.toml").write_text(params)
    return root


def test_eval_prints_accuracy_with_standard_error(project):
    res = ratchet("eval", str(project), "--limit", "8")
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"accuracy \d+\.\d% ± \d+\.\d", res.stdout), res.stdout
    payload = json.loads((project / ".ratchet" / "eval-dev.json").read_text())
    assert payload["n_rollouts"] == 8 and payload["tokens"] > 0 and payload["model"] == "smollm2-135m"
    again = ratchet("eval", str(project), "--limit", "8")  # resumable: everything is reused
    assert again.returncode == 0 and json.loads((project / ".ratchet" / "eval-dev.json").read_text())["reused"] == 8


def test_evolve_log_show_unseal_report(project, tmp_path):
    res = ratchet("evolve", str(project), "--rounds", "1", "--proposer", "search")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "round   1" in res.stdout and "seed vs best" in res.stdout
    log = ratchet("log", str(project))
    assert log.returncode == 0 and "decision" in log.stdout
    cand = re.search(r"(evolve-\S+-r001)", (project / "memory.md").read_text()).group(1)
    show = ratchet("show", str(project), cand)
    assert show.returncode == 0 and "hypothesis" in show.stdout
    sealed = ratchet("test", str(project))
    assert sealed.returncode != 0 and "sealed" in (sealed.stdout + sealed.stderr)
    unseal = ratchet("test", str(project), "--unseal")
    assert unseal.returncode == 0 and re.search(r"unseal\s*#1", unseal.stdout), unseal.stdout + unseal.stderr
    out = tmp_path / "report.html"
    rep = ratchet("report", "latest", "-o", str(out), cwd=project)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert out.stat().st_size > 10_000
