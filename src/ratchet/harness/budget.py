"""Per-episode limits: a step and token budget, and the loop detector (loop_detector.py).

Pure bookkeeping, no I/O: the runtime asks `admit(action)` before serving a request and ends the
episode with the returned reason when it is not None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ratchet.harness.loop_detector import LoopDetector


@dataclass(frozen=True)
class EpisodeLimits:
    max_steps: int = 8
    max_tokens: int = 4096
    timeout_s: float = 120.0
    loop_repeats: int = 3  # the same (or a near-identical) action this many times in a row ends the episode
    loop_window: int = 8  # actions in which an A-B-A-B cycle is looked for; 0: no cycle rule
    loop_similarity: float = 0.95  # difflib ratio at which two actions count as a near-repeat; 1.0: no near rule


@dataclass
class EpisodeBudget:
    limits: EpisodeLimits
    steps: int = 0
    tokens: int = 0
    loop: bool = False
    detector: LoopDetector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lim = self.limits
        self.detector = LoopDetector(lim.loop_repeats, lim.loop_window, lim.loop_similarity)

    @property
    def steps_left(self) -> int:
        return max(0, self.limits.max_steps - self.steps)

    @property
    def tokens_left(self) -> int:
        return max(0, self.limits.max_tokens - self.tokens)

    def admit(self, action: dict[str, Any]) -> str | None:
        """Count one step; return why the episode must end, or None to go on."""
        why = self.detector.check(action)
        if why:
            self.loop = True
            return why
        if self.steps >= self.limits.max_steps:
            return f"budget: step limit of {self.limits.max_steps} reached"
        if self.tokens >= self.limits.max_tokens:
            return f"budget: token limit of {self.limits.max_tokens} reached"
        self.steps += 1
        return None

    def charge(self, tokens: int) -> None:
        self.tokens += tokens
