"""`ratchet evolve`: a project's harness, improved round by round by the loop engine.

This module wires a project into the engine (arena, git repo, proposer, budgets), runs rounds until a
budget or a stop, and produces the closing table: seed vs best on dev, holdout and - once unsealed - test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ratchet.config import LoopSection
from ratchet.ledger import new_id
from ratchet.loop import archive as arch
from ratchet.loop.arena import HarnessArena
from ratchet.loop.control import StopControl
from ratchet.loop.engine import LoopEngine, LoopStopped, RoundResult
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.proposers import build_proposer
from ratchet.project import Project


@dataclass
class EvolveOptions:
    rounds: int | None = None
    proposer: str | None = None
    approve: str | None = None
    resume: bool = False
    run_id: str | None = None
    handle_sigint: bool = False  # the CLI: first Ctrl-C stops after the current step, a second one at once


@dataclass
class EvolveOutcome:
    run_id: str
    status: str  # finished | stopped
    reason: str
    rounds: list[RoundResult] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)


def _find_run(project: Project, opts: EvolveOptions) -> tuple[str, bool]:
    name = project.cfg.project.name
    if opts.run_id:
        if project.ledger.run(opts.run_id) is None:
            raise ValueError(f"no run {opts.run_id!r} in the ledger; `ratchet log` lists the runs")
        return opts.run_id, True
    if opts.resume:
        prev = project.ledger.latest_run("evolve", name)
        if prev is None:
            raise ValueError(f"nothing to resume: no evolve run of {name!r} in the ledger; drop --resume")
        return prev["id"], True
    loop = _loop_settings(project, opts)
    run_id = project.ledger.create_run("evolve", name, {"loop": loop.model_dump(), "guard": project.cfg.guard.model_dump(),
                                                        "model": project.cfg.model.model_dump(), "suite": project.cfg.suite.model_dump()},
                                       run_id=new_id("evolve"))
    return run_id, False


def _loop_settings(project: Project, opts: EvolveOptions) -> LoopSection:
    update = {k: v for k, v in {"rounds": opts.rounds, "proposer": opts.proposer}.items() if v is not None}
    return project.cfg.loop.model_copy(update=update)


def build_engine(project: Project, opts: EvolveOptions, say: Callable[[str], None]) -> tuple[LoopEngine, StopControl, bool]:
    run_id, resumed = _find_run(project, opts)
    stored = project.ledger.run(run_id)["config"]
    loop = LoopSection.model_validate(stored["loop"]) if resumed else _loop_settings(project, opts)
    if opts.rounds is not None:
        loop = loop.model_copy(update={"rounds": opts.rounds})
    guard = project.cfg.guard.model_copy(update={"approve": opts.approve} if opts.approve else {})
    control = StopControl(guard, loop.rounds, project.root / guard.stop_file, project.cfg.model.usd_per_mtok)
    if resumed:
        control.resume_from((project.ledger.run(run_id)["summary"] or {}).get("usage", {}))
        project.ledger.update_run(run_id, status="running")
    repo = CandidateRepo(project.cfg.harness_dir, run_id, state_dir=project.cfg.state_dir)
    proposer_model = None
    if loop.proposer in ("llm", "mix"):
        from ratchet.models import build_model

        section = loop.proposer_model or project.cfg.model
        proposer_model = project.model if section == project.cfg.model else build_model(section, project.root, project.cfg.state_dir / "cache.sqlite")
    proposer = build_proposer(loop.proposer, proposer_model, loop.seed)
    arena = HarnessArena(project, repo)
    engine = LoopEngine(arena, repo, proposer, project.ledger, run_id, loop, guard, control,
                        project.root / "memory.md", say=say)
    return engine, control, resumed


def completed_rounds(project: Project, run_id: str) -> int:
    return max((les["round"] for les in project.ledger.lessons(run_id)), default=0)


async def evolve(project: Project, opts: EvolveOptions, say: Callable[[str], None] = print) -> EvolveOutcome:
    engine, control, resumed = build_engine(project, opts, say)
    run_id = engine.run_id
    control.stop_file.unlink(missing_ok=True) if not resumed else None
    if opts.handle_sigint:
        control.install_sigint()
    r = 0
    outcome = EvolveOutcome(run_id, "finished", "")
    try:
        await engine.start()  # inside the try: a stop during the seed's evaluation is a stop, not a crash
        r = completed_rounds(project, run_id)
        control.usage.rounds = r
        say(f"run {run_id}: {'resuming after round ' + str(r) if resumed else 'started'}; seed dev mean "
            f"{engine.archive[0].dev_mean:.3f} on {len(engine.dev_units)} tasks x {engine.loop.epochs} epochs")
        while True:
            if (why := control.budget_reason()) is not None:
                project.ledger.add_event("budget_stop", {"reason": why, "round": r}, run_id=run_id)
                outcome.reason = why
                break
            if (why := control.stop_reason()) is not None:
                raise LoopStopped(why)
            result = await engine.run_round(r + 1)
            r += 1
            control.usage.rounds = r
            outcome.rounds.append(result)
            say(round_line(project, result))
            write_summary(project, engine, control)
        outcome.table = await final_table(project, engine)
    except LoopStopped as e:
        project.ledger.add_event("stop", {"reason": str(e), "round": r}, run_id=run_id)
        if engine.archive:  # empty when the stop came before the seed was scored
            write_summary(project, engine, control)
        project.ledger.update_run(run_id, status="stopped")
        return EvolveOutcome(run_id, "stopped", str(e), outcome.rounds)
    write_summary(project, engine, control, outcome.table)
    project.ledger.update_run(run_id, status="finished")
    return outcome


def round_line(project: Project, res: RoundResult) -> str:
    row = project.ledger.candidate(res.candidate_id)
    d = row["decision"] or {}
    dev, hold = d.get("dev") or d.get("slice"), d.get("holdout")
    figures = ""
    if dev:
        figures = f" dev {dev['mean_diff']:+.3f} [{dev['ci_low']:+.3f}, {dev['ci_high']:+.3f}] p={dev['p_value']:.3g}"
    if hold:
        figures += f"; holdout {'confirmed' if hold['confirmed'] else 'not confirmed'}"
    return f"round {res.round:>3} [{row['proposer']}] {res.summary[:60]}:{figures} -> {res.status.upper()}"


async def final_table(project: Project, engine: LoopEngine) -> list[dict]:
    seed, best = engine.archive[0], arch.best(engine.archive)
    rows = []
    for label, member in (("seed", seed), ("best", best)):
        hold = await engine._scores(member.commit, "holdout", engine.holdout_units, None, engine.eval_seed(0))
        rows.append({"harness": label, "candidate": member.candidate_id, "commit": member.commit[:10],
                     "dev": member.dev_mean, "holdout": _mean(hold)})
    return rows


def _mean(scores: dict[str, list[float]]) -> float:
    values = [s for v in scores.values() for s in v]
    return sum(values) / len(values) if values else 0.0


def write_summary(project: Project, engine: LoopEngine, control: StopControl, table: list[dict] | None = None) -> None:
    run = project.ledger.run(engine.run_id)
    summary = dict(run["summary"] or {})
    best = arch.best(engine.archive)
    summary.update(round=control.usage.rounds, best_candidate=best.candidate_id, best_commit=best.commit,
                   seed_dev=engine.archive[0].dev_mean, best_dev=best.dev_mean, usage=control.usage.to_json(),
                   budget=control.budget_table(), rollouts=control.usage.rollouts, tokens=control.usage.tokens,
                   unseals=len(project.ledger.events(engine.run_id, "unseal")))
    if table:
        summary.update(seed_holdout=table[0]["holdout"], best_holdout=table[1]["holdout"], table=table)
    project.ledger.update_run(engine.run_id, summary=summary)
