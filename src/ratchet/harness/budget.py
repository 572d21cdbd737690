"""Per-episode limits: a step and token budget, and a detector for an agent that repeats itself.

Pure bookkeeping, no I/O: the runtime asks `admit(action)` before serving a request and ends the
episode with the returned reason when it is not None.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EpisodeLimits:
    max_steps: int = 8
    max_tokens: int = 4096
    timeout_s: float = 120.0
    loop_repeats: int = 3  # the same action this many times in a row ends the episode


@dataclass
class EpisodeBudget:
    limits: EpisodeLimits
    steps: int = 0
    tokens: int = 0
    _last_action: str | None = field(default=None, repr=False)
    _repeats: int = 0
    loop: bool = False

    @property
    def steps_left(self) -> int:
        return max(0, self.limits.max_steps - self.steps)

    @property
    def tokens_left(self) -> int:
        return max(0, self.limits.max_tokens - self.tokens)

    def admit(self, action: dict[str, Any]) -> str | None:
        """Count one step; return why the episode must end, or None to go on."""
        key = hashlib.sha256(json.dumps(action, sort_keys=True, default=str).encode()).hexdigest()
        self._repeats = self._repeats + 1 if key == self._last_action else 1
        self._last_action = key
        if self._repeats >= self.limits.loop_repeats:
            self.loop = True
            return f"loop: the same {action.get('op', 'action')} was repeated {self._repeats} times in a row"
        if self.steps >= self.limits.max_steps:
            return f"budget: step limit of {self.limits.max_steps} reached"
        if self.tokens >= self.limits.max_tokens:
            return f"budget: token limit of {self.limits.max_tokens} reached"
        self.steps += 1
        return None

    def charge(self, tokens: int) -> None:
        self.tokens += tokens
