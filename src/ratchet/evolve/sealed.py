"""The sealed test split: scored only on request, and every unseal is recorded in the ledger.

Each unseal is an event that `ratchet log`, the UI and reports show next to the results, so a
reader can tell a number from a first look at the test split from one after many looks. Seed and best
are scored on the same test tasks with the same seed, so the unseal adds a paired test row to the run's
reconciled report (`loop.reconcile`) and redoes its sentences.
"""

from __future__ import annotations

import dataclasses

from ratchet.evolve import demos
from ratchet.harness.loader import load_harness
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.reconcile import Report, lineage_confirmations, reconcile, split_row, with_row
from ratchet.project import Project
from ratchet.types import jsonable


async def unseal(project: Project, run_id: str) -> dict:
    """Score the run's seed and best harness on the test split; record the unseal."""
    run = project.ledger.run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in the ledger; `ratchet log` lists the runs")
    repo = CandidateRepo(project.cfg.harness_dir, run_id, state_dir=project.cfg.state_dir)
    tasks = project.tasks("test")
    if not tasks:
        raise ValueError("the test split is empty; raise [suite] size or the test fraction")
    demos.install(project.services, demos.run_pool(project.ledger, run_id))  # the pool the run's harnesses saw
    results, scores, eval_ids = {}, {}, {}
    seed_commit, best_commit = repo.seed(), repo.best()
    for label, commit in (("seed", seed_commit), ("best", best_commit)):
        harness = load_harness(repo.worktree(commit))
        res = await project.evaluator.evaluate(harness, tasks, "test", project.cfg.eval.epochs, project.cfg.eval.seed,
                                               run_id=run_id)
        results[label] = {"commit": commit[:10], "mean": res.mean, "se": res.se, "n_tasks": res.n_tasks}
        scores[label], eval_ids[label] = res.scores, res.eval_id
    previous = len(project.ledger.events(run_id, "unseal"))
    summary = dict(run["summary"] or {})
    stored = Report.from_json(summary.get("report"))
    if stored is None or stored.best_commit != best_commit:  # no closing report of this best: the test row alone
        alpha = ((run.get("config") or {}).get("loop") or {}).get("alpha") or project.cfg.loop.alpha
        stored = reconcile([], lineage_confirmations(project.ledger.candidates(run_id), summary.get("best_candidate"),
                                                     project.cfg.eval.seed), alpha, splits=("test",),
                           same_harness=seed_commit == best_commit, best_commit=best_commit)
    row = split_row("test", scores["seed"], scores["best"], alpha=stored.alpha,
                    measured_with=f"unseal #{previous + 1}'s seed", eval_seed=project.cfg.eval.seed, eval_ids=eval_ids,
                    bounds=(0.0, 1.0))
    report = with_row(stored, row)
    event = {**results, "unseal_number": previous + 1, "n_tasks": len(tasks),
             "paired": jsonable(dataclasses.asdict(row)) if row else None}
    project.ledger.add_event("unseal", event, run_id=run_id)
    summary.update(test={"seed": results["seed"]["mean"], "best": results["best"]["mean"]}, unseals=previous + 1,
                   report=report.to_json())
    project.ledger.update_run(run_id, summary=summary)
    return {**event, "report": report.to_json()}
