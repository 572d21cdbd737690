"""`ratchet research`: a repository improved round by round by the one loop driver.

This module is the research tier's configuration of `loop.driver`: a `CommandArena` (the repo's
command, its metric over seeds, in the sandbox), the editable-paths guard, the research proposer,
the round line in the metric's units, and the closing comparison of seed and best on the same fresh
held-out seeds. results.tsv is written after every round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ratchet.config import ConfigError, GuardSection, LoopSection
from ratchet.executors import build_executor
from ratchet.ledger import Ledger
from ratchet.loop import archive as arch
from ratchet.loop.arena import ArenaFailure
from ratchet.loop.control import StopControl
from ratchet.loop.driver import RunOptions, RunOutcome, TierSettings, drive, holdout_of, mean_of
from ratchet.loop.engine import LoopEngine, RoundResult
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.proposers import MODEL_KINDS, build_proposer
from ratchet.loop.proposers.base import Proposer
from ratchet.loop.reconcile import Report, lineage_confirmations, reconcile, split_row
from ratchet.models.metered import MeteredModel
from ratchet.research.arena import CommandArena, resolve_data, trial_record
from ratchet.research.command import CommandEvaluator
from ratchet.research.config import ResearchProject
from ratchet.research.proposers import system_prompt
from ratchet.research.report import power_lines, round_line, to_metric, tsv_text, write_tsv

KIND = "research"
ResearchOptions = RunOptions
ResearchOutcome = RunOutcome


class BaselineFailed(RuntimeError):
    """The unmodified repo does not produce a metric: there is nothing to improve on until it does."""


class ResearchTier:
    def __init__(self, project: ResearchProject, ledger: Ledger, proposer: Proposer | None = None):
        self.project, self.ledger, self.proposer = project, ledger, proposer
        cfg = project.cfg
        self.settings = TierSettings(KIND, project.name, project.root, cfg.loop, cfg.guard, cfg.model, ledger,
                                     cfg.tracking)
        self.model: Any = None  # the proposer's chat model, when this tier built one
        self.report: Report | None = None  # the closing report (`loop.reconcile`), once final_table has measured it
        self.arena: CommandArena | None = None
        self.executor = build_executor(cfg.executor)  # where trials run; results and the ledger stay here

    def close(self) -> None:
        self.executor.close()

    def loop_defaults(self, loop: LoopSection) -> LoopSection:
        """A unit is a seed, so epochs default to 1 here."""
        if loop.population > 1:
            raise ConfigError(f"[loop] population = {loop.population}: a research round evaluates one candidate; its "
                              "trials run in parallel instead ([research] parallel, [executor]); drop population")
        return loop if "epochs" in loop.model_fields_set else loop.model_copy(update={"epochs": 1})

    def run_config(self, loop: LoopSection) -> dict[str, Any]:
        p = self.project
        return {"loop": loop.model_dump(), "guard": p.cfg.guard.model_dump(), "research": p.spec.model_dump(),
                "repo": str(p.repo_dir)}

    def build_engine(self, run_id: str, loop: LoopSection, guard: GuardSection, control: StopControl,
                     say: Callable[[str], None]) -> LoopEngine:
        p = self.project
        repo = CandidateRepo(p.repo_dir, run_id, state_dir=p.cfg.state_dir)
        evaluator = CommandEvaluator.create(p.spec, backend=p.cfg.sandbox.backend, ro_binds=resolve_data(p))
        self.arena = CommandArena(p, repo, self.ledger, evaluator, self.executor)
        proposer = self.proposer
        if proposer is None:
            if loop.proposer in MODEL_KINDS:
                from ratchet.models import build_model  # here: the search proposer never loads a model

                section = loop.proposer_model or p.cfg.model
                self.model = MeteredModel(build_model(section, p.root, p.cfg.state_dir / "cache.sqlite"), section.usd)
            proposer = build_proposer(loop.proposer, self.model, loop.seed, system_prompt=system_prompt(p), loop=loop)
        return LoopEngine(self.arena, repo, proposer, self.ledger, run_id, loop, guard, control,
                          p.cfg.state_dir / "memory.md", say=say, path_check=p.spec.protected_problems,
                          proposer_meter=self.model)

    async def start(self, engine: LoopEngine) -> None:
        try:
            await engine.start()
        except ArenaFailure as e:
            self.ledger.update_run(engine.run_id, status="failed")
            tail = e.details.get("log_tail", "")
            raise BaselineFailed(f"the unmodified repo fails its own command, so nothing can be compared: {e}\n{tail}") from None
        for line in power_lines(self.project.spec, engine.loop, engine.archive[0].dev_scores):
            engine.say(line)

    def start_line(self, engine: LoopEngine) -> str:
        spec = self.project.spec
        return (f"seed {spec.metric} {to_metric(spec, engine.archive[0].dev_mean):.4g} on {len(engine.dev_units)} seeds "
                f"(sandbox: {self.arena.evaluator.sandbox.backend_name})")

    def round_line(self, engine: LoopEngine, result: RoundResult) -> str:
        return round_line(self.project.spec, self.ledger.candidate(result.candidate_id),
                          self.ledger.get_state(engine.run_id, f"proposal/{result.round}"))

    async def final_table(self, engine: LoopEngine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Seed and best, each on the same fresh holdout seeds, in metric units, and their paired comparison."""
        spec = self.project.spec
        seed_m, best_m = engine.archive[0], arch.best(engine.archive)
        members = [("seed", seed_m)] + ([("best", best_m)] if best_m is not seed_m else [])
        rows, holdout = [], {}
        for label, m in members:
            holdout[label] = await holdout_of(engine, m)
            rows.append({"version": label, "candidate": m.candidate_id, "commit": m.commit[:10],
                         "dev": to_metric(spec, m.dev_mean), "holdout": to_metric(spec, mean_of(holdout[label])),
                         "holdout_seeds": sum(len(v) for v in holdout[label].values())})
        # the same reconciliation as evolve's, on the holdout seeds only: a dev row would need the seed rerun on the
        # best's round seeds, and research trials are the expensive part
        row = None if "best" not in holdout else split_row(
            "holdout", holdout["seed"], holdout["best"], alpha=engine.loop.alpha, measured_with="the closing seeds",
            eval_seed=engine.eval_seed(0), boot_seed=engine.loop.seed)
        self.report = reconcile([row], lineage_confirmations(self.ledger.candidates(engine.run_id), best_m.candidate_id),
                                engine.loop.alpha, splits=("holdout",), same_harness=best_m is seed_m,
                                best_commit=best_m.commit, sign=spec.sign, unit="seeds")
        comparison: dict[str, Any] = {}
        if row is not None:
            lo, hi = sorted([spec.sign * row.ci_low, spec.sign * row.ci_high])
            comparison = {"delta": spec.sign * row.diff, "ci_low": lo, "ci_high": hi, "p_value": row.p_value,
                          "n_seeds": row.n_tasks, "significant": row.significant}
        return rows, comparison

    def summary_extra(self, engine: LoopEngine, outcome: RunOutcome | None) -> dict[str, Any]:
        """The metric's own units and the trials' usage; results.tsv on disk as a side output."""
        spec, ledger, control = self.project.spec, self.ledger, engine.control
        best = arch.best(engine.archive)
        usage = {**trial_usage(ledger, engine.run_id), "wall_s": round(control.usage.wall_s, 1)}
        extra = {"metric": spec.metric, "direction": spec.direction,
                 "seed_metric": to_metric(spec, engine.archive[0].dev_mean), "best_metric": to_metric(spec, best.dev_mean),
                 "research_usage": usage}
        if outcome and outcome.table:
            extra["comparison"] = outcome.comparison or {}
            extra["report"] = self.report.to_json() if self.report else None
            outcome.usage = usage
        candidates = ledger.candidates(engine.run_id)
        proposals = {c["round"]: ledger.get_state(engine.run_id, f"proposal/{c['round']}") for c in candidates}
        write_tsv(results_path(self.project, engine.run_id), tsv_text(spec, candidates, proposals))
        return extra


async def research(project: ResearchProject, opts: ResearchOptions, say: Callable[[str], None] = print,
                   proposer: Proposer | None = None) -> ResearchOutcome:
    """Run (or resume) a research loop; raises BaselineFailed when the unmodified repo yields no metric."""
    project.cfg.state_dir.mkdir(parents=True, exist_ok=True)
    tier = ResearchTier(project, Ledger(project.cfg.ledger_url), proposer)
    try:
        return await drive(tier, opts, say)
    finally:
        if tier.model is not None:
            await tier.model.aclose()
        tier.close()
        tier.ledger.close()


def trial_usage(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """Trials this run ran (recorded, and failed) with their wall and CPU seconds, from the ledger."""
    trials = [t for e in ledger.evals(run_id) for t in ledger.rollouts(e["id"])]
    failed = [e["data"] for e in ledger.events(run_id, "trial_failed")]
    cpu = [trial_record(t).get("cpu_s") for t in trials] + [f.get("cpu_s") for f in failed]
    return {"trials": len(trials), "failed_trials": len(failed), "trial_cpu_s": round(sum(c or 0.0 for c in cpu), 1),
            "trial_wall_s": round(sum(t.seconds for t in trials) + sum(f.get("seconds", 0.0) for f in failed), 1)}


def results_path(project: ResearchProject, run_id: str):
    return project.cfg.state_dir / "results" / f"{run_id}.tsv"
