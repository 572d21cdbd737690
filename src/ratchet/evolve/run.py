"""`ratchet evolve`: a project's harness, improved round by round by the one loop driver.

This module is the harness tier's configuration of `loop.driver`: its arena (the harness on the
project's suite and model), its proposer, its round line, and its closing table (seed vs best on
dev and on fresh holdout seeds; `ratchet test --unseal` adds the sealed test split).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ratchet.config import GuardSection, LoopSection
from ratchet.evolve.arena import HarnessArena
from ratchet.loop import archive as arch
from ratchet.loop.control import StopControl
from ratchet.loop.driver import RunOptions, RunOutcome, TierSettings, drive, holdout_of, mean_of, open_engine
from ratchet.loop.engine import LoopEngine, RoundResult
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.proposers import build_proposer
from ratchet.loop.record import Decision
from ratchet.project import Project

EvolveOptions = RunOptions
EvolveOutcome = RunOutcome


class EvolveTier:
    def __init__(self, project: Project):
        self.project = project
        cfg = project.cfg
        self.settings = TierSettings("evolve", cfg.project.name, project.root, cfg.loop, cfg.guard, cfg.model,
                                     project.ledger)

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
        proposer = build_proposer(loop.proposer, self._proposer_model(loop), loop.seed)
        return LoopEngine(HarnessArena(project, repo), repo, proposer, project.ledger, run_id, loop, guard, control,
                          project.root / "memory.md", say=say)

    def _proposer_model(self, loop: LoopSection):
        if loop.proposer not in ("llm", "mix"):
            return None  # the search proposer never loads a model
        from ratchet.models import build_model

        project = self.project
        section = loop.proposer_model or project.cfg.model
        if section == project.cfg.model:
            return project.model
        return build_model(section, project.root, project.cfg.state_dir / "cache.sqlite")

    async def start(self, engine: LoopEngine) -> None:
        await engine.start()

    def start_line(self, engine: LoopEngine) -> str:
        return (f"seed dev mean {engine.archive[0].dev_mean:.3f} on {len(engine.dev_units)} tasks x "
                f"{engine.loop.epochs} epochs")

    def round_line(self, engine: LoopEngine, result: RoundResult) -> str:
        return round_line(self.project.ledger.candidate(result.candidate_id), result)

    async def final_table(self, engine: LoopEngine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = []
        for label, member in (("seed", engine.archive[0]), ("best", arch.best(engine.archive))):
            rows.append({"harness": label, "candidate": member.candidate_id, "commit": member.commit[:10],
                         "dev": member.dev_mean, "holdout": mean_of(await holdout_of(engine, member))})
        return rows, {}

    def summary_extra(self, engine: LoopEngine, outcome: RunOutcome | None) -> dict[str, Any]:
        return {"unseals": len(self.project.ledger.events(engine.run_id, "unseal"))}


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
