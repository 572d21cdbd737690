"""The local executor: episodes and trials in this process's event loop, as ratchet always ran them.

Episodes share the driver's model, so calls from concurrent episodes batch together and hit one cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ratchet.harness.loader import Harness
from ratchet.harness.runtime import EpisodeServices, run_episode
from ratchet.types import Task, Trajectory

T = TypeVar("T")


class LocalExecutor:
    kind = "local"

    async def run_episode(self, harness: Harness, task: Task, services: EpisodeServices, seed: int,
                          epoch: int) -> Trajectory:
        return await run_episode(harness, task, services, seed, epoch)

    async def run_trial(self, run: Callable[..., Awaitable[T]], *args: Any, lost: Callable[[str], T]) -> T:
        return await run(*args)

    def close(self) -> None:
        pass
