"""Inspect AI tasks as suites, and ratchet's evaluations as Inspect eval logs, with the real inspect-ai from PyPI.

The Inspect task is defined by the tests (tests/inspect_fixture.py: a JSONL dataset read by Inspect's
json_dataset, scored by Inspect's match(); a multiple-choice task scored by choice(); one with task args);
the model is the scripted arithmetic model (right at a low temperature), so the search proposer has a knob
with an effect. The logs are read back with inspect_ai.log.read_eval_log and compared with the ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from inspect_fixture import make_inspect_project
from ratchet.config import ConfigError, load_project
from ratchet.ledger import Ledger
from ratchet.suites import build_suite, tasks_for_split
from ratchet.types import Task

inspect_ai = pytest.importorskip("inspect_ai")
from inspect_ai.log import read_eval_log  # noqa: E402


def ratchet(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ratchet.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def suite_of(root: Path):
    cfg = load_project(root)
    return build_suite(cfg.suite, cfg.root), cfg


def score(suite, task_id: str, answer: str | None) -> float:
    task = next(t for t in suite.tasks() if t.id == task_id)
    return asyncio.run(suite.score(task, answer)).value


# -- the suite --------------------------------------------------------------------------------------


def test_inspect_task_is_a_suite_with_stable_ids_and_splits(tmp_path):
    root = make_inspect_project(tmp_path / "p", n_tasks=20)
    suite, cfg = suite_of(root)
    ids = [t.id for t in suite.tasks()]
    assert len(ids) == 20 == len(set(ids))
    assert ids[1:5] == ["q1", "q2", "q3", "q4"]  # the sample ids
    assert ids[0].startswith("h") and ids[5].startswith("h")  # no id: a hash of the input
    again, _ = suite_of(root)  # a second load (a new process, a resumed run) gives the same ids and splits
    assert [t.id for t in again.tasks()] == ids
    fractions = cfg.suite.splits.model_dump()
    for split in ("train", "dev", "holdout", "test"):
        assert [t.id for t in tasks_for_split(suite, split, fractions)] == [t.id for t in tasks_for_split(again, split, fractions)]
    assert suite.name == "arithmetic" and suite.scorer_name == "match"
    task = suite.tasks()[1]
    assert task.input == "Calculate 1 + 3." and "4" not in json.dumps(task.metadata)  # the target stays in the suite
    assert suite.gold("q1") == "4"
    assert again.fingerprint() == suite.fingerprint()


def test_fingerprint_changes_with_the_task_file_and_the_dataset(tmp_path):
    root = make_inspect_project(tmp_path / "p", n_tasks=6)
    suite, _ = suite_of(root)
    before = suite.fingerprint()
    data = root / "arith.jsonl"
    data.write_text(data.read_text().replace('"target": "4"', '"target": "5"'))
    assert suite.fingerprint() != before  # the dataset file on disk changed under a loaded suite
    data.write_text(data.read_text().replace('"target": "5"', '"target": "4"'))
    assert suite.fingerprint() == before
    (root / "tasks.py").write_text((root / "tasks.py").read_text() + "\n# edited\n")
    assert suite.fingerprint() != before


def test_inspect_scorers_score_the_harness_reply(tmp_path):
    root = make_inspect_project(tmp_path / "p", n_tasks=6)
    suite, _ = suite_of(root)
    assert score(suite, "q2", "The sum is 7") == 1.0  # match(): the number at the end
    assert score(suite, "q2", "8") == 0.0
    assert score(suite, "q2", None) == 0.0
    feedback = asyncio.run(suite.score(Task("q2", ""), "8")).feedback
    assert feedback.startswith("wrong") and "7" not in feedback  # the feedback does not give the target away

    mc = build_suite(load_project(root).suite.model_copy(update={"task": "tasks.py@capitals"}), root)
    fr = next(t for t in mc.tasks() if t.id == "fr")
    assert "B) Paris" in fr.input and "ANSWER" in fr.input and fr.metadata["choices"] == ["Berlin", "Paris", "Rome"]
    assert score(mc, "fr", "ANSWER: B") == 1.0 and score(mc, "fr", "ANSWER: A") == 0.0 and score(mc, "fr", "") == 0.0

    greet = build_suite(load_project(root).suite.model_copy(update={"task": "tasks.py@greeting",
                                                                    "task_args": {"word": "ahoy"}}), root)
    first = greet.tasks()[0].id
    assert score(greet, first, "Ahoy there!") == 1.0 and score(greet, first, "hello") == 0.0


@pytest.mark.parametrize("task, expected", [
    (None, 'needs task = "<file.py>@<task name>"'),
    ("missing.py@arithmetic", "missing.py is not a file"),
    ("tasks.py", "defines several tasks (arithmetic, capitals, greeting)"),
    ("tasks.py@nope", "Task named 'nope' not found"),
    ("no_such_registered_task", "no installed task has this name"),
    ("tasks.txt@arithmetic", "must be a .py file"),
])
def test_bad_task_specs_say_what_to_fix(tmp_path, task, expected):
    root = make_inspect_project(tmp_path / "p", n_tasks=4)
    section = load_project(root).suite.model_copy(update={"task": task})
    with pytest.raises((ConfigError, ValueError)) as err:
        build_suite(section, root)
    assert expected in str(err.value)


SCORERS = '''
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import answer, exact, f1, pattern


def one(scorer):
    return Task(dataset=[Sample(id=1, input="Which is the capital of France?", target="Paris")], scorer=scorer)


@task
def with_pattern():
    return one(pattern(r"capital is (\\w+)"))


@task
def with_answer():
    return one(answer("word"))


@task
def with_exact():
    return one(exact())


@task
def with_f1():
    return one(f1())
'''


@pytest.mark.parametrize("name, right, wrong", [
    ("with_pattern", "The capital is Paris", "The capital is Rome"),
    ("with_answer", "ANSWER: Paris", "ANSWER: Rome"),
    ("with_exact", "Paris", "Paris, France"),
    ("with_f1", "Paris", "Rome"),
])
def test_scorers_that_need_no_model_work(tmp_path, name, right, wrong):
    root = make_inspect_project(tmp_path / "p", n_tasks=2)
    (root / "scorers.py").write_text(SCORERS)
    suite = build_suite(load_project(root).suite.model_copy(update={"task": f"scorers.py@{name}"}), root)
    assert score(suite, "1", right) == 1.0 and score(suite, "1", wrong) == 0.0


UNSUPPORTED = '''
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import Score, model_graded_qa, scorer, accuracy


@task
def no_scorer():
    return Task(dataset=[Sample(input="x", target="y")])


@task
def boxed():
    return Task(dataset=[Sample(input="x", target="y")], scorer=model_graded_qa(), sandbox="docker")


@task
def graded():
    return Task(dataset=[Sample(input="x", target="y")], scorer=model_graded_qa())


@scorer(metrics=[accuracy()])
def many():
    async def score(state, target):
        return Score(value={"a": 1, "b": 0})
    return score


@task
def dict_valued():
    return Task(dataset=[Sample(id=1, input="x", target="y")], scorer=many())
'''


def test_unsupported_inspect_features_are_clear_errors(tmp_path):
    root = make_inspect_project(tmp_path / "p", n_tasks=4)
    (root / "more.py").write_text(UNSUPPORTED)
    section = load_project(root).suite

    def load(name: str):
        return build_suite(section.model_copy(update={"task": f"more.py@{name}"}), root)

    with pytest.raises(ValueError, match="has no scorer"):
        load("no_scorer")
    with pytest.raises(ValueError, match="Inspect sandbox"):
        load("boxed")
    graded = load("graded")  # loads; scoring needs a model, which ratchet does not give Inspect scorers
    with pytest.raises(ValueError, match="model_graded_qa.*need no model"):
        asyncio.run(graded.score(graded.tasks()[0], "y"))
    many = load("dict_valued")
    with pytest.raises(ValueError, match="one value per sample"):
        asyncio.run(many.score(many.tasks()[0], "y"))


# -- the loop on an Inspect task, and its evaluations as Inspect logs ---------------------------------


def ledger_scores(ledger: Ledger, eval_id: str) -> dict[tuple[str, int], float]:
    return {(t.task_id, t.epoch + 1): t.score for t in ledger.rollouts(eval_id)}


def log_scores(log) -> dict[tuple[str, int], float]:
    return {(str(s.id), s.epoch): s.scores["match"].value for s in log.samples}


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    """`ratchet evolve` for two rounds on the Inspect task, writing logs as evaluations end; then the export."""
    root = make_inspect_project(tmp_path_factory.mktemp("inspect") / "p", n_tasks=24, inspect_logs="inspect-logs")
    res = ratchet("eval", str(root), "--split", "holdout")  # outside a run: its log goes to inspect-logs/evals
    assert res.returncode == 0, res.stdout + res.stderr
    res = ratchet("evolve", str(root), "--rounds", "2", "--proposer", "search")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "round   1" in res.stdout and "round   2" in res.stdout
    out = root / "exported"
    exp = ratchet("export", "inspect", str(root), "--out", str(out))
    assert exp.returncode == 0, exp.stdout + exp.stderr
    cfg = load_project(root)
    ledger = Ledger(cfg.ledger_url)
    run_id = ledger.latest_run("evolve", cfg.project.name)["id"]
    yield root, out / run_id, run_id, ledger
    ledger.close()


def test_evolve_on_an_inspect_task_exports_logs_with_the_ledgers_scores(evolved):
    root, out, run_id, ledger = evolved
    files = sorted(out.glob("*.eval"))
    assert files, f"no logs in {out}"
    candidates = {c["id"]: c for c in ledger.candidates(run_id)}
    assert len(candidates) == 2
    seen_decisions = set()
    for f in files:
        log = read_eval_log(str(f))
        meta = log.eval.metadata["ratchet"]
        row = ledger.eval(meta["eval_id"])
        assert row is not None and log.status == "success"
        assert log_scores(log) == ledger_scores(ledger, row["id"])  # one sample per task x epoch, the same scores
        assert len(log.samples) == row["n_tasks"] * row["epochs"]
        assert log.eval.model == f"ratchet/{row['model']}" and log.eval.task == "arithmetic"
        assert log.eval.task_file == str(root / "tasks.py")
        metrics = log.results.scores[0].metrics
        mean = sum(log_scores(log).values()) / len(log.samples)
        assert metrics["accuracy"].value == pytest.approx(mean) and "stderr" in metrics
        sample = log.samples[0]
        assert sample.target and sample.output.completion == next(
            t.output for t in ledger.rollouts(row["id"]) if t.task_id == sample.id)
        if "decision" in meta:  # the candidate's Decision, as the ledger holds it
            cand = candidates[meta["candidate"]["id"]]
            assert meta["decision"]["final"] == cand["status"]
            assert meta["decision"]["dev"]["p_value"] == pytest.approx(json.loads(json.dumps(cand["decision"]))["dev"]["p_value"])
            assert meta["role"] in ("candidate", "parent")
            seen_decisions.add((cand["id"], meta["role"]))
    for cand_id, c in candidates.items():  # every decided candidate's dev evaluations carry its decision
        if c["decision"].get("dev"):
            assert {(cand_id, "candidate"), (cand_id, "parent")} <= seen_decisions


def test_logs_written_as_evaluations_end_match_the_export(evolved):
    root, out, run_id, ledger = evolved
    live = {f.name: read_eval_log(str(f)) for f in (root / "inspect-logs" / run_id).glob("*.eval")}
    exported = {f.name: read_eval_log(str(f)) for f in out.glob("*.eval")}
    assert set(exported) <= set(live)
    for name, log in exported.items():
        assert log_scores(live[name]) == log_scores(log)
        assert live[name].eval.metadata["ratchet"].get("decision") == log.eval.metadata["ratchet"].get("decision")


def test_ratchet_eval_writes_its_log_as_it_ends(evolved):
    root, _, _, ledger = evolved
    eval_id = json.loads((root / ".ratchet" / "eval-holdout.json").read_text())["eval_id"]
    (f,) = (root / "inspect-logs" / "evals").glob("*.eval")
    log = read_eval_log(str(f))
    assert log.eval.eval_id == eval_id and log.eval.metadata["ratchet"]["split"] == "holdout"
    assert log_scores(log) == ledger_scores(ledger, eval_id)


@pytest.mark.parametrize("args, expected", [
    (["evolve-no-such-run"], "no run 'evolve-no-such-run'"),
    (["--eval", "ev-nope"], "no evaluation 'ev-nope'"),
    (["--format", "yaml"], "use eval or json"),
])
def test_export_errors_say_what_to_fix(evolved, tmp_path, monkeypatch, args, expected):
    from typer.testing import CliRunner

    from ratchet.cli import app
    from ratchet.console import err_console

    monkeypatch.setattr(err_console, "width", 250)
    root, *_ = evolved
    result = CliRunner().invoke(app, ["export", "inspect", str(root), *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_one_evaluation_exports_as_json(evolved, tmp_path):
    root, _, run_id, ledger = evolved
    eval_id = ledger.evals(run_id)[0]["id"]
    res = ratchet("export", "inspect", str(root), "--eval", eval_id, "--format", "json", "--out", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    (f,) = (tmp_path / "evals").glob("*.json")
    assert log_scores(read_eval_log(str(f))) == ledger_scores(ledger, eval_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_inspect_view_serves_the_exported_logs(evolved):
    import httpx

    _, out, _, ledger = evolved
    port = _free_port()
    view = subprocess.Popen([sys.executable, "-m", "inspect_ai", "view", "--log-dir", str(out), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base, files = f"http://127.0.0.1:{port}/api", None
        deadline = time.monotonic() + 60
        while files is None and time.monotonic() < deadline:
            try:
                files = httpx.get(f"{base}/log-files", timeout=5).json()["files"]
            except httpx.TransportError:
                time.sleep(0.5)
        assert files, "inspect view did not answer within 60 s"
        assert len(files) == len(list(out.glob("*.eval"))) and {f["task"] for f in files} == {"arithmetic"}
        log = httpx.get(f"{base}/logs/{urllib.parse.quote(files[0]['name'], safe='')}", timeout=30).json()
        assert log["status"] == "success" and log["samples"]
        assert ledger.eval(log["eval"]["metadata"]["ratchet"]["eval_id"]) is not None
    finally:
        view.terminate()
        view.wait(timeout=30)
