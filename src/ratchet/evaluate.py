"""suite x harness x model -> scored rollouts: concurrent, written as they finish, resumable.

An evaluation is named by a hash of everything that fixes its outcome (harness version, model, suite
fingerprint, split, epochs, seed), so running it again - after a crash, or from another loop that needs
the same numbers - reuses every rollout already in the ledger and runs only the missing ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ratchet.executors import Executor, LocalExecutor
from ratchet.harness.loader import Harness
from ratchet.harness.runtime import EpisodeServices, offers_demos, uses_memory
from ratchet.ledger import Ledger
from ratchet.stats import clustered_mean_se
from ratchet.suites.base import Suite
from ratchet.types import Task, Trajectory


class EvalInterrupted(RuntimeError):
    """The evaluation was stopped (stop file, signal, budget); finished rollouts are in the ledger."""


@dataclass
class Spent:
    """What an evaluation ran now (never what it reused from the ledger): what a budget is charged."""

    rollouts: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, traj: Trajectory) -> None:
        self.rollouts += 1
        self.tokens += traj.tokens
        self.prompt_tokens += traj.prompt_tokens
        self.completion_tokens += traj.completion_tokens


@dataclass
class EvalResult:
    eval_id: str
    split: str
    epochs: int
    scores: dict[str, list[float]]  # task id -> score per epoch
    trajectories: list[Trajectory] = field(default_factory=list)
    mean: float = 0.0
    se: float = 0.0
    seconds: float = 0.0
    tokens: int = 0
    reused: int = 0  # rollouts found in the ledger instead of run
    spent: Spent = field(default_factory=Spent)  # the rollouts run now

    @property
    def n_tasks(self) -> int:
        return len(self.scores)

    @property
    def n_rollouts(self) -> int:
        return sum(len(v) for v in self.scores.values())

    def summary(self) -> dict:
        return {"eval_id": self.eval_id, "split": self.split, "epochs": self.epochs, "n_tasks": self.n_tasks,
                "n_rollouts": self.n_rollouts, "mean": self.mean, "se": self.se, "seconds": round(self.seconds, 2),
                "tokens": self.tokens, "reused": self.reused}


def episode_seed(seed: int, task_id: str, epoch: int) -> int:
    """The same (seed, task, epoch) gives the same episode seed for every candidate: paired runs."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}:{epoch}".encode()).digest()[:4], "big")


def eval_id_for(harness_version: str, model_name: str, suite_fingerprint: str, split: str, epochs: int, seed: int) -> str:
    key = "|".join([harness_version, model_name, suite_fingerprint, split, str(epochs), str(seed)])
    return "ev-" + hashlib.sha256(key.encode()).hexdigest()[:20]


class Evaluator:
    def __init__(self, suite: Suite, services: EpisodeServices, ledger: Ledger, concurrency: int = 32,
                 executor: Executor | None = None):
        self.suite, self.services, self.ledger = suite, services, ledger
        self.concurrency = concurrency
        self.executor = executor or LocalExecutor()  # where episodes run; scoring and the ledger stay here
        self._suite_fp: str | None = None

    @property
    def suite_fingerprint(self) -> str:
        if self._suite_fp is None:
            self._suite_fp = self.suite.fingerprint()
        return self._suite_fp

    async def episode(self, harness: Harness, task: Task, seed: int) -> Trajectory:
        """One episode, run in the sandbox and scored, recorded nowhere: a proposer's probe of a working copy
        (loop/probe.py), whose caller charges it to the budget."""
        return await self._score(task, await self.executor.run_episode(harness, task, self.services, seed, 0))

    async def _score(self, task: Task, traj: Trajectory) -> Trajectory:
        if traj.error and traj.output is None:
            traj.score, traj.feedback = 0.0, f"no answer: {traj.error}"
            return traj
        scored = await self.suite.score(task, traj.output)
        traj.score, traj.feedback = float(min(1.0, max(0.0, scored.value))), scored.feedback
        return traj

    async def evaluate(
        self,
        harness: Harness,
        tasks: Sequence[Task],
        split: str,
        epochs: int = 1,
        seed: int = 0,
        *,
        run_id: str | None = None,
        candidate_id: str | None = None,
        harness_version: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_rollout: Callable[[Trajectory], None] | None = None,
    ) -> EvalResult:
        """Score the harness on tasks x epochs, reusing the rollouts already recorded. `on_rollout` hears of
        each rollout run now (after it is recorded), never of a reused one: that is what a budget counts."""
        started = time.monotonic()
        version = harness_version or harness.fingerprint
        if self.services.demos_version and offers_demos(harness, self.services):  # what the harness sees changed
            version = f"{version}+demos-{self.services.demos_version}"
        if self.services.memory_version and uses_memory(harness, self.services):  # so do the lessons it can recall
            version = f"{version}+memory-{self.services.memory_version}"
        eval_id = eval_id_for(version, self.services.model.name, self.suite_fingerprint, split, epochs, seed)
        self.ledger.open_eval(eval_id, run_id=run_id, candidate_id=candidate_id, harness=version,
                              model=self.services.model.name, suite=self.suite.name,
                              suite_fingerprint=self.suite_fingerprint, split=split, epochs=epochs, seed=seed,
                              n_tasks=len(tasks))
        wanted = {t.id for t in tasks}
        done = {(tr.task_id, tr.epoch): tr for tr in self.ledger.rollouts(eval_id) if tr.task_id in wanted}
        todo = [(t, e) for t in tasks for e in range(epochs) if (t.id, e) not in done]
        total, finished = len(tasks) * epochs, len(done)
        if progress:
            progress(finished, total)

        gate = asyncio.Semaphore(self.concurrency)
        stopped = asyncio.Event()
        failed = asyncio.Event()

        async def one(task: Task, epoch: int) -> None:
            nonlocal finished
            async with gate:
                if failed.is_set():
                    return
                if stopped.is_set() or (should_stop and should_stop()):
                    stopped.set()
                    return
                try:
                    traj = await self.executor.run_episode(harness, task, self.services,
                                                           episode_seed(seed, task.id, epoch), epoch)
                    traj = await self._score(task, traj)
                    self.ledger.add_rollout(eval_id, traj)
                    if on_rollout:
                        on_rollout(traj)
                except Exception:
                    failed.set()  # the parent's failure (ledger, model endpoint): start no more episodes
                    raise
            done[(task.id, epoch)] = traj
            finished += 1
            if progress:
                progress(finished, total)

        # Wait for the episodes in flight even after a failure: cancelling one while its sandbox process
        # is being created hangs asyncio (3.11) for good, so the error is raised once they have ended.
        outcomes = await asyncio.gather(*(one(t, e) for t, e in todo), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            raise errors[0]
        if stopped.is_set():
            raise EvalInterrupted(f"evaluation {eval_id} stopped with {finished}/{total} rollouts recorded")

        result = self._result(eval_id, split, epochs, tasks, done, reused=total - len(todo))
        for task, epoch in todo:
            result.spent.add(done[(task.id, epoch)])
        result.seconds = time.monotonic() - started
        if len(wanted) >= self._n_tasks_recorded(eval_id):
            self.ledger.finish_eval(eval_id, result.summary())
        return result

    def _n_tasks_recorded(self, eval_id: str) -> int:
        row = self.ledger.eval(eval_id)
        return int(row["n_tasks"]) if row else 0

    @staticmethod
    def _result(eval_id: str, split: str, epochs: int, tasks: Sequence[Task],
                done: dict[tuple[str, int], Trajectory], reused: int) -> EvalResult:
        trajs = [done[(t.id, e)] for t in tasks for e in range(epochs)]
        scores: dict[str, list[float]] = {t.id: [done[(t.id, e)].score for e in range(epochs)] for t in tasks}
        mean, se = clustered_mean_se(scores) if scores else (0.0, 0.0)
        return EvalResult(eval_id=eval_id, split=split, epochs=epochs, scores=scores, trajectories=trajs,
                          mean=mean, se=se, tokens=sum(t.tokens for t in trajs), reused=reused)
