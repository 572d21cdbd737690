"""MLflow tracking (`[tracking] mlflow`): short real runs write a real MLflow file store (mlflow-skinny from PyPI,
no server), read back with `MlflowClient`: one MLflow run per ratchet run, the round metrics, the artifacts,
the same MLflow run on --resume, a flywheel generation with its data card and lineage; a tracker that
fails never stops a run."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_TOML, fake_project, make_project_dir
from ratchet.config import ConfigError, TrackingSection, parse_project
from ratchet.evolve.run import EvolveOptions, evolve
from ratchet.ledger import Ledger
from ratchet.loop.record import Decision
from ratchet.tracking import Guarded, RunTracking

pytest.importorskip("mlflow")  # the `tracking` extra (scripts/setup.sh installs it with RATCHET_SETUP_FULL=1)

from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

TRACKED = PROJECT_TOML + '\n[tracking]\nmlflow = "mlruns"\n'


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what ratchet sets for a file store; the client here reads it


def run_evolve(root: Path, messages: list[str] | None = None, **opts):
    proj = fake_project(root)
    say = messages.append if messages is not None else (lambda _m: None)
    try:
        return asyncio.run(evolve(proj, EvolveOptions(**opts), say=say))
    finally:
        asyncio.run(proj.aclose())


def mlflow_runs(root: Path, experiment: str = "fake-arith"):
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {root / 'mlruns'}"
    return client, client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)


def steps(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_a_short_evolve_run_is_one_mlflow_run_with_the_round_metrics_and_the_diff(tmp_path):
    root = make_project_dir(tmp_path / "p", n_tasks=24, toml=TRACKED)
    outcome = run_evolve(root, rounds=2)
    assert outcome.status == "finished" and len(outcome.rounds) == 2
    client, runs = mlflow_runs(root)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == outcome.run_id and run.info.status == "FINISHED"
    assert {k: run.data.tags[k] for k in ("ratchet.run_id", "ratchet.kind", "ratchet.project", "ratchet.status")} == {
        "ratchet.run_id": outcome.run_id, "ratchet.kind": "evolve", "ratchet.project": "fake-arith",
        "ratchet.status": "finished"}
    assert run.data.params["loop.alpha"] == "0.05" and run.data.params["loop.proposer"] == "search"

    ledger = Ledger(fake_project(root).cfg.ledger_url)
    candidates = ledger.candidates(outcome.run_id)
    mid = run.info.run_id
    assert steps(client, mid, "accepted") == {c["round"]: float(c["status"] == "accepted") for c in candidates}
    for c in candidates:
        d = Decision.from_json(c["decision"])
        if d.stats is not None:
            for key, value in (("dev_diff", d.stats.mean_diff), ("dev_ci_low", d.stats.ci_low),
                               ("dev_ci_high", d.stats.ci_high), ("dev_p", d.stats.p_value)):
                if math.isfinite(value):
                    assert steps(client, mid, key)[c["round"]] == pytest.approx(value), (c["round"], key)
        if d.holdout is not None:
            assert steps(client, mid, "holdout_confirmed")[c["round"]] == float(d.holdout.confirmed)
            assert steps(client, mid, "holdout_diff")[c["round"]] == pytest.approx(d.holdout.holdout_diff)
    accepted = [c for c in candidates if c["status"] == "accepted"]
    assert accepted, "the search proposer's temperature change fixes every task; it must be kept"
    assert steps(client, mid, "holdout_confirmed")[accepted[0]["round"]] == 1.0

    first = candidates[0]
    files = {Path(a.path).name for a in client.list_artifacts(mid, "round-001")}
    assert {"diff.patch", "decision.json", "knobs.json", "lesson.md"} <= files
    folder = Path(client.download_artifacts(mid, "round-001", str(tmp_path / "dl")))
    assert (folder / "diff.patch").read_text() == first["diff"] and "temperature" in first["diff"]
    knobs = json.loads((folder / "knobs.json").read_text())
    assert knobs["temperature"] != 0.9 and knobs["style"] in ("plain", "terse")  # the candidate's values, not the seed's
    assert json.loads((folder / "decision.json").read_text())["candidate"] == first["id"]
    assert steps(client, mid, "best_dev")[2] == pytest.approx(ledger.run(outcome.run_id)["summary"]["best_dev"])


def test_resume_continues_the_same_mlflow_run(tmp_path):
    root = make_project_dir(tmp_path / "p", n_tasks=24, toml=TRACKED)
    first = run_evolve(root, rounds=1)
    (root / ".ratchet" / "STOP").write_text("stop")
    stopped = run_evolve(root, rounds=2, resume=True)
    assert stopped.status == "stopped"
    client, runs = mlflow_runs(root)
    assert len(runs) == 1 and runs[0].info.status == "KILLED" and runs[0].data.tags["ratchet.status"] == "stopped"
    (root / ".ratchet" / "STOP").unlink()
    again = run_evolve(root, rounds=2, resume=True)
    assert again.run_id == first.run_id and [r.round for r in again.rounds] == [2]
    client, runs = mlflow_runs(root)
    assert len(runs) == 1, "a resumed ratchet run continues its MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == first.run_id
    assert sorted(steps(client, run.info.run_id, "accepted")) == [1, 2]  # each round once
    assert {Path(a.path).name for a in client.list_artifacts(run.info.run_id)} >= {"round-001", "round-002", "summary.json"}


def test_a_tracker_that_fails_never_stops_the_run(tmp_path):
    root = make_project_dir(tmp_path / "p", n_tasks=24, toml=PROJECT_TOML + '\n[tracking]\nmlflow = "blocked"\n')
    (root / "blocked").write_text("a file where the MLflow store's directory would go\n")
    messages: list[str] = []
    outcome = run_evolve(root, messages, rounds=1)
    assert outcome.status == "finished" and len(outcome.rounds) == 1
    warnings = [m for m in messages if m.startswith("warning: MLflow tracking failed")]
    assert len(warnings) == 1 and "the ledger has everything" in warnings[0]
    ledger = Ledger(fake_project(root).cfg.ledger_url)
    assert [c["round"] for c in ledger.candidates(outcome.run_id)] == [1] and ledger.lessons(outcome.run_id)

    class Broken:  # a tracker whose store went away mid-run
        def logged_steps(self):
            return set()

        def round_finished(self, rec):
            raise OSError("the store is gone")

        generation_finished = round_finished

        def run_finished(self, status, reason, summary):
            raise OSError("the store is gone")

    said: list[str] = []
    tracking = RunTracking(Guarded(Broken(), said.append), ledger, outcome.run_id, said.append)
    tracking.rounds_done(1)
    tracking.finished("finished", "")
    assert len(said) == 1 and "OSError: the store is gone" in said[0]


def test_tracking_config_paths_resolve_against_the_project_and_bad_values_say_what_to_fix(tmp_path):
    root = tmp_path.resolve()
    uri = lambda spec: TrackingSection(mlflow=spec).mlflow_uri(root)
    assert uri("mlruns") == (root / "mlruns").as_uri() == uri("file:mlruns") == uri("file:./mlruns")
    assert uri("file:///srv/mlruns") == "file:///srv/mlruns"
    assert uri("sqlite:///.ratchet/mlflow.db") == f"sqlite:///{root}/.ratchet/mlflow.db"
    assert uri("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"
    assert uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert TrackingSection().mlflow_uri(root) is None
    (tmp_path / "harness").mkdir()
    with pytest.raises(ConfigError, match=r"\[tracking\.mlflow\] must be a non-empty string"):
        parse_project({"tracking": {"mlflow": " "}}, root=tmp_path)
    with pytest.raises(ConfigError, match=r"\[tracking\.mlfow\] unknown key"):
        parse_project({"tracking": {"mlfow": "mlruns"}}, root=tmp_path)


def test_mlflow_is_not_imported_unless_tracking_is_configured():
    code = ("import sys, ratchet.tracking, ratchet.loop.driver, ratchet.evolve.run, ratchet.research.run, "
            "ratchet.flywheel.engine, ratchet.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow  # ~130 sandboxed episodes: 12 s alone, 20 s on busy cores
def test_a_flywheel_generation_logs_its_means_data_card_and_the_promoted_models_lineage(tmp_path):
    from ratchet.ledger.flywheel_store import FlywheelStore
    from test_flywheel_engine import TOML, FakeTrainer, make_engine

    root = make_project_dir(tmp_path / "proj", n_tasks=40, toml=TOML.replace("generations = 2", "generations = 1")
                            + '\n[tracking]\nmlflow = "mlruns"\n')
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")  # the base "weights" the fake trainer starts from
    toml = (root / "ratchet.toml").read_text()
    (root / "ratchet.toml").write_text(toml.replace('backend = "scripted"\nname = "arith-fake"', f'backend = "local"\nname = "{base}"'))
    proj, engine = make_engine(root, str(base), FakeTrainer())
    summary = asyncio.run(engine.run())
    g1 = engine.model_name(1)
    assert summary.status == "finished" and summary.current_model == g1
    client, runs = mlflow_runs(root)
    assert len(runs) == 1 and runs[0].data.tags["ratchet.kind"] == "flywheel" and runs[0].info.status == "FINISHED"
    mid, row = runs[0].info.run_id, FlywheelStore(proj.ledger).generation(summary.run_id, 1)
    assert steps(client, mid, "promoted") == {1: 1.0}
    for key, value in row["decision"]["means"].items():
        assert steps(client, mid, f"{key}_mean")[1] == pytest.approx(value)
    folder = Path(client.download_artifacts(mid, "generation-001", str(tmp_path / "dl")))
    assert "| 1 |" in (folder / "DATA_CARD.md").read_text()
    lineage = json.loads((folder / "model.json").read_text())
    assert lineage["name"] == g1 and lineage["parent"] == str(base) and lineage["dataset_hash"] == row["dataset_hash"]
    assert lineage["train_config"]["max_steps"] == 1
    assert runs[0].data.tags["ratchet.current_model"] == g1 and runs[0].data.params["g001.parent"] == str(base)
    assert not [a for a in client.list_artifacts(mid, "generation-001") if a.path.endswith((".safetensors", ".bin"))]


def test_tracking_without_the_package_is_an_error_before_the_run_says_what_to_install(tmp_path, monkeypatch):
    from ratchet.tracking import NoTracker, RunInfo, configure

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as on a machine without the `tracking` extra
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[tracking\]'"):
        configure(TrackingSection(mlflow="mlruns"), tmp_path)
    assert isinstance(configure(TrackingSection(), tmp_path).start(RunInfo("r", "evolve", "p")), NoTracker)


def test_a_research_run_is_tracked_too_with_the_store_under_ratchet(tmp_path):
    from test_research_loop import TOML, go, make_project

    root = make_project(tmp_path / "r", toml=TOML + '\n[tracking]\nmlflow = ".ratchet/mlruns"\nexperiment = "research"\n')
    out = go(root, rounds=1)
    assert out.status == "finished"
    client = MlflowClient(tracking_uri=(root / ".ratchet" / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("research").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["ratchet.kind"] == "research" and runs[0].info.run_name == out.run_id
    assert runs[0].data.params["research.metric"] == "loss" and sorted(steps(client, runs[0].info.run_id, "accepted")) == [1]
    knobs = json.loads(Path(client.download_artifacts(runs[0].info.run_id, "round-001/knobs.json", str(tmp_path))).read_text())
    assert set(knobs) == {"x", "salt"}
