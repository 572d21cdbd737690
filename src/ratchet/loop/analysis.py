"""Failure analysis: what went wrong on dev, grouped so a proposer can aim its next change.

Only ever call this with *dev* trajectories. The proposer reads the report, so anything in it is
shown to the thing being optimised: a holdout or test trajectory here would leak the tasks that are
meant to judge it. If trajectories carry a ``split`` attribute, anything but "dev" is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ratchet.types import Trajectory

CLIP_CHARS = 300  # per text field in a prompt: enough to see the failure, short enough for many examples


def _clip(text: str | None, limit: int = CLIP_CHARS) -> str:
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


@dataclass(frozen=True)
class FailureExample:
    task_id: str
    input: str
    output: str
    feedback: str
    error: str
    steps: int
    score: float


@dataclass
class FailureGroup:
    signal: str
    count: int
    tasks: int  # distinct tasks with this failure
    examples: list[FailureExample] = field(default_factory=list)


@dataclass
class FailureReport:
    total: int  # trajectories analysed
    failed: int  # with score < 1
    groups: list[FailureGroup]  # largest first

    def summary(self) -> dict[str, int]:
        return {g.signal: g.count for g in self.groups}

    def to_prompt(self) -> str:
        if self.failed == 0:
            return f"All {self.total} dev rollouts scored 1.0; no failures to analyse."
        lines = [f"{self.failed} of {self.total} dev rollouts failed. Failure groups (largest first):"]
        for g in self.groups:
            lines.append(f"\n## {g.signal}: {g.count} rollouts on {g.tasks} tasks")
            for i, ex in enumerate(g.examples, 1):
                lines.append(f"[{i}] task {ex.task_id} (score {ex.score:.2f}, {ex.steps} steps)")
                lines.append(f"  input: {ex.input}")
                lines.append(f"  output: {ex.output or '(empty)'}")
                if ex.feedback:
                    lines.append(f"  scorer: {ex.feedback}")
                if ex.error:
                    lines.append(f"  error: {ex.error}")
        return "\n".join(lines)


def _check_dev_only(trajectories: Sequence[Trajectory]) -> None:
    for t in trajectories:
        split = getattr(t, "split", None)
        if split is not None and split != "dev":
            raise ValueError(
                f"analyse_failures got a {split!r} trajectory (task {t.task_id}); only dev trajectories may "
                "reach a proposer. Filter by split before calling."
            )


def _diverse_examples(failures: list[Trajectory], max_examples: int) -> list[Trajectory]:
    """Round-robin over tasks (worst score first within a task) so examples cover different tasks."""
    by_task: dict[str, list[Trajectory]] = {}
    for t in sorted(failures, key=lambda t: (t.score, t.task_id, t.epoch)):
        by_task.setdefault(t.task_id, []).append(t)
    queues = sorted(by_task.values(), key=lambda ts: (ts[0].score, ts[0].task_id))
    chosen: list[Trajectory] = []
    depth = 0
    while len(chosen) < max_examples and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < max_examples:
                chosen.append(q[depth])
        depth += 1
    return chosen


def analyse_failures(
    trajectories: Sequence[Trajectory], inputs: Mapping[str, str], max_examples: int
) -> FailureReport:
    """Group the dev rollouts that scored < 1 by failure signal, with up to max_examples examples per group."""
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0, got {max_examples}")
    _check_dev_only(trajectories)
    failures = [t for t in trajectories if t.score < 1.0]
    by_signal: dict[str, list[Trajectory]] = {}
    for t in failures:
        by_signal.setdefault(t.failure_signal, []).append(t)
    groups = []
    for signal, members in sorted(by_signal.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        examples = [
            FailureExample(
                task_id=t.task_id,
                input=_clip(inputs.get(t.task_id, "(input not available)")),
                output=_clip(t.output),
                feedback=_clip(t.feedback),
                error=_clip(t.error),
                steps=t.steps,
                score=t.score,
            )
            for t in _diverse_examples(members, max_examples)
        ]
        groups.append(
            FailureGroup(signal=signal, count=len(members), tasks=len({t.task_id for t in members}), examples=examples)
        )
    return FailureReport(total=len(trajectories), failed=len(failures), groups=groups)
