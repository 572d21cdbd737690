"""A JSONL file of tasks, one object per line: {"id", "input", "answer", "metadata"?}, scored by a match mode.

Match modes (see `matching`): exact, normalized (case, whitespace, punctuation), numeric (within a
tolerance: `metadata.rel_tol` / `metadata.abs_tol` per task, else 1e-6 relative) and regex (the answer
field is a pattern the reply must match in full). Outside exact mode a reply that does not match as
written is tried again on its extracted final answer ("... the answer is 42" -> "42").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ratchet.suites import fingerprint_of
from ratchet.suites.matching import MATCH_MODES, MatchMode, match_reply, matches
from ratchet.types import Score, Task

_KEYS = {"id", "input", "answer", "metadata"}


def read_jsonl_tasks(path: Path) -> list[dict[str, Any]]:
    """Parse and check the file; errors name the line and what to fix."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: each line must be an object with id, input and answer")
        missing = {"id", "input", "answer"} - set(obj)
        if missing:
            raise ValueError(f"{where}: missing key(s) {sorted(missing)}")
        unknown = set(obj) - _KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; put extra fields under \"metadata\"")
        if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
            raise ValueError(f"{where}: id must be a string or an integer")
        if not isinstance(obj["input"], str):
            raise ValueError(f"{where}: input must be a string")
        if not isinstance(obj["answer"], (str, int, float)) or isinstance(obj["answer"], bool):
            raise ValueError(f"{where}: answer must be a string or a number")
        metadata = obj.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError(f"{where}: metadata must be an object")
        task_id = str(obj["id"])
        if task_id in seen:
            raise ValueError(f"{where}: duplicate id {task_id!r}")
        seen.add(task_id)
        records.append({"id": task_id, "input": obj["input"], "answer": str(obj["answer"]), "metadata": metadata})
    if not records:
        raise ValueError(f"{path}: no tasks (expected one JSON object per line)")
    return records


class JsonlSuite:
    def __init__(
        self, path: Path, match: MatchMode = "normalized", name: str | None = None, reveal_gold_in_feedback: bool = True
    ) -> None:
        if match not in MATCH_MODES:
            raise ValueError(f"match = {match!r} is not known; use one of {', '.join(MATCH_MODES)}")
        self.path = Path(path)
        self.name = name or self.path.stem
        self.match: MatchMode = match
        self.reveal_gold_in_feedback = reveal_gold_in_feedback
        records = read_jsonl_tasks(self.path)
        self._gold = {r["id"]: r["answer"] for r in records}
        self._tasks = [Task(id=r["id"], input=r["input"], metadata=r["metadata"]) for r in records]
        if match in ("numeric", "regex"):
            for r in records:  # a gold answer the mode cannot use is a data error: say so now, not mid-run
                try:
                    matches(match, "", r["answer"])
                except ValueError as e:
                    raise ValueError(f"{self.path}: task {r['id']!r}: {e}") from None

    def tasks(self) -> Sequence[Task]:
        return self._tasks

    def gold(self, task_id: str) -> str:
        try:
            return self._gold[task_id]
        except KeyError:
            raise KeyError(f"task {task_id!r} is not in suite {self.name!r}") from None

    async def score(self, task: Task, answer: str | None) -> Score:
        gold = self.gold(task.id)
        if answer is None or not answer.strip():
            return Score(0.0, "no answer: the reply was empty")
        rel_tol = float(task.metadata.get("rel_tol", 1e-6))
        abs_tol = float(task.metadata.get("abs_tol", 1e-9))
        ok, extraction = match_reply(self.match, answer, gold, rel_tol, abs_tol)
        if ok:
            return Score(1.0, f"correct ({self.match} match on {extraction.rule})")
        shown = extraction.text if len(extraction.text) <= 80 else extraction.text[:77] + "..."
        feedback = f"wrong: {shown!r} (found by rule {extraction.rule}) does not {self.match}-match the answer"
        return Score(0.0, feedback + (f" {gold!r}" if self.reveal_gold_in_feedback else ""))

    def fingerprint(self) -> str:
        import ratchet.suites.matching as matching

        records = [(t.to_json(), self._gold[t.id]) for t in self._tasks] + [{"match": self.match}]
        return fingerprint_of(records, [Path(__file__), Path(matching.__file__)])
