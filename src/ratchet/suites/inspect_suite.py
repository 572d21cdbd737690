"""An Inspect AI task as a suite: its dataset's samples are ratchet tasks, its scorer is the verifier.

    [suite]
    kind = "inspect"
    task = "tasks.py@arithmetic"     # a file relative to the project dir and a @task in it, or a registered name
    task_args = { level = 2 }        # optional: arguments of the task function

What is used (docs/inspect.md): each sample's input (a string, or chat messages joined into one text) and
id (else a hash of the input, so splits are stable), its metadata (passed to the harness), its choices
(rendered into the input with Inspect's multiple-choice template and read back from the reply's
`ANSWER: X`), its target (kept here, never shown to the harness) and the task's first scorer, which
scores the harness's final reply as the model's completion. The harness replaces the task's solver;
sandboxes, sample files and setup, and scorers that need a model or a sandbox are not supported.

The task file is trusted project code: it runs here, in the parent, like a Python scorer; harness code
runs in the sandboxed worker and never sees it. The fingerprint (samples, targets, the scorer's name and
parameters, the task file, the scorer's source file and a dataset file) detects a change mid-run.
"""

from __future__ import annotations

import hashlib
import inspect as pyinspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ratchet.suites import fingerprint_of
from ratchet.types import Score, Task

_HINT = "ratchet runs Inspect scorers that need no model and no sandbox (see docs/inspect.md)"


def _require_inspect() -> None:
    import importlib.util

    if importlib.util.find_spec("inspect_ai") is None:
        raise ValueError("[suite] kind = \"inspect\" needs inspect-ai: pip install 'ratchet[inspect]'")


def parse_task_spec(spec: str, root: Path) -> tuple[Path | None, str | None]:
    """(file, task name in it) for `file.py@name` or `file.py`; (None, name) for a registered name."""
    file_part, _, name = spec.partition("@")
    if not file_part.endswith(".py"):
        if name:
            raise ValueError(f"[suite] task = {spec!r}: the part before @ must be a .py file, e.g. \"tasks.py@{name}\"")
        return None, spec  # a registered task, e.g. from an installed package
    path = (Path(root) / file_part).resolve()
    if not path.is_file():
        raise ValueError(f"[suite] task = {spec!r}: {path} is not a file (the path is relative to the project dir)")
    return path, name or None


def load_inspect_task(spec: str, root: Path, task_args: dict[str, Any]) -> tuple[Any, Path | None]:
    """The Inspect `Task` that `spec` names, and its file (None for a registered task)."""
    _require_inspect()
    from inspect_ai._eval.loader import create_file_tasks, load_file_tasks, load_tasks

    path, name = parse_task_spec(spec, root)
    try:
        if path is None:
            tasks = load_tasks([spec], dict(task_args))
        else:  # what Inspect's loader does with `file.py@name`: import the file (registering its tasks), create
            load_file_tasks(path)
            tasks = create_file_tasks(path, [name] if name else None, dict(task_args))
    except Exception as e:
        raise ValueError(f"[suite] task = {spec!r}: loading the Inspect task failed: {type(e).__name__}: {e}") from e
    if not tasks:
        where = f"{path} defines no @task" + (f" named {name!r}" if name else "") if path else "no installed task has this name"
        raise ValueError(f"[suite] task = {spec!r}: {where}; write \"path/to/tasks.py@task_name\" (relative to the "
                         "project dir) or the registered name of an installed Inspect task")
    if len(tasks) > 1:
        names = ", ".join(t.name for t in tasks)
        raise ValueError(f"[suite] task = {spec!r}: {path} defines several tasks ({names}); name one: \"{spec}@{tasks[0].name}\"")
    return tasks[0], path


def sample_text(sample: Any) -> str:
    """A sample's input as one text: the string, or the texts of its chat messages, a blank line apart."""
    if isinstance(sample.input, str):
        return sample.input
    return "\n\n".join(m.text for m in sample.input)


def _targets(sample: Any) -> list[str]:
    return [sample.target] if isinstance(sample.target, str) else list(sample.target)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class InspectSuite:
    def __init__(self, spec: str, root: Path, task_args: dict[str, Any] | None = None, name: str | None = None) -> None:
        self.spec, self.task_args = spec, dict(task_args or {})
        task, self.task_file = load_inspect_task(spec, root, self.task_args)
        self.task_name: str = task.name
        self.name = name or task.name
        self._check_task(task)
        self._scorer = task.scorer[0]
        self.scorer_name, self._scorer_params = self._scorer_identity(self._scorer)
        self._dataset_file = self._find_dataset_file(task)
        self._samples: dict[str, Any] = {}
        self._tasks: list[Task] = []
        for i, sample in enumerate(task.dataset):
            task_id = self._task_id(sample, i)
            self._samples[task_id] = sample
            self._tasks.append(Task(id=task_id, input=self._input(sample), metadata=self._metadata(sample)))
        if not self._tasks:
            raise ValueError(f"[suite] task = {spec!r}: the task's dataset has no samples")

    def _check_task(self, task: Any) -> None:
        where = f"[suite] task = {self.spec!r}"
        if not task.scorer:
            raise ValueError(f"{where}: the task has no scorer; give it one (e.g. scorer=match()): ratchet needs it to verify")
        if task.sandbox is not None:
            raise ValueError(f"{where}: the task uses an Inspect sandbox ({task.sandbox.type}), which ratchet does not "
                             "support; remove it (harness code runs in ratchet's own sandbox)")
        if task.setup is not None:
            raise ValueError(f"{where}: the task has a setup solver, which ratchet does not run; remove it")

    @staticmethod
    def _scorer_identity(scorer: Any) -> tuple[str, dict[str, Any]]:
        from inspect_ai._util.registry import is_registry_object, registry_params, registry_unqualified_name

        if not is_registry_object(scorer):
            return getattr(scorer, "__name__", "scorer"), {}
        return registry_unqualified_name(scorer), _jsonable(registry_params(scorer))

    def _find_dataset_file(self, task: Any) -> Path | None:
        location = getattr(task.dataset, "location", None)
        if not isinstance(location, str) or "://" in location:
            return None
        path = Path(location)
        if not path.is_absolute() and self.task_file is not None:
            path = self.task_file.parent / path
        return path.resolve() if path.is_file() else None

    def _task_id(self, sample: Any, index: int) -> str:
        where = f"[suite] task = {self.spec!r}: sample {index + 1}"
        for key in ("sandbox", "files", "setup"):
            if getattr(sample, key, None):
                raise ValueError(f"{where} uses {key}, which ratchet does not support; remove it from the sample")
        if sample.id is not None:
            task_id = str(sample.id)
            if task_id in self._samples:
                raise ValueError(f"{where}: duplicate sample id {task_id!r}; give every sample its own id")
            return task_id
        key = json.dumps([_jsonable(sample.input if isinstance(sample.input, str) else [m.model_dump() for m in sample.input]),
                          sample.choices], sort_keys=True)
        base = "h" + hashlib.sha256(key.encode()).hexdigest()[:12]
        task_id, n = base, 1
        while task_id in self._samples:  # the same input twice: told apart by order
            n += 1
            task_id = f"{base}-{n}"
        return task_id

    @staticmethod
    def _input(sample: Any) -> str:
        text = sample_text(sample)
        if not sample.choices:
            return text
        from inspect_ai.solver import Choices
        from inspect_ai.solver._multiple_choice import MULTIPLE_ANSWER_TEMPLATE, SINGLE_ANSWER_TEMPLATE, prompt

        template = MULTIPLE_ANSWER_TEMPLATE if len(_targets(sample)) > 1 else SINGLE_ANSWER_TEMPLATE
        return prompt(text, Choices(list(sample.choices)), template)

    @staticmethod
    def _metadata(sample: Any) -> dict[str, Any]:
        metadata = _jsonable(dict(sample.metadata or {}))
        if sample.choices:
            metadata.setdefault("choices", list(sample.choices))
        if not isinstance(sample.input, str):
            metadata.setdefault("messages", [{"role": m.role, "content": m.text} for m in sample.input])
        return metadata

    # -- the Suite protocol ------------------------------------------------------------------------
    def tasks(self) -> Sequence[Task]:
        return self._tasks

    def sample(self, task_id: str) -> Any:
        try:
            return self._samples[task_id]
        except KeyError:
            raise KeyError(f"task {task_id!r} is not in suite {self.name!r}") from None

    def gold(self, task_id: str) -> str:
        return ", ".join(_targets(self.sample(task_id)))

    def inspect_target(self, task_id: str) -> str | list[str]:
        """The sample's target as Inspect holds it (for the exported logs)."""
        target = self.sample(task_id).target
        return target if isinstance(target, str) else list(target)

    async def score(self, task: Task, answer: str | None) -> Score:
        sample = self.sample(task.id)
        if answer is None:
            return Score(0.0, "no answer: the harness returned nothing")
        from inspect_ai.scorer import Target

        state = self._state(sample, task, answer)
        try:
            result = await self._scorer(state, Target(sample.target))
        except Exception as e:
            raise ValueError(f"the Inspect scorer {self.scorer_name!r} failed on sample {task.id!r}: "
                             f"{type(e).__name__}: {e}; {_HINT}") from e
        return self._as_score(result, task.id)

    def _state(self, sample: Any, task: Task, answer: str) -> Any:
        """The TaskState a solver would have left: the input, the harness's reply as the model's completion."""
        from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelName, ModelOutput
        from inspect_ai.scorer import Target
        from inspect_ai.solver import TaskState

        messages = [ChatMessageUser(content=task.input)] if isinstance(sample.input, str) else list(sample.input)
        state = TaskState(model=ModelName("ratchet/harness"), sample_id=sample.id if sample.id is not None else task.id,
                          epoch=1, input=sample.input, messages=[*messages, ChatMessageAssistant(content=answer)],
                          target=Target(sample.target), choices=sample.choices,
                          output=ModelOutput.from_content("ratchet/harness", answer),
                          metadata=dict(sample.metadata or {}), completed=True)
        if sample.choices:  # what Inspect's multiple_choice solver does with the reply
            from inspect_ai.solver._multiple_choice import parse_answers, set_choices_based_on_generated_response

            set_choices_based_on_generated_response(state, parse_answers(state, len(_targets(sample)) > 1))
        return state

    def _as_score(self, result: Any, task_id: str) -> Score:
        from inspect_ai.scorer import value_to_float

        where = f"the Inspect scorer {self.scorer_name!r} on sample {task_id!r}"
        if result is None:
            raise ValueError(f"{where} returned no score; ratchet needs one number per sample")
        if isinstance(result.value, (dict, list)):
            raise ValueError(f"{where} returned a {type(result.value).__name__} of values; ratchet needs one value "
                             "per sample (C/I/P/N, a bool or a number in [0, 1])")
        value = value_to_float()(result.value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{where} returned {result.value!r}, outside [0, 1]; ratchet needs scores in [0, 1]")
        verdict = "correct" if value >= 1.0 else "wrong" if value <= 0.0 else f"partly right ({value:g})"
        feedback = f"{verdict}: {self.scorer_name} read the answer {str(result.answer or '')[:80]!r}"
        if result.reason:
            feedback += f" ({result.reason})"
        return Score(value, feedback)

    def fingerprint(self) -> str:
        records = [(t.to_json(), self._samples[t.id].target, self._samples[t.id].choices) for t in self._tasks]
        records.append({"task": self.task_name, "task_args": self.task_args, "scorer": self.scorer_name,
                        "scorer_params": self._scorer_params, "inspect_ai": _inspect_version()})
        files = [Path(__file__)] + [p for p in (self.task_file, self._dataset_file, _source_file(self._scorer)) if p]
        return fingerprint_of(records, files)


def _inspect_version() -> str:
    from importlib.metadata import version

    return version("inspect-ai")


def _source_file(obj: Any) -> Path | None:
    try:
        path = pyinspect.getsourcefile(obj)
    except TypeError:
        return None
    return Path(path) if path and Path(path).is_file() else None
