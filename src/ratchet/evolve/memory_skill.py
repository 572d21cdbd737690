"""The harness's `memory` skill in evolve runs: the project's lessons, ranked for the harness's query.

The skill runs inside the sandbox, but the lessons never go there in bulk: `ctx.skill("memory", query)`
is a request over the pipe, answered in the parent (harness/runtime.py) from the lessons of every evolve
run of the project (`loop.memory.project_lessons`), ranked by `loop.memory.recall` for the query, as
`lesson_text` paragraphs: changes, hypotheses, dev figures, critiques. The failure text a lesson was
matched on (dev inputs and scorer feedback) is never returned, and holdout figures are never in a lesson.

The lessons are read again before each evaluation, so a candidate and its parent, scored in the same
round, see the same ones; their version (a hash of their ids) is part of the evaluation's id of a harness
that enables the skill, so an evaluation is never reused under a memory it did not see.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Any

from ratchet.harness.runtime import EpisodeServices
from ratchet.ledger import Ledger
from ratchet.loop.memory import memory_answer, project_lessons

MEMORY_FILE = "memory.md"  # in the project directory: the evolve tier's memory (evolve/run.py)
ANSWER_LESSONS = 3  # lessons per memory call: enough to learn from, short enough for a small model's prompt


def install(services: EpisodeServices, ledger: Ledger, run_id: str | None, memory_path: Path) -> None:
    """Serve the project's lessons (as of now) to the memory skill of every episode that follows."""
    lessons = project_lessons(ledger, run_id, memory_path) if run_id else []
    if not lessons:
        services.recall, services.memory_version = None, None
        return
    key = "|".join(f"{les.run_id}:{les.round}:{les.created_at}" for les in lessons)
    services.recall = partial(memory_answer, lessons, k=ANSWER_LESSONS)
    services.memory_version = hashlib.sha256(key.encode()).hexdigest()[:12]


def offer_latest(project: Any, harness: Any) -> str | None:
    """Serve a harness evaluated outside a run (`ratchet eval`) the project's lessons, as its next run would;
    returns a line saying so, or None when it does not enable the skill or there is nothing to serve."""
    if "memory" not in harness.params.skills_enabled:
        return None
    runs = [r for r in project.ledger.runs("evolve") if r.get("project") == project.cfg.project.name]  # newest first
    if not runs:
        return None
    install(project.services, project.ledger, runs[0]["id"], project.root / MEMORY_FILE)
    if project.services.recall is None:
        return None
    return f"memory skill: the lessons of this project's evolve runs (version {project.services.memory_version})"
