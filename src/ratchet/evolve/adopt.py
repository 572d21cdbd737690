"""Bringing a run's candidate harness onto the user's branch, and recording that it was adopted."""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.loop.gitrepo import CandidateRepo


@dataclass(frozen=True)
class Adopted:
    run_id: str
    commit: str  # the candidate's commit
    result: str  # the user's branch's new commit


def adopt(project, run_id: str, commit: str | None = None, label: str = "best") -> Adopted:
    """Adopt `commit` of run `run_id` (None: the run's best) onto the harness dir's current branch and
    write an "adopt" event. `project` needs .cfg and .ledger (a ProjectLedger is enough)."""
    repo = CandidateRepo(project.cfg.harness_dir, run_id, state_dir=project.cfg.state_dir)
    commit = commit or repo.best()
    new = repo.adopt(commit)
    project.ledger.add_event("adopt", {"candidate": label, "commit": commit, "result": new}, run_id=run_id)
    return Adopted(run_id, commit, new)
