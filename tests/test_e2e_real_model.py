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
    before = (project / "harness" / "params.toml").read_text()
    adopt = ratchet("adopt", str(project), "r001")
    assert adopt.returncode == 0 and "adopted" in adopt.stdout, adopt.stdout + adopt.stderr
    assert (project / "harness" / "params.toml").read_text() != before  # the candidate's knobs, on the user's branch


def _waiting(project: Path) -> list[str]:
    import sqlite3

    path = project / ".ratchet" / "ledger.sqlite"
    if not path.exists():  # the loop has not opened its ledger yet
        return []
    try:
        with sqlite3.connect(path) as db:
            return [r[0] for r in db.execute("SELECT id FROM candidates WHERE status = 'awaiting_approval' ORDER BY round")]
    except sqlite3.OperationalError:  # tables not created yet
        return []


def test_approve_and_reject_from_the_cli_unblock_a_waiting_loop(tmp_path):
    import time

    root = tmp_path / "gate"
    assert ratchet("init", str(root)).returncode == 0
    toml = (root / "ratchet.toml").read_text().replace("size = 200", "size = 40")
    (root / "ratchet.toml").write_text(toml)
    params = (root / "harness" / "params.toml").read_text().replace("value = 48", "value = 16")
    (root / "harness" / "params.toml").write_text(params)
    loop = subprocess.Popen([sys.executable, "-m", "ratchet.cli", "evolve", str(root), "--rounds", "2", "--approve",
                             "always"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for verb, short in (("reject", "r001"), ("approve", "r002")):
            deadline = time.monotonic() + 600
            while not any(c.endswith(short) for c in _waiting(root)):
                assert loop.poll() is None and time.monotonic() < deadline, f"the loop never waited for {short}"
                time.sleep(1)
            res = ratchet(verb, str(root), short)
            assert res.returncode == 0 and ("rejected" if verb == "reject" else "approved") in res.stdout, res.stderr
        out, _ = loop.communicate(timeout=900)
    finally:
        loop.kill()
    assert loop.returncode == 0, out
    log = ratchet("log", str(root)).stdout
    r1, r2 = (next(line for line in log.splitlines() if f" {r} " in line) for r in ("r001", "r002"))
    assert "rejected" in r1 and "[" not in r1  # refused by a person: never evaluated, so no interval
    assert "[" in r2  # approved: evaluated, with its dev interval


FLYWHEEL_SMALL = """
[flywheel]
generations = 1
samples_per_task = 3
task_limit = 6
eval_limit = 4
eval_epochs = 1

[flywheel.train]
max_steps = 2
batch_size = 4
lora_r = 4
lora_alpha = 8
max_length = 128
"""


def test_flywheel_models_and_data_commands(tmp_path):
    root = tmp_path / "fly"
    assert ratchet("init", str(root)).returncode == 0
    (root / "ratchet.toml").write_text((root / "ratchet.toml").read_text() + FLYWHEEL_SMALL)
    run = ratchet("flywheel", str(root))
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"generation\s+1", run.stdout) and ("promoted" in run.stdout or "rejected" in run.stdout)
    models = ratchet("models", str(root))
    assert models.returncode == 0 and "smollm2-135m" in models.stdout
    stats = ratchet("data", "stats", str(root))
    assert stats.returncode == 0 and "contamination" in stats.stdout
    out = tmp_path / "export"
    export = ratchet("data", "export", str(root), "--out", str(out))
    assert export.returncode == 0, export.stdout + export.stderr
    first = json.loads((out / "provenance.jsonl").read_text().splitlines()[0])
    lineage = ratchet("data", "lineage", first["id"], "--project", str(root))
    assert lineage.returncode == 0 and first["task_id"] in lineage.stdout, lineage.stdout + lineage.stderr
    contamination = ratchet("data", "contamination", str(root))
    assert contamination.returncode == 0
