"""The sealed test split: scored only on request, and every unseal is recorded in the ledger.

Each unseal is an event that `ratchet log`, the UI and reports show next to the results, so a
reader can tell a number from a first look at the test split from one after many looks.
"""

from __future__ import annotations

from ratchet.harness.loader import load_harness
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.project import Project


async def unseal(project: Project, run_id: str) -> dict:
    """Score the run's seed and best harness on the test split; record the unseal."""
    run = project.ledger.run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in the ledger; `ratchet log` lists the runs")
    repo = CandidateRepo(project.cfg.harness_dir, run_id, state_dir=project.cfg.state_dir)
    tasks = project.tasks("test")
    if not tasks:
        raise ValueError("the test split is empty; raise [suite] size or the test fraction")
    results = {}
    for label, commit in (("seed", repo.seed()), ("best", repo.best())):
        harness = load_harness(repo.worktree(commit))
        res = await project.evaluator.evaluate(harness, tasks, "test", project.cfg.eval.epochs, project.cfg.eval.seed,
                                               run_id=run_id)
        results[label] = {"commit": commit[:10], "mean": res.mean, "se": res.se, "n_tasks": res.n_tasks}
    previous = len(project.ledger.events(run_id, "unseal"))
    record = {**results, "unseal_number": previous + 1, "n_tasks": len(tasks)}
    project.ledger.add_event("unseal", record, run_id=run_id)
    summary = dict(run["summary"] or {})
    summary.update(test={"seed": results["seed"]["mean"], "best": results["best"]["mean"]}, unseals=previous + 1)
    project.ledger.update_run(run_id, summary=summary)
    return record
