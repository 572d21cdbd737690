"""What a loop evaluates: the one interface between the loop engine and a tier.

The engine knows commits, splits and score tables; an arena turns a commit into scores. `ratchet
evolve` uses `evolve.arena.HarnessArena` (a harness on a task suite); `ratchet research` uses a command arena (a
script's metric over seeds). Scores are always "higher is better" and keyed by a unit that pairs
candidate and parent: a task id, or a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ratchet.types import Trajectory

Scores = dict[str, list[float]]


class ArenaFailure(RuntimeError):
    """A commit could not be scored at all (e.g. a research command crashed on a seed). The engine
    records the candidate as failed with `details` (log tail included); it never becomes a score."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class Arena(Protocol):
    name: str

    def units(self, split: str) -> list[str]: ...

    async def scores(self, commit: str, split: str, units: list[str], epochs: int, *, seed: int, run_id: str,
                     candidate_id: str | None, should_stop: Callable[[], bool],
                     on_rollout: Callable[[Trajectory], None] | None = None) -> tuple[Scores, dict]: ...
    # on_rollout: called once for each rollout (or trial) run now, never for one reused from the ledger

    def failure_context(self, commit: str, max_examples: int) -> tuple[str, dict[str, int]]: ...

    def fingerprint(self) -> str: ...  # scorer + data; must not change during a run
