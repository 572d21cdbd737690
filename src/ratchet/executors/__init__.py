"""Where episodes and research trials run: `[executor] kind = "local" | "ray"` (docs/scale.md).

An executor runs the unit of work and hands its result back; everything around it stays in the driver
process: scoring (the suite never leaves it), ledger writes, budgets, resume. So a Ray run records
exactly what a local run records, and a worker that dies cannot lose or double a rollout: the driver
writes each result once, when it comes back. `local` is the default and imports nothing new; Ray is
imported only when `kind = "ray"`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ratchet.config import ConfigError, ExecutorSection, ProjectConfig
from ratchet.executors.local import LocalExecutor

if TYPE_CHECKING:
    from ratchet.harness.loader import Harness
    from ratchet.harness.runtime import EpisodeServices
    from ratchet.types import Task, Trajectory

T = TypeVar("T")

NEEDS_RAY = ('[executor] kind = "ray" needs Ray: pip install -c constraints.txt -e ".[ray]" '
             "(or RATCHET_SETUP_FULL=1 bash scripts/setup.sh)")


class Executor(Protocol):
    kind: str

    async def run_episode(self, harness: Harness, task: Task, services: EpisodeServices, seed: int,
                          epoch: int) -> Trajectory:
        """One episode in the sandbox, not scored yet (the caller scores it)."""

    async def run_trial(self, run: Callable[..., Awaitable[T]], *args: Any, lost: Callable[[str], T]) -> T:
        """`await run(*args)` somewhere (a research trial); `lost(why)` is the result when the worker died for good.
        `run` must be picklable (a bound method of a plain object) for executors that ship it."""

    def close(self) -> None: ...


def episode_config(cfg: ProjectConfig) -> ProjectConfig:
    """The parts of a project a worker needs to run episodes: model, sandbox, episode limits. Never the suite:
    tasks go out without their answers, and scoring stays in the driver."""
    return ProjectConfig(project=cfg.project, model=cfg.model, eval=cfg.eval, sandbox=cfg.sandbox,
                         executor=cfg.executor, root=cfg.root)


def build_executor(section: ExecutorSection, cfg: ProjectConfig | None = None) -> Executor:
    """The executor `[executor]` names. `cfg`: the project, for workers that build their own episode services."""
    if section.kind == "local":
        return LocalExecutor()
    try:
        from ratchet.executors.ray import RayExecutor  # here: Ray is imported only when it is asked for
    except ImportError:
        raise ConfigError(NEEDS_RAY) from None
    return RayExecutor(section, episode_config(cfg) if cfg is not None else None)


__all__ = ["Executor", "LocalExecutor", "build_executor", "episode_config"]
