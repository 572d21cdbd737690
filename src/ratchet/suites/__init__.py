"""Suites: tasks plus a verifier. `build_suite` turns a [suite] section into one; adapters load lazily.

Adapters: reasoning_gym (procedural datasets of the PyPI package), humaneval (the PyPI package's 164
problems, tests run in the sandbox), jsonl (a file of {id, input, answer}), python (a user file
defining tasks() and score()), inspect (an Inspect AI task's samples and scorer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.suites.base import SPLITS, Split, Suite, split_of
from ratchet.types import Task

if TYPE_CHECKING:
    from ratchet.config import SplitFractions, SuiteSection
    from ratchet.sandbox import Sandbox

__all__ = ["Suite", "Split", "SPLITS", "build_suite", "tasks_for_split", "fingerprint_of", "resolve_project_file"]


def build_suite(section: SuiteSection, root: Path, sandbox: Sandbox | None = None) -> Suite:
    """The suite a [suite] section describes; file paths are relative to the project dir `root`.

    `sandbox` runs generated code (humaneval); by default one with the default limits and the
    section's timeout.
    """
    from ratchet.config import ConfigError

    if section.kind == "reasoning_gym":
        from ratchet.suites.reasoning_gym import ReasoningGymSuite

        if not section.dataset:
            raise ConfigError('[suite] kind = "reasoning_gym" needs dataset = "<name>", e.g. "basic_arithmetic"')
        return ReasoningGymSuite(
            section.dataset, size=section.size, seed=section.seed, config=section.config, name=section.name
        )
    if section.kind == "humaneval":
        from ratchet.suites.humaneval import HumanEvalSuite

        return HumanEvalSuite(timeout_s=section.timeout_s, sandbox=sandbox, name=section.name)
    if section.kind == "jsonl":
        from ratchet.suites.jsonl import JsonlSuite

        return JsonlSuite(resolve_project_file(section, root, ".jsonl"), match=section.match, name=section.name)
    if section.kind == "python":
        from ratchet.suites.python_scorer import PythonScorerSuite

        return PythonScorerSuite(resolve_project_file(section, root, ".py"), name=section.name)
    if section.kind == "inspect":
        from ratchet.suites.inspect_suite import InspectSuite

        if not section.task:
            raise ConfigError('[suite] kind = "inspect" needs task = "<file.py>@<task name>" (relative to the project '
                              'dir) or the registered name of an installed Inspect task')
        return InspectSuite(section.task, root, section.task_args, name=section.name)
    raise ConfigError(f"[suite] kind = {section.kind!r} is not known; use reasoning_gym, humaneval, jsonl, python or inspect")


def resolve_project_file(section: SuiteSection, root: Path, suffix: str) -> Path:
    from ratchet.config import ConfigError

    if not section.path:
        raise ConfigError(
            f'[suite] kind = "{section.kind}" needs path = "<file{suffix}>" (relative to the project dir)'
        )
    path = (Path(root) / section.path).resolve()
    if not path.is_file():
        raise ConfigError(f"[suite] path = {section.path!r}: {path} is not a file")
    return path


def tasks_for_split(
    suite: Suite, split: Split, fractions: SplitFractions | Mapping[str, float], salt: str = "ratchet"
) -> list[Task]:
    """The suite's tasks that fall in `split`, in suite order. Assignment depends only on id and salt."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    fr = dict(fractions) if isinstance(fractions, Mapping) else fractions.model_dump()
    return [t for t in suite.tasks() if split_of(t.id, fr, salt) == split]


def fingerprint_of(records: Iterable[Any], source_files: Iterable[Path]) -> str:
    """sha256 over JSON-serialisable records (task data and gold answers) and the scorer source files."""
    h = hashlib.sha256()
    for record in records:
        h.update(json.dumps(record, sort_keys=True, default=str).encode())
        h.update(b"\n")
    for path in sorted({Path(p).resolve() for p in source_files}):
        h.update(f"file:{path.name}:".encode())
        h.update(path.read_bytes())
    return h.hexdigest()
