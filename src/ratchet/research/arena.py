"""`CommandArena`: the research tier's arena. A commit of the target repo is scored by running the
configured command once per seed; units are seed slots, so parent and candidate pair by seed.

Units: dev "seed-0".."seed-{S-1}", holdout "holdout-0".., test "test-0"... The seed a trial gets is
derived from (the engine's round seed, split, unit, epoch): the same for parent and candidate in a
round, fresh for every round and split. Scores are higher-is-better (a minimised metric is negated).
Every finished trial is a rollout in the ledger (score, metric, log tail), so a resumed run reruns
nothing; a failed trial is an event with its log tail and fails the candidate (`ArenaFailure`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ratchet.evaluate import EvalInterrupted
from ratchet.executors import Executor, LocalExecutor
from ratchet.ledger import Ledger
from ratchet.loop.arena import ArenaFailure, Scores
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.research.command import CommandEvaluator, TrialResult
from ratchet.research.config import ResearchProject
from ratchet.types import Trajectory

UNIT_PREFIX = {"dev": "seed", "holdout": "holdout", "test": "test"}
_RECENT_FAILURES = 20
_MAX_DATA_FILES = 10_000


def trial_seed(round_seed: int, split: str, unit: str, epoch: int) -> int:
    """A 31-bit seed, stable across processes (Python's hash() is salted)."""
    digest = hashlib.sha256(f"{round_seed}:{split}:{unit}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def trial_eval_id(commit: str, fingerprint: str, split: str, epochs: int, seed: int) -> str:
    key = "|".join(["research", commit, fingerprint, split, str(epochs), str(seed)])
    return "rs-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def data_fingerprint(paths: list[Path]) -> list[list]:
    """(path, size, mtime) of every file under the read-only data paths: cheap, and changes when data does."""
    out: list[list] = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files[:_MAX_DATA_FILES]:
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


class CommandArena:
    def __init__(self, project: ResearchProject, repo: CandidateRepo, ledger: Ledger, evaluator: CommandEvaluator,
                 executor: Executor | None = None):
        self.project, self.spec, self.repo, self.ledger, self.evaluator = project, project.spec, repo, ledger, evaluator
        self.executor = executor or LocalExecutor()  # where trials run ([executor]); their results are recorded here
        self.name = f"{project.name}:{' '.join(self.spec.argv)[:60]}"
        self.failures: list[tuple[str, TrialResult]] = []  # (commit, trial), most recent last
        self._last_dev: dict[str, list[TrialResult]] = {}
        self.progress: Callable[[str, int, int], None] | None = None
        self._fingerprint: str | None = None

    # -- the Arena protocol -----------------------------------------------------------------------
    def units(self, split: str) -> list[str]:
        if split not in UNIT_PREFIX:
            raise ValueError(f"unknown split {split!r}; use dev, holdout or test")
        n = self.spec.seeds if split == "dev" else self.spec.holdout_seeds
        return [f"{UNIT_PREFIX[split]}-{i}" for i in range(n)]

    async def scores(self, commit, split, units, epochs, *, seed, run_id, candidate_id, should_stop, on_rollout=None):
        fp = self.fingerprint()
        eval_id = trial_eval_id(commit, fp, split, epochs, seed)
        self.ledger.open_eval(eval_id, run_id=run_id, candidate_id=candidate_id, harness=commit, model="command",
                              suite=self.name, suite_fingerprint=fp, split=split, epochs=epochs, seed=seed,
                              n_tasks=len(units))
        done = {(t.task_id, t.epoch): t for t in self.ledger.rollouts(eval_id)}
        todo = [(u, e) for u in units for e in range(epochs) if (u, e) not in done]
        fresh = await self._run_all(commit, split, seed, todo, eval_id, should_stop, on_rollout) if todo else []
        for r in fresh:
            done[(r.unit, r.epoch)] = self._trajectory(r)
        scores: Scores = {u: [done[(u, e)].score for e in range(epochs)] for u in units}
        if split == "dev" and len(units) * epochs >= len(self._last_dev.get(commit, ())):
            # a first slice does not hide the trials of a whole dev run
            self._last_dev[commit] = [self._trial_of(done[(u, e)], split) for u in units for e in range(epochs)]
        if set(units) >= set(self.units(split)):
            values = [s for v in scores.values() for s in v]
            self.ledger.finish_eval(eval_id, {"mean_score": sum(values) / len(values), "trials": len(values)})
        seconds = sum(r.seconds for r in fresh)
        return scores, {"rollouts": len(fresh), "tokens": 0, "seconds": seconds, "eval_id": eval_id,
                        "reused": len(units) * epochs - len(fresh)}

    def failure_context(self, commit: str, max_examples: int) -> tuple[str, dict[str, int]]:
        """The experiment, the parent's per-seed dev results and recent failed trials (the research brief
        is in the llm proposer's system prompt). Holdout results never reach a proposer."""
        parent = self._last_dev.get(commit, [])
        summary: dict[str, int] = {"ok": sum(t.ok for t in parent)} if parent else {}
        for _, t in self.failures[-_RECENT_FAILURES:]:
            summary[t.status] = summary.get(t.status, 0) + 1
        if max_examples <= 0:
            return "", summary
        return self._context_prompt(parent, max_examples), summary

    def fingerprint(self) -> str:
        """The experiment's definition: command, metric, budget, seeds and the read-only data it reads."""
        if self._fingerprint is None:
            s = self.spec
            definition = {"command": s.argv, "metric": s.metric, "regex": s.metric_regex, "direction": s.direction,
                          "budget_s": s.budget_s, "env": s.env, "data": data_fingerprint(resolve_data(self.project))}
            self._fingerprint = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        return self._fingerprint

    # -- running trials ---------------------------------------------------------------------------
    async def _run_all(self, commit: str, split: str, round_seed: int, todo: list[tuple[str, int]], eval_id: str,
                       should_stop: Callable[[], bool],
                       on_rollout: Callable[[Trajectory], None] | None = None) -> list[TrialResult]:
        checkout = self.repo.worktree(commit)
        gate = asyncio.Semaphore(self.spec.parallel)
        finished: list[TrialResult] = []
        failed = asyncio.Event()
        label = f"{split} {commit[:8]}"

        async def one(unit: str, epoch: int) -> TrialResult | None:
            async with gate:
                if failed.is_set() or should_stop():
                    return None
                seed = trial_seed(round_seed, split, unit, epoch)
                r = await self.executor.run_trial(self.evaluator.run_trial, checkout, unit, epoch, seed, split,
                                                  lost=lambda why: lost_trial(unit, epoch, seed, split, why))
            traj = self._trajectory(r) if r.ok else Trajectory(task_id=r.unit, epoch=r.epoch, seed=r.seed,
                                                                 seconds=r.seconds, error=r.status)
            if r.ok:
                self.ledger.add_rollout(eval_id, traj)
            if on_rollout:  # a failed trial was run too: it counts towards the budget
                on_rollout(traj)
            if r.ok:
                finished.append(r)
                if self.progress:
                    self.progress(label, len(finished), len(todo))
            return r

        tasks = [asyncio.ensure_future(one(u, e)) for u, e in todo]
        failure: ArenaFailure | None = None
        try:
            for next_done in asyncio.as_completed(tasks):
                r = await next_done
                if r is not None and not r.ok:
                    self._record_failure(commit, r, eval_id)
                    failure = ArenaFailure(f"{split} trial {r.unit} (seed {r.seed}) of {commit[:10]} failed: {r.status}: "
                                           f"{r.reason}", {"commit": commit, **r.to_json()})
                    failed.set()  # start no more trials
                    break
        finally:
            # Let the trials in flight end rather than cancel them: cancelling one while its sandbox process
            # is being created hangs asyncio (Python 3.11) for good. Those not started return at once.
            await asyncio.gather(*tasks, return_exceptions=True)
        if failure is not None:
            raise failure
        if len(finished) < len(todo):
            raise EvalInterrupted(f"stopped with {len(finished)}/{len(todo)} trials of {label} recorded")
        return finished

    def _record_failure(self, commit: str, r: TrialResult, eval_id: str) -> None:
        self.failures.append((commit, r))
        self.ledger.add_event("trial_failed", {"commit": commit, "eval_id": eval_id, **r.to_json()},
                              run_id=self.repo.run_id)

    def _trajectory(self, r: TrialResult) -> Trajectory:
        assert r.value is not None
        return Trajectory(task_id=r.unit, epoch=r.epoch, seed=r.seed, output=json.dumps({"metric": r.value, "cpu_s": r.cpu_s}),
                          score=self.spec.sign * r.value, feedback=f"{self.spec.metric} = {r.value:.6g}", steps=1,
                          seconds=r.seconds, log=r.log_tail)

    def _trial_of(self, t: Trajectory, split: str) -> TrialResult:
        record = trial_record(t)
        return TrialResult(unit=t.task_id, epoch=t.epoch, seed=t.seed, split=split, status="ok", value=record["metric"],
                           reason="", log_tail=t.log, seconds=t.seconds, returncode=0, cpu_s=record.get("cpu_s"))

    # -- what a proposer sees ---------------------------------------------------------------------
    def _context_prompt(self, parent: list[TrialResult], max_examples: int) -> str:
        s = self.spec
        better = "lower" if s.direction == "minimize" else "higher"
        parts = ["## The experiment",
                  f"Command `{' '.join(s.argv)}` runs once per seed (env RATCHET_SEED) in a fresh copy of the repo, "
                  f"killed after {s.budget_s:g}s. Metric: {s.metric}, {better} is better. Editable paths: "
                  f"{', '.join(s.editable)}; everything else is protected. A change whose trial crashes, runs past "
                  "the budget, or prints no (or a NaN) metric fails."]
        if parent:
            values = [t.value for t in parent if t.value is not None]
            mean = sum(values) / len(values)
            per_seed = ", ".join(f"{t.unit}: {t.value:.4g}" for t in parent)
            parts += ["## The current version's results on dev", f"{s.metric} mean {mean:.4g} ({per_seed})",
                      "Last output:\n" + (parent[-1].log_tail or "(none)")]
        recent = self.failures[-max_examples:]
        if recent:
            lines = [f"- {c[:8]} {t.unit}: {t.status}: {t.reason}\n{t.log_tail}" for c, t in recent]
            parts += ["## Recent failed trials (their changes were not kept)", "\n".join(lines)]
        return "\n\n".join(parts)


def lost_trial(unit: str, epoch: int, seed: int, split: str, why: str) -> TrialResult:
    """A trial whose worker died for good (the Ray executor, after its retries): a crash, never a score."""
    return TrialResult(unit=unit, epoch=epoch, seed=seed, split=split, status="crash", value=None, reason=why,
                       log_tail="(no output: the worker running the trial was lost)", seconds=0.0, returncode=None)


def trial_record(t: Trajectory) -> dict:
    """What a recorded trial measured: {"metric": value in its own units, "cpu_s": CPU seconds or None}."""
    record = json.loads(t.output or "{}")
    return record if isinstance(record, dict) else {"metric": float(record)}  # a bare number: an older ledger


def resolve_data(project: ResearchProject) -> list[Path]:
    return [(project.root / d).resolve() for d in project.spec.data]
