"""Ratchet's evaluations as Inspect AI eval logs, built from the ledger with inspect_ai's own log types and
written by its `write_eval_log`: `ratchet export inspect` and `[eval] inspect_logs` (docs/inspect.md).

One log per evaluation (an `evals` row): one sample per task x epoch (Inspect counts epochs from 1, so
ratchet's epoch 0 is epoch 1), scored with the rollout's score under the suite's scorer name; the
harness's final reply is the output and its model calls the messages. The results hold the mean
(`accuracy`) and its standard error clustered by task (`stderr`). The eval's metadata, under "ratchet",
hold the evaluation (run, split, seed, harness, suite fingerprint) and, when it belongs to a candidate,
the candidate and its Decision (loop/record.py): the paired statistics, the holdout answer, the outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ratchet.evaluate import Evaluator
from ratchet.ledger import Ledger
from ratchet.ledger import schema as s
from ratchet.loop.record import Decision
from ratchet.stats import clustered_mean_se, score_table
from ratchet.types import Trajectory

FORMATS = ("eval", "json")
NEEDS_INSPECT = "Inspect logs need inspect-ai: pip install 'ratchet[inspect]'"


def inspect_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("inspect_ai") is not None


@dataclass
class SuiteView:
    """What a log takes from the suite: each task's input, target and choices, the scorer's name, the task file."""

    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    scorer: str = "verifier"
    task: str | None = None
    task_file: str | None = None
    fingerprint: str | None = None

    @classmethod
    def of(cls, suite: Any) -> SuiteView:
        samples = {}
        for t in suite.tasks():
            if hasattr(suite, "sample"):  # an Inspect suite: the sample as Inspect holds it
                sample = suite.sample(t.id)
                samples[t.id] = {"input": sample.input, "target": suite.inspect_target(t.id), "choices": sample.choices}
            else:
                samples[t.id] = {"input": t.input, "target": _gold(suite, t.id), "choices": None}
        task_file = getattr(suite, "task_file", None)
        return cls(samples, getattr(suite, "scorer_name", "verifier"), getattr(suite, "task_name", None),
                   str(task_file) if task_file else None, suite.fingerprint())


def _gold(suite: Any, task_id: str) -> str:
    try:
        return str(suite.gold(task_id))
    except Exception:  # a suite without gold answers (a research arena's): the log says so by an empty target
        return ""


@dataclass
class Link:
    """The candidate an evaluation belongs to, and whose side it scored: "candidate" or "parent"."""

    candidate: dict[str, Any]
    role: str


def candidate_links(ledger: Ledger, run_id: str | None, rows: Iterable[dict[str, Any]], base_seed: int) -> dict[str, Link]:
    """eval id -> Link: by the decision's parent/candidate evals, the eval's candidate, else the round's seed
    (a parent's holdout evaluation: eval seed = [eval] seed + the round's seed)."""
    if not run_id:
        return {}
    links: dict[str, Link] = {}
    by_id, by_seed = {}, {}
    for c in ledger.candidates(run_id):
        by_id[c["id"]] = c
        d = Decision.read(c["decision"])
        if d.seed is not None:
            by_seed[base_seed + d.seed] = c
        for eval_id, role in ((d.cand_eval, "candidate"), (d.parent_eval, "parent")):
            if eval_id:
                links[eval_id] = Link(c, role)
    for row in rows:
        if row["id"] in links:
            continue
        if row.get("candidate_id") in by_id:
            links[row["id"]] = Link(by_id[row["candidate_id"]], "candidate")
        elif row.get("candidate_id") is None and row["seed"] in by_seed:
            links[row["id"]] = Link(by_seed[row["seed"]], "parent")
    return links


def run_eval_rows(ledger: Ledger, run_id: str) -> list[dict[str, Any]]:
    """The run's evaluations: those it created, plus those its decisions name (reused from an earlier run)."""
    rows = {r["id"]: r for r in ledger.evals(run_id)}
    for c in ledger.candidates(run_id):
        d = Decision.read(c["decision"])
        for eval_id in (d.parent_eval, d.cand_eval):
            if eval_id and eval_id not in rows and (row := ledger.eval(eval_id)) is not None:
                rows[eval_id] = row
    return sorted(rows.values(), key=lambda r: r["created_at"])


def inspect_model_name(model: str) -> str:
    """Inspect names models `api/name`; ratchet's model is served by ratchet."""
    return f"ratchet/{model}"


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else ""


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def log_file_name(row: dict[str, Any], task: str, fmt: str = "eval") -> str:
    """Inspect's naming, `{created}_{task}_{id}.eval` (no `_` in the task, no `-` in the id, as Inspect parses it):
    stable for an evaluation, so a rewrite replaces its log."""
    stamp = datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%dT%H-%M-%S+00-00")
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", task).strip("-") or "task"
    return f"{stamp}_{safe}_{inspect_task_id(row['id'])}.{fmt}"


def inspect_task_id(eval_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", eval_id.removeprefix("ev-"))


def _chat(role: str, content: Any) -> Any:
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser

    text = content if isinstance(content, str) else json.dumps(content, default=str)
    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant, "tool": ChatMessageTool}
    return kinds.get(role, ChatMessageUser)(content=text)


def transcript(traj: Trajectory, task_input: Any) -> list[Any]:
    """The episode's model calls as one chat: each request's new messages, then the reply."""
    out: list[Any] = []
    shown: list[dict[str, Any]] = []
    for call in traj.messages:
        request = list(call.get("request") or [])
        new = request[len(shown):] if request[:len(shown)] == shown else request
        out += [_chat(m.get("role", "user"), m.get("content", "")) for m in new]
        reply = (call.get("replies") or [""])[0]
        out.append(_chat("assistant", reply))
        shown = [*request, {"role": "assistant", "content": reply}]
    if not out:  # no model call (a harness that answered by itself)
        out = [_chat("user", task_input if isinstance(task_input, str) else str(task_input)),
               _chat("assistant", traj.output or "")]
    return out


def _sample(traj: Trajectory, view: SuiteView, model: str) -> Any:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ModelOutput, ModelUsage
    from inspect_ai.scorer import Score

    known = view.samples.get(traj.task_id, {})
    task_input = known.get("input") or next((m.get("content", "") for call in traj.messages[:1]
                                             for m in call.get("request") or [] if m.get("role") == "user"), traj.task_id)
    prompt_tokens, completion_tokens = getattr(traj, "prompt_tokens", 0), getattr(traj, "completion_tokens", 0)
    metadata = {"seed": traj.seed, "signal": traj.failure_signal, "steps": traj.steps, "tool_calls": len(traj.tool_calls),
                "tool_errors": traj.tool_errors, "loop": traj.loop, "tokens": traj.tokens, "error": traj.error}
    if traj.log:
        metadata["log"] = traj.log[-2000:]
    return EvalSample(
        id=traj.task_id, epoch=traj.epoch + 1, input=task_input, target=known.get("target", ""), choices=known.get("choices"),
        messages=transcript(traj, task_input), output=ModelOutput.from_content(model, traj.output or ""),
        scores={view.scorer: Score(value=traj.score, answer=traj.output, explanation=traj.feedback or None)},
        metadata={"ratchet": metadata}, total_time=round(traj.seconds, 3), working_time=round(traj.seconds, 3),
        model_usage={model: ModelUsage(input_tokens=prompt_tokens, output_tokens=completion_tokens, total_tokens=traj.tokens)},
        completed=True)


def _last_rollout_at(ledger: Ledger, eval_id: str) -> float | None:
    with ledger.engine.connect() as c:
        return c.execute(sa.select(sa.func.max(s.rollouts.c.created_at)).where(s.rollouts.c.eval_id == eval_id)).scalar()


def ratchet_metadata(row: dict[str, Any], view: SuiteView, link: Link | None) -> dict[str, Any]:
    meta = {k: row[k] for k in ("id", "run_id", "candidate_id", "split", "seed", "epochs", "harness", "model", "suite",
                                "suite_fingerprint", "status", "n_tasks")}
    meta["eval_id"] = meta.pop("id")
    meta["epochs_counted_from"] = 1  # Inspect's epoch e is ratchet's epoch e - 1
    if view.fingerprint is not None:
        meta["suite_changed_since"] = view.fingerprint != row["suite_fingerprint"]
    if link is not None:
        c = link.candidate
        meta["role"] = link.role
        meta["candidate"] = {k: c.get(k) for k in ("id", "round", "status", "parent_id", "commit", "proposer", "summary")}
        meta["decision"] = Decision.read(c["decision"]).to_json()
    return meta


def build_eval_log(row: dict[str, Any], rollouts: list[Trajectory], view: SuiteView, link: Link | None = None,
                   finished_at: float | None = None) -> Any:
    """The Inspect EvalLog of one evaluation (an `evals` row) and its rollouts."""
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalPlan,
        EvalPlanStep,
        EvalResults,
        EvalScore,
        EvalSpec,
        EvalStats,
    )
    from inspect_ai.model import ModelUsage

    model = inspect_model_name(row["model"])
    rollouts = sorted(rollouts, key=lambda t: (t.epoch, t.task_id))
    samples = [_sample(t, view, model) for t in rollouts]
    scores = score_table(rollouts)
    mean, se = clustered_mean_se(scores) if scores else (0.0, 0.0)
    metrics = {"accuracy": EvalMetric(name="accuracy", value=mean),
               "stderr": EvalMetric(name="stderr", value=se, metadata={"clustered_by": "task"})}
    results = EvalResults(total_samples=row["n_tasks"] * row["epochs"], completed_samples=len(samples),
                          scores=[EvalScore(name=view.scorer, scorer=view.scorer, scored_samples=len(samples),
                                            unscored_samples=0, metrics=metrics)])
    task = view.task or row["suite"]
    tags = ["ratchet", row["split"]] + ([link.role] if link else [])
    spec = EvalSpec(
        created=_iso(row["created_at"]), task=task, task_id=inspect_task_id(row["id"]), eval_id=row["id"],
        run_id=row["run_id"] or "",
        task_file=view.task_file, solver="ratchet_harness", solver_args={"harness": row["harness"]}, tags=tags,
        dataset=EvalDataset(name=row["suite"], samples=len(scores), sample_ids=sorted(scores)), model=model,
        config=EvalConfig(epochs=row["epochs"]), packages={"ratchet": _version("ratchet"), "inspect_ai": _version("inspect-ai")},
        metadata={"ratchet": ratchet_metadata(row, view, link)})
    usage = ModelUsage(input_tokens=sum(getattr(t, "prompt_tokens", 0) for t in rollouts),
                       output_tokens=sum(getattr(t, "completion_tokens", 0) for t in rollouts),
                       total_tokens=sum(t.tokens for t in rollouts))
    done = row["status"] == "done"
    stats = EvalStats(started_at=_iso(row["created_at"]), completed_at=_iso(finished_at) if done else "",
                      model_usage={model: usage})
    plan = EvalPlan(name="ratchet", steps=[EvalPlanStep(solver="ratchet_harness", params={"harness": row["harness"]})])
    return EvalLog(status="success" if done else "started", eval=spec, plan=plan, results=results, stats=stats,
                   samples=samples)


def write_eval_logs(ledger: Ledger, rows: Iterable[dict[str, Any]], out_dir: Path, view: SuiteView,
                    links: dict[str, Link], fmt: str = "eval") -> list[Path]:
    """One log per evaluation under `out_dir`; returns the files written."""
    from inspect_ai.log import write_eval_log

    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use eval or json")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row in rows:
        log = build_eval_log(row, ledger.rollouts(row["id"]), view, links.get(row["id"]), _last_rollout_at(ledger, row["id"]))
        path = out_dir / log_file_name(row, view.task or row["suite"], fmt)
        write_eval_log(log, str(path), format=fmt)
        written.append(path)
    return written


def export_run(ledger: Ledger, run_id: str, out_dir: Path, view: SuiteView, base_seed: int, fmt: str = "eval") -> list[Path]:
    rows = run_eval_rows(ledger, run_id)
    return write_eval_logs(ledger, rows, out_dir, view, candidate_links(ledger, run_id, rows, base_seed), fmt)


class InspectLogEvaluator(Evaluator):
    """The Evaluator, writing each evaluation's Inspect log under `out_dir/<run id>` as it ends ([eval]
    inspect_logs), and rewriting the run's logs whose candidate was decided (or evaluation grew) since."""

    def __init__(self, *args: Any, out_dir: Path, base_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out_dir, self.base_seed = Path(out_dir), base_seed
        self._view: SuiteView | None = None
        self._shown: dict[str, str] = {}  # eval id -> what its log showed

    async def evaluate(self, *args: Any, **kwargs: Any):
        result = await super().evaluate(*args, **kwargs)
        self.write_logs(result.eval_id, kwargs.get("run_id"))
        return result

    def write_logs(self, eval_id: str, run_id: str | None) -> list[Path]:
        if self._view is None:
            self._view = SuiteView.of(self.suite)
        rows = {r["id"]: r for r in (run_eval_rows(self.ledger, run_id) if run_id else [])}
        rows[eval_id] = self.ledger.eval(eval_id)
        links = candidate_links(self.ledger, run_id, rows.values(), self.base_seed)
        stale = []
        for row in rows.values():
            link = links.get(row["id"])
            shown = json.dumps([row["status"], row["n_tasks"], row["result"], link and link.candidate["status"],
                                link and link.candidate["decision"]], sort_keys=True, default=str)
            if row["id"] == eval_id or self._shown.get(row["id"]) != shown:
                stale.append(row)
                self._shown[row["id"]] = shown
        return write_eval_logs(self.ledger, stale, self.out_dir / (run_id or "evals"), self._view, links)
