"""Experiment tracking: every ratchet run mirrored to MLflow when `[tracking] mlflow = URI` is set.

The ledger stays the record; a tracker is a copy for the tools people already use. One MLflow run per
ratchet run (named by the run id, tagged with kind and project, the same MLflow run again on
`--resume`); per round the decision's figures as metrics (step = round) and the candidate's diff,
rationale, hypothesis, lesson and knobs as artifacts under `round-NNN/`; per flywheel generation the
means, the promotion and the data card under `generation-NNN/`, and a promoted model's lineage.

`configure` checks the configuration before a run starts (a missing package is an error to fix);
after that a tracking failure never stops a run: it is reported once, tracking is off for the rest
of the run, and the ledger keeps everything (a resumed run logs the rounds the tracker missed).
MLflow is imported only when tracking is configured. See docs/tracking.md.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ratchet.config import ConfigError, TrackingSection
from ratchet.loop.decision import DecisionStats
from ratchet.loop.record import Decision, HoldoutRecord

Say = Callable[[str], None]
ReadFiles = Callable[[str], dict[str, str]]  # commit -> {path: text}


@dataclass
class RunInfo:
    run_id: str
    kind: str  # evolve | research | flywheel
    project: str
    config: dict[str, Any] = field(default_factory=dict)  # the run's stored config (logged once, as params)


@dataclass
class RoundRecord:
    """One decided round of a loop run, as the ledger holds it."""

    round: int
    candidate_id: str
    status: str
    decision: Decision
    summary: str = ""
    proposer: str = ""
    commit: str | None = None
    parent_id: str | None = None
    texts: dict[str, str] = field(default_factory=dict)  # artifact file name -> text (diff, rationale, ...)
    knobs: dict[str, Any] = field(default_factory=dict)  # the candidate's params.toml values


@dataclass
class GenerationRecord:
    """One finished flywheel generation: its ledger row, the data card so far, the model it trained."""

    generation: int
    status: str  # promoted | rejected | skipped
    row: dict[str, Any]
    card: str = ""
    model: dict[str, Any] | None = None  # the registry row of the trained candidate (lineage, not weights)


class Tracker(Protocol):
    def round_finished(self, rec: RoundRecord) -> None: ...

    def generation_finished(self, rec: GenerationRecord) -> None: ...

    def run_finished(self, status: str, reason: str, summary: Mapping[str, Any]) -> None: ...

    def logged_steps(self) -> set[int]: ...  # rounds or generations already in the tracker


class NoTracker:
    """What a run has without `[tracking]`: nothing is logged anywhere but the ledger."""

    def round_finished(self, rec: RoundRecord) -> None:
        pass

    def generation_finished(self, rec: GenerationRecord) -> None:
        pass

    def run_finished(self, status: str, reason: str, summary: Mapping[str, Any]) -> None:
        pass

    def logged_steps(self) -> set[int]:
        return set()


@dataclass
class Tracking:
    """The checked `[tracking]` of a project; `start` opens (or reopens) one run's tracker."""

    uri: str | None = None
    experiment: str | None = None
    say: Say = print

    def start(self, run: RunInfo) -> Tracker:
        if self.uri is None:
            return NoTracker()
        try:
            tracker: Tracker = MlflowTracker(self.uri, self.experiment or run.project, run)
        except Exception as e:  # a tracker that cannot open must not stop the run
            _warn(self.say, e)
            return NoTracker()
        return Guarded(tracker, self.say)


def configure(section: TrackingSection | None, root: Path, say: Say = print) -> Tracking:
    """The project's tracking, checked before a run starts: a missing package is a ConfigError that says what to do."""
    if section is None or section.mlflow is None:
        return Tracking(say=say)
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("[tracking] mlflow is set, but the mlflow package is not installed: "
                          "pip install -e '.[tracking]' (or mlflow-skinny), or remove [tracking] mlflow")
    return Tracking(section.mlflow_uri(root), section.experiment, say)


def _warn(say: Say, e: BaseException) -> None:
    text = (f"warning: MLflow tracking failed ({type(e).__name__}: {str(e)[:300]}); tracking is off for the rest of "
            "this run, the ledger has everything, and `--resume` logs what the tracker missed")
    try:
        say(text)
    except Exception:  # a console that cannot print the error's text (markup in it) must not stop the run either
        logging.getLogger(__name__).warning(text)


class Guarded:
    """A tracker whose failures are reported once and then switch tracking off; the run goes on."""

    def __init__(self, inner: Tracker, say: Say):
        self.inner, self.say, self.on = inner, say, True

    def _call(self, name: str, *args: Any) -> Any:
        if not self.on:
            return None
        try:
            return getattr(self.inner, name)(*args)
        except Exception as e:  # tracking is a copy; the ledger write already happened
            self.on = False
            _warn(self.say, e)
            return None

    def round_finished(self, rec: RoundRecord) -> None:
        self._call("round_finished", rec)

    def generation_finished(self, rec: GenerationRecord) -> None:
        self._call("generation_finished", rec)

    def run_finished(self, status: str, reason: str, summary: Mapping[str, Any]) -> None:
        self._call("run_finished", status, reason, summary)

    def logged_steps(self) -> set[int]:
        return self._call("logged_steps") or set()


# -- what the ledger holds, as records -------------------------------------------------------------------------

def knobs_of(files: Mapping[str, str]) -> dict[str, Any]:
    """params.toml's values: a knob table's `value`, `[skills] enabled`, any other value as it is ({} without one)."""
    try:
        raw = tomllib.loads(files.get("params.toml") or "")
    except tomllib.TOMLDecodeError:
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key == "skills":
            out["skills.enabled"] = value.get("enabled", [])
        elif isinstance(value, dict):
            out[key] = value.get("value", value)
        else:
            out[key] = value
    return out


def round_record(ledger: Any, run_id: str, r: int, read_files: ReadFiles | None = None) -> RoundRecord | None:
    """Round r of a loop run from the ledger (its candidate, decision and lesson), or None before it has a row."""
    row = next((c for c in ledger.candidates(run_id) if c["round"] == r), None)
    if row is None:
        return None
    lesson = next((les["text"] for les in ledger.lessons(run_id) if les["round"] == r), "")
    texts = {"diff.patch": row.get("diff") or "", "rationale.md": row.get("rationale") or "",
             "hypothesis.md": row.get("hypothesis") or "", "lesson.md": lesson or ""}
    knobs: dict[str, Any] = {}
    if read_files is not None and row.get("commit"):
        knobs = knobs_of(read_files(row["commit"]))
    return RoundRecord(r, row["id"], str(row["status"]), Decision.from_json(row.get("decision")), row.get("summary") or "",
                       row.get("proposer") or "", row.get("commit"), row.get("parent_id"),
                       {k: v for k, v in texts.items() if v.strip()}, knobs)


class RunTracking:
    """A tier's side of tracking one run. `rounds_done(r)` logs every decided round up to r that the tracker
    does not have yet (so a round missed before a kill is logged on `--resume`), `generation_done(g)` one
    finished flywheel generation (once), `finished` the run's status and summary. Reading the ledger or a
    candidate's files for the tracker is tracking too: a failure there is reported and switches it off."""

    def __init__(self, tracker: Tracker, ledger: Any, run_id: str, say: Say = print, read_files: ReadFiles | None = None,
                 card: Callable[[], str] | None = None):
        self.tracker, self.ledger, self.run_id, self.say = tracker, ledger, run_id, say
        self.read_files, self.card = read_files, card
        self.done = None if isinstance(tracker, NoTracker) else tracker.logged_steps()

    def _safely(self, fn: Callable[[], None]) -> None:
        if self.done is None:
            return
        try:
            fn()
        except Exception as e:  # the ledger has it; the copy can wait for --resume
            self.done = None
            _warn(self.say, e)

    def rounds_done(self, upto: int) -> None:
        def log() -> None:
            for r in range(1, upto + 1):
                if r not in self.done and (rec := round_record(self.ledger, self.run_id, r, self.read_files)) is not None:
                    self.tracker.round_finished(rec)
                    self.done.add(r)
        self._safely(log)

    def generation_done(self, g: int) -> None:
        def log() -> None:
            from ratchet.ledger.flywheel_store import FlywheelStore

            store = FlywheelStore(self.ledger)
            row = store.generation(self.run_id, g)
            if g in self.done or row is None:
                return
            model = store.model(row["candidate_model"]) if row.get("candidate_model") else None
            self.tracker.generation_finished(GenerationRecord(g, row["status"], row, self.card() if self.card else "", model))
            self.done.add(g)
        self._safely(log)

    def finished(self, status: str, reason: str) -> None:
        def log() -> None:
            if self.read_files is not None:  # a loop run: any round the tracker missed first
                self.rounds_done(max((c["round"] for c in self.ledger.candidates(self.run_id)), default=0))
            if self.done is not None:
                self.tracker.run_finished(status, reason, (self.ledger.run(self.run_id) or {}).get("summary") or {})
        self._safely(log)


def run_tracking(tracking: Tracking, ledger: Any, run: RunInfo, read_files: ReadFiles | None = None,
                 card: Callable[[], str] | None = None) -> RunTracking:
    """The tracking of one run (a no-op without `[tracking]`): a loop run passes `read_files` (a commit's files,
    for the knobs), the flywheel `card` (the data card so far)."""
    return RunTracking(tracking.start(run), ledger, run.run_id, tracking.say, read_files, card)


def round_metrics(rec: RoundRecord) -> dict[str, float]:
    """A round's figures: the decision (accepted), the statistics that decided (dev, or the first slice), the holdout."""
    d = rec.decision
    out: dict[str, float] = {"accepted": float(rec.status == "accepted")}
    if (s := d.stats) is not None:
        out.update(dev_diff=s.mean_diff, dev_ci_low=s.ci_low, dev_ci_high=s.ci_high, dev_p=s.p_value,
                   dev_mean_parent=s.mean_parent, dev_mean_cand=s.mean_cand, stopped_early=float(d.stopped_early))
    if d.holdout is not None:
        out.update(holdout_confirmed=float(bool(d.holdout.confirmed)), holdout_diff=d.holdout.holdout_diff,
                   holdout_p=d.holdout.p_value)
    return _finite(out)


def generation_metrics(rec: GenerationRecord) -> dict[str, float]:
    """A generation's means (current and candidate on dev and holdout), the promotion and its statistics."""
    decision = rec.row.get("decision") or {}
    out: dict[str, float] = {"promoted": float(rec.status == "promoted")}
    for key, value in (decision.get("means") or {}).items():
        out[f"{key}_mean" if not key.endswith("_mean") else key] = value
    if decision.get("dev"):
        s = DecisionStats.from_json(decision["dev"])
        out.update(dev_diff=s.mean_diff, dev_ci_low=s.ci_low, dev_ci_high=s.ci_high, dev_p=s.p_value)
    if decision.get("holdout"):
        h = HoldoutRecord.from_json(decision["holdout"])
        out.update(holdout_confirmed=float(bool(h.confirmed)), holdout_diff=h.holdout_diff)
    return _finite(out)


def _finite(d: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, scalar values as text, None left out."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = re.sub(r"[^A-Za-z0-9_\-. /]", "_", f"{prefix}{key}")[:250]
        if isinstance(value, Mapping):
            out.update(flat_params(value, name + "."))
        elif value is not None:
            out[name] = (value if isinstance(value, str) else json.dumps(value, default=str))[:6000]
    return out


# -- MLflow ----------------------------------------------------------------------------------------------------

PARAM_SECTIONS = ("loop", "model", "suite", "research", "flywheel", "base_model", "generations")
RUN_TAG = "ratchet.run_id"


class MlflowTracker:
    """One ratchet run as one MLflow run, through `MlflowClient` (no global active run)."""

    def __init__(self, uri: str, experiment: str, run: RunInfo):
        if uri.startswith("file:"):  # MLflow 3 keeps the file store behind this switch; a file store is what was asked for
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient

        self.client = client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=_artifacts_for(uri))
        value = run.run_id.replace("'", "")
        found = client.search_runs([exp_id], f"tags.`{RUN_TAG}` = '{value}'", run_view_type=ViewType.ALL, max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {RUN_TAG: run.run_id, "ratchet.kind": run.kind, "ratchet.project": run.project}
            self.run_id = client.create_run(exp_id, tags=tags, run_name=run.run_id).info.run_id
            params = flat_params({k: v for k, v in run.config.items() if k in PARAM_SECTIONS})
            self._log(params=params)
            client.log_dict(self.run_id, run.config, "config.json")

    def _log(self, metrics: Mapping[str, float] | None = None, step: int = 0, params: Mapping[str, str] | None = None,
             tags: Mapping[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        ms = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        ps = [Param(k, v) for k, v in (params or {}).items()]
        ts = [RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(ps), len(ts), 1), 100):  # MLflow takes 100 params/tags per batch
            self.client.log_batch(self.run_id, metrics=ms if i == 0 else [], params=ps[i:i + 100], tags=ts[i:i + 100])

    def logged_steps(self) -> set[int]:
        steps: set[int] = set()
        for key in ("accepted", "promoted"):  # logged last for each round / generation
            steps.update(m.step for m in self.client.get_metric_history(self.run_id, key))
        return steps

    def round_finished(self, rec: RoundRecord) -> None:
        folder = f"round-{rec.round:03d}"
        for name, text in rec.texts.items():
            self.client.log_text(self.run_id, text, f"{folder}/{name}")
        self.client.log_dict(self.run_id, rec.knobs, f"{folder}/knobs.json")
        info = {"candidate": rec.candidate_id, "status": rec.status, "summary": rec.summary, "proposer": rec.proposer,
                "commit": rec.commit, "parent": rec.parent_id, "decision": rec.decision.to_json()}
        self.client.log_dict(self.run_id, info, f"{folder}/decision.json")
        self._log(round_metrics(rec), step=rec.round)

    def generation_finished(self, rec: GenerationRecord) -> None:
        folder = f"generation-{rec.generation:03d}"
        if rec.card:
            self.client.log_text(self.run_id, rec.card, f"{folder}/DATA_CARD.md")
        self.client.log_dict(self.run_id, rec.row, f"{folder}/generation.json")
        model = rec.model
        if model and rec.status == "promoted":  # the lineage, never the weights
            lineage = {k: model.get(k) for k in ("name", "parent", "dataset_hash", "train_config", "metrics",
                                                 "generation", "run_id", "status")}
            self.client.log_dict(self.run_id, lineage, f"{folder}/model.json")
            g = f"g{rec.generation:03d}"
            self._log(tags={"ratchet.current_model": model["name"], f"ratchet.model.{g}": model["name"]},
                      params={f"{g}.model": model["name"], f"{g}.parent": str(model.get("parent")),
                              f"{g}.dataset_hash": str(model.get("dataset_hash"))})
        self._log(generation_metrics(rec), step=rec.generation)

    def run_finished(self, status: str, reason: str, summary: Mapping[str, Any]) -> None:
        step = int(summary.get("round") or (summary.get("usage") or {}).get("rounds") or 0)
        figures = {k: summary.get(k) for k in ("seed_dev", "best_dev", "seed_holdout", "best_holdout", "rollouts", "tokens")}
        self._log(_finite(figures), step=step, tags={"ratchet.status": status, "ratchet.reason": reason})
        self.client.log_dict(self.run_id, dict(summary), "summary.json")
        self.client.set_terminated(self.run_id, "FINISHED" if status == "finished" else "KILLED")


def _artifacts_for(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an SQLite store (MLflow's default is the working
    directory), inside a file store (MLflow's default), on the server otherwise."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


__all__ = ["GenerationRecord", "MlflowTracker", "NoTracker", "RoundRecord", "RunInfo", "RunTracking", "Tracker",
           "Tracking", "configure", "knobs_of", "round_record", "run_tracking"]
