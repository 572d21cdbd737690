"""The evolve tier's arena: a harness directory under git, scored on the project's suite and model."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from ratchet.evaluate import EvalResult
from ratchet.evolve import memory_skill
from ratchet.evolve.memory_skill import MEMORY_FILE
from ratchet.harness.loader import harness_from_files, load_harness
from ratchet.loop.analysis import analyse_failures
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.probe import PROBE_SPLITS
from ratchet.project import Project
from ratchet.sandbox import Sandbox
from ratchet.types import Trajectory


class HarnessArena:
    """A harness directory under git, evaluated on the project's suite with the project's model."""

    def __init__(self, project: Project, repo: CandidateRepo):
        self.project, self.repo = project, repo
        self.name = f"{project.cfg.project.name}:{project.suite.name}"
        self._tasks = {split: project.tasks(split) for split in ("train", "dev", "holdout", "test")}
        self._last: dict[tuple[str, str], EvalResult] = {}
        self.progress: Callable[[str, int, int], None] | None = None

    def units(self, split: str) -> list[str]:
        return [t.id for t in self._tasks[split]]

    async def scores(self, commit, split, units, epochs, *, seed, run_id, candidate_id, should_stop, on_rollout=None):
        harness = load_harness(self.harness_dir(commit))
        memory_skill.install(self.project.services, self.project.ledger, run_id, self.project.root / MEMORY_FILE)
        wanted = set(units)
        tasks = [t for t in self._tasks[split] if t.id in wanted]
        progress = (lambda d, t: self.progress(f"{split} {commit[:8]}", d, t)) if self.progress else None
        result = await self.project.evaluator.evaluate(
            harness, tasks, split, epochs, self.project.cfg.eval.seed + seed, run_id=run_id, candidate_id=candidate_id,
            progress=progress, should_stop=should_stop, on_rollout=on_rollout)
        if split == "dev" and len(result.trajectories) >= len(getattr(self._last.get((commit, split)), "trajectories", ())):
            self._last[(commit, split)] = result  # a first slice does not hide the failures of a whole dev run
        cost = {"rollouts": result.n_rollouts - result.reused, "tokens": result.tokens, "seconds": result.seconds,
                "eval_id": result.eval_id, "mean": result.mean, "se": result.se}
        return result.scores, cost

    def harness_dir(self, commit: str) -> Path:
        return self.repo.worktree(commit)

    def failure_context(self, commit: str, max_examples: int) -> tuple[str, dict[str, int]]:
        """Failures of the parent on dev only: holdout and test never reach a proposer."""
        result = self._last.get((commit, "dev"))
        if result is None:
            return "", {}
        inputs = {t.id: t.input for t in self._tasks["dev"]}
        report = analyse_failures(result.trajectories, inputs, max_examples)
        return report.to_prompt(), report.summary()

    def fingerprint(self) -> str:
        return self.project.suite.fingerprint()  # recomputed, not the evaluator's cached copy: a change on disk shows

    # -- what a proposer's workspace and probes get (loop/workspace.py, loop/probe.py): dev and train only ------
    def proposer_trajectories(self, commit: str) -> list[tuple[Trajectory, str]]:
        """The parent's last dev rollouts with their task inputs, gold answers cut from the scorer's feedback."""
        result = self._last.get((commit, "dev"))
        if result is None:
            return []
        inputs = {t.id: t.input for t in self._tasks["dev"]}
        return [(self.without_gold(t), inputs.get(t.task_id, "")) for t in result.trajectories if t.task_id in inputs]

    def task_split(self, task_id: str) -> str | None:
        return next((split for split, tasks in self._tasks.items() if any(t.id == task_id for t in tasks)), None)

    async def probe(self, files: dict[str, str], task_id: str, split: str, seed: int) -> tuple[Trajectory, str]:
        """One scored episode of a working copy on a dev or train task, in the sandbox, recorded nowhere;
        with the task's input."""
        if split not in PROBE_SPLITS:
            raise ValueError(f"a probe runs dev or train tasks only, not {split!r}")
        task = next(t for t in self._tasks[split] if t.id == task_id)
        harness = harness_from_files(self.repo.harness_dir, files)
        return self.without_gold(await self.project.evaluator.episode(harness, task, seed)), task.input

    @property
    def skill_sandbox(self) -> Sandbox:
        """Where a new skill is imported once before evaluation: the harness's own sandbox."""
        return self.project.services.sandbox

    def without_gold(self, traj: Trajectory) -> Trajectory:
        """A copy whose feedback no longer quotes the gold answer (suites may reveal it in feedback)."""
        try:
            gold = str(self.project.suite.gold(traj.task_id)).strip()
        except (KeyError, NotImplementedError, AttributeError):
            return traj
        return dataclasses.replace(traj, feedback=redact_gold(traj.feedback, gold))


GOLD_WITHHELD = "[gold answer withheld]"


def redact_gold(text: str, gold: str) -> str:
    """`text` with every quoted or free-standing occurrence of `gold` replaced by GOLD_WITHHELD."""
    if not gold or not text:
        return text
    for quoted in (repr(gold), f'"{gold}"', f"`{gold}`"):
        text = text.replace(quoted, GOLD_WITHHELD)
    return re.sub(rf"(?<![\w.]){re.escape(gold)}(?![\w])", GOLD_WITHHELD, text)
