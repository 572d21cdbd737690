"""`ratchet research`: a repository improved round by round by the one loop engine.

This module wires a research project into `LoopEngine` (a `CommandArena`, the repo as candidate
commits, a proposer, budgets and the editable-paths guard), runs rounds until a budget or a stop,
and closes with the seed and the best version measured on the same fresh held-out seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ratchet.config import LoopSection
from ratchet.ledger import Ledger, new_id
from ratchet.loop import archive as arch
from ratchet.loop.arena import ArenaFailure
from ratchet.loop.control import StopControl
from ratchet.loop.decision import decide_dev
from ratchet.loop.engine import LoopEngine, LoopStopped, RoundResult
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.proposers.base import Proposer
from ratchet.research.arena import CommandArena, resolve_data, trial_record
from ratchet.research.command import CommandEvaluator
from ratchet.research.config import ResearchProject
from ratchet.research.proposers import build_research_proposer
from ratchet.research.report import round_line, to_metric, tsv_text, write_tsv

KIND = "research"


class BaselineFailed(RuntimeError):
    """The unmodified repo does not produce a metric: there is nothing to improve on until it does."""


@dataclass
class ResearchOptions:
    rounds: int | None = None
    proposer: str | None = None
    approve: str | None = None
    resume: bool = False
    run_id: str | None = None


@dataclass
class ResearchOutcome:
    run_id: str
    status: str  # finished | stopped
    reason: str
    rounds: list[RoundResult] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)  # best vs seed, paired on the final holdout seeds
    usage: dict[str, Any] = field(default_factory=dict)


def loop_settings(project: ResearchProject, opts: ResearchOptions) -> LoopSection:
    """[loop] as written, with the CLI overrides. A unit is a seed, so epochs default to 1 here."""
    loop = project.cfg.loop
    update: dict[str, Any] = {k: v for k, v in {"rounds": opts.rounds, "proposer": opts.proposer}.items() if v is not None}
    if "epochs" not in loop.model_fields_set:
        update["epochs"] = 1
    return loop.model_copy(update=update)


def _find_run(project: ResearchProject, ledger: Ledger, opts: ResearchOptions) -> tuple[str, bool]:
    if opts.run_id:
        if ledger.run(opts.run_id) is None:
            raise ValueError(f"no run {opts.run_id!r} in the ledger; `ratchet log --runs` lists the runs")
        return opts.run_id, True
    if opts.resume:
        prev = ledger.latest_run(KIND, project.name)
        if prev is None:
            raise ValueError(f"nothing to resume: no research run of {project.name!r} in the ledger; drop --resume")
        return prev["id"], True
    config = {"loop": loop_settings(project, opts).model_dump(), "guard": project.cfg.guard.model_dump(),
              "research": project.spec.model_dump(), "repo": str(project.repo_dir)}
    return ledger.create_run(KIND, project.name, config, run_id=new_id(KIND)), False


def _proposer_model(project: ResearchProject, loop: LoopSection):
    if loop.proposer not in ("llm", "mix"):
        return None
    from ratchet.models import build_model  # here: the search proposer never loads a model

    section = loop.proposer_model or project.cfg.model
    return build_model(section, project.root, project.cfg.state_dir / "cache.sqlite")


@dataclass
class Session:
    """Everything one research invocation holds: close it when done."""

    project: ResearchProject
    ledger: Ledger
    engine: LoopEngine
    arena: CommandArena
    control: StopControl
    resumed: bool
    model: Any = None

    async def aclose(self) -> None:
        if self.model is not None:
            await self.model.aclose()
        self.ledger.close()


def open_session(project: ResearchProject, opts: ResearchOptions, say: Callable[[str], None] = print,
                 proposer: Proposer | None = None, ledger: Ledger | None = None) -> Session:
    project.cfg.state_dir.mkdir(parents=True, exist_ok=True)
    ledger = ledger or Ledger(project.cfg.ledger_url)
    run_id, resumed = _find_run(project, ledger, opts)
    stored = ledger.run(run_id)["config"]
    loop = LoopSection.model_validate(stored["loop"]) if resumed else loop_settings(project, opts)
    if opts.rounds is not None:
        loop = loop.model_copy(update={"rounds": opts.rounds})
    guard = project.cfg.guard.model_copy(update={"approve": opts.approve} if opts.approve else {})
    control = StopControl(guard, loop.rounds, project.root / guard.stop_file, project.cfg.model.usd_per_mtok)
    if resumed:
        control.resume_from((ledger.run(run_id)["summary"] or {}).get("usage", {}))
        ledger.update_run(run_id, status="running")
    repo = CandidateRepo(project.repo_dir, run_id, state_dir=project.cfg.state_dir)
    evaluator = CommandEvaluator.create(project.spec, backend=project.cfg.sandbox.backend, ro_binds=resolve_data(project))
    arena = CommandArena(project, repo, ledger, evaluator)
    model = None
    if proposer is None:
        model = _proposer_model(project, loop)
        proposer = build_research_proposer(loop.proposer, model, loop.seed, project)
    engine = LoopEngine(arena, repo, proposer, ledger, run_id, loop, guard, control,
                        project.cfg.state_dir / "memory.md", say=say, path_check=project.spec.protected_problems)
    return Session(project, ledger, engine, arena, control, resumed, model)


def completed_rounds(ledger: Ledger, run_id: str) -> int:
    return max((les["round"] for les in ledger.lessons(run_id)), default=0)


async def research(project: ResearchProject, opts: ResearchOptions, say: Callable[[str], None] = print,
                   proposer: Proposer | None = None) -> ResearchOutcome:
    """Run (or resume) a research loop; raises BaselineFailed when the unmodified repo yields no metric."""
    s = open_session(project, opts, say, proposer)
    try:
        return await _drive(s, say)
    finally:
        await s.aclose()


async def _drive(s: Session, say: Callable[[str], None]) -> ResearchOutcome:
    engine, control, ledger, spec = s.engine, s.control, s.ledger, s.project.spec
    run_id = engine.run_id
    if not s.resumed:
        control.stop_file.unlink(missing_ok=True)
    try:
        await engine.start()
    except ArenaFailure as e:
        ledger.update_run(run_id, status="failed")
        tail = e.details.get("log_tail", "")
        raise BaselineFailed(f"the unmodified repo fails its own command, so nothing can be compared: {e}\n{tail}") from None
    r = completed_rounds(ledger, run_id)
    control.usage.rounds = r
    seed = engine.archive[0]
    say(f"run {run_id}: {'resuming after round ' + str(r) if s.resumed else 'started'}; seed {spec.metric} "
        f"{to_metric(spec, seed.dev_mean):.4g} on {len(engine.dev_units)} seeds (sandbox: {s.arena.evaluator.sandbox.backend_name})")
    outcome = ResearchOutcome(run_id, "finished", "")
    try:
        while True:
            if (why := control.budget_reason()) is not None:
                ledger.add_event("budget_stop", {"reason": why, "round": r}, run_id=run_id)
                outcome.reason = why
                break
            if (why := control.stop_reason()) is not None:
                raise LoopStopped(why)
            result = await engine.run_round(r + 1)
            r += 1
            control.usage.rounds = r
            outcome.rounds.append(result)
            say(round_line(spec, ledger.candidate(result.candidate_id), ledger.get_state(run_id, f"proposal/{r}")))
            _write(s)
        outcome.table, outcome.comparison = await final_table(s)  # a stop here too is clean; --resume redoes it
    except LoopStopped as e:
        ledger.add_event("stop", {"reason": str(e), "round": r}, run_id=run_id)
        _write(s)
        ledger.update_run(run_id, status="stopped")
        return ResearchOutcome(run_id, "stopped", str(e), outcome.rounds)
    outcome.usage = _write(s, outcome.table, outcome.comparison)
    ledger.update_run(run_id, status="finished")
    return outcome


async def final_table(s: Session) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Seed and best, each on the same fresh holdout seeds (round seed 0), in metric units, and the
    paired comparison of the two on those seeds."""
    engine, spec = s.engine, s.project.spec
    seed_m, best_m = engine.archive[0], arch.best(engine.archive)
    members = [("seed", seed_m)] + ([("best", best_m)] if best_m is not seed_m else [])
    rows, holdout = [], {}
    for label, m in members:
        holdout[label] = await engine._scores(m.commit, "holdout", engine.holdout_units, None, engine.eval_seed(0))
        values = [v for vs in holdout[label].values() for v in vs]
        rows.append({"version": label, "candidate": m.candidate_id, "commit": m.commit[:10],
                     "dev": to_metric(spec, m.dev_mean), "holdout": to_metric(spec, sum(values) / len(values)),
                     "holdout_seeds": len(values)})
    comparison: dict[str, Any] = {}
    if "best" in holdout:
        stats = decide_dev(holdout["seed"], holdout["best"], engine.loop.alpha, seed=engine.loop.seed).to_json()
        lo, hi = sorted([spec.sign * stats["ci_low"], spec.sign * stats["ci_high"]])
        comparison = {"delta": spec.sign * stats["mean_diff"], "ci_low": lo, "ci_high": hi, "p_value": stats["p_value"],
                      "n_seeds": stats["n_tasks"], "significant": stats["accepted"]}
    return rows, comparison


def trial_usage(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """Trials this run ran (recorded, and failed) with their wall and CPU seconds, from the ledger."""
    trials = [t for e in ledger.evals(run_id) for t in ledger.rollouts(e["id"])]
    failed = [e["data"] for e in ledger.events(run_id, "trial_failed")]
    cpu = [trial_record(t).get("cpu_s") for t in trials] + [f.get("cpu_s") for f in failed]
    return {"trials": len(trials), "failed_trials": len(failed), "trial_cpu_s": round(sum(c or 0.0 for c in cpu), 1),
            "trial_wall_s": round(sum(t.seconds for t in trials) + sum(f.get("seconds", 0.0) for f in failed), 1)}


def _write(s: Session, table: list[dict] | None = None, comparison: dict | None = None) -> dict:
    """The run summary in the ledger (what `ratchet log` and the UI read) and results.tsv on disk."""
    engine, ledger, spec, control = s.engine, s.ledger, s.project.spec, s.control
    run = ledger.run(engine.run_id)
    summary = dict(run["summary"] or {})
    best = arch.best(engine.archive)
    usage = {**trial_usage(ledger, engine.run_id), "wall_s": round(control.usage.wall_s, 1)}
    summary.update(round=control.usage.rounds, best_candidate=best.candidate_id, best_commit=best.commit,
                   seed_dev=engine.archive[0].dev_mean, best_dev=best.dev_mean, usage=control.usage.to_json(),
                   budget=control.budget_table(), rollouts=control.usage.rollouts, tokens=control.usage.tokens,
                   metric=spec.metric, direction=spec.direction, seed_metric=to_metric(spec, engine.archive[0].dev_mean),
                   best_metric=to_metric(spec, best.dev_mean), research_usage=usage)
    if table:
        summary.update(table=table, seed_holdout=table[0]["holdout"], best_holdout=table[-1]["holdout"],
                       comparison=comparison or {})
    ledger.update_run(engine.run_id, summary=summary)
    candidates = ledger.candidates(engine.run_id)
    proposals = {c["round"]: ledger.get_state(engine.run_id, f"proposal/{c['round']}") for c in candidates}
    write_tsv(results_path(s.project, engine.run_id), tsv_text(spec, candidates, proposals))
    return usage


def results_path(project: ResearchProject, run_id: str):
    return project.cfg.state_dir / "results" / f"{run_id}.tsv"
