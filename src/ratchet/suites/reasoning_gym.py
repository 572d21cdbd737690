"""Any procedural dataset of the PyPI `reasoning-gym` package as a suite.

The dataset's own `score_answer` is the verifier. A reply is first reduced to its final answer
(`matching.extract_final_answer`), so a model that explains itself is scored on what it concluded
rather than penalised for the explanation (the raw reply still counts when it is exactly right).
The tasks are the same in every process whatever its hash seed (`reasoning_gym_entries`).

A config the 135M model can do sometimes but not always (for the arithmetic example):
dataset = "basic_arithmetic", config = {min_terms = 2, max_terms = 2, min_digits = 1, max_digits = 2,
operators = ["+", "-"], allow_parentheses = false, allow_negation = false}.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ratchet.suites import fingerprint_of
from ratchet.suites.matching import extract_final_answer, looks_numeric
from ratchet.suites.reasoning_gym_entries import dataset_entries
from ratchet.types import Score, Task


def task_id_of(dataset: str, seed: int, index: int) -> str:
    """A generated task's id; its split follows from it alone (`suites.base.split_of`)."""
    return f"{dataset}-{seed}-{index}"


class ReasoningGymSuite:
    def __init__(
        self,
        dataset: str,
        size: int = 200,
        seed: int = 1234,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        reveal_gold_in_feedback: bool = True,
    ) -> None:
        self.dataset_name = dataset
        self.name = name or dataset
        self.size, self.seed = size, seed
        self.reveal_gold_in_feedback = reveal_gold_in_feedback
        # built here for its scorer and to check the config; the entries come from a hash-seed-fixed process
        self._dataset = _create_dataset(dataset, size, seed, dict(config or {}))
        self._tasks: list[Task] = []
        self._entries: dict[str, dict[str, Any]] = {}  # id -> the dataset entry, gold included; never shown
        for index, entry in enumerate(dataset_entries(self._dataset, dataset, size, seed, dict(config or {}))):
            task_id = task_id_of(dataset, seed, index)
            answer = "" if entry.get("answer") is None else str(entry["answer"])
            self._entries[task_id] = entry
            self._tasks.append(
                Task(
                    id=task_id,
                    input=str(entry["question"]),
                    # only what the harness may know: never the dataset metadata, which can hold solutions
                    metadata={
                        "suite": "reasoning_gym",
                        "dataset": dataset,
                        "index": index,
                        "answer_format": "number" if looks_numeric(answer) else "text",
                    },
                )
            )

    def tasks(self) -> Sequence[Task]:
        return self._tasks

    def gold(self, task_id: str) -> str:
        entry = self._entry(task_id)
        return "" if entry.get("answer") is None else str(entry["answer"])

    async def score(self, task: Task, answer: str | None) -> Score:
        entry = self._entry(task.id)
        if answer is None or not answer.strip():
            return Score(0.0, "no answer: the reply was empty")
        gold = self.gold(task.id)
        expect_number = looks_numeric(gold)
        extracted = extract_final_answer(answer, expect_number=expect_number)
        value = self._score_answer(extracted.text, entry)
        if value < 1.0 and self._score_answer(answer.strip(), entry) >= 1.0:
            # the reply as written is exactly right (e.g. a multi-line answer the rules cut short); the raw
            # reply's partial credit is not used, as it rewards answers that merely mention the gold
            value, extracted = 1.0, extracted.__class__(answer.strip(), "whole_reply")
        return Score(value, self._feedback(value, extracted.text, extracted.rule, expect_number, gold))

    def _score_answer(self, answer: str, entry: dict[str, Any]) -> float:
        try:
            value = float(self._dataset.score_answer(answer, entry))
        except Exception:  # a dataset scorer that chokes on malformed input: the answer is wrong
            return 0.0
        return min(1.0, max(0.0, value))

    def _feedback(self, value: float, extracted: str, rule: str, expect_number: bool, gold: str) -> str:
        if value >= 1.0:
            return f"correct (final answer {extracted!r}, found by rule {rule})"
        fmt = "a single number" if expect_number else "the answer text"
        parts = [
            f"{'partially correct' if value > 0 else 'wrong'} (score {value:.2f}): extracted {_clip(extracted)!r} "
            f"by rule {rule}; expected format: {fmt}, ideally on a last line 'Answer: ...'"
        ]
        if self.reveal_gold_in_feedback:
            parts.append(f"expected {gold!r}")
        return "; ".join(parts)

    def fingerprint(self) -> str:
        records = [(t.to_json(), self.gold(t.id)) for t in self._tasks]
        records.append({"dataset": self.dataset_name, "size": self.size, "seed": self.seed})
        sources = {Path(__file__), Path(inspect.getfile(type(self._dataset)))}
        for cls in type(self._dataset).__mro__:  # the scorer may be inherited
            if "score_answer" in cls.__dict__:
                sources.add(Path(inspect.getfile(cls)))
                break
        return fingerprint_of(records, sources)

    def _entry(self, task_id: str) -> dict[str, Any]:
        try:
            return self._entries[task_id]
        except KeyError:
            raise KeyError(f"task {task_id!r} is not in suite {self.name!r}") from None


def _create_dataset(dataset: str, size: int, seed: int, config: dict[str, Any]) -> Any:
    from ratchet.config import ConfigError

    try:
        import reasoning_gym
        from reasoning_gym.factory import DATASETS
    except ImportError as e:
        raise ConfigError(f"the reasoning_gym suite needs the PyPI package `reasoning-gym` ({e})") from None
    if dataset not in DATASETS:
        close = difflib.get_close_matches(dataset, list(DATASETS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(DATASETS))}"
        raise ConfigError(f"[suite] dataset = {dataset!r} is not a reasoning-gym dataset{hint}")
    for key in ("size", "seed"):
        if key in config:
            raise ConfigError(f"[suite] config.{key}: set {key} in [suite] itself, not in config")
    try:
        return reasoning_gym.create_dataset(dataset, size=size, seed=seed, **config)
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(f"[suite] config for reasoning-gym dataset {dataset!r} is not valid: {e}") from None


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
