"""A proposer's probes: run a working copy of the harness on one named dev or train task, and import new
skills once, both in the sandbox, before anything is proposed.

`run_episode` is the cheap experiment a researcher makes before a full evaluation. Each one is an episode
of the project's evaluator (the harness in the sandbox, the project's model, the suite's scorer), charged
to the run's rollout and token budgets through the engine's spend path and noted as a `probe` event in the
ledger; it is never a score the loop decides on. Holdout and test task ids are refused, with a message
saying why: they judge a change and are never shown to a proposer. An arena that cannot run single
episodes (the research tier's) gives no probe; its proposers are told so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ratchet.evaluate import episode_seed
from ratchet.loop.skills_check import import_skills, skill_name
from ratchet.sandbox import Sandbox
from ratchet.types import Trajectory

PROBE_SPLITS = ("dev", "train")


class ProbeRefused(ValueError):
    """A probe that was not run; the message says why and what to do instead."""


class ProbeArena(Protocol):
    skill_sandbox: Sandbox

    def task_split(self, task_id: str) -> str | None: ...

    async def probe(self, files: dict[str, str], task_id: str, split: str, seed: int) -> tuple[Trajectory, str]: ...


class EpisodeProbe:
    """Probes for one round's proposer. `spend` charges a rollout (the engine's spend path); `budget_left` says
    why no more may run (a spent budget, a stop request) or None."""

    def __init__(self, arena: ProbeArena, spend: Callable[[Trajectory], None], budget_left: Callable[[], str | None],
                 seed: int, note: Callable[[dict[str, Any]], None] = lambda _e: None):
        self.arena, self.spend, self.budget_left, self.seed, self.note = arena, spend, budget_left, seed, note
        self.episodes = 0

    async def run_episode(self, files: dict[str, str], task_id: str) -> tuple[Trajectory, str, str]:
        """(the scored trajectory, its split, the task's input) of `files` on `task_id`; ProbeRefused when it
        may not run."""
        task_id = str(task_id).strip()
        split = self.arena.task_split(task_id)
        if split is None:
            raise ProbeRefused(f"there is no task {task_id!r}; use a dev task id from trajectories/ (or a train task id)")
        if split not in PROBE_SPLITS:
            raise ProbeRefused(f"task {task_id!r} is in the {split} split: run_episode takes dev and train tasks only. "
                               "Holdout and test tasks judge a change and are never shown to a proposer")
        if (why := self.budget_left()) is not None:
            raise ProbeRefused(f"no episode can run: {why}; finish with what you have")
        self.episodes += 1
        traj, task_input = await self.arena.probe(files, task_id, split, episode_seed(self.seed, task_id, self.episodes))
        self.spend(traj)
        self.note({"task_id": task_id, "split": split, "score": traj.score, "signal": traj.failure_signal,
                   "steps": traj.steps, "tokens": traj.tokens})
        return traj, split, task_input

    async def check_skills(self, files: dict[str, str], changes: dict[str, str | None]) -> list[str]:
        """Import each new or changed skill once in the harness sandbox; the problems found."""
        names = sorted(n for p, t in changes.items() if t is not None and (n := skill_name(p)) and n.isidentifier())
        present = {p: t for p, t in {**files, **changes}.items() if t is not None}
        return await import_skills(self.arena.skill_sandbox, present, names)


def probe_for(arena: Any, spend: Callable[[Trajectory], None], budget_left: Callable[[], str | None], seed: int,
              note: Callable[[dict[str, Any]], None] = lambda _e: None) -> EpisodeProbe | None:
    """The round's probe, or None for an arena that cannot run single episodes."""
    if not all(hasattr(arena, a) for a in ("task_split", "probe", "skill_sandbox")):
        return None
    return EpisodeProbe(arena, spend, budget_left, seed, note)
