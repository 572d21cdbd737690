"""The one run driver: the lifecycle of a loop run, shared by every tier that runs rounds.

    find or create the run -> build the engine -> score the seed -> rounds until a budget or a stop
    -> seed vs best on fresh holdout seeds -> summary

A tier (`evolve.run`, `research.run`) is a small `Tier`: how to build its arena and proposer, how a
round reads in one line, and what its closing table and summary add. Everything about runs, resume,
budgets, stops and the summary lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ratchet.config import GuardSection, LoopSection, ModelSection, TrackingSection
from ratchet.ledger import Ledger, new_id
from ratchet.loop import archive as arch
from ratchet.loop.compare import mean_of
from ratchet.loop.control import StopControl
from ratchet.loop.engine import BudgetReached, LoopEngine, LoopStopped, RoundResult
from ratchet.tracking import RunInfo, configure, run_tracking

Say = Callable[[str], None]


@dataclass
class RunOptions:
    """What the command line may override for one invocation of a loop."""

    rounds: int | None = None
    proposer: str | None = None
    approve: str | None = None
    resume: bool = False
    run_id: str | None = None
    handle_sigint: bool = False  # the CLI: first Ctrl-C stops after the current step, a second one at once


@dataclass
class RunOutcome:
    run_id: str
    status: str  # finished | stopped
    reason: str
    rounds: list[RoundResult] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)  # research: best vs seed on the final holdout seeds
    usage: dict[str, Any] = field(default_factory=dict)
    by_budget: bool = False  # stopped inside a round because a [guard] budget ran out (not by a person)


@dataclass
class TierSettings:
    """The parts of a project that every tier has."""

    kind: str  # the run kind in the ledger: evolve | research
    name: str  # the project name
    root: Path
    loop: LoopSection
    guard: GuardSection
    model: ModelSection
    ledger: Ledger
    tracking: TrackingSection | None = None  # [tracking]: each run mirrored to MLflow when set


class Tier(Protocol):
    settings: TierSettings

    def run_config(self, loop: LoopSection) -> dict[str, Any]: ...  # stored with a new run

    def loop_defaults(self, loop: LoopSection) -> LoopSection: ...  # [loop] as this tier reads it

    def build_engine(self, run_id: str, loop: LoopSection, guard: GuardSection, control: StopControl,
                     say: Say) -> LoopEngine: ...

    async def start(self, engine: LoopEngine) -> None: ...  # score the seed; a tier may translate failures

    def start_line(self, engine: LoopEngine) -> str: ...  # "seed <metric> ... on N units"

    def round_line(self, engine: LoopEngine, result: RoundResult) -> str: ...

    async def final_table(self, engine: LoopEngine) -> tuple[list[dict[str, Any]], dict[str, Any]]: ...

    def summary_extra(self, engine: LoopEngine, outcome: RunOutcome | None) -> dict[str, Any]: ...


def loop_settings(tier: Tier, opts: RunOptions) -> LoopSection:
    """[loop] as written (with the tier's defaults), with the CLI overrides."""
    loop = tier.loop_defaults(tier.settings.loop)
    update = {k: v for k, v in {"rounds": opts.rounds, "proposer": opts.proposer}.items() if v is not None}
    return loop.model_copy(update=update)


def find_run(tier: Tier, opts: RunOptions) -> tuple[str, bool]:
    """The run to continue (`--run`, `--resume`) or a new one; True when it already existed."""
    s = tier.settings
    if opts.run_id:
        if s.ledger.run(opts.run_id) is None:
            raise ValueError(f"no run {opts.run_id!r} in the ledger; `ratchet log` lists the runs")
        return opts.run_id, True
    if opts.resume:
        prev = s.ledger.latest_run(s.kind, s.name)
        if prev is None:
            raise ValueError(f"nothing to resume: no {s.kind} run of {s.name!r} in the ledger; drop --resume")
        return prev["id"], True
    return s.ledger.create_run(s.kind, s.name, tier.run_config(loop_settings(tier, opts)), run_id=new_id(s.kind)), False


def open_engine(tier: Tier, opts: RunOptions, say: Say) -> tuple[LoopEngine, StopControl, bool]:
    """Find or create the run and build its engine, with the loop settings it was started with."""
    s = tier.settings
    run_id, resumed = find_run(tier, opts)
    stored = s.ledger.run(run_id)
    loop = LoopSection.model_validate(stored["config"]["loop"]) if resumed else loop_settings(tier, opts)
    if opts.rounds is not None:
        loop = loop.model_copy(update={"rounds": opts.rounds})
    guard = s.guard.model_copy(update={"approve": opts.approve} if opts.approve else {})
    control = StopControl(guard, loop.rounds, s.root / guard.stop_file)
    if resumed:  # the usage saved as it changed; the summary's (as of the last round) for older ledgers
        control.resume_from(s.ledger.get_state(run_id, "usage") or (stored["summary"] or {}).get("usage", {}))
        s.ledger.update_run(run_id, status="running")
    return tier.build_engine(run_id, loop, guard, control, say), control, resumed


def completed_rounds(ledger: Ledger, run_id: str) -> int:
    return max((les["round"] for les in ledger.lessons(run_id)), default=0)


async def drive(tier: Tier, opts: RunOptions, say: Say = print) -> RunOutcome:
    """Run (or resume) a loop until its round budget, another budget, or a stop."""
    s = tier.settings
    tracking = configure(s.tracking, s.root, say)  # checked before a run is opened
    engine, control, resumed = open_engine(tier, opts, say)
    ledger, run_id = s.ledger, engine.run_id
    tracker = run_tracking(tracking, ledger, RunInfo(run_id, s.kind, s.name, ledger.run(run_id)["config"]),
                           engine.repo.read_files)
    if not resumed:
        control.stop_file.unlink(missing_ok=True)
    if opts.handle_sigint:
        control.install_sigint()
    r = 0
    outcome = RunOutcome(run_id, "finished", "")
    try:
        await tier.start(engine)  # inside the try: a stop during the seed's evaluation is a stop, not a crash
        r = completed_rounds(ledger, run_id)
        control.usage.rounds = r
        say(f"run {run_id}: {'resuming after round ' + str(r) if resumed else 'started'}; {tier.start_line(engine)}")
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
            say(tier.round_line(engine, result))
            write_summary(tier, engine, control)
            tracker.rounds_done(r)
        outcome.table, outcome.comparison = await tier.final_table(engine)  # a stop here is clean; --resume redoes it
    except LoopStopped as e:
        if isinstance(e, BudgetReached):  # inside a round: the round resumes where it was
            ledger.add_event("budget_stop", {"reason": str(e), "round": r, "inside_round": r + 1}, run_id=run_id)
        else:
            ledger.add_event("stop", {"reason": str(e), "round": r}, run_id=run_id)
        if engine.archive:  # empty when the stop came before the seed was scored
            write_summary(tier, engine, control)
        ledger.update_run(run_id, status="stopped")
        tracker.finished("stopped", str(e))
        return RunOutcome(run_id, "stopped", str(e), outcome.rounds, by_budget=isinstance(e, BudgetReached))
    write_summary(tier, engine, control, outcome)
    ledger.update_run(run_id, status="finished")
    tracker.finished("finished", outcome.reason)
    return outcome


def write_summary(tier: Tier, engine: LoopEngine, control: StopControl, outcome: RunOutcome | None = None) -> None:
    """The run summary in the ledger: what `ratchet log`, the UI and reports read."""
    ledger = tier.settings.ledger
    summary = dict(ledger.run(engine.run_id)["summary"] or {})
    best = arch.best(engine.archive)
    summary.update(round=control.usage.rounds, best_candidate=best.candidate_id, best_commit=best.commit,
                   seed_dev=engine.archive[0].dev_mean, best_dev=best.dev_mean, usage=control.usage.to_json(),
                   budget=control.budget_table(), rollouts=control.usage.rollouts, tokens=control.usage.tokens)
    summary.update(tier.summary_extra(engine, outcome))
    if outcome and outcome.table:
        summary.update(table=outcome.table, seed_holdout=outcome.table[0]["holdout"],
                       best_holdout=outcome.table[-1]["holdout"])
    ledger.update_run(engine.run_id, summary=summary)


async def holdout_of(engine: LoopEngine, member: arch.Member) -> dict[str, list[float]]:
    """A member's scores on the closing holdout seeds (round seed 0), the same for seed and best."""
    return await engine.scores(member.commit, "holdout", engine.holdout_units, None, engine.eval_seed(0))


__all__ = ["RunOptions", "RunOutcome", "Tier", "TierSettings", "drive", "holdout_of", "mean_of", "open_engine"]
