"""When a loop must stop: budgets, a stop file, Ctrl-C. Decisions only; the engine acts on them."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.config import GuardSection


@dataclass
class Usage:
    """What a run has spent so far. Each rollout, trial and proposer call is counted once, when it is
    recorded (a rollout reused from the ledger is not spent again), and the figures are saved in the
    ledger as they change, so a resumed run continues from them instead of counting anew."""

    rounds: int = 0
    rollouts: int = 0
    tokens: int = 0  # every model token: the harness's and the proposer's
    proposer_tokens: int = 0  # of `tokens`: the proposer's model calls
    cost_usd: float = 0.0  # at each model's prompt and completion prices
    wall_s: float = 0.0

    def to_json(self) -> dict:
        return {"rounds": self.rounds, "rollouts": self.rollouts, "tokens": self.tokens,
                "proposer_tokens": self.proposer_tokens, "cost_usd": round(self.cost_usd, 6), "wall_s": round(self.wall_s, 2)}

    @classmethod
    def from_json(cls, d: dict) -> Usage:
        return cls(**{k: type(getattr(cls(), k))(d.get(k, 0) or 0) for k in cls().to_json()})


@dataclass
class StopControl:
    guard: GuardSection
    max_rounds: int
    stop_file: Path
    usage: Usage = field(default_factory=Usage)
    interrupted: bool = False
    _session_start: float = field(default_factory=time.monotonic)
    _wall_before: float = 0.0

    def resume_from(self, usage: dict) -> None:
        self.usage = Usage.from_json(usage)
        self._wall_before = self.usage.wall_s
        self._session_start = time.monotonic()

    def tick(self) -> None:
        self.usage.wall_s = self._wall_before + time.monotonic() - self._session_start

    def spend(self, rollouts: int = 0, tokens: int = 0, usd: float = 0.0, proposer: bool = False) -> None:
        self.usage.rollouts += rollouts
        self.usage.tokens += tokens
        self.usage.proposer_tokens += tokens if proposer else 0
        self.usage.cost_usd += usd
        self.tick()

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd

    def budget_reason(self, rounds: bool = True) -> str | None:
        """Why the run must end now, or None. `rounds=False`: inside a round, where only what is spent counts."""
        self.tick()
        g, u = self.guard, self.usage
        if rounds and u.rounds >= self.max_rounds:
            return f"round budget reached ({self.max_rounds})"
        if g.max_rollouts and u.rollouts >= g.max_rollouts:
            return f"rollout budget reached ({u.rollouts}/{g.max_rollouts})"
        if g.max_tokens and u.tokens >= g.max_tokens:
            return f"token budget reached ({u.tokens}/{g.max_tokens})"
        if g.max_cost_usd is not None and self.cost_usd > 0 and self.cost_usd >= g.max_cost_usd:
            return f"money budget reached (${self.cost_usd:.2f}/${g.max_cost_usd:.2f})"
        if g.max_wall_s and u.wall_s >= g.max_wall_s:
            return f"wall-time budget reached ({u.wall_s:.0f}s/{g.max_wall_s:.0f}s)"
        return None

    def stop_reason(self) -> str | None:
        """A request to stop cleanly after the current step (stop file or Ctrl-C)."""
        if self.interrupted:
            return "interrupted (Ctrl-C)"
        if self.stop_file.exists():
            return f"stop file {self.stop_file} present"
        return None

    def should_stop(self) -> bool:
        return self.stop_reason() is not None

    def install_sigint(self) -> None:
        """First Ctrl-C: stop after the current step. Second: the default (immediate) behaviour."""

        def handler(signum, frame):  # noqa: ARG001
            if self.interrupted:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self.interrupted = True

        signal.signal(signal.SIGINT, handler)

    def budget_table(self) -> dict:
        g, u = self.guard, self.usage
        return {"rounds": [u.rounds, self.max_rounds], "rollouts": [u.rollouts, g.max_rollouts],
                "tokens": [u.tokens, g.max_tokens], "wall_s": [round(u.wall_s, 1), g.max_wall_s],
                "cost_usd": [round(self.cost_usd, 4), g.max_cost_usd]}
