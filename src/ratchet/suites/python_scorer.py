"""A suite defined by a user Python file::

    def tasks() -> list[dict]:            # each {"id", "input", "answer", "metadata"?}
        ...
    def score(answer, gold, task) -> float | tuple[float, str]:   # may also be `async def`
        ...

`answer` is the harness's reply (a str), `gold` the task's "answer" value as the file gave it, `task`
the `Task` (id, input, metadata). The value must lie in [0, 1]; a (value, feedback) pair adds feedback.

The file is trusted project code: it runs in this process, not in the sandbox. The guard keeps it out of
any candidate's reach, and the fingerprint (its bytes plus the task data) detects a change.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ratchet.suites import fingerprint_of
from ratchet.types import Score, Task


def load_scorer_module(path: Path) -> ModuleType:
    """Import the file under a private module name, so two projects' scorers never collide."""
    name = f"ratchet_user_scorer_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling inside the scorer look the module up here
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ValueError(f"{path}: importing the scorer failed: {type(e).__name__}: {e}") from e
    for fn in ("tasks", "score"):
        if not callable(getattr(module, fn, None)):
            raise ValueError(f"{path}: must define a function `{fn}` (see docs/suites.md)")
    return module


def check_task_records(raw: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"{path}: tasks() must return a non-empty list of dicts")
    records, seen = [], set()
    for i, item in enumerate(raw):
        where = f"{path}: tasks()[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is {type(item).__name__}, not a dict")
        missing = {"id", "input", "answer"} - set(item)
        if missing:
            raise ValueError(f"{where}: missing key(s) {sorted(missing)}")
        unknown = set(item) - {"id", "input", "answer", "metadata"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; put extra fields under 'metadata'")
        if not isinstance(item["input"], str):
            raise ValueError(f"{where}: input must be a string")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError(f"{where}: metadata must be a dict")
        task_id = str(item["id"])
        if task_id in seen:
            raise ValueError(f"{where}: duplicate id {task_id!r}")
        seen.add(task_id)
        records.append({"id": task_id, "input": item["input"], "answer": item["answer"], "metadata": metadata})
    return records


def interpret_score(result: Any, path: Path) -> Score:
    """A scorer's return value as a Score; anything out of contract is an error naming the file."""
    feedback = ""
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[1], str):
            raise ValueError(f"{path}: score() returned {result!r}; return a float or (float, feedback_str)")
        result, feedback = result
    if isinstance(result, bool):
        result = float(result)
    if not isinstance(result, (int, float)):
        raise ValueError(f"{path}: score() returned {type(result).__name__}; return a float in [0, 1]")
    if not 0.0 <= float(result) <= 1.0:
        raise ValueError(f"{path}: score() returned {result}, outside [0, 1]")
    return Score(float(result), feedback)


class PythonScorerSuite:
    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = Path(path).resolve()
        self.name = name or self.path.stem
        self._module = load_scorer_module(self.path)
        records = check_task_records(self._module.tasks(), self.path)
        self._gold = {r["id"]: r["answer"] for r in records}
        self._tasks = [Task(id=r["id"], input=r["input"], metadata=r["metadata"]) for r in records]
        self._by_id = {t.id: t for t in self._tasks}

    def tasks(self) -> Sequence[Task]:
        return self._tasks

    def gold(self, task_id: str) -> str:
        value = self._gold_value(task_id)
        return value if isinstance(value, str) else json.dumps(value, default=str)

    async def score(self, task: Task, answer: str | None) -> Score:
        gold = self._gold_value(task.id)
        if answer is None:
            return Score(0.0, "no answer: the harness returned nothing")
        result = self._module.score(answer, gold, task)
        if inspect.isawaitable(result):
            result = await result
        return interpret_score(result, self.path)

    def fingerprint(self) -> str:
        records = [(t.to_json(), self._gold[t.id]) for t in self._tasks]
        return fingerprint_of(records, [self.path, Path(__file__)])

    def _gold_value(self, task_id: str) -> Any:
        try:
            return self._gold[task_id]
        except KeyError:
            raise KeyError(f"task {task_id!r} is not in suite {self.name!r}") from None
