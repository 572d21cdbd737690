"""The evolve tier's arena: a harness directory under git, scored on the project's suite and model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ratchet.evaluate import EvalResult
from ratchet.harness.loader import load_harness
from ratchet.loop.analysis import analyse_failures
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.project import Project


class HarnessArena:
    """A harness directory under git, evaluated on the project's suite with the project's model."""

    def __init__(self, project: Project, repo: CandidateRepo):
        self.project, self.repo = project, repo
        self.name = f"{project.cfg.project.name}:{project.suite.name}"
        self._tasks = {split: project.tasks(split) for split in ("dev", "holdout", "test")}
        self._last: dict[tuple[str, str], EvalResult] = {}
        self.progress: Callable[[str, int, int], None] | None = None

    def units(self, split: str) -> list[str]:
        return [t.id for t in self._tasks[split]]

    async def scores(self, commit, split, units, epochs, *, seed, run_id, candidate_id, should_stop):
        harness = load_harness(self.harness_dir(commit))
        wanted = set(units)
        tasks = [t for t in self._tasks[split] if t.id in wanted]
        progress = (lambda d, t: self.progress(f"{split} {commit[:8]}", d, t)) if self.progress else None
        result = await self.project.evaluator.evaluate(
            harness, tasks, split, epochs, self.project.cfg.eval.seed + seed, run_id=run_id, candidate_id=candidate_id,
            progress=progress, should_stop=should_stop)
        if split == "dev":
            self._last[(commit, split)] = result
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
