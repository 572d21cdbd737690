"""Generate: K rollouts per train task with the current model and harness, through the evaluator.

Going through the evaluator gives batching, the call cache, resumability (rollouts are in the ledger
as they finish) and the same episode seeds scheme as every evaluation. Only the train split may be
sampled: dev, holdout and test never become training data.

STaR rationalisation (optional): for a train task none of whose K samples was verified, ask the model
again with the gold answer as a hint, and keep the reply - paired with the original prompt, without
the hint - only if the scorer verifies it. Gold answers of train tasks only; the suite refuses nothing
here, so the split check below is the guard.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence

from ratchet.config import ConfigError
from ratchet.evaluate import EvalResult, Evaluator
from ratchet.harness.loader import Harness, harness_from_files
from ratchet.harness.params import render_params, with_values
from ratchet.models.base import ChatModel
from ratchet.suites.base import Suite
from ratchet.types import SamplingParams, Task, Trajectory

TRAIN = "train"


def sampling_harness(harness: Harness, temperature: float | None) -> Harness:
    """The harness with its temperature knob set for generation (unchanged when temperature is None)."""
    if temperature is None:
        return harness
    if "temperature" not in harness.params.knobs:
        raise ConfigError(
            f"[flywheel] temperature = {temperature} needs the harness to declare a temperature knob in "
            f"{harness.root / 'params.toml'}; declare one, or remove temperature from [flywheel] to sample "
            "with the harness's own settings"
        )
    # with_values checks the value against the knob's declared range and says what to fix
    params = with_values(harness.params, {"temperature": temperature}, source=str(harness.root / "params.toml"))
    files = {**harness.files, "params.toml": render_params(params)}
    return harness_from_files(harness.root, files)


def generation_seed(base_seed: int, generation: int) -> int:
    """Each generation samples afresh, even when the model did not change (a rejected candidate)."""
    return base_seed * 1000 + generation


async def generate(evaluator: Evaluator, harness: Harness, tasks: Sequence[Task], samples_per_task: int, seed: int,
                   *, run_id: str | None = None, progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, splits: dict[str, str] | None = None) -> EvalResult:
    """Sample `samples_per_task` scored rollouts of every task (all must be train tasks)."""
    if splits is not None:
        wrong = [t.id for t in tasks if splits.get(t.id) != TRAIN]
        if wrong:
            raise ValueError(f"only train tasks may be sampled for training data; not train: {wrong[:5]}")
    return await evaluator.evaluate(harness, tasks, TRAIN, samples_per_task, seed, run_id=run_id,
                                    progress=progress, should_stop=should_stop)


def failed_rollouts(trajs: Sequence[Trajectory]) -> str | None:
    """A line on the rollouts that ended in an error (a crash, a timeout) rather than an answer, or None:
    they are never verified, so without it a broken sandbox reads as a model that solves nothing."""
    errors = Counter(str(t.error) for t in trajs if t.error)
    if not errors:
        return None
    common, n = errors.most_common(1)[0]
    return f"{sum(errors.values())} of {len(trajs)} rollouts ended in an error, not an answer ({n}x: {common[:300]})"


def hint_messages(request: list[dict[str, str]], gold: str) -> list[dict[str, str]]:
    """The request with the gold answer as a hint appended to the last user message."""
    out = [dict(m) for m in request]
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = (f"{m['content']}\n\n(Hint: the correct answer is {gold}. Work it out step by step and "
                            "arrive at that answer; do not mention this hint.)")
            return out
    raise ValueError("the request has no user message to attach a hint to")


def _seed(task_id: str, base: int) -> int:
    return int.from_bytes(hashlib.sha256(f"star:{base}:{task_id}".encode()).digest()[:4], "big")


async def rationalize(model: ChatModel, suite: Suite, failed: Sequence[tuple[Task, Trajectory]], temperature: float,
                      seed: int, split_of_task: Callable[[str], str]) -> list[Trajectory]:
    """STaR: one hinted retry per failed train task; returns scored pseudo-rollouts whose recorded request is the
    original (hint-free) one, so a verified reply trains the model to answer the plain question."""

    async def one(task: Task, traj: Trajectory) -> Trajectory | None:
        if split_of_task(task.id) != TRAIN:
            raise ValueError(f"STaR hints gold answers of train tasks only; {task.id} is in {split_of_task(task.id)}")
        calls = [c for c in traj.messages if len(c.get("replies") or []) == 1]
        if not calls:
            return None
        last = calls[-1]
        params = SamplingParams.from_json({**last["params"], "temperature": temperature, "seed": _seed(task.id, seed)})
        completion = await model.chat(hint_messages(last["request"], suite.gold(task.id)), params)
        reply = completion.text
        scored = await suite.score(task, reply)
        return Trajectory(task_id=task.id, epoch=0, seed=params.seed or 0,
                          messages=[{"request": last["request"], "params": params.to_json(), "replies": [reply],
                                     "cached": completion.cached, "star_hint": True}],
                          output=reply, score=float(scored.value), feedback=scored.feedback, steps=1,
                          tokens=completion.prompt_tokens + completion.completion_tokens)

    results = await asyncio.gather(*(one(t, tr) for t, tr in failed))
    return [r for r in results if r is not None]
