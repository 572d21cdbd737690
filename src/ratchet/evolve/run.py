"""`ratchet evolve`: a project's harness, improved round by round by the one loop driver.

This module is the harness tier's configuration of `loop.driver`: its arena (the harness on the
project's suite and model), its proposer, its round line, and its closing table (seed vs best, paired, on
dev and on fresh holdout seeds, reconciled with the rounds' confirmations by `loop.reconcile`; `ratchet test
--unseal` adds the sealed test split).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape

from ratchet.config import GuardSection, LoopSection
from ratchet.evolve import demos
from ratchet.evolve.arena import HarnessArena
from ratchet.evolve.memory_skill import MEMORY_FILE
from ratchet.evolve.plan import run_warnings
from ratchet.loop import archive as arch
from ratchet.loop.control import StopControl
from ratchet.loop.driver import RunOptions, RunOutcome, TierSettings, drive, holdout_of, mean_of, open_engine
from ratchet.loop.engine import LoopEngine, RoundResult
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.proposers import MODEL_KINDS, build_proposer
from ratchet.loop.reconcile import Report, lineage_confirmations, reconcile, split_row
from ratchet.loop.record import Decision
from ratchet.models.metered import MeteredModel
from ratchet.project import Project

EvolveOptions = RunOptions
EvolveOutcome = RunOutcome


class EvolveTier:
    def __init__(self, project: Project):
        self.project = project
        cfg = project.cfg
        self.report: Report | None = None  # the closing report, once final_table has measured it
        self.settings = TierSettings("evolve", cfg.project.name, project.root, cfg.loop, cfg.guard, cfg.model,
                                     project.ledger, cfg.tracking)

    def loop_defaults(self, loop: LoopSection) -> LoopSection:
        return loop

    def run_config(self, loop: LoopSection) -> dict[str, Any]:
        cfg = self.project.cfg
        return {"loop": loop.model_dump(), "guard": cfg.guard.model_dump(), "model": cfg.model.model_dump(),
                "suite": cfg.suite.model_dump()}

    def build_engine(self, run_id: str, loop: LoopSection, guard: GuardSection, control: StopControl,
                     say: Callable[[str], None]) -> LoopEngine:
        project = self.project
        repo = CandidateRepo(project.cfg.harness_dir, run_id, state_dir=project.cfg.state_dir)
        meter = self._proposer_model(loop)
        proposer = build_proposer(loop.proposer, meter, loop.seed, loop=loop)
        return LoopEngine(HarnessArena(project, repo), repo, proposer, project.ledger, run_id, loop, guard, control,
                          project.root / MEMORY_FILE, say=say, usd=project.cfg.model.usd, proposer_meter=meter)

    def _proposer_model(self, loop: LoopSection) -> MeteredModel | None:
        """The proposer's chat model, metered so its tokens count towards the budgets."""
        if loop.proposer not in MODEL_KINDS:
            return None  # the search and command proposers never load a model
        from ratchet.models import build_model

        project = self.project
        section = loop.proposer_model or project.cfg.model
        if section == project.cfg.model:
            return MeteredModel(project.model, section.usd)
        return MeteredModel(build_model(section, project.root, project.cfg.state_dir / "cache.sqlite"), section.usd)

    async def start(self, engine: LoopEngine) -> None:
        await demos.prepare(self.project, engine, say=engine.say)  # before the seed is scored: it may use the pool
        await engine.start()
        for line in run_warnings(self.project, engine.archive[0].dev_scores):
            engine.say(f"warning: {escape(line)}")  # evolve's console reads markup; "[loop]" is text

    def start_line(self, engine: LoopEngine) -> str:
        return (f"seed dev mean {engine.archive[0].dev_mean:.3f} on {len(engine.dev_units)} tasks x "
                f"{engine.loop.epochs} epochs")

    def round_line(self, engine: LoopEngine, result: RoundResult) -> str:
        if not result.members:
            return round_line(self.project.ledger.candidate(result.candidate_id), result)
        return "\n".join(f"{round_line(self.project.ledger.candidate(m.candidate_id), m)} ({m.candidate_id.rsplit('-', 1)[-1]})"
                         for m in result.members)  # a population round: a line per candidate

    async def final_table(self, engine: LoopEngine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Seed vs best, paired: on dev with the seed of the round that kept the best, on holdout with the closing
        seed. The reconciled report (`loop.reconcile`) goes into the summary for `ratchet log`, `test --unseal`
        and the dashboard; the table's means are the report's, so no two places show different numbers."""
        seed_m, best_m = engine.archive[0], arch.best(engine.archive)
        offset, alpha = self.project.cfg.eval.seed, engine.loop.alpha  # evaluation seed = [eval] seed + loop seed
        candidates = self.project.ledger.candidates(engine.run_id)
        best_round = next((c["round"] for c in candidates if c["id"] == best_m.candidate_id), 0)
        dev_seed, closing = engine.eval_seed(best_round), engine.eval_seed(0)
        # the seed on the best's round seed: reused when the best's parent is the seed, one dev evaluation otherwise
        seed_dev = best_m.dev_scores if best_m is seed_m else await engine.scores(seed_m.commit, "dev", engine.dev_units,
                                                                                 None, dev_seed)
        hold = {"seed": await holdout_of(engine, seed_m), "best": await holdout_of(engine, best_m)}

        def paired(split: str, seed_scores, best_scores, words: str, seed: int):
            ids = {k: engine.eval_ids.get((m.commit, split, seed)) for k, m in (("seed", seed_m), ("best", best_m))}
            return split_row(split, seed_scores, best_scores, alpha=alpha, measured_with=words, eval_seed=offset + seed,
                             eval_ids=ids, boot_seed=engine.loop.seed, bounds=(0.0, 1.0))  # a suite's scores: [0, 1]

        rows = [paired("dev", seed_dev, best_m.dev_scores, f"round {best_round}'s seed", dev_seed),
                paired("holdout", hold["seed"], hold["best"], "the closing seed", closing)]
        self.report = reconcile(rows, lineage_confirmations(candidates, best_m.candidate_id, offset), alpha,
                                same_harness=best_m is seed_m, best_commit=best_m.commit)
        dev = self.report.row("dev")
        table = []
        for label, member in (("seed", seed_m), ("best", best_m)):
            paired = None if dev is None else (dev.seed_mean if label == "seed" else dev.best_mean)
            table.append({"harness": label, "candidate": member.candidate_id, "commit": member.commit[:10],
                          "dev": member.dev_mean if paired is None else paired, "holdout": mean_of(hold[label])})
        return table, {}

    def summary_extra(self, engine: LoopEngine, outcome: RunOutcome | None) -> dict[str, Any]:
        ledger = self.project.ledger
        extra: dict[str, Any] = {"unseals": len(ledger.events(engine.run_id, "unseal"))}
        if outcome is not None and self.report is not None:
            extra["report"] = self.report.to_json()
        else:  # a resumed run that kept a new best: the last closing report is of another harness
            stored = Report.from_json(((ledger.run(engine.run_id) or {}).get("summary") or {}).get("report"))
            if stored is not None and stored.best_commit != arch.best(engine.archive).commit:
                extra["report"] = None
        return extra


def round_line(row: dict[str, Any], res: RoundResult) -> str:
    d = Decision.from_json(row["decision"])
    figures = ""
    if stats := d.stats:
        figures = f" dev {stats.mean_diff:+.3f} [{stats.ci_low:+.3f}, {stats.ci_high:+.3f}] p={stats.p_value:.3g}"
    if d.holdout:
        figures += f"; holdout {'confirmed' if d.holdout.confirmed else 'not confirmed'}"
    return f"round {res.round:>3} [{row['proposer']}] {res.summary[:60]}:{figures} -> {res.status.upper()}"


def build_engine(project: Project, opts: EvolveOptions,
                 say: Callable[[str], None]) -> tuple[LoopEngine, StopControl, bool]:
    return open_engine(EvolveTier(project), opts, say)


async def evolve(project: Project, opts: EvolveOptions, say: Callable[[str], None] = print) -> EvolveOutcome:
    """Run (or resume) the harness loop of a project."""
    return await drive(EvolveTier(project), opts, say)
